//! The dashboard's protections over plain HTTP: actions need the page's token, are refused
//! from other sites, go through the app's hook, are off without a hook and in read-only
//! mode; the standalone server asks for its user and password, and will not listen beyond
//! loopback without them.

mod support;

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use tasklib::TaskState;
use tasklib_web::{Action, Dashboard, ServeOptions};

use support::{Scene, TestResult, serve_nested};

fn client() -> TestResult<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(Policy::none())
        .build()?)
}

/// The action token in a page, if it has action forms.
fn find_token(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

#[tokio::test]
async fn actions_need_the_token_and_come_from_the_same_site() -> TestResult {
    let scene = Scene::new().await?;
    let base = serve_nested(Dashboard::new(scene.tasks.clone()).authorize(|_, _| true)).await?;
    let http = client()?;
    let page = http
        .get(format!("{base}/tasks/{}", scene.failed))
        .send()
        .await?
        .text()
        .await?;
    let token = find_token(&page).ok_or("the task page has no action form")?;
    let victim = scene.waiting[0];
    let cancel = format!("{base}/tasks/{victim}/cancel");

    let no_token = http.post(&cancel).form(&[("csrf", "")]).send().await?;
    assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
    let wrong = http
        .post(&cancel)
        .form(&[("csrf", "0".repeat(token.len()))])
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let cross_site = http
        .post(&cancel)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", token.as_str())])
        .send()
        .await?;
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let state = scene.tasks.get_task(victim).await?.ok_or("gone")?.state;
    assert_eq!(
        state,
        TaskState::Pending,
        "no refused request changed the row"
    );

    let ok = http
        .post(&cancel)
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", token.as_str())])
        .send()
        .await?;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let location = ok
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or("");
    assert_eq!(location, format!("/admin/tasks/tasks/{victim}?done=cancel"));
    let state = scene.tasks.get_task(victim).await?.ok_or("gone")?.state;
    assert_eq!(state, TaskState::Cancelled);
    scene.pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn the_apps_hook_decides_and_without_one_there_are_no_actions() -> TestResult {
    let scene = Scene::new().await?;
    let http = client()?;

    // A hook that lets operators retry but never delete, and reads what the app's
    // middleware would have set (here a header).
    let hooked = serve_nested(
        Dashboard::new(scene.tasks.clone()).authorize(|request, action| {
            let operator = request
                .headers
                .get("x-role")
                .is_some_and(|r| r == "operator");
            operator && !matches!(action, Action::Delete(_))
        }),
    )
    .await?;
    let page = http
        .get(format!("{hooked}/tasks/{}", scene.failed))
        .send()
        .await?
        .text()
        .await?;
    let token = find_token(&page).ok_or("no action form")?;
    let delete = http
        .post(format!("{hooked}/tasks/{}/delete", scene.failed))
        .header("x-role", "operator")
        .form(&[("csrf", token.as_str())])
        .send()
        .await?;
    assert_eq!(delete.status(), StatusCode::FORBIDDEN);
    let anonymous_retry = http
        .post(format!("{hooked}/tasks/{}/retry", scene.failed))
        .form(&[("csrf", token.as_str())])
        .send()
        .await?;
    assert_eq!(anonymous_retry.status(), StatusCode::FORBIDDEN);
    assert!(scene.tasks.get_task(scene.failed).await?.is_some());
    let retry = http
        .post(format!("{hooked}/tasks/{}/retry", scene.failed))
        .header("x-role", "operator")
        .form(&[("csrf", token.as_str())])
        .send()
        .await?;
    assert_eq!(retry.status(), StatusCode::SEE_OTHER);
    let record = scene.tasks.get_task(scene.failed).await?.ok_or("gone")?;
    assert!(
        record.attempt == 2
            || record.state == TaskState::Pending
            || record.state == TaskState::Running,
        "retried: {:?} attempt {}",
        record.state,
        record.attempt
    );

    // No hook: no forms, and a post is refused.
    let bare = serve_nested(Dashboard::new(scene.tasks.clone())).await?;
    let page = http
        .get(format!("{bare}/tasks/{}", scene.completed[0]))
        .send()
        .await?
        .text()
        .await?;
    assert!(find_token(&page).is_none(), "no action form without a hook");
    assert!(page.contains("no authorisation hook"));
    let refused = http
        .post(format!("{bare}/tasks/{}/delete", scene.completed[0]))
        .form(&[("csrf", "anything")])
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(scene.tasks.get_task(scene.completed[0]).await?.is_some());

    // Read-only beats the hook.
    let read_only = serve_nested(
        Dashboard::new(scene.tasks.clone())
            .authorize(|_, _| true)
            .read_only(),
    )
    .await?;
    let refused = http
        .post(format!("{read_only}/queues/reports/resume"))
        .form(&[("csrf", "anything")])
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    scene.pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn pages_answer_bad_input_with_a_clear_status() -> TestResult {
    let scene = Scene::new().await?;
    let base = serve_nested(Dashboard::new(scene.tasks.clone())).await?;
    let http = client()?;
    let missing = http
        .get(format!("{base}/tasks/{}", uuid::Uuid::now_v7()))
        .send()
        .await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await?.contains("no task"));
    let bad_id = http.get(format!("{base}/tasks/not-an-id")).send().await?;
    assert_eq!(bad_id.status(), StatusCode::BAD_REQUEST);
    let bad_state = http
        .get(format!("{base}/tasks?state=sleeping"))
        .send()
        .await?;
    assert_eq!(bad_state.status(), StatusCode::BAD_REQUEST);
    assert!(bad_state.text().await?.contains("unknown state"));
    let bad_tag = http.get(format!("{base}/tasks?tag=nokey")).send().await?;
    assert_eq!(bad_tag.status(), StatusCode::BAD_REQUEST);
    let tag_json = http
        .get(format!("{base}/tasks?tag=%7B%22batch%22%3A%22weekly%22%7D"))
        .send()
        .await?;
    assert_eq!(tag_json.status(), StatusCode::OK);
    assert_eq!(tag_json.text().await?.matches("data-id=").count(), 50);
    scene.pool.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn the_standalone_server_asks_for_its_password_and_keeps_to_loopback_without_one()
-> TestResult {
    let scene = Scene::new().await?;
    let http = client()?;

    // Beyond loopback without credentials: refused before serving anything.
    let wide = tokio::net::TcpListener::bind("0.0.0.0:0").await?;
    let refused = tasklib_web::serve(
        scene.tasks.clone(),
        wide,
        ServeOptions::default(),
        std::future::pending(),
    )
    .await;
    let message = refused
        .err()
        .ok_or("served beyond loopback without a password")?
        .to_string();
    assert!(message.contains("TASKLIB_DASHBOARD_USER"), "{message}");

    // With credentials: 401 without them, pages with them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tasklib_web::serve(
        scene.tasks.clone(),
        listener,
        ServeOptions::default().credentials("ops", "s3cret"),
        async move {
            let _ = stopped.await;
        },
    ));
    let anonymous = http.get(format!("http://{addr}/")).send().await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let wrong = http
        .get(format!("http://{addr}/"))
        .basic_auth("ops", Some("guess"))
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let page = http
        .get(format!("http://{addr}/"))
        .basic_auth("ops", Some("s3cret"))
        .send()
        .await?;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await?.contains("data-queue=\"reports\""));
    let _ = stop.send(());
    server.await??;
    scene.pool.shutdown().await?;
    Ok(())
}
