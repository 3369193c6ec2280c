//! The Celery engine against real Celery: a private `redis-server`, a Python virtual
//! environment with `celery[redis]` (built once per machine, see
//! `tasklib_test_utils::CeleryVenv`), Python Celery workers and Python clients as child
//! processes. Compiled with `--features celery` only.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tasklib::{
    BackendType, Chain, Config, SubmitOptions, Task, TaskContext, TaskError, TaskLib, TaskStatus,
    TaskWorker,
};
use tasklib_test_utils::{CeleryVenv, CeleryWorker, PythonApp, TestRedis};
use validator::Validate;

use crate::common::{PATIENCE, TestResult};
use crate::conformance::tasks::{AddNumbers, register_common};

/// The Python side: a Celery app reading its URLs from the environment, with tasks of its
/// own. `task_default_queue` is tasklib's default queue, so that `send_task` without a queue
/// reaches the Rust workers.
const TASKS_PY: &str = r#"
import os
from celery import Celery

app = Celery("tasks", broker=os.environ["BROKER"], backend=os.environ["BACKEND"])
app.conf.update(task_default_queue="default", broker_connection_retry_on_startup=True)


@app.task(name="py_add")
def py_add(a, b):
    return a + b


@app.task(name="py_mul")
def py_mul(value, by):
    return value * by
"#;

/// A Redis, the Python app, and a Rust `TaskLib` on the Celery engine.
struct Mixed {
    redis: TestRedis,
    venv: CeleryVenv,
    app: PythonApp,
    tasks: TaskLib,
}

/// Multiplies on a Python worker (queue `pyq`): the Rust side only submits it.
#[derive(Debug, Serialize, Deserialize, Validate)]
struct PyMul {
    value: i64,
    by: i64,
}

impl Task for PyMul {
    const NAME: &'static str = "py_mul";
    const QUEUE: &'static str = "pyq";
    type Output = i64;
}

/// Records its `n` in the order tasks run.
#[derive(Debug, Serialize, Deserialize, Validate)]
struct Record {
    n: i64,
}

impl Task for Record {
    const NAME: &'static str = "record";
    type Output = i64;
}

async fn setup() -> TestResult<Mixed> {
    let redis = TestRedis::start()?;
    let venv = tokio::task::spawn_blocking(CeleryVenv::get).await??;
    let app = PythonApp::new(&[("tasks.py", TASKS_PY)])?;
    let config = Config::for_backend(BackendType::Celery)
        .celery_broker_url(redis.url(0))
        .celery_result_backend(redis.url(1))
        .base_retry_delay(Duration::from_millis(50))
        .max_retry_delay(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(200))
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;
    Ok(Mixed {
        redis,
        venv,
        app,
        tasks,
    })
}

