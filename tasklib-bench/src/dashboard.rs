//! `dashboard`: the web dashboard's pages on a large table (issue 16).
//!
//! Fills `tasks` with `--rows` rows (a million by default) in the mix of a busy week, written by
//! the server in one `INSERT … SELECT`, vacuums and analyses it as autovacuum would have, and
//! writes live pools into `tasklib_workers`. Then it times each page of
//! `tasklib_web::Dashboard` in this process (the router called directly, no socket: what is
//! measured is the page's queries and its rendering), and explains the queries behind each
//! page: as a first execution plans them (custom plan) and as a statement the connection has
//! run often may (generic plan), reporting any `Seq Scan` on `tasks`.

use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use tokio_postgres::Client;
use tower::ServiceExt;
use uuid::Uuid;

use crate::Settings;
use crate::db::{BenchDb, BenchResult};
use crate::report::{Percentiles, Row};

/// Requests of each page before the measured ones, not counted.
const WARMUPS: usize = 2;
/// Measured requests of each page.
const REQUESTS: usize = 20;
/// Worker pools written into `tasklib_workers`; the running rows are spread over them.
const POOLS: usize = 20;
/// Rows a list page shows (`tasklib_web`'s page size).
const PAGE: i64 = 50;
/// The most chain steps a task page lists (`tasklib_web`'s).
const CHAIN_STEPS: i64 = 1_000;
/// Minutes of throughput on the queues page.
const MINUTES: i32 = 15;

/// The queues, and four task names of each (name `i` runs on queue `i / 4`).
const QUEUES: [&str; 5] = ["default", "emails", "reports", "webhooks", "billing"];
const NAMES: [&str; 20] = [
    "cleanup_sessions",
    "recompute_stats",
    "sync_inventory",
    "refresh_cache",
    "send_email",
    "send_digest",
    "send_receipt",
    "send_password_reset",
    "build_report",
    "export_csv",
    "render_pdf",
    "aggregate_daily",
    "deliver_webhook",
    "verify_endpoint",
    "notify_slack",
    "sync_crm",
    "charge_card",
    "issue_invoice",
    "refund_payment",
    "reconcile_ledger",
];

/// The rows of a busy week, in id order like an application's inserts. Each row's kind comes
/// from a hash of its number: 1.5 % pending and due (submitted in the last 30 minutes), 1.5 %
/// pending for later (due within the next 7 days), 1 % failed for good, 0.5 % failed and
/// waiting for a retry, 1 % cancelled, 0.5 % running, the rest completed; and every hundredth
/// group of three consecutive rows (3 %) is a completed chain. Finished rows are spread over
/// the last 7 days (so about 0.15 % finished in the last 15 minutes); 10 % carry a
/// `{"customer": "<0..999>"}` tag. Ids are UUIDv7-shaped: the creation time in milliseconds,
/// then the row number (unique), then hash bits.
const FILL: &str = r#"
INSERT INTO tasks (id, name, queue, args, state, result, error, retry_count, max_retries,
                   attempt, scheduled_at, started_at, completed_at, created_at, next_retry_at,
                   worker_id, locked_until, priority, tags, chain_id, chain_step, errors)
SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
        || lpad(to_hex(g / 16777216), 3, '0') || '8' || lpad(to_hex(g % 16777216), 6, '0')
        || substr(h, 1, 9))::uuid AS id,
       ($2::text[])[1 + n], ($3::text[])[1 + n / 4], jsonb_build_object('n', g),
       CASE kind WHEN 'chain' THEN 'completed' WHEN 'due' THEN 'pending'
                 WHEN 'later' THEN 'pending' WHEN 'retrying' THEN 'failed' ELSE kind END,
       CASE WHEN kind IN ('completed', 'chain') THEN '{"value": {"ok": true}}'::jsonb END,
       CASE WHEN kind IN ('failed', 'retrying')
            THEN 'connection refused: upstream at 10.0.0.' || (n + 1) || ':443' END,
       CASE WHEN kind = 'failed' THEN 3 ELSE 0 END,
       3,
       CASE WHEN kind = 'failed' THEN 4 WHEN kind IN ('due', 'later') THEN 0
            WHEN kind = 'cancelled' THEN (u2 < 0.5)::int ELSE 1 END,
       CASE WHEN kind = 'later' THEN now() + u2 * interval '7 days' ELSE at END,
       CASE WHEN kind IN ('due', 'later') OR (kind = 'cancelled' AND u2 >= 0.5) THEN NULL
            ELSE at + interval '40 ms' END,
       CASE WHEN kind IN ('completed', 'chain', 'failed', 'cancelled')
            THEN LEAST(now(), at + interval '50 ms' + u2 * interval '2 s') END,
       at,
       CASE WHEN kind = 'retrying' THEN now() + u2 * interval '10 minutes' END,
       CASE WHEN kind IN ('due', 'later') OR (kind = 'cancelled' AND u2 >= 0.5) THEN NULL
            ELSE 'bench-pool-' || (g % $4::int) END,
       CASE WHEN kind = 'running' THEN now() + interval '5 minutes' END,
       CASE WHEN g % 10 = 0 THEN 10 ELSE 0 END,
       CASE WHEN t % 10 = 0 THEN jsonb_build_object('customer', ((t / 10) % 1000)::text)
            ELSE '{}'::jsonb END,
       CASE WHEN kind = 'chain' THEN md5('chain' || (g / 100))::uuid END,
       CASE WHEN kind = 'chain' THEN g % 100 END,
       CASE WHEN kind IN ('failed', 'retrying')
            THEN (SELECT jsonb_agg(jsonb_build_object(
                         'attempt', a, 'error', 'connection refused', 'worker',
                         'bench-pool-' || (g % $4::int), 'at', at + a * interval '1 s'))
                  FROM generate_series(1, CASE WHEN kind = 'failed' THEN 4 ELSE 1 END) AS a)
            ELSE '[]'::jsonb END
FROM generate_series(1, $1::int) AS g,
     LATERAL (SELECT md5(g::text) AS h) AS a,
     LATERAL (SELECT ('x' || substr(h, 1, 8))::bit(32)::bigint / 4294967296.0 AS u,
                     ('x' || substr(h, 9, 8))::bit(32)::bigint / 4294967296.0 AS u2,
                     ('x' || substr(h, 17, 8))::bit(32)::bigint % 20 AS n,
                     ('x' || substr(h, 25, 7))::bit(28)::bigint AS t) AS b,
     LATERAL (SELECT CASE WHEN g % 100 < 3 AND g < $1::int * 0.99 THEN 'chain'
                          WHEN u < 0.015 THEN 'due'
                          WHEN u < 0.030 THEN 'later'
                          WHEN u < 0.040 THEN 'failed'
                          WHEN u < 0.045 THEN 'retrying'
                          WHEN u < 0.055 THEN 'cancelled'
                          WHEN u < 0.060 THEN 'running'
                          ELSE 'completed' END AS kind) AS c,
     LATERAL (SELECT CASE WHEN kind IN ('due', 'running', 'retrying')
                          THEN now() - u2 * interval '30 minutes'
                          ELSE now() - interval '7 days'
                               + (g::float8 / $1::int) * interval '7 days' END AS at) AS d
ORDER BY 1
"#;

/// Live pools, one per worker id of the running rows, each serving its queue group.
const WORKERS: &str = r#"
INSERT INTO tasklib_workers (pool_id, worker_id, host, pid, queues, slots, started_at,
                             heartbeat_at, expires_at)
SELECT md5('pool' || i)::uuid, 'bench-pool-' || i, 'bench-host-' || (i % 5), 1000 + i,
       jsonb_build_array(jsonb_build_object('queues', jsonb_build_array(($2::text[])[1 + i % 5]),
                                            'slots', 250)),
       250, now() - interval '2 hours', now(), now() + interval '1 hour'
FROM generate_series(0, $1::int - 1) AS i
"#;

/// One page and the queries behind it, as tasklib sends them (`$n` parameters, `LIMIT` one of
/// them, as SeaORM writes it), with the values of this request.
struct Page {
    path: String,
    queries: Vec<Query>,
}

struct Query {
    label: &'static str,
    types: &'static str,
    sql: String,
    args: String,
}

