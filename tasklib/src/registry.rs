//! The registry: task names mapped to boxed handlers and to the checks the name-based submit
//! path needs, and the schedules (recurring tasks) the client's worker pools run.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::handler::{BlockingHandler, Handler};
use crate::schedule::Recurring;
use crate::task::{Task, TaskContext, TaskError};
use crate::{Error, Result};

/// What is known about a registered task type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskInfo {
    /// [`Task::NAME`].
    pub name: String,
    /// [`Task::QUEUE`].
    pub queue: String,
    /// [`Task::MAX_RETRIES`].
    pub max_retries: Option<u32>,
    /// [`Task::TIMEOUT`].
    pub timeout: Option<Duration>,
    /// [`Task::PRIORITY`].
    pub priority: i32,
    /// [`Task::UNIQUE_SCOPE`].
    pub unique_scope: crate::UniqueScope,
    /// Whether it runs on the blocking thread pool.
    pub blocking: bool,
}

impl TaskInfo {
    fn of<T: Task>(blocking: bool) -> TaskInfo {
        TaskInfo {
            name: T::NAME.to_owned(),
            queue: T::QUEUE.to_owned(),
            max_retries: T::MAX_RETRIES,
            timeout: T::TIMEOUT,
            priority: T::PRIORITY,
            unique_scope: T::UNIQUE_SCOPE,
            blocking,
        }
    }
}

/// A handler with its argument type erased: takes and returns JSON.
pub(crate) trait ErasedHandler: Send + Sync {
    /// Decodes the arguments and runs one attempt; the output comes back as JSON.
    fn call(&self, args: Value, ctx: TaskContext) -> BoxFuture<'static, Result<Value, TaskError>>;
}

/// Arguments decoded and validated by name: their canonical JSON, and the type's unique key
/// for them ([`Task::unique_key`]).
pub(crate) type Checked = (Value, Option<String>);

/// One registered task type.
#[derive(Clone)]
pub(crate) struct Registered {
    pub(crate) info: TaskInfo,
    /// Decodes JSON into the argument type and validates it (for `submit_json`); returns the
    /// canonical JSON and the type's unique key for it.
    pub(crate) check: fn(&str, Value) -> Result<Checked>,
    pub(crate) handler: Arc<dyn ErasedHandler>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Task names and their handlers, and schedules by name. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry {
    tasks: Arc<RwLock<BTreeMap<String, Registered>>>,
    schedules: Arc<RwLock<BTreeMap<String, Arc<Recurring>>>>,
    /// Worker pools running over this registry; registering while one runs is refused.
    running_pools: Arc<AtomicUsize>,
}

/// Held by a running pool: while any exists, [`Registry`] refuses new task types.
#[derive(Debug)]
pub(crate) struct PoolGuard(Arc<AtomicUsize>);

impl Drop for PoolGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Registry {
    pub(crate) fn register<T: Task, H: Handler<T>>(&self, handler: H) -> Result<()> {
        let runner = AsyncRunner::<T, H> {
            handler: Arc::new(handler),
            _args: PhantomData,
        };
        self.insert(Registered {
            info: TaskInfo::of::<T>(false),
            check: check_json::<T>,
            handler: Arc::new(runner),
        })
    }

    pub(crate) fn register_blocking<T: Task, H: BlockingHandler<T>>(
        &self,
        handler: H,
    ) -> Result<()> {
        let runner = BlockingRunner::<T, H> {
            handler: Arc::new(handler),
            _args: PhantomData,
        };
        self.insert(Registered {
            info: TaskInfo::of::<T>(true),
            check: check_json::<T>,
            handler: Arc::new(runner),
        })
    }

    /// Marks a pool as running over this registry until the guard drops.
    pub(crate) fn pool_started(&self) -> PoolGuard {
        self.running_pools.fetch_add(1, Ordering::SeqCst);
        PoolGuard(Arc::clone(&self.running_pools))
    }

    fn insert(&self, registered: Registered) -> Result<()> {
        let mut tasks = self.tasks.write().unwrap_or_else(PoisonError::into_inner);
        let name = registered.info.name.clone();
        if self.running_pools.load(Ordering::SeqCst) > 0 {
            return Err(Error::RegisteredWhileRunning { name });
        }
        if tasks.contains_key(&name) {
            return Err(Error::DuplicateTask { name });
        }
        tasks.insert(name, registered);
        Ok(())
    }

    /// Adds a checked schedule; refused while a pool runs (it would not run there).
    pub(crate) fn add_schedule(&self, schedule: Recurring) -> Result<()> {
        let mut schedules = self
            .schedules
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let name = schedule.name.clone();
        if self.running_pools.load(Ordering::SeqCst) > 0 {
            return Err(Error::ScheduledWhileRunning { name });
        }
        if schedules.contains_key(&name) {
            return Err(Error::DuplicateSchedule { name });
        }
        schedules.insert(name, Arc::new(schedule));
        Ok(())
    }

