//! The one workflow every tasklib task and chain runs as ([`WORKFLOW_TYPE`]): it runs each
//! step's activity in order, feeds each output into the next step by the chain rule, turns
//! a snooze into a timer (so that it uses no retry), stops at the first step that fails or
//! is cancelled (the steps after it end cancelled), and records every finished step in its
//! memo as it goes.
//!
//! Workflow code must be deterministic: everything here depends only on the plan and on the
//! activities' results, which Temporal replays from the history.

use serde_json::Value;
use temporalio_common::data_converters::RawValue;
use temporalio_common::error::IncomingError;
use temporalio_common::{Priority, UntypedActivity};
use temporalio_sdk::{
    ActivityCancellationType, ActivityOptions, ApplicationFailure, MemoValue, TimerResult,
    WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination,
};
use temporalio_workflow::{ActivityExecutionError, RetryPolicy};

use super::plan::{
    ActivityMeta, CANCEL_FAILURE, Ended, OUTCOMES_MEMO, Outcome, Plan, SNOOZE_FAILURE, StepPlan,
    cancelled_after, from_payload, json_payload, step_args,
};

/// The generic workflow: its input is a [`Plan`], its result the steps' [`Outcome`]s.
#[temporalio_workflow::workflow]
pub(crate) struct TaskWorkflow {
    plan: Plan,
}

#[temporalio_workflow::workflow_methods]
impl TaskWorkflow {
    #[init]
    pub(crate) fn new(_ctx: &WorkflowContextView, plan: Plan) -> Self {
        TaskWorkflow { plan }
    }

    #[run(name = "tasklib")]
    pub(crate) async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<Vec<Outcome>> {
        let plan = ctx.state(|s| s.plan.clone());
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(plan.steps.len());
        let mut previous: Option<Value> = None;
        for (index, step) in plan.steps.iter().enumerate() {
            let args = step_args(step, index, previous.as_ref());
            let outcome = run_step(ctx, step, args).await?;
            let ended = outcome.ended;
            previous = outcome.value.clone();
            outcomes.push(outcome);
            if ended != Ended::Completed {
                outcomes.extend(cancelled_after(&plan, index, ended));
            }
            ctx.upsert_memo([(OUTCOMES_MEMO, Some(MemoValue::new(outcomes.clone())))])
                .map_err(|e| fail(format!("could not record the outcomes: {e}")))?;
            if ended != Ended::Completed {
                break;
            }
        }
        Ok(outcomes)
    }
}

/// A workflow failure: only for what cannot happen with tasklib's own inputs.
fn fail(message: String) -> WorkflowTermination {
    WorkflowTermination::failed_application(ApplicationFailure::non_retryable(message))
}

/// Runs one step until it completes, fails for good or is cancelled; a snooze waits on a
/// timer and runs the activity again with one more snooze counted.
async fn run_step(
    ctx: &WorkflowContext<TaskWorkflow>,
    step: &StepPlan,
    args: Value,
) -> WorkflowResult<Outcome> {
    let mut snoozes = 0u32;
    let ended = |ended: Ended, error: String| Outcome {
        id: step.id,
        ended,
        value: None,
        error: Some(error),
    };
    loop {
        let meta = ActivityMeta {
            snoozes,
            max_retries: step.max_retries,
            timeout_seconds: step.timeout_seconds,
        };
        let input = RawValue::new(vec![
            json_payload(&args).map_err(|e| fail(e.to_string()))?,
            json_payload(&meta).map_err(|e| fail(e.to_string()))?,
        ]);
        let result = ctx
            .execute_activity(
                UntypedActivity::new(step.name.clone()),
                input,
                options(step),
            )
            .await;
        match result {
            Ok(output) => {
                let value = match output.payloads.first() {
                    Some(payload) => from_payload::<Value>(payload)
                        .map_err(|e| fail(format!("the output of {}: {e}", step.name)))?,
                    None => Value::Null,
                };
                return Ok(Outcome {
                    id: step.id,
                    ended: Ended::Completed,
                    value: Some(value),
                    error: None,
                });
            }
            Err(ActivityExecutionError::Cancelled(_)) => {
                return Ok(ended(
                    Ended::Cancelled,
                    "cancelled while running".to_owned(),
                ));
            }
            Err(error) => match error.cause() {
                Some(IncomingError::Application(app)) => {
                    let message = app.source_error().to_string();
                    match app.type_name() {
                        Some(SNOOZE_FAILURE) => {
                            let delay = app.next_retry_delay().unwrap_or_default();
                            if let TimerResult::Cancelled = ctx.timer(delay).await {
                                return Ok(ended(
                                    Ended::Cancelled,
                                    "cancelled while snoozing".to_owned(),
                                ));
                            }
                            snoozes += 1;
                        }
                        Some(CANCEL_FAILURE) => return Ok(ended(Ended::Cancelled, message)),
                        _ => return Ok(ended(Ended::Failed, message)),
                    }
                }
                Some(IncomingError::Timeout(_)) => {
                    return Ok(ended(
                        Ended::Failed,
                        "timed out: no heartbeat or no result from its worker in time".to_owned(),
                    ));
                }
                Some(other) => return Ok(ended(Ended::Failed, other.failure().message.clone())),
                None => return Ok(ended(Ended::Failed, error.to_string())),
            },
        }
    }
}

/// The activity options of a step: its id, queue, timeouts, retry policy and priority.
fn options(step: &StepPlan) -> ActivityOptions {
    let retry = RetryPolicy::builder()
        .initial_interval(std::time::Duration::from_millis(
            step.retry_initial_ms.max(1),
        ))
        .backoff_coefficient(step.retry_multiplier.max(1.0))
        .maximum_interval(std::time::Duration::from_millis(step.retry_max_ms.max(1)))
        .maximum_attempts(step.max_retries.saturating_add(1))
        .build();
    ActivityOptions::with_start_to_close_timeout(step.start_to_close())
        .activity_id(step.id.to_string())
        .task_queue(step.queue.clone())
        .heartbeat_timeout(step.heartbeat_timeout())
        .cancellation_type(ActivityCancellationType::WaitCancellationCompleted)
        .retry_policy(retry)
        .maybe_priority(
            step.priority_key
                .map(|key| Priority::builder().priority_key(key).build()),
        )
        .build()
}