impl Mixed {
    fn envs(&self) -> [(&'static str, String); 2] {
        [
            ("BROKER", self.redis.url(0)),
            ("BACKEND", self.redis.url(1)),
        ]
    }

    /// Starts a Python Celery worker on `queues`.
    async fn python_worker(&self, queues: &[&str]) -> TestResult<CeleryWorker> {
        let venv = self.venv.clone();
        let dir = self.app.dir().to_owned();
        let envs = self.envs();
        let queues: Vec<String> = queues.iter().map(|q| (*q).to_owned()).collect();
        let worker = tokio::task::spawn_blocking(move || {
            let queues: Vec<&str> = queues.iter().map(String::as_str).collect();
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            CeleryWorker::start(&venv, &dir, "tasks", &queues, 2, &envs)
        })
        .await??;
        Ok(worker)
    }

    /// Runs a Python client script (`from tasks import app` works) and parses the JSON it
    /// prints last.
    async fn python(&self, script: &str) -> TestResult<Value> {
        let venv = self.venv.clone();
        let dir = self.app.dir().to_owned();
        let envs = self.envs();
        let script = format!("import json, time\nfrom tasks import app\n{script}");
        let output = tokio::task::spawn_blocking(move || {
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            venv.run_script(&dir, &script, &envs)
        })
        .await??;
        let stdout = String::from_utf8(output.stdout)?;
        let last = stdout.lines().last().unwrap_or_default();
        Ok(serde_json::from_str(last)?)
    }
}

/// Rust submits (positional and keyword arguments) → a Python Celery worker runs → Rust's
/// `get_result`/`wait_result` and Python's `AsyncResult.get()` read the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_submits_and_a_python_worker_runs() -> TestResult {
    let m = setup().await?;
    let on_pyq = || SubmitOptions::new().queue("pyq");
    let positional = m
        .tasks
        .submit_by_name("py_add", json!([4, 5]), on_pyq())
        .await?;
    let keyword = m
        .tasks
        .submit_by_name("py_add", json!({"a": 1, "b": 2}), on_pyq())
        .await?;
    assert_eq!(
        m.tasks.get_result(positional).await?.status,
        TaskStatus::Pending
    );
    let worker = m.python_worker(&["pyq"]).await?;
    let sum = m.tasks.wait_result(positional, PATIENCE).await?;
    assert_eq!(sum.value_as::<i64>()?, 9, "{sum:?}\n{}", worker.log());
    assert_eq!(
        m.tasks
            .wait_result(keyword, PATIENCE)
            .await?
            .value_as::<i64>()?,
        3
    );
    assert_eq!(m.tasks.get_result(positional).await?, sum);
    let read = m
        .python(&format!(
            "print(json.dumps([app.AsyncResult('{positional}').get(timeout=30), \
             app.AsyncResult('{keyword}').get(timeout=30)]))"
        ))
        .await?;
    assert_eq!(read, json!([9, 3]));
    Ok(())
}

/// Python `send_task` / `apply_async` with positional and keyword arguments → the Rust
/// worker runs the handler → `AsyncResult.get()` returns its value; a handler error is a
/// `FAILURE` carrying the message; retries run to success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_submits_and_the_rust_worker_runs() -> TestResult {
    let m = setup().await?;
    register_common(&m.tasks)?;
    let pool = m.tasks.spawn_workers(2)?;
    let out = m
        .python(
            r#"
a = app.send_task("add_numbers", args=[15, 25])
b = app.send_task("add_numbers", kwargs={"a": 1, "b": 2}, queue="default")
s = app.signature("add_numbers", kwargs={"a": 2, "b": 2}).apply_async()
flaky = app.send_task("flaky", kwargs={"failures": 2})
f = app.send_task("explode", kwargs={"input": None, "message": "disk on fire"})
out = {"ids": [a.id, f.id], "a": a.get(timeout=30), "b": b.get(timeout=30), "s": s.get(timeout=30),
       "flaky": flaky.get(timeout=30)}
try:
    f.get(timeout=30)
    out["f"] = "no error"
except Exception as e:
    out["f"] = [f.state, str(e)]
print(json.dumps(out))
"#,
        )
        .await?;
    pool.shutdown().await?;
    assert_eq!(out["a"], json!(40), "{out}");
    assert_eq!(out["b"], json!(3));
    assert_eq!(out["s"], json!(4));
    assert_eq!(out["flaky"], json!(3), "third attempt succeeds");
    assert_eq!(out["f"][0], json!("FAILURE"), "{out}");
    assert!(
        out["f"][1]
            .as_str()
            .is_some_and(|e| e.contains("disk on fire")),
        "{out}"
    );
    // Rust reads what its worker wrote for a Python-submitted id, too.
    let a: uuid::Uuid = out["ids"][0].as_str().unwrap_or_default().parse()?;
    assert_eq!(m.tasks.get_result(a).await?.value_as::<i64>()?, 40);
    let f: uuid::Uuid = out["ids"][1].as_str().unwrap_or_default().parse()?;
    let failed = m.tasks.get_result(f).await?;
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("disk on fire"));
    Ok(())
}

