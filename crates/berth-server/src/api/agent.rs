//! The operations agents call: DiscoverPollEndpoint (where the push channel
//! lives) and the state reports, which move tasks along their lifecycle.

use berth_core::lifecycle::{self, TaskReport};
use berth_types::{
    ContainerStateChange, DiscoverPollEndpointRequest, DiscoverPollEndpointResponse, EcsError,
    SubmitContainerStateChangeRequest, SubmitContainerStateChangeResponse,
    SubmitTaskStateChangeRequest, SubmitTaskStateChangeResponse, Timestamp,
};

use super::{Api, Ctx, clusters, tasks};

pub async fn discover_poll_endpoint(
    api: &Api,
    ctx: &Ctx,
    req: DiscoverPollEndpointRequest,
) -> Result<DiscoverPollEndpointResponse, EcsError> {
    clusters::for_agent(api, ctx, req.cluster.as_deref())?;
    let host = ctx
        .host
        .clone()
        .ok_or_else(|| EcsError::invalid_parameter("The request has no Host header."))?;
    let endpoint = format!("http://{host}");
    Ok(DiscoverPollEndpointResponse {
        endpoint: Some(endpoint.clone()),
        telemetry_endpoint: Some(endpoint.clone()),
        service_connect_endpoint: Some(endpoint),
    })
}

fn required<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str, EcsError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| EcsError::invalid_parameter(format!("{name} is required.")))
}

pub async fn submit_task_state_change(
    api: &Api,
    ctx: &Ctx,
    req: SubmitTaskStateChangeRequest,
) -> Result<SubmitTaskStateChangeResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    let task = required(req.task.as_deref(), "task")?;
    if let Some(status) = req.status.as_deref()
        && !matches!(
            status,
            lifecycle::PENDING | lifecycle::RUNNING | lifecycle::STOPPED
        )
    {
        return Err(EcsError::invalid_parameter(format!(
            "Invalid task status {status}: agents report PENDING, RUNNING or STOPPED."
        )));
    }
    let containers = req.containers.clone().unwrap_or_default();
    let attachments = req.attachments.clone().unwrap_or_default();
    let report = TaskReport {
        status: req.status.as_deref(),
        reason: req.reason.as_deref(),
        containers: &containers,
        attachments: &attachments,
        pull_started_at: req.pull_started_at,
        pull_stopped_at: req.pull_stopped_at,
        execution_stopped_at: req.execution_stopped_at,
    };
    tasks::update(api, ctx, &cluster, task, |record| {
        Ok(lifecycle::apply_report(
            &mut record.task,
            &report,
            Timestamp::now(),
        ))
    })
    .await?;
    Ok(SubmitTaskStateChangeResponse {
        acknowledgment: Some("true".into()),
    })
}

pub async fn submit_container_state_change(
    api: &Api,
    ctx: &Ctx,
    req: SubmitContainerStateChangeRequest,
) -> Result<SubmitContainerStateChangeResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    let task = required(req.task.as_deref(), "task")?;
    let change = ContainerStateChange {
        container_name: Some(required(req.container_name.as_deref(), "containerName")?.to_owned()),
        runtime_id: req.runtime_id.clone(),
        status: req.status.clone(),
        exit_code: req.exit_code,
        reason: req.reason.clone(),
        network_bindings: req.network_bindings.clone(),
        image_digest: None,
    };
    tasks::update(api, ctx, &cluster, task, |record| {
        Ok(lifecycle::apply_container_report(
            &mut record.task,
            &change,
            Timestamp::now(),
        ))
    })
    .await?;
    Ok(SubmitContainerStateChangeResponse {
        acknowledgment: Some("true".into()),
    })
}
