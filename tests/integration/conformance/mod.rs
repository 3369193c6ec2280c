//! The conformance suite: one set of cases written against the engine-neutral API
//! (`submit`, `get_result`, `wait_result`, chains, `cancel`, workers over queues), run against
//! every engine that is compiled in and reachable. Each engine brings a [`Harness`]: a
//! connected `TaskLib` on a store of its own, and a way to count what was written.
//!
//! A case that needs a capability the engine lacks checks the other half of the contract
//! instead: asking for it is refused with `Error::Unsupported`.
//!
//! PostgreSQL runs it always, Celery with `--features celery` (on a `redis-server` the
//! harness starts), Temporal with `--features temporal` (on a `temporal server start-dev`
//! the process shares, a namespace per test).

mod cases;
pub(crate) mod tasks;

use std::time::Duration;

use tasklib::{Config, TaskLib};
use tasklib_test_utils::TestDatabase;

use crate::common::TestResult;

/// An engine under test, on a store no other test uses.
pub(crate) struct Harness {
    pub(crate) tasks: TaskLib,
    store: Store,
}

enum Store {
    Postgres(TestDatabase),
    /// Broker on database 0, results on database 1.
    #[cfg(feature = "celery")]
    Celery(tasklib_test_utils::TestRedis),
    /// A namespace of its own on the process's shared dev server.
    #[cfg(feature = "temporal")]
    Temporal(&'static tasklib_test_utils::TestTemporal, String),
}

/// Retry delays and poll ticks short enough for tests.
fn test_settings(builder: tasklib::ConfigBuilder) -> tasklib::ConfigBuilder {
    builder
        .base_retry_delay(Duration::from_millis(50))
        .max_retry_delay(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(200))
        .max_connections(8)
}

impl Harness {
    pub(crate) async fn postgres() -> TestResult<Harness> {
        let db = TestDatabase::new().await?;
        let tasks =
            TaskLib::connect_with(test_settings(Config::builder(db.url())).build()?).await?;
        Ok(Harness {
            tasks,
            store: Store::Postgres(db),
        })
    }

    /// The Celery engine on a Redis server of its own (a real `redis-server`), broker and
    /// results on two databases as Celery deployments usually have them.
    #[cfg(feature = "celery")]
    pub(crate) async fn celery() -> TestResult<Harness> {
        let redis = tasklib_test_utils::TestRedis::start()?;
        let config = test_settings(
            Config::for_backend(tasklib::BackendType::Celery)
                .celery_broker_url(redis.url(0))
                .celery_result_backend(redis.url(1)),
        )
        .build()?;
        let tasks = TaskLib::connect_with(config).await?;
        Ok(Harness {
            tasks,
            store: Store::Celery(redis),
        })
    }

    /// The Temporal engine on a namespace of its own, on the dev server (a real `temporal
    /// server start-dev`) that this process's tests share.
    #[cfg(feature = "temporal")]
    pub(crate) async fn temporal() -> TestResult<Harness> {
        let server = tasklib_test_utils::TestTemporal::shared()?;
        let namespace = server.namespace()?;
        let config = test_settings(
            Config::for_backend(tasklib::BackendType::Temporal)
                .temporal_host(server.host())
                .temporal_namespace(namespace.clone()),
        )
        .build()?;
        let tasks = TaskLib::connect_with(config).await?;
        Ok(Harness {
            tasks,
            store: Store::Temporal(server, namespace),
        })
    }

    /// How many tasks the engine holds (submitted and not yet pruned): rows on PostgreSQL,
    /// keys (messages and results) on Redis.
    pub(crate) async fn written(&self) -> TestResult<i64> {
        match &self.store {
            Store::Postgres(db) => crate::common::count_rows(db).await,
            #[cfg(feature = "celery")]
            Store::Celery(redis) => Ok(i64::try_from(redis.dbsize(0)? + redis.dbsize(1)?)?),
            #[cfg(feature = "temporal")]
            Store::Temporal(server, namespace) => {
                Ok(i64::try_from(server.workflow_count(namespace, None)?)?)
            }
        }
    }
}

/// One `#[tokio::test]` per case of [`cases`], for the engine whose harness `$setup` makes.
macro_rules! conformance_suite {
    ($engine:ident, $setup:path) => {
        mod $engine {
            use crate::common::TestResult;
            use crate::conformance::cases;

            conformance_suite!(@cases $setup;
                submit_and_wait_for_the_result,
                results_of_unknown_ids_are_not_found,
                waiting_gives_up_at_its_timeout,
                delayed_submit_runs_no_earlier,
                failures_are_recorded,
                retries_until_success,
                a_snooze_runs_again_without_using_a_retry,
                progress_is_kept_or_refused,
                three_step_chain_feeds_each_output_forward,
                chain_steps_retry_on_their_own,
                chain_stops_at_the_failed_step,
                cancel_a_waiting_task_and_a_chain,
                workers_serve_two_queues_with_their_own_concurrency,
                bad_input_writes_nothing,
                submit_by_name_with_positional_or_keyword_arguments,
                submit_by_name_without_the_task_type,
                a_schedule_submits_its_task_or_is_refused,
            );
        }
    };
    (@cases $setup:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> TestResult {
                let harness = $setup().await?;
                cases::$case(&harness).await
            }
        )*
    };
}

conformance_suite!(postgres, crate::conformance::Harness::postgres);
#[cfg(feature = "celery")]
conformance_suite!(celery, crate::conformance::Harness::celery);
#[cfg(feature = "temporal")]
conformance_suite!(temporal, crate::conformance::Harness::temporal);