/// `eta` both ways: Python's `countdown` held by the Rust worker, a Rust delay held by the
/// Python worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_hold_in_both_directions() -> TestResult {
    let m = setup().await?;
    register_common(&m.tasks)?;
    let pool = TaskWorker::new(&m.tasks).queue("default", 1).spawn()?;
    let out = m
        .python(
            r#"
t = time.time()
r = app.send_task("add_numbers", args=[1, 1], countdown=2)
value = r.get(timeout=30)
print(json.dumps([value, time.time() - t]))
"#,
        )
        .await?;
    pool.shutdown().await?;
    assert_eq!(out[0], json!(2));
    assert!(out[1].as_f64().is_some_and(|s| s >= 2.0), "ran after {out}");

    let _worker = m.python_worker(&["pyq"]).await?;
    let delay = Duration::from_secs(2);
    let submitted = Instant::now();
    let id = m
        .tasks
        .submit_by_name(
            "py_add",
            json!([2, 3]),
            SubmitOptions::new().queue("pyq").delay(delay),
        )
        .await?;
    let result = m.tasks.wait_result(id, PATIENCE).await?;
    assert_eq!(result.value_as::<i64>()?, 5);
    assert!(
        submitted.elapsed() >= delay,
        "ran after {:?}",
        submitted.elapsed()
    );
    Ok(())
}

fn register_record(tasks: &TaskLib) -> TestResult<Arc<Mutex<Vec<i64>>>> {
    let order = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&order);
    tasks.register(move |args: Record, _: TaskContext| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(args.n);
            Ok::<_, TaskError>(args.n)
        }
    })?;
    Ok(order)
}

/// Priorities land in kombu's buckets, 0 the highest on Redis, and a worker takes the
/// highest first: from Python (Celery's 0..9) and from Rust (tasklib's 0..-9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_use_kombus_buckets() -> TestResult {
    let m = setup().await?;
    let order = register_record(&m.tasks)?;
    m.python(
        r#"
ids = [app.send_task("record", kwargs={"n": p}, priority=p).id for p in (9, 4, 0)]
print(json.dumps(ids))
"#,
    )
    .await?;
    let mut ids = Vec::new();
    for p in [-9i32, -3, 0] {
        ids.push(
            m.tasks
                .submit_with(
                    Record {
                        n: 100 - i64::from(p),
                    },
                    SubmitOptions::new().priority(p),
                )
                .await?,
        );
    }
    // Where they wait: the bucket lists of queue `default`.
    assert_eq!(m.redis.command(0, &["LLEN", "default"])?.trim(), ":2");
    assert_eq!(
        m.redis.command(0, &["LLEN", "default\x06\x163"])?.trim(),
        ":2"
    );
    assert_eq!(
        m.redis.command(0, &["LLEN", "default\x06\x169"])?.trim(),
        ":2"
    );
    let refused = m
        .tasks
        .submit_with(Record { n: 0 }, SubmitOptions::new().priority(5))
        .await;
    assert!(refused.is_err(), "{refused:?}");

    let pool = TaskWorker::new(&m.tasks).queue("default", 1).spawn()?;
    for id in ids {
        m.tasks.wait_result(id, PATIENCE).await?;
    }
    pool.shutdown().await?;
    // FIFO within a bucket: Python's 0 was pushed before Rust's 0.
    let ran = order.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert_eq!(ran, [0, 100, 4, 103, 9, 109]);
    Ok(())
}

/// A three-step chain from Rust whose middle step runs on Python (`embed.chain`, popped from
/// its end, the result prepended), and a Python `chain(...)` run by the Rust worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_cross_languages() -> TestResult {
    let m = setup().await?;
    register_common(&m.tasks)?;
    let _python = m.python_worker(&["pyq"]).await?;
    let pool = TaskWorker::new(&m.tasks).queue("default", 2).spawn()?;
    let ids = m
        .tasks
        .submit_chain(
            Chain::new(AddNumbers { a: 2, b: 3 })
                .then::<PyMul>([json!(10)])
                .then::<AddNumbers>([json!(1)]),
        )
        .await?;
    let result = m.tasks.wait_result(ids.id, PATIENCE).await?;
    assert_eq!(result.value_as::<i64>()?, 51, "{result:?}");
    let mut values = Vec::new();
    for step in &ids.steps {
        values.push(m.tasks.get_result(*step).await?.value_as::<i64>()?);
    }
    assert_eq!(values, [5, 50, 51]);

    let out = m
        .python(
            r#"
from celery import chain
c = chain(app.signature("add_numbers", args=(2, 3)), app.signature("multiply", args=(10,)),
          app.signature("py_add", args=(1,), queue="pyq")).apply_async()
print(json.dumps([c.get(timeout=30), c.parent.get(timeout=30), c.parent.parent.get(timeout=30)]))
"#,
        )
        .await?;
    pool.shutdown().await?;
    assert_eq!(out, json!([51, 50, 5]));
    Ok(())
}