/// `tasklib`'s `list`: the filters, newest first, `limit` rows. `filters` are `(condition, type,
/// value)` with `$?` for the parameter's number.
fn list(label: &'static str, filters: &[(&str, &'static str, String)], limit: i64) -> Query {
    let mut conditions = Vec::new();
    let mut types = Vec::new();
    let mut args = Vec::new();
    for (condition, ty, value) in filters {
        types.push(*ty);
        conditions.push(condition.replace("$?", &format!("${}", types.len())));
        args.push(value.clone());
    }
    types.push("bigint");
    args.push(limit.to_string());
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    Query {
        label,
        types: leak(types.join(", ")),
        sql: format!(
            "SELECT * FROM tasks{filter} ORDER BY id DESC LIMIT ${}",
            types.len()
        ),
        args: args.join(", "),
    }
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Times each page and explains its queries.
pub(crate) async fn dashboard(s: &Settings) -> BenchResult<Vec<Row>> {
    let db = BenchDb::new().await?;
    let client = db.raw().await?;
    let started = Instant::now();
    let rows = i32::try_from(s.rows)?;
    let names: Vec<String> = NAMES.iter().map(|n| (*n).to_owned()).collect();
    let queues: Vec<String> = QUEUES.iter().map(|q| (*q).to_owned()).collect();
    let pools = i32::try_from(POOLS)?;
    // Without JIT: compiling the fill's expressions takes seconds, more than a small fill.
    client.batch_execute("SET jit = off").await?;
    client
        .execute(FILL, &[&rows, &names, &queues, &pools])
        .await?;
    client.batch_execute("RESET jit").await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    client.batch_execute("VACUUM ANALYZE tasks").await?;
    let vacuum_seconds = started.elapsed().as_secs_f64();
    client.execute(WORKERS, &[&pools, &queues]).await?;
    client.batch_execute("ANALYZE tasklib_workers").await?;

    let mut out = vec![mix(&client, s.rows, fill_seconds, vacuum_seconds).await?];
    let pages = pages(&client).await?;
    let tasks = db.tasklib().await?;
    let router = tasklib_web::Dashboard::new(tasks)
        .authorize(|_, _| true)
        .router();
    let load_before = load_average();
    for page in &pages {
        out.push(time_page(&router, &page.path).await?);
    }
    out.push(
        Row::new("dashboard_load")
            .with("loadavg_before", load_before)
            .with("loadavg_after", load_average()),
    );
    for page in &pages {
        for query in &page.queries {
            for mode in ["custom", "generic"] {
                out.push(explain(&client, &page.path, query, mode).await?);
            }
        }
    }
    Ok(out)
}

/// What the table holds, by kind, and what filling it took.
async fn mix(client: &Client, rows: usize, fill: f64, vacuum: f64) -> BenchResult<Row> {
    let r = client
        .query_one(
            "/* bench */ SELECT count(*) FILTER (WHERE state = 'completed'),
                    count(*) FILTER (WHERE state = 'pending' AND scheduled_at <= now()),
                    count(*) FILTER (WHERE state = 'pending' AND scheduled_at > now()),
                    count(*) FILTER (WHERE state = 'failed' AND next_retry_at IS NULL),
                    count(*) FILTER (WHERE state = 'failed' AND next_retry_at IS NOT NULL),
                    count(*) FILTER (WHERE state = 'cancelled'),
                    count(*) FILTER (WHERE state = 'running'),
                    count(*) FILTER (WHERE tags <> '{}'),
                    count(DISTINCT chain_id),
                    count(*) FILTER (WHERE completed_at >= now() - interval '15 minutes'),
                    pg_total_relation_size('tasks')
             FROM tasks",
            &[],
        )
        .await?;
    let n = |i: usize| r.get::<_, i64>(i);
    Ok(Row::new("dashboard_table")
        .with("rows", rows)
        .with("fill_seconds", fill)
        .with("vacuum_analyze_seconds", vacuum)
        .with("completed", n(0))
        .with("pending_due", n(1))
        .with("pending_later", n(2))
        .with("failed", n(3))
        .with("failed_retrying", n(4))
        .with("cancelled", n(5))
        .with("running", n(6))
        .with("tagged", n(7))
        .with("chains", n(8))
        .with("finished_last_15_min", n(9))
        .with("table_mb", n(10) as f64 / 1_048_576.0)
        .with("pools", POOLS))
}

/// The pages measured, with the ids they need picked from the table.
async fn pages(client: &Client) -> BenchResult<Vec<Page>> {
    let total: i64 = client
        .query_one("SELECT count(*) FROM tasks", &[])
        .await?
        .get(0);
    // Near the oldest end: 2 % of the table is older.
    let deep: Uuid = client
        .query_one(
            "SELECT id FROM tasks ORDER BY id OFFSET $1 LIMIT 1",
            &[&(total / 50)],
        )
        .await?
        .get(0);
    // The middle step of a chain in the middle of the table.
    let step = client
        .query_one(
            "SELECT id, chain_id FROM tasks WHERE chain_step = 1 AND id <
                 (SELECT id FROM tasks ORDER BY id OFFSET $1 LIMIT 1)
             ORDER BY id DESC LIMIT 1",
            &[&(total / 2)],
        )
        .await?;
    let (step, chain): (Uuid, Uuid) = (step.get(0), step.get(1));
    let name = NAMES[4];
    let queue = QUEUES[1];
    let state = |s: &str| ("state IN ($?)", "text", literal(s));
    let mut pages = vec![
        Page {
            path: "/".to_owned(),
            queries: vec![
                Query {
                    label: "open_by_queue",
                    types: "",
                    sql: OPEN_BY_QUEUE.to_owned(),
                    args: String::new(),
                },
                Query {
                    label: "backlog_by_queue",
                    types: "",
                    sql: BACKLOG_BY_QUEUE.to_owned(),
                    args: String::new(),
                },
                Query {
                    label: "finished_by_minute",
                    types: "int",
                    sql: FINISHED_BY_MINUTE.to_owned(),
                    args: MINUTES.to_string(),
                },
            ],
        },
        Page {
            path: "/tasks".to_owned(),
            queries: vec![list("list", &[], PAGE)],
        },
    ];
    for s in ["failed", "pending", "completed"] {
        pages.push(Page {
            path: format!("/tasks?state={s}"),
            queries: vec![list("list", &[state(s)], PAGE)],
        });
    }
    pages.extend([
        Page {
            path: format!("/tasks?name={name}"),
            queries: vec![list("list", &[("name = $?", "text", literal(name))], PAGE)],
        },
        Page {
            path: format!("/tasks?queue={queue}"),
            queries: vec![list(
                "list",
                &[("queue = $?", "text", literal(queue))],
                PAGE,
            )],
        },
        Page {
            path: "/tasks?tag=customer%3D42".to_owned(),
            queries: vec![list(
                "list",
                &[(
                    "tags @> $?::jsonb AND tags <> '{}'::jsonb",
                    "jsonb",
                    literal(r#"{"customer": "42"}"#),
                )],
                PAGE,
            )],
        },
        Page {
            path: format!("/tasks?queue={queue}&state=failed"),
            queries: vec![list(
                "list",
                &[state("failed"), ("queue = $?", "text", literal(queue))],
                PAGE,
            )],
        },
        Page {
            path: format!("/tasks?before={deep}"),
            queries: vec![list(
                "list",
                &[("id < $?", "uuid", literal(&deep.to_string()))],
                PAGE,
            )],
        },
        Page {
            path: format!("/tasks/{step}"),
            queries: vec![
                Query {
                    label: "get",
                    types: "uuid, bigint",
                    sql: "SELECT * FROM tasks WHERE id = $1 LIMIT $2".to_owned(),
                    args: format!("{}, 1", literal(&step.to_string())),
                },
                list(
                    "chain",
                    &[("chain_id = $?", "uuid", literal(&chain.to_string()))],
                    CHAIN_STEPS,
                ),
            ],
        },
        Page {
            path: "/workers".to_owned(),
            queries: vec![Query {
                label: "live_workers",
                types: "",
                sql: LIVE_WORKERS.to_owned(),
                args: String::new(),
            }],
        },
    ]);
    Ok(pages)
}

/// `tasklib`'s queue overview: unfinished rows by queue and state (index-only).
const OPEN_BY_QUEUE: &str = "SELECT queue, state, count(*) AS n, now() AS now
FROM tasks
WHERE state <> 'completed'
GROUP BY 1, 2";

/// `tasklib`'s queue overview: the backlog, due or later, through the claim index.
const BACKLOG_BY_QUEUE: &str = "SELECT queue, (state = 'failed') AS retrying,
       (COALESCE(next_retry_at, scheduled_at) > now()) AS later, count(*) AS n,
       min(scheduled_at) FILTER (WHERE state = 'pending' AND scheduled_at <= now()) AS oldest_due
FROM tasks
WHERE state = 'pending' OR (state = 'failed' AND next_retry_at IS NOT NULL)
GROUP BY 1, 2, 3";

/// `tasklib`'s queue overview: rows finished in each of the last minutes.
const FINISHED_BY_MINUTE: &str =
    "SELECT queue, state, date_trunc('minute', completed_at) AS minute, count(*) AS n
FROM tasks
WHERE completed_at >= date_trunc('minute', now()) - make_interval(mins => $1)
GROUP BY 1, 2, 3";

/// `tasklib`'s live pools, with their running tasks.
const LIVE_WORKERS: &str = "WITH running AS (
    SELECT worker_id, count(*) AS n FROM tasks WHERE state = 'running' GROUP BY worker_id
)
SELECT w.pool_id, w.worker_id, w.host, w.pid, w.queues, w.slots,
       w.started_at, w.heartbeat_at, w.expires_at, COALESCE(r.n, 0) AS running
FROM tasklib_workers w
LEFT JOIN running r ON r.worker_id = w.worker_id
WHERE w.expires_at > now()
ORDER BY w.started_at, w.pool_id";

/// `WARMUPS` then `REQUESTS` requests of `path`, each answered `200 OK` with its body read.
async fn time_page(router: &axum::Router, path: &str) -> BenchResult<Row> {
    let mut times = Vec::with_capacity(REQUESTS);
    let mut bytes = 0;
    for i in 0..WARMUPS + REQUESTS {
        let request = Request::builder().uri(path).body(Body::empty())?;
        let started = Instant::now();
        let response = router.clone().oneshot(request).await?;
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        if status != StatusCode::OK {
            return Err(format!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(500)])
            )
            .into());
        }
        bytes = body.len();
        if i >= WARMUPS {
            times.push(elapsed);
        }
    }
    let p = Percentiles::of(&times);
    Ok(Row::new(format!("dashboard GET {path}"))
        .with("requests", REQUESTS)
        .with("p50_ms", p.p50)
        .with("p95_ms", p.p95)
        .with("max_ms", p.max)
        .with("bytes", bytes))
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of one query as a prepared statement with this page's values,
/// planned for them (`custom`) or for any (`generic`), and whether it reads `tasks` whole.
async fn explain(client: &Client, path: &str, query: &Query, mode: &str) -> BenchResult<Row> {
    client.batch_execute("DEALLOCATE ALL").await?;
    let types = if query.types.is_empty() {
        String::new()
    } else {
        format!("({})", query.types)
    };
    client
        .batch_execute(&format!("PREPARE dash{types} AS {}", query.sql))
        .await?;
    client
        .batch_execute(&format!("SET plan_cache_mode = force_{mode}_plan"))
        .await?;
    let args = if query.args.is_empty() {
        String::new()
    } else {
        format!("({})", query.args)
    };
    let plan: Vec<String> = client
        .query(
            &format!("EXPLAIN (ANALYZE, BUFFERS) EXECUTE dash{args}"),
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    client.batch_execute("RESET plan_cache_mode").await?;
    let execution_ms = plan.iter().find_map(|line| {
        let at = line.find("Execution Time:")? + "Execution Time:".len();
        line[at..].split_whitespace().next()?.parse::<f64>().ok()
    });
    let seq_scans = plan
        .iter()
        .filter(|l| l.contains("Seq Scan on tasks"))
        .count();
    let scans: Vec<&str> = plan
        .iter()
        .filter_map(|l| {
            let node = l.trim_start().trim_start_matches("->").trim_start();
            [
                "Index Scan",
                "Index Only Scan",
                "Bitmap Index Scan",
                "Seq Scan",
            ]
            .iter()
            .any(|kind| node.starts_with(kind))
            .then(|| node.split("  (").next().unwrap_or(node))
        })
        .collect();
    Ok(
        Row::new(format!("dashboard_plan {path} {} {mode}", query.label))
            .with("execution_ms", execution_ms)
            .with("seq_scans_on_tasks", seq_scans)
            .with("scans", scans.join("; "))
            .with("plan", plan.join("\n")),
    )
}

/// `/proc/loadavg`'s three averages, for the figures' context.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}
