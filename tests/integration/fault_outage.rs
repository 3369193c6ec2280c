//! A pool that stops on its own says why: the database stays unreachable past the pool's
//! limit, and `failed` resolves with the reason (a short outage is ridden out).

use std::time::Duration;

use futures::FutureExt;
use tasklib::{Config, Error, PoolFailure, TaskContext, TaskError, TaskLib, TaskWorker};
use tasklib_test_utils::TestCluster;

use crate::common::{Job, PATIENCE, TestResult, job};

async fn connect(cluster: &TestCluster) -> TestResult<TaskLib> {
    let url = cluster.create_database().await?;
    let tasks = TaskLib::connect_with(
        Config::builder(url.as_str())
            .poll_interval(Duration::from_millis(100))
            .connect_timeout(Duration::from_millis(300))
            .build()?,
    )
    .await?;
    tasks.register(|job: Job, _: TaskContext| async move { Ok::<_, TaskError>(job.label) })?;
    Ok(tasks)
}

#[tokio::test]
async fn a_database_gone_for_longer_than_the_limit_fails_the_pool_with_the_reason() -> TestResult {
    let cluster = TestCluster::start().await?;
    let tasks = connect(&cluster).await?;
    let pool = TaskWorker::new(&tasks)
        .max_outage(Duration::from_secs(1))
        .spawn()?;
    let id = tasks.submit(job("before")).await?;
    assert!(tasks.wait_result(id, PATIENCE).await?.is_completed());
    assert!(
        pool.failed().now_or_never().is_none(),
        "failed while working"
    );

    cluster.stop().await?;
    let failure = tokio::time::timeout(PATIENCE, pool.failed()).await?;
    let Error::PoolFailed(PoolFailure::Unreachable {
        service,
        for_,
        limit,
        last_error,
        ..
    }) = &failure
    else {
        return Err(format!("expected an outage failure, got {failure:?}").into());
    };
    assert_eq!(
        (service.as_str(), *limit),
        ("database", Duration::from_secs(1))
    );
    assert!(*for_ > *limit);
    assert!(!last_error.is_empty());
    let line = failure.to_string();
    assert!(
        line.starts_with("the worker pool stopped: the database could not be used for")
            && !line.contains('\n'),
        "{line}"
    );
    // It stopped claiming; shutdown ends within the grace period.
    tokio::time::timeout(PATIENCE, pool.shutdown()).await??;
    Ok(())
}

#[tokio::test]
async fn a_short_outage_is_ridden_out() -> TestResult {
    let cluster = TestCluster::start().await?;
    let tasks = connect(&cluster).await?;
    let pool = TaskWorker::new(&tasks)
        .max_outage(Duration::from_secs(60))
        .spawn()?;
    cluster.stop().await?;
    // Long enough for claims and rescues to fail several times.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.start_again().await?;
    let id = tasks.submit(job("after")).await?;
    assert!(tasks.wait_result(id, PATIENCE).await?.is_completed());
    assert!(
        pool.failed().now_or_never().is_none(),
        "an outage within the limit failed the pool"
    );
    pool.shutdown().await?;
    Ok(())
}