/// A Rust worker process killed with SIGKILL while it runs acks-late messages: after the
/// visibility timeout another worker's restorer puts them back, and every task completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_messages_come_back() -> TestResult {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use tasklib_tests::celery::Nap;

    let m = setup().await?;
    let ids = m
        .tasks
        .submit_many((0..4).map(|n| Nap { n, ms: 60_000 }), SubmitOptions::new())
        .await?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_celery_worker"))
        .env("CELERY_TEST_BROKER", m.redis.url(0))
        .env("CELERY_TEST_BACKEND", m.redis.url(1))
        .env("CELERY_TEST_LOCK_TIMEOUT_MS", "1000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    // Its two slots take two naps, which it holds unacknowledged.
    let started = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.starts_with("started "))
            .take(2)
            .count()
    });
    assert_eq!(tokio::time::timeout(PATIENCE, started).await??, 2);
    assert_eq!(m.redis.command(0, &["HLEN", "unacked"])?.trim(), ":2");
    // Recorded as kombu records them (taken and recorded in one step), so a Python worker's
    // restore would read them too: `[message, exchange, routing_key]`.
    let entries = m.redis.command(0, &["HVALS", "unacked"])?;
    let entries: Vec<&str> = entries.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    for entry in entries {
        let entry: serde_json::Value = serde_json::from_str(entry)?;
        assert!(
            entry[0]["properties"]["delivery_tag"].is_string(),
            "{entry}"
        );
        assert_eq!(
            (entry[1].as_str(), entry[2].as_str()),
            (Some(""), Some("default")),
            "{entry}"
        );
    }
    child.kill()?; // SIGKILL: no shutdown, no ack
    child.wait()?;
    assert_eq!(m.redis.command(0, &["HLEN", "unacked"])?.trim(), ":2");

    // A new worker (this process) with naps that do not sleep, and a 1 s visibility timeout.
    let config = Config::for_backend(BackendType::Celery)
        .celery_broker_url(m.redis.url(0))
        .celery_result_backend(m.redis.url(1))
        .lock_timeout(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(200))
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;
    tasks.register(|nap: Nap, _: TaskContext| async move { Ok::<_, TaskError>(nap.n) })?;
    let pool = tasks.spawn_workers(2)?;
    let mut values = Vec::new();
    for id in &ids {
        values.push(tasks.wait_result(*id, PATIENCE).await?.value_as::<i64>()?);
    }
    pool.shutdown().await?;
    assert_eq!(values, [0, 1, 2, 3]);
    assert_eq!(m.redis.command(0, &["HLEN", "unacked"])?.trim(), ":0");
    assert_eq!(
        m.redis.command(0, &["ZCARD", "unacked_index"])?.trim(),
        ":0"
    );
    Ok(())
}

/// Passwords in the broker and result URLs are used to connect, and shown nowhere: not in
/// `backend_config()`, not in the error a wrong one gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_work_and_stay_secret() -> TestResult {
    let redis = TestRedis::start_with_password("s3cret-pw")?;
    let config = Config::for_backend(BackendType::Celery)
        .celery_broker_url(redis.url(0))
        .celery_result_backend(redis.url(1))
        .poll_interval(Duration::from_millis(200))
        .build()?;
    let shown = config.backend_config().to_string();
    assert!(
        !shown.contains("s3cret-pw") && shown.contains("***"),
        "{shown}"
    );
    let tasks = TaskLib::connect_with(config).await?;
    register_common(&tasks)?;
    let id = tasks.submit(AddNumbers { a: 1, b: 2 }).await?;
    let pool = tasks.spawn_workers(1)?;
    assert_eq!(tasks.wait_result(id, PATIENCE).await?.value_as::<i64>()?, 3);
    pool.shutdown().await?;

    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}/0", redis.port());
    let refused = TaskLib::connect_with(
        Config::for_backend(BackendType::Celery)
            .celery_broker_url(&wrong)
            .build()?,
    )
    .await;
    let Err(error) = refused else {
        return Err("connected with a wrong password".into());
    };
    let text = format!(
        "{error} | {error:?} | {}",
        crate::common::one_line_chain(&error)
    );
    assert!(matches!(error, tasklib::Error::Broker { .. }), "{text}");
    assert!(
        !text.contains("wrong-pw") && !text.contains("s3cret-pw"),
        "{text}"
    );
    assert!(text.contains("***"), "{text}");
    Ok(())
}

