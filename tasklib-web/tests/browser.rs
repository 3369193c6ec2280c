//! The dashboard in a real browser (headless Chromium through chromedriver) against a real
//! database: every page loads and shows the rows, filters and keyset paging work, a task
//! opens, and retry, cancel, delete and resume change the rows. Each page is saved as a
//! PNG under `target/tmp/dashboard/` (docs/dashboard.md shows them).

mod support;

use fantoccini::Locator;
use tasklib::{TaskFilter, TaskState};
use tasklib_web::Dashboard;

use support::{Browser, PATIENCE, Scene, TestResult, serve_nested};

/// The attribute `name` of every row in the `#tasks` table of the page shown.
async fn listed(browser: &Browser, name: &str) -> TestResult<Vec<String>> {
    let mut values = Vec::new();
    for row in browser
        .client
        .find_all(Locator::Css("#tasks tbody tr"))
        .await?
    {
        values.push(row.attr(name).await?.unwrap_or_default());
    }
    Ok(values)
}

/// The ids of the tasks listed.
async fn listed_ids(browser: &Browser) -> TestResult<Vec<String>> {
    listed(browser, "data-id").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_loads_filters_and_pages_in_a_browser() -> TestResult {
    let scene = Scene::new().await?;
    let base = serve_nested(Dashboard::new(scene.tasks.clone()).authorize(|_, _| true)).await?;
    let browser = Browser::start().await?;
    let c = &browser.client;

    // Queues: both queues, their counts, the pause.
    c.goto(&base).await?;
    let default_row = c
        .find(Locator::Css("#queues tr[data-queue='default']"))
        .await?
        .text()
        .await?;
    let reports_row = c
        .find(Locator::Css("#queues tr[data-queue='reports']"))
        .await?
        .text()
        .await?;
    assert!(reports_row.contains("paused"), "reports row: {reports_row}");
    assert!(
        reports_row.contains("60"),
        "60 due in reports: {reports_row}"
    );
    assert!(
        !default_row.contains("paused"),
        "default is not paused: {default_row}"
    );
    browser.screenshot("queues").await?;

    // Tasks: newest first, 50 a page.
    c.goto(&format!("{base}/tasks")).await?;
    let first_page = listed_ids(&browser).await?;
    assert_eq!(first_page.len(), 50);
    assert_eq!(first_page[0], scene.waiting[59].to_string(), "newest first");
    browser.screenshot("tasks").await?;

    // Filter by state through the form.
    c.find(Locator::Css("select[name='state'] option[value='failed']"))
        .await?
        .click()
        .await?;
    c.find(Locator::Css("form.filters button[type='submit']"))
        .await?
        .click()
        .await?;
    c.wait()
        .at_most(PATIENCE)
        .for_url(&url::Url::parse(&format!(
            "{base}/tasks?state=failed&name=&queue=&tag="
        ))?)
        .await?;
    assert_eq!(listed_ids(&browser).await?, vec![scene.failed.to_string()]);
    assert_eq!(
        listed(&browser, "data-state").await?,
        vec!["failed".to_owned()]
    );

    // Filter by tag and queue, then page with the keyset link.
    c.goto(&format!("{base}/tasks?queue=reports&tag=batch%3Dweekly"))
        .await?;
    let page_one = listed_ids(&browser).await?;
    assert_eq!(page_one.len(), 50);
    c.find(Locator::Id("older")).await?.click().await?;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("#tasks"))
        .await?;
    let page_two = listed_ids(&browser).await?;
    assert_eq!(page_two.len(), 10, "60 tagged tasks: 50, then 10");
    assert!(page_two.iter().all(|id| !page_one.contains(id)));
    let oldest = scene.waiting[0].to_string();
    assert_eq!(page_two.last(), Some(&oldest));
    assert!(
        c.find_all(Locator::Id("older")).await?.is_empty(),
        "no third page"
    );

    // Open a task from the list.
    c.goto(&format!("{base}/tasks?state=failed")).await?;
    c.find(Locator::Css(&format!("a[href$='/tasks/{}']", scene.failed)))
        .await?
        .click()
        .await?;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Id("facts"))
        .await?;
    let args = c.find(Locator::Id("args")).await?.text().await?;
    assert!(args.contains("the disk is full"), "arguments shown: {args}");
    let errors = c.find(Locator::Id("errors")).await?.text().await?;
    assert!(
        errors.contains("boom: the disk is full"),
        "errors: {errors}"
    );
    browser.screenshot("task").await?;

    // A completed task shows its result.
    c.goto(&format!("{base}/tasks/{}", scene.completed[0]))
        .await?;
    let result = c.find(Locator::Id("result")).await?.text().await?;
    assert!(result.contains("hello, ada"), "result: {result}");

    // Workers: the running pool, with its queues.
    c.goto(&format!("{base}/workers")).await?;
    let worker = c
        .find(Locator::Css(
            "#workers tr[data-worker='dashboard-test-worker']",
        ))
        .await?
        .text()
        .await?;
    assert!(
        worker.contains("default") && worker.contains("reports"),
        "{worker}"
    );
    browser.screenshot("workers").await?;

    browser.close().await?;
    scene.pool.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_cancel_delete_and_resume_change_the_rows() -> TestResult {
    let scene = Scene::new().await?;
    let tasks = scene.tasks.clone();
    let base = serve_nested(Dashboard::new(tasks.clone()).authorize(|_, _| true)).await?;
    let browser = Browser::start().await?;
    let c = &browser.client;

    // Retry the failed task: it runs again (and fails again, as a second attempt).
    c.goto(&format!("{base}/tasks/{}", scene.failed)).await?;
    c.find(Locator::Id("do-retry")).await?.click().await?;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("p.notice"))
        .await?;
    let after = tasks.wait_result(scene.failed, PATIENCE).await?;
    assert_eq!(
        after.status,
        tasklib::TaskStatus::Failed,
        "failed again: {after:?}"
    );
    let record = tasks
        .get_task(scene.failed)
        .await?
        .ok_or("the retried task is gone")?;
    assert_eq!(record.attempt, 2, "the retry ran a second attempt");
    assert_eq!(record.errors.len(), 2, "one error per attempt");

    // Cancel a waiting task (the page asks first).
    let victim = scene.waiting[3];
    c.goto(&format!("{base}/tasks/{victim}")).await?;
    c.find(Locator::Id("do-cancel")).await?.click().await?;
    c.accept_alert().await?;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("p.notice"))
        .await?;
    let record = tasks.get_task(victim).await?.ok_or("cancelled task gone")?;
    assert_eq!(record.state, TaskState::Cancelled);

    // Delete a completed task.
    let gone = scene.completed[1];
    c.goto(&format!("{base}/tasks/{gone}")).await?;
    c.find(Locator::Id("do-delete")).await?.click().await?;
    c.accept_alert().await?;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("p.notice"))
        .await?;
    assert!(tasks.get_task(gone).await?.is_none(), "deleted");

    // Resume the paused queue from the queues page: its tasks run.
    c.goto(&base).await?;
    c.find(Locator::Css("#queues tr[data-queue='reports'] button"))
        .await?
        .click()
        .await?;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css("p.notice"))
        .await?;
    let overview = tasks.queue_overview(1).await?;
    let reports = overview
        .iter()
        .find(|q| q.queue == "reports")
        .ok_or("reports queue missing")?;
    assert!(!reports.paused, "resumed");
    tasks.wait_result(scene.waiting[59], PATIENCE).await?;
    let still_waiting = tasks
        .list_tasks(&TaskFilter::new().queue("reports").state(TaskState::Pending))
        .await?;
    assert!(
        still_waiting.len() < 59,
        "resumed tasks run: {} still pending",
        still_waiting.len()
    );

    browser.close().await?;
    scene.pool.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_dashboard_shows_no_action() -> TestResult {
    let scene = Scene::new().await?;
    let base = serve_nested(
        Dashboard::new(scene.tasks.clone())
            .authorize(|_, _| true)
            .read_only(),
    )
    .await?;
    let browser = Browser::start().await?;
    let c = &browser.client;
    c.goto(&format!("{base}/tasks/{}", scene.failed)).await?;
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Id("facts"))
        .await?;
    assert!(
        c.find_all(Locator::Css("form[method='post']"))
            .await?
            .is_empty()
    );
    let footer = c.find(Locator::Css("footer")).await?.text().await?;
    assert!(footer.contains("read-only"), "footer: {footer}");
    c.goto(&base).await?;
    assert!(c.find_all(Locator::Css("#queues button")).await?.is_empty());
    browser.close().await?;
    scene.pool.shutdown().await?;
    Ok(())
}
