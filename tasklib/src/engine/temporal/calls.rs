//! The client's calls to the frontend: start the workflow (submit), describe it (results),
//! poll it (wait), and cancel or terminate it. Raw `WorkflowService` requests, so that every
//! option of a start (delay, priority, id reuse policy, memo) is set as tasklib means it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use temporalio_client::tonic::{Code, Request, Status};
use temporalio_common::protos::temporal::api::common::v1::{
    Memo, Payloads, Priority, WorkflowExecution, WorkflowType,
};
use temporalio_common::protos::temporal::api::enums::v1::{
    PendingActivityState, TaskQueueKind, WorkflowExecutionStatus, WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy,
};
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::{
    DescribeNamespaceRequest, DescribeWorkflowExecutionRequest, DescribeWorkflowExecutionResponse,
    RequestCancelWorkflowExecutionRequest, StartWorkflowExecutionRequest,
    TerminateWorkflowExecutionRequest,
};
use tokio::time::Instant;
use uuid::Uuid;

use super::TemporalEngine;
use super::plan::{
    OUTCOMES_MEMO, Outcome, Plan, STEPS_MEMO, StepPlan, WORKFLOW_TYPE, chain_ids, from_payload,
    json_payload, step_of,
};
use crate::backend::BackendType;
use crate::chain::{ChainIds, NewChain};
use crate::control::CancelOutcome;
use crate::result::{TaskResult, TaskStatus, chain_outcome};
use crate::submit::NewTask;
use crate::unique::Submitted;
use crate::{Error, RedactedUrl, Result, TaskState};

/// Where a workflow stands: its steps' results, in order.
struct Described {
    /// Still running (not closed).
    running: bool,
    /// Some activity of it is running on a worker now.
    activity_started: bool,
    steps: Vec<TaskResult>,
}

impl TemporalEngine {
    fn namespace(&self) -> String {
        self.config.temporal_namespace().to_owned()
    }

    fn rpc_error(&self, status: Status) -> Error {
        Error::Broker {
            backend: BackendType::Temporal,
            role: "frontend",
            url: RedactedUrl::new(self.config.temporal_host()),
            source: Box::new(status),
        }
    }

