//! `explain`: the plans and buffer counts of tasklib's claim and batched completion, on the
//! table states a drain goes through. Everything runs in transactions that roll back.

use tokio_postgres::Client;
use uuid::Uuid;

use crate::Settings;
use crate::db::{BenchDb, BenchResult};
use crate::report::Row;

/// One row per (table state, statement, plan mode), each with the plan text.
pub(crate) async fn explain(s: &Settings) -> BenchResult<Vec<Row>> {
    let mut rows = Vec::new();
    let db = BenchDb::new().await?;
    db.queue_noops(s.tasks).await?;
    let client = db.raw().await?;
    let pending = format!("{}_pending", s.tasks);
    rows.extend(explain_state(&client, &pending).await?);

    // Half the queue worked through the same claim and completion, without a vacuum since:
    // the claim index still holds the entries of every row claimed so far.
    work_off(&db, s.tasks / 2).await?;
    rows.extend(explain_state(&client, &format!("{pending}_half_drained")).await?);
    client.batch_execute("VACUUM tasks").await?;
    rows.extend(explain_state(&client, &format!("{pending}_half_drained_vacuumed")).await?);
    drop(client);
    drop(db);

    let db = BenchDb::new().await?;
    db.preload_completed(s.scale_rows).await?;
    db.queue_noops(s.tasks).await?;
    let client = db.raw().await?;
    rows.extend(
        explain_state(
            &client,
            &format!("{pending}_with_{}_completed", s.scale_rows),
        )
        .await?,
    );
    Ok(rows)
}

/// The claim of 10 (custom and generic plan) and the completion of the 10 claimed.
async fn explain_state(client: &Client, state: &str) -> BenchResult<Vec<Row>> {
    let mut rows = Vec::new();
    client.batch_execute("DEALLOCATE ALL; BEGIN").await?;
    let (claim, claim_args) = crate::sql::claim(10)?;
    client
        .batch_execute(&format!(
            "PREPARE bench_claim({}) AS {}",
            claim.types, claim.text
        ))
        .await?;
    let execute_claim = format!("EXECUTE bench_claim({claim_args})");
    for mode in ["custom", "generic"] {
        client
            .batch_execute(&format!("SET LOCAL plan_cache_mode = force_{mode}_plan"))
            .await?;
        client.batch_execute("SAVEPOINT before_claim").await?;
        rows.push(run_explain(client, state, "claim_10", mode, &execute_claim).await?);
        client
            .batch_execute("ROLLBACK TO SAVEPOINT before_claim")
            .await?;
    }
    // Claim 10 for real (inside this transaction), then explain completing them.
    client.batch_execute("RESET plan_cache_mode").await?;
    let claimed = client.query(&execute_claim, &[]).await?;
    // A fresh table: every claimed row is on its first attempt.
    let ids: Vec<String> = claimed
        .iter()
        .map(|r| r.get::<_, Uuid>("id").to_string())
        .collect();
    let (complete, complete_args) = crate::sql::complete_many(&ids)?;
    client
        .batch_execute(&format!(
            "PREPARE bench_complete({}) AS {}",
            complete.types, complete.text
        ))
        .await?;
    let execute_complete = format!("EXECUTE bench_complete({complete_args})");
    for mode in ["custom", "generic"] {
        client
            .batch_execute(&format!("SET LOCAL plan_cache_mode = force_{mode}_plan"))
            .await?;
        client.batch_execute("SAVEPOINT before_complete").await?;
        rows.push(run_explain(client, state, "complete_10", mode, &execute_complete).await?);
        client
            .batch_execute("ROLLBACK TO SAVEPOINT before_complete")
            .await?;
    }
    client.batch_execute("ROLLBACK").await?;
    Ok(rows)
}

async fn run_explain(
    client: &Client,
    state: &str,
    statement: &str,
    mode: &str,
    execute: &str,
) -> BenchResult<Row> {
    let plan: Vec<String> = client
        .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {execute}"), &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let number_after = |label: &str| {
        plan.iter().find_map(|line| {
            let at = line.find(label)? + label.len();
            line[at..].split_whitespace().next()?.parse::<f64>().ok()
        })
    };
    // The first Buffers line belongs to the top node, which sums its children.
    let buffers = plan
        .iter()
        .find(|l| l.trim_start().starts_with("Buffers:"))
        .map(|l| l.trim().to_owned());
    let shared_hit = buffers.as_deref().and_then(|b| {
        let at = b.find("hit=")? + 4;
        b[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse::<f64>()
            .ok()
    });
    Ok(Row::new(format!("explain_{statement}_{mode}_{state}"))
        .with("execution_ms", number_after("Execution Time:"))
        .with("planning_ms", number_after("Planning Time:"))
        .with("shared_hit", shared_hit)
        .with("plan", plan.join("\n")))
}

/// Claims and completes `count` tasks the way `floor` does, on one connection.
async fn work_off(db: &BenchDb, count: usize) -> BenchResult<()> {
    let client = db.raw().await?;
    let claim = client.prepare(crate::drain::FLOOR_CLAIM).await?;
    let complete = client.prepare(crate::drain::FLOOR_COMPLETE).await?;
    let names = vec!["noop".to_owned()];
    let now: Option<std::time::SystemTime> = None;
    let mut done = 0;
    while done < count {
        let rows = client
            .query(
                &claim,
                &[&"default", &names, &"bench-explain", &600.0f64, &now],
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
        let attempts: Vec<i32> = rows.iter().map(|r| r.get(1)).collect();
        done += client
            .execute(&complete, &[&ids, &attempts, &"bench-explain"])
            .await? as usize;
    }
    Ok(())
}