/// `rediss://`: a worker process connected over TLS (trusting the test CA through
/// `SSL_CERT_FILE`, as a deployment would through its system roots) runs what this process
/// submitted over the plain port of the same server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_connect_over_tls() -> TestResult {
    use std::process::{Command, Stdio};
    use tasklib_test_utils::TestRedis;
    use tasklib_tests::celery::Nap;

    let redis = TestRedis::start_tls()?;
    let (Some(broker), Some(results), Some(ca)) =
        (redis.tls_url(0), redis.tls_url(1), redis.ca_file())
    else {
        return Err("no TLS side".into());
    };
    let config = Config::for_backend(BackendType::Celery)
        .celery_broker_url(redis.url(0))
        .celery_result_backend(redis.url(1))
        .poll_interval(Duration::from_millis(200))
        .build()?;
    let tasks = TaskLib::connect_with(config).await?;
    let id = tasks.submit(Nap { n: 7, ms: 0 }).await?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_celery_worker"))
        .env("CELERY_TEST_BROKER", &broker)
        .env("CELERY_TEST_BACKEND", &results)
        .env("SSL_CERT_FILE", &ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let result = tasks.wait_result(id, PATIENCE).await;
    child.kill()?;
    child.wait()?;
    assert_eq!(result?.value_as::<i64>()?, 7);

    // Without the CA, the server's certificate is refused: TLS is really checked.
    let untrusted = TaskLib::connect_with(
        Config::for_backend(BackendType::Celery)
            .celery_broker_url(&broker)
            .build()?,
    )
    .await;
    assert!(
        matches!(untrusted, Err(tasklib::Error::Broker { .. })),
        "{untrusted:?}"
    );
    Ok(())
}

/// Graceful shutdown: a message waiting for its `eta` in the pool goes back to its list at
/// once, untouched, and is no longer unacknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_back_messages_waiting_for_their_eta() -> TestResult {
    let m = setup().await?;
    register_common(&m.tasks)?;
    let id = m
        .tasks
        .submit_with(
            AddNumbers { a: 1, b: 1 },
            SubmitOptions::new().delay(Duration::from_secs(60)),
        )
        .await?;
    let pool = m.tasks.spawn_workers(1)?;
    let mut events = pool.subscribe();
    // The pool takes it and holds it (an external state: checked every 20 ms, bounded).
    let held = Instant::now();
    while pool.stats().claimed_ahead == 0 {
        assert!(held.elapsed() < PATIENCE, "the pool never took the message");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(m.redis.command(0, &["LLEN", "default"])?.trim(), ":0");
    assert_eq!(m.redis.command(0, &["HLEN", "unacked"])?.trim(), ":1");
    pool.shutdown().await?;
    match events.try_recv() {
        Ok(tasklib::WorkerEvent::TasksReturned { ids, at_shutdown }) => {
            assert_eq!(ids, [id]);
            assert!(at_shutdown);
        }
        other => panic!("expected TasksReturned, got {other:?}"),
    }
    assert_eq!(m.redis.command(0, &["LLEN", "default"])?.trim(), ":1");
    assert_eq!(m.redis.command(0, &["HLEN", "unacked"])?.trim(), ":0");
    assert_eq!(m.tasks.get_result(id).await?.status, TaskStatus::Pending);
    Ok(())
}
