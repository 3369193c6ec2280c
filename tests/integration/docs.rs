//! The SQL in `docs/monitoring.md` runs as written against a real `tasks` table.

use tasklib::SubmitOptions;

use crate::common::{TestResult, email, raw, setup};

const MONITORING: &str = include_str!("../../docs/monitoring.md");

fn sql_blocks(markdown: &str) -> Vec<&str> {
    markdown
        .split("```sql")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect()
}

#[tokio::test]
async fn every_monitoring_query_runs() -> TestResult {
    let env = setup().await?;
    env.tasks
        .submit_many(
            (0..5).map(email),
            SubmitOptions::new().tag("batch", "weekly"),
        )
        .await?;
    let client = raw(&env.db).await?;
    client
        .batch_execute(
            "UPDATE tasks SET state = 'completed', started_at = now() - interval '2 seconds',
                    completed_at = now(), worker_id = 'w1'
             WHERE id IN (SELECT id FROM tasks ORDER BY id LIMIT 2);
             UPDATE tasks SET state = 'running', worker_id = 'w2', started_at = now(),
                    locked_until = now() + interval '10 minutes'
             WHERE id IN (SELECT id FROM tasks WHERE state = 'pending' ORDER BY id LIMIT 1);",
        )
        .await?;
    let blocks = sql_blocks(MONITORING);
    assert!(blocks.len() >= 8, "found only {} SQL blocks", blocks.len());
    for sql in blocks {
        if let Err(e) = client.simple_query(sql).await {
            return Err(format!("monitoring query failed: {e}\n{sql}").into());
        }
    }
    Ok(())
}
