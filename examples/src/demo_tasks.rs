//! Task types of the demo worker (`demo-worker`), one per queue.

use serde::{Deserialize, Serialize};
use tasklib::{Task, TaskContext, TaskError, TaskLib};
use validator::Validate;

/// Work for the `file_processing` queue.
#[derive(Debug, Serialize, Deserialize, Validate)]
pub struct ProcessFile {
    /// Which file.
    #[validate(length(min = 1))]
    pub path: String,
}

impl Task for ProcessFile {
    const NAME: &'static str = "process_file";
    const QUEUE: &'static str = "file_processing";
    type Output = String;
}

/// Work for the `api_processing` queue.
#[derive(Debug, Serialize, Deserialize, Validate)]
pub struct CallApi {
    /// Which endpoint.
    pub endpoint: String,
}

impl Task for CallApi {
    const NAME: &'static str = "call_api";
    const QUEUE: &'static str = "api_processing";
    type Output = String;
}

/// Registers the demo handlers.
///
/// # Errors
/// When a name is registered twice.
pub fn register(tasks: &TaskLib) -> tasklib::Result<()> {
    tasks.register(|job: ProcessFile, ctx: TaskContext| async move {
        Ok::<_, TaskError>(format!("processed {} on {}", job.path, ctx.worker_id()))
    })?;
    tasks.register(|call: CallApi, ctx: TaskContext| async move {
        Ok::<_, TaskError>(format!("called {} on {}", call.endpoint, ctx.worker_id()))
    })
}

/// `add_numbers`, the seeds' example: the sum of two integers, on the default queue.
#[derive(Debug, Serialize, Deserialize, Validate)]
pub struct AddNumbers {
    /// The first addend.
    pub a: i64,
    /// The second addend.
    pub b: i64,
}

impl Task for AddNumbers {
    const NAME: &'static str = "add_numbers";
    type Output = i64;
}

/// Registers `add_numbers`; a sum that does not fit in an `i64` fails for good.
///
/// # Errors
/// When the name is registered already.
pub fn register_add_numbers(tasks: &TaskLib) -> tasklib::Result<()> {
    tasks.register(|numbers: AddNumbers, _: TaskContext| async move {
        numbers.a.checked_add(numbers.b).ok_or_else(|| {
            TaskError::permanent(format!(
                "{} + {} does not fit in a 64-bit integer",
                numbers.a, numbers.b
            ))
        })
    })
}
