//! Linear chains: steps that run one after another, each fed the previous step's output.
//!
//! **The rule, on every engine:** when step *k* completes, its output is put in front of the
//! positional arguments given for step *k + 1*, and that list is mapped onto the fields of
//! step *k + 1*'s argument type in their declared order (serde reads a struct from a JSON
//! array that way). This is Celery's rule ("the previous result is prepended to the next
//! step's arguments"), so a chain means the same thing on every engine.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use serde_json::json;
//! use tasklib::{Chain, Task};
//! use validator::Validate;
//!
//! #[derive(Debug, Serialize, Deserialize, Validate)]
//! struct Add { a: i64, b: i64 }
//! impl Task for Add { const NAME: &'static str = "add"; type Output = i64; }
//!
//! #[derive(Debug, Serialize, Deserialize, Validate)]
//! struct Multiply { value: i64, by: i64 }
//! impl Task for Multiply { const NAME: &'static str = "multiply"; type Output = i64; }
//!
//! // (2 + 3) * 10, then + 1: Multiply gets [5, 10] = {value: 5, by: 10}, Add gets [50, 1].
//! let chain = Chain::new(Add { a: 2, b: 3 })
//!     .then::<Multiply>([json!(10)])
//!     .then::<Add>([json!(1)]);
//! assert_eq!(chain.len(), 3);
//! ```
//!
//! A step that fails for good (or is cancelled) stops the chain: the steps after it end
//! `cancelled`, with the reason. Retries apply to each step on its own.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::submit::{NewTask, OwnedDefaults, SubmitOptions};
use crate::task::Task;
use crate::{Error, Result};

/// The arguments of one step, before it is prepared.
#[derive(Debug)]
pub(crate) enum StepArgs {
    /// The first step's whole arguments (an object), already validated when typed.
    Whole(Value),
    /// A later step's extra positional arguments; the previous output goes in front.
    Extra(Vec<Value>),
}

/// One step as the builder holds it.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) name: String,
    pub(crate) args: StepArgs,
    pub(crate) options: SubmitOptions,
    /// The type's defaults when the step is typed (its arguments then checked already);
    /// by-name steps take defaults and checks from the registry at submit.
    pub(crate) defaults: Option<OwnedDefaults>,
    /// The type's [`Task::unique_key`] of a typed first step: chain steps cannot be unique,
    /// so a key here is refused at submit rather than ignored.
    pub(crate) type_key: Option<String>,
}

impl StepArgs {
    /// The arguments as stored: a first step's object, a later step's array.
    pub(crate) fn into_value(self) -> Value {
        match self {
            StepArgs::Whole(args) => args,
            StepArgs::Extra(extra) => Value::Array(extra),
        }
    }
}

/// A chain of steps to submit at once with [`TaskLib::submit_chain`](crate::TaskLib::submit_chain).
/// See [chains in the crate docs](crate#chains) for the rule that feeds one step into the
/// next.
#[derive(Debug)]
pub struct Chain {
    pub(crate) steps: Vec<Step>,
    /// The first problem met while building (reported at submit, nothing written).
    pub(crate) error: Option<Error>,
}

impl Chain {
    /// A chain whose first step runs `args` (validated now; any error is returned by the
    /// submit).
    pub fn new<T: Task>(args: T) -> Chain {
        let (value, error) = match typed_args(&args, 0) {
            Ok(value) => (value, None),
            Err(error) => (Value::Null, Some(error)),
        };
        Chain {
            steps: vec![Step {
                name: T::NAME.to_owned(),
                args: StepArgs::Whole(value),
                options: SubmitOptions::new(),
                defaults: Some(OwnedDefaults::of::<T>()),
                type_key: args.unique_key(),
            }],
            error,
        }
    }

    /// A chain whose first step is the registered task `name` with JSON arguments (an object,
    /// or an array mapped onto the fields in order), checked like
    /// [`submit_json`](crate::TaskLib::submit_json) at submit.
    pub fn new_json(name: impl Into<String>, args: Value) -> Chain {
        Chain {
            steps: vec![Step {
                name: name.into(),
                args: StepArgs::Whole(args),
                options: SubmitOptions::new(),
                defaults: None,
                type_key: None,
            }],
            error: None,
        }
    }

    /// Adds a step of type `T`: it gets the previous step's output followed by `extra` as
    /// its positional arguments.
    pub fn then<T: Task>(mut self, extra: impl IntoIterator<Item = Value>) -> Chain {
        self.steps.push(Step {
            name: T::NAME.to_owned(),
            args: StepArgs::Extra(extra.into_iter().collect()),
            options: SubmitOptions::new(),
            defaults: Some(OwnedDefaults::of::<T>()),
            type_key: None,
        });
        self
    }

    /// Adds a step by name (registered where the chain is submitted), as [`then`](Self::then).
    pub fn then_json(
        mut self,
        name: impl Into<String>,
        extra: impl IntoIterator<Item = Value>,
    ) -> Chain {
        self.steps.push(Step {
            name: name.into(),
            args: StepArgs::Extra(extra.into_iter().collect()),
            options: SubmitOptions::new(),
            defaults: None,
            type_key: None,
        });
        self
    }

    /// Sets the options of the step added last (queue, priority, retries, timeout, tags; a
    /// delay only on the first step: later steps start when the one before them completes).
    pub fn options(mut self, options: SubmitOptions) -> Chain {
        if let Some(step) = self.steps.last_mut() {
            step.options = options;
        }
        self
    }

    /// How many steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Never true: a chain has a first step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

fn typed_args<T: Task>(args: &T, index: usize) -> Result<Value> {
    args.validate().map_err(|source| Error::InvalidArgs {
        task: T::NAME.to_owned(),
        index: Some(index),
        source,
    })?;
    serde_json::to_value(args).map_err(|source| Error::Serialize {
        task: T::NAME.to_owned(),
        source,
    })
}

/// The ids of a submitted chain, all known at submit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChainIds {
    /// The chain's own id: [`get_result`](crate::TaskLib::get_result) and
    /// [`wait_result`](crate::TaskLib::wait_result) of it give the chain's outcome.
    pub id: Uuid,
    /// Each step's task id, in order.
    pub steps: Vec<Uuid>,
}

/// A chain checked and ready for an engine: its id and its steps as rows. Step 0 carries its
/// whole arguments; each later step carries its extra positional arguments as a JSON array.
#[derive(Debug)]
pub(crate) struct NewChain {
    pub(crate) id: Uuid,
    pub(crate) steps: Vec<NewTask>,
}