    /// The registered schedules, by name.
    pub(crate) fn schedules(&self) -> Vec<Arc<Recurring>> {
        let schedules = self
            .schedules
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        schedules.values().cloned().collect()
    }

    pub(crate) fn get(&self, name: &str) -> Option<Registered> {
        let tasks = self.tasks.read().unwrap_or_else(PoisonError::into_inner);
        tasks.get(name).cloned()
    }

    /// The handler of `name`: what a worker runs for each task (one `Arc` clone, no more).
    pub(crate) fn handler(&self, name: &str) -> Option<Arc<dyn ErasedHandler>> {
        let tasks = self.tasks.read().unwrap_or_else(PoisonError::into_inner);
        tasks.get(name).map(|r| Arc::clone(&r.handler))
    }

    /// The registered task types, by name.
    pub(crate) fn infos(&self) -> Vec<TaskInfo> {
        let tasks = self.tasks.read().unwrap_or_else(PoisonError::into_inner);
        tasks.values().map(|r| r.info.clone()).collect()
    }
}

/// Decodes `args` into `T`, validates it, and returns its canonical JSON (the form `T`
/// serializes to, so defaults are filled in and unknown fields are dropped the same way a
/// typed submit would), with [`Task::unique_key`] of the decoded arguments.
fn check_json<T: Task>(name: &str, args: Value) -> Result<Checked> {
    let typed: T = serde_json::from_value(args).map_err(|source| Error::ArgsMismatch {
        task: name.to_owned(),
        index: None,
        source,
    })?;
    typed.validate().map_err(|source| Error::InvalidArgs {
        task: name.to_owned(),
        index: None,
        source,
    })?;
    let json = serde_json::to_value(&typed).map_err(|source| Error::Serialize {
        task: name.to_owned(),
        source,
    })?;
    Ok((json, typed.unique_key()))
}

/// Decodes and validates stored arguments. Failing to is permanent: the argument type changed
/// since the task was submitted, a chain fed this step something that does not fit it, or a
/// producer without the task type submitted it by name ([`TaskLib::submit_by_name`]); retrying
/// cannot fix any of these. Typed submits were validated already; validating again costs
/// little beside running the task, and covers the paths that could not validate.
///
/// [`TaskLib::submit_by_name`]: crate::TaskLib::submit_by_name
fn decode_args<T: Task>(args: Value) -> Result<T, TaskError> {
    let typed: T = serde_json::from_value(args).map_err(|e| {
        TaskError::permanent(format!(
            "stored arguments do not deserialize into the argument type of `{}` (changed since submit, or a chain step fed it the wrong output?): {e}",
            T::NAME
        ))
    })?;
    typed.validate().map_err(|errors| {
        TaskError::permanent(format!(
            "the arguments of `{}` are invalid: {errors}",
            T::NAME
        ))
    })?;
    Ok(typed)
}

fn encode_output<T: Task>(output: T::Output) -> Result<Value, TaskError> {
    serde_json::to_value(output).map_err(|e| {
        TaskError::permanent(format!(
            "the output of `{}` does not serialize to JSON: {e}",
            T::NAME
        ))
    })
}

struct AsyncRunner<T, H> {
    handler: Arc<H>,
    _args: PhantomData<fn() -> T>,
}

impl<T: Task, H: Handler<T>> ErasedHandler for AsyncRunner<T, H> {
    fn call(&self, args: Value, ctx: TaskContext) -> BoxFuture<'static, Result<Value, TaskError>> {
        let handler = Arc::clone(&self.handler);
        Box::pin(async move {
            let args = decode_args::<T>(args)?;
            let output = handler.run(args, ctx).await?;
            encode_output::<T>(output)
        })
    }
}

struct BlockingRunner<T, H> {
    handler: Arc<H>,
    _args: PhantomData<fn() -> T>,
}

impl<T: Task, H: BlockingHandler<T>> ErasedHandler for BlockingRunner<T, H> {
    fn call(&self, args: Value, ctx: TaskContext) -> BoxFuture<'static, Result<Value, TaskError>> {
        let handler = Arc::clone(&self.handler);
        Box::pin(async move {
            let joined = tokio::task::spawn_blocking(move || {
                let args = decode_args::<T>(args)?;
                let output = handler.run(args, ctx)?;
                encode_output::<T>(output)
            })
            .await;
            match joined {
                Ok(outcome) => outcome,
                Err(join_error) if join_error.is_panic() => {
                    std::panic::resume_unwind(join_error.into_panic())
                }
                Err(join_error) => Err(TaskError::retry(join_error)),
            }
        })
    }
}