    /// Fails early, at connect, when the namespace does not exist or the server does not
    /// answer.
    pub(super) async fn check_namespace(&self) -> Result<()> {
        let mut service = self.client.connection().workflow_service();
        let request = DescribeNamespaceRequest {
            namespace: self.namespace(),
            ..Default::default()
        };
        match service.describe_namespace(Request::new(request)).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Err(Error::InvalidConfig {
                field: "temporal_namespace",
                reason: format!(
                    "namespace `{}` does not exist on {}: create it (`temporal operator \
                     namespace create`) or set TEMPORAL_NAMESPACE",
                    self.namespace(),
                    self.config.temporal_host()
                ),
            }),
            Err(status) => Err(self.rpc_error(status)),
        }
    }

    fn step(&self, task: &NewTask) -> Result<StepPlan> {
        StepPlan::new(task, &self.config)
    }

    /// Starts one workflow running `plan` under `id`, after the first step's delay.
    async fn start(&self, id: Uuid, first: &NewTask, plan: Plan) -> Result<()> {
        let serialize = |source: serde_json::Error| Error::Serialize {
            task: first.name.clone(),
            source,
        };
        let step_ids: Vec<Uuid> = plan.steps.iter().map(|s| s.id).collect();
        let delay = match first.scheduled_at {
            Some(at) => (at - Utc::now()).to_std().unwrap_or_default(),
            None => Duration::from_secs_f64(first.delay_seconds.max(0.0)),
        };
        let priority = plan.steps.first().and_then(|s| s.priority_key);
        let request = StartWorkflowExecutionRequest {
            namespace: self.namespace(),
            workflow_id: id.to_string(),
            workflow_type: Some(WorkflowType {
                name: WORKFLOW_TYPE.to_owned(),
            }),
            task_queue: Some(TaskQueue {
                name: first.queue.clone(),
                kind: TaskQueueKind::Normal as i32,
                ..Default::default()
            }),
            input: Some(Payloads {
                payloads: vec![json_payload(&plan).map_err(serialize)?],
            }),
            identity: self.config.worker_id().to_owned(),
            request_id: id.to_string(),
            workflow_id_reuse_policy: WorkflowIdReusePolicy::RejectDuplicate as i32,
            workflow_id_conflict_policy: WorkflowIdConflictPolicy::Fail as i32,
            memo: Some(Memo {
                fields: HashMap::from([(
                    STEPS_MEMO.to_owned(),
                    json_payload(&step_ids).map_err(serialize)?,
                )]),
            }),
            workflow_start_delay: (!delay.is_zero()).then(|| delay.try_into().ok()).flatten(),
            priority: priority.map(|key| Priority {
                priority_key: i32::try_from(key).unwrap_or(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut service = self.client.connection().workflow_service();
        service
            .start_workflow_execution(Request::new(request))
            .await
            .map_err(|status| self.rpc_error(status))?;
        Ok(())
    }

    /// Starts one workflow per task. Temporal has no batch start: when one start fails, the
    /// workflows started before it are terminated (best effort) so that the batch stays all
    /// or nothing as far as the server allows.
    pub(super) async fn submit_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<Submitted>> {
        let plans = tasks
            .iter()
            .map(|t| {
                Ok(Plan {
                    steps: vec![self.step(t)?],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut started: Vec<Uuid> = Vec::with_capacity(tasks.len());
        for (task, plan) in tasks.iter().zip(plans) {
            if let Err(error) = self.start(task.id, task, plan).await {
                for id in started {
                    if let Err(e) = self.terminate(id, "its batch could not be submitted").await {
                        tracing::warn!(error = %e, %id, "could not withdraw a task of a failed batch");
                    }
                }
                return Err(error);
            }
            started.push(task.id);
        }
        Ok(started.into_iter().map(Submitted::new).collect())
    }

    /// Starts one workflow for the whole chain; the step ids name the chain ([`chain_ids`]).
    pub(super) async fn start_chain(&self, chain: NewChain) -> Result<ChainIds> {
        let (id, step_ids) = chain_ids(chain.id, chain.steps.len())?;
        let first = chain.steps.first().ok_or_else(|| Error::InvalidOption {
            option: "chain",
            reason: "a chain needs a first step".to_owned(),
        })?;
        let mut steps = Vec::with_capacity(chain.steps.len());
        for (task, step_id) in chain.steps.iter().zip(&step_ids) {
            let mut step = self.step(task)?;
            step.id = *step_id;
            steps.push(step);
        }
        self.start(id, first, Plan { steps }).await?;
        Ok(ChainIds {
            id,
            steps: step_ids,
        })
    }

    async fn describe(&self, workflow: Uuid) -> Result<Option<DescribeWorkflowExecutionResponse>> {
        let request = DescribeWorkflowExecutionRequest {
            namespace: self.namespace(),
            execution: Some(WorkflowExecution {
                workflow_id: workflow.to_string(),
                run_id: String::new(),
            }),
        };
        let mut service = self.client.connection().workflow_service();
        match service
            .describe_workflow_execution(Request::new(request))
            .await
        {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(self.rpc_error(status)),
        }
    }

    /// Where every step of workflow `workflow` stands; `None` when it does not exist.
    async fn described(&self, workflow: Uuid) -> Result<Option<Described>> {
        let Some(response) = self.describe(workflow).await? else {
            return Ok(None);
        };
        let Some(info) = response.workflow_execution_info else {
            return Ok(None);
        };
        let corrupt = |column: &'static str, reason: String| Error::CorruptRow {
            id: workflow,
            column,
            reason,
        };
        let memo = info.memo.map(|m| m.fields).unwrap_or_default();
        let step_ids: Vec<Uuid> = match memo.get(STEPS_MEMO) {
            Some(payload) => from_payload(payload).map_err(|e| corrupt(STEPS_MEMO, e))?,
            // Not one of tasklib's workflows.
            None => return Ok(None),
        };
        let outcomes: Vec<Outcome> = match memo.get(OUTCOMES_MEMO) {
            Some(payload) => from_payload(payload).map_err(|e| corrupt(OUTCOMES_MEMO, e))?,
            None => Vec::new(),
        };
        let status = WorkflowExecutionStatus::try_from(info.status)
            .unwrap_or(WorkflowExecutionStatus::Unspecified);
        let running = status == WorkflowExecutionStatus::Running;
        let activity_started = response.pending_activities.iter().any(|a| {
            a.state == PendingActivityState::Started as i32
                || a.state == PendingActivityState::CancelRequested as i32
        });
        let steps = step_ids
            .iter()
            .map(|step| {
                if let Some(outcome) = outcomes.iter().find(|o| o.id == *step) {
                    return outcome.to_result();
                }
                let mut result = TaskResult {
                    id: *step,
                    status: TaskStatus::Pending,
                    value: None,
                    error: None,
                };
                if !running {
                    // Closed without recording this step: cancelled before it ran
                    // (terminated), or the workflow itself failed.
                    result.status = match status {
                        WorkflowExecutionStatus::Terminated | WorkflowExecutionStatus::Canceled => {
                            TaskStatus::Cancelled
                        }
                        _ => TaskStatus::Failed,
                    };
                    result.error = Some(format!(
                        "the Temporal workflow ended {} before this step ran",
                        status.as_str_name().to_ascii_lowercase()
                    ));
                    return result;
                }
                let step_key = step.to_string();
                if let Some(activity) = response
                    .pending_activities
                    .iter()
                    .find(|a| a.activity_id == step_key)
                {
                    if activity.state == PendingActivityState::Started as i32
                        || activity.state == PendingActivityState::CancelRequested as i32
                    {
                        result.status = TaskStatus::Running;
                    }
                    result.error = activity.last_failure.as_ref().map(|f| f.message.clone());
                }
                result
            })
            .collect();
        Ok(Some(Described {
            running,
            activity_started,
            steps,
        }))
    }

    /// The result of a task, a chain step or a chain.
    pub(super) async fn read_result(&self, id: Uuid) -> Result<Option<TaskResult>> {
        let (workflow, step) = match step_of(id) {
            Some((chain, index)) => (chain, Some(index)),
            None => (id, None),
        };
        let Some(described) = self.described(workflow).await? else {
            return Ok(None);
        };
        Ok(match step {
            Some(index) => described.steps.get(index).cloned(),
            None if described.steps.len() == 1 => described.steps.into_iter().next(),
            None => chain_outcome(id, described.steps),
        }
        .map(|result| TaskResult { id, ..result }))
    }

    /// Polls until `id` is finished or `timeout` passes.
    pub(super) async fn wait(&self, id: Uuid, timeout: Duration) -> Result<TaskResult> {
        let deadline = Instant::now() + timeout;
        let poll = self
            .config
            .poll_interval()
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            let current = self.read_result(id).await?.ok_or(Error::NotFound { id })?;
            if current.is_terminal() {
                return Ok(current);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::WaitTimeout { id, timeout });
            }
            tokio::time::sleep_until(deadline.min(now + poll)).await;
        }
    }

    async fn terminate(&self, workflow: Uuid, reason: &str) -> Result<()> {
        let request = TerminateWorkflowExecutionRequest {
            namespace: self.namespace(),
            workflow_execution: Some(WorkflowExecution {
                workflow_id: workflow.to_string(),
                run_id: String::new(),
            }),
            reason: reason.to_owned(),
            identity: self.config.worker_id().to_owned(),
            ..Default::default()
        };
        let mut service = self.client.connection().workflow_service();
        service
            .terminate_workflow_execution(Request::new(request))
            .await
            .map_err(|status| self.rpc_error(status))?;
        Ok(())
    }

    /// Cancels a task, or a chain (given its id or a step's) from its first unfinished step
    /// on: a workflow with no activity running is terminated at once (its unfinished steps
    /// read cancelled); one whose activity runs is asked to cancel, which the activity hears
    /// at its next heartbeat ([`CancelOutcome::Requested`]).
    pub(super) async fn cancel_task(&self, id: Uuid) -> Result<CancelOutcome> {
        let (workflow, step) = match step_of(id) {
            Some((chain, index)) => (chain, Some(index)),
            None => (id, None),
        };
        let described = self
            .described(workflow)
            .await?
            .ok_or(Error::NotFound { id })?;
        let target = match step {
            Some(index) => described.steps.get(index).cloned(),
            None if described.steps.len() == 1 => described.steps.first().cloned(),
            None => chain_outcome(id, described.steps.clone()),
        }
        .ok_or(Error::NotFound { id })?;
        if target.is_terminal() || !described.running {
            return Err(Error::InvalidState {
                id,
                state: match target.status {
                    TaskStatus::Completed => TaskState::Completed,
                    TaskStatus::Failed => TaskState::Failed,
                    _ => TaskState::Cancelled,
                },
                action: "cancelled",
            });
        }
        if described.activity_started {
            let request = RequestCancelWorkflowExecutionRequest {
                namespace: self.namespace(),
                workflow_execution: Some(WorkflowExecution {
                    workflow_id: workflow.to_string(),
                    run_id: String::new(),
                }),
                identity: self.config.worker_id().to_owned(),
                request_id: Uuid::now_v7().to_string(),
                reason: "cancelled through tasklib".to_owned(),
                ..Default::default()
            };
            let mut service = self.client.connection().workflow_service();
            service
                .request_cancel_workflow_execution(Request::new(request))
                .await
                .map_err(|status| self.rpc_error(status))?;
            Ok(CancelOutcome::Requested)
        } else {
            self.terminate(workflow, "cancelled through tasklib")
                .await?;
            Ok(CancelOutcome::Cancelled)
        }
    }
}
