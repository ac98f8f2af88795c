//! Launch-type compatibility: which of EC2, EXTERNAL, FARGATE (and the
//! requested MANAGED_INSTANCES) a definition validates against, and the
//! error for a launch type the request demands but the definition breaks.
//!
//! EC2 compatibility is what every other check in this module tree already
//! enforces, so a definition that got this far is always EC2-compatible.
//! EXTERNAL (ECS Anywhere) and FARGATE add their own restrictions; ECS lists
//! a launch type in `compatibilities` whether or not it was requested
//! (observed: `["EXTERNAL","EC2"]` for plain bridge definitions,
//! `["EC2","FARGATE"]` for Fargate-shaped awsvpc ones).
//! MANAGED_INSTANCES is only listed when requested: Berth has no
//! observations of ECS volunteering it, and treats it like EC2.

use berth_types::{Compatibility, EcsError, LogDriver, NetworkMode, PidMode};

use super::attributes::is_ecr_image;
use super::{Ctx, container_name, declared_volumes, fargate_combination_valid};

/// Fargate's ceiling for `startTimeout` / `stopTimeout`.
const FARGATE_MAX_TIMEOUT: i32 = 120;
const FARGATE_MIN_START_TIMEOUT: i32 = 2;
/// Windows Fargate tasks start at 1 vCPU.
const FARGATE_WINDOWS_MIN_CPU: u32 = 1024;

pub(crate) fn compatibilities(ctx: &Ctx<'_>) -> Result<Vec<Compatibility>, EcsError> {
    let fargate = fargate_issue(ctx);
    let external = external_issue(ctx);
    for requested in ctx
        .req
        .requires_compatibilities
        .as_deref()
        .unwrap_or_default()
    {
        let issue = match requested {
            Compatibility::Fargate => &fargate,
            Compatibility::External => &external,
            Compatibility::Ec2 | Compatibility::ManagedInstances => &None,
        };
        if let Some(err) = issue {
            return Err(err.clone());
        }
    }
    let mut out = Vec::with_capacity(4);
    if external.is_none() {
        out.push(Compatibility::External);
    }
    out.push(Compatibility::Ec2);
    if fargate.is_none() {
        out.push(Compatibility::Fargate);
    }
    if ctx.requested(Compatibility::ManagedInstances) {
        out.push(Compatibility::ManagedInstances);
    }
    Ok(out)
}

/// Why the definition can't run on Fargate, if it can't.
fn fargate_issue(ctx: &Ctx<'_>) -> Option<EcsError> {
    let fail = |msg: String| Some(EcsError::client(msg));
    if ctx.network_mode != NetworkMode::Awsvpc {
        // Curly quotes as ECS sends them.
        return fail("Fargate only supports network mode \u{2018}awsvpc\u{2019}.".into());
    }
    let Some(cpu) = ctx.task_cpu else {
        return fail("Fargate requires that 'cpu' be defined at the task level.".into());
    };
    let Some(memory) = ctx.task_memory else {
        return fail("Fargate requires that 'memory' be defined at the task level.".into());
    };
    if !fargate_combination_valid(cpu, memory) || (ctx.windows && cpu < FARGATE_WINDOWS_MIN_CPU) {
        return fail("No Fargate configuration exists for given values.".into());
    }
    if ctx.req.ipc_mode.is_some() {
        return fail("Tasks using the Fargate launch type do not support ipcMode.".into());
    }
    if ctx.req.pid_mode == Some(PidMode::Host) {
        return fail("Tasks using the Fargate launch type do not support pidMode 'host'.".into());
    }
    for volume in declared_volumes(ctx.req) {
        let name = volume.name.as_deref().unwrap_or("");
        if volume
            .host
            .as_ref()
            .is_some_and(|h| h.source_path.is_some())
        {
            return fail(format!(
                "Invalid setting for volume '{name}'. Tasks using the Fargate launch type do not support host volumes with a 'sourcePath'."
            ));
        }
        if volume.docker_volume_configuration.is_some() {
            return fail(format!(
                "Invalid setting for volume '{name}'. Tasks using the Fargate launch type do not support 'dockerVolumeConfiguration'."
            ));
        }
    }
    let has_execution_role = ctx
        .req
        .execution_role_arn
        .as_deref()
        .is_some_and(|r| !r.is_empty());
    for c in ctx.containers {
        let name = container_name(c);
        let driver = c.log_configuration.as_ref().map(|l| l.log_driver);
        if let Some(driver) = driver
            && !matches!(
                driver,
                LogDriver::Awslogs | LogDriver::Splunk | LogDriver::Awsfirelens
            )
        {
            return fail(format!(
                "Invalid 'logConfiguration' setting for container '{name}'. Tasks using the Fargate launch type only support the awslogs, splunk and awsfirelens log drivers."
            ));
        }
        if c.privileged == Some(true) {
            return fail(format!(
                "Invalid 'privileged' setting for container '{name}'. Tasks using the Fargate launch type do not support privileged containers."
            ));
        }
        if c.stop_timeout.is_some_and(|t| t > FARGATE_MAX_TIMEOUT) {
            return fail(format!(
                "Invalid 'stopTimeout' setting for container '{name}'. Tasks using the Fargate launch type support at most 120 seconds."
            ));
        }
        if c.start_timeout
            .is_some_and(|t| !(FARGATE_MIN_START_TIMEOUT..=FARGATE_MAX_TIMEOUT).contains(&t))
        {
            return fail(format!(
                "Invalid 'startTimeout' setting for container '{name}'. Tasks using the Fargate launch type support between 2 and 120 seconds."
            ));
        }
        if !has_execution_role && driver == Some(LogDriver::Awslogs) {
            return fail(
                "Fargate requires task definition to have execution role ARN to support log driver awslogs."
                    .into(),
            );
        }
        if !has_execution_role && c.image.as_deref().is_some_and(is_ecr_image) {
            return fail(
                "Fargate requires task definition to have execution role ARN to support ECR images."
                    .into(),
            );
        }
    }
    None
}

/// Why the definition can't run on ECS Anywhere, if it can't.
fn external_issue(ctx: &Ctx<'_>) -> Option<EcsError> {
    if ctx.network_mode == NetworkMode::Awsvpc {
        return Some(EcsError::client(
            "Tasks using the EXTERNAL launch type do not support networkMode 'awsvpc'.",
        ));
    }
    for volume in declared_volumes(ctx.req) {
        if volume.efs_volume_configuration.is_some()
            || volume
                .fsx_windows_file_server_volume_configuration
                .is_some()
        {
            let name = volume.name.as_deref().unwrap_or("");
            return Some(EcsError::client(format!(
                "Invalid setting for volume '{name}'. Tasks using the EXTERNAL launch type do not support EFS or FSx volumes."
            )));
        }
    }
    None
}
