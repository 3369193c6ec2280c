//! The `tasks_new` notification: sent on commit, once per statement and queue, never for
//! tasks scheduled later.

use std::time::Duration;

use futures::StreamExt;
use sea_orm::TransactionTrait;
use tasklib::SubmitOptions;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::common::{TestResult, email, job, setup};

/// Listens on `tasks_new` and forwards payloads.
async fn listen(
    url: &str,
) -> TestResult<(tokio_postgres::Client, mpsc::UnboundedReceiver<String>)> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = stream.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_owned());
            }
        }
    });
    client.batch_execute("LISTEN tasks_new").await?;
    Ok((client, rx))
}

/// Everything received until a marker notification sent afterwards arrives (notifications
/// are delivered in commit order, so the marker proves nothing else is in flight).
async fn drain(
    client: &tokio_postgres::Client,
    rx: &mut mpsc::UnboundedReceiver<String>,
) -> TestResult<Vec<String>> {
    client
        .batch_execute("NOTIFY tasks_new, '__marker__'")
        .await?;
    let mut got = Vec::new();
    loop {
        let payload = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await?
            .ok_or("listener closed")?;
        if payload == "__marker__" {
            return Ok(got);
        }
        got.push(payload);
    }
}

#[tokio::test]
async fn bulk_insert_notifies_once_per_queue() -> TestResult {
    let env = setup().await?;
    let (client, mut rx) = listen(env.db.url()).await?;
    env.tasks
        .submit_many((0..200).map(email), SubmitOptions::new())
        .await?;
    env.tasks
        .submit_many((0..50).map(email), SubmitOptions::new().queue("mail"))
        .await?;
    let mut got = drain(&client, &mut rx).await?;
    got.sort();
    assert_eq!(got, vec!["default".to_owned(), "mail".to_owned()]);
    Ok(())
}

#[tokio::test]
async fn delayed_tasks_do_not_notify() -> TestResult {
    let env = setup().await?;
    let (client, mut rx) = listen(env.db.url()).await?;
    env.tasks
        .submit_with(
            job("later"),
            SubmitOptions::new().delay(Duration::from_secs(3600)),
        )
        .await?;
    assert!(drain(&client, &mut rx).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn notification_is_sent_on_commit_only() -> TestResult {
    let env = setup().await?;
    let (client, mut rx) = listen(env.db.url()).await?;
    let txn = env.tasks.db()?.begin().await?;
    env.tasks
        .submit_in(&txn, email(1), SubmitOptions::new())
        .await?;
    txn.rollback().await?;
    assert!(
        drain(&client, &mut rx).await?.is_empty(),
        "rolled back: no notification"
    );

    let txn = env.tasks.db()?.begin().await?;
    env.tasks
        .submit_in(&txn, email(2), SubmitOptions::new())
        .await?;
    env.tasks
        .submit_in(&txn, email(3), SubmitOptions::new())
        .await?;
    txn.commit().await?;
    assert_eq!(
        drain(&client, &mut rx).await?,
        vec!["default".to_owned()],
        "folded into one per transaction"
    );
    Ok(())
}
