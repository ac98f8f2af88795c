//! `requiresAttributes`: the container-instance capability attributes a
//! task definition needs, so placement can skip instances whose agent or
//! Docker can't run it (an instance lacking one fails with `ATTRIBUTE`).
//!
//! Derivation. ECS publishes no table, so this is reconstructed from real
//! `DescribeTaskDefinition` outputs (which show, e.g., that a bridge
//! definition with task-level cpu/memory and awslogs needs exactly
//! `logging-driver.awslogs` + `docker-remote-api.1.19`, and a minimal
//! Fargate-shaped one exactly `docker-remote-api.1.18` + `task-eni`) and
//! from the capability names the ECS agent advertises. A feature adds an
//! attribute only when it needs more than the baseline every supported
//! agent has; there is no blanket `docker-remote-api` entry.
//!
//! | feature | attributes |
//! |---|---|
//! | `networkMode: awsvpc` | `ecs.capability.task-eni`, `…docker-remote-api.1.18` |
//! | `taskRoleArn` | `com.amazonaws.ecs.capability.task-iam-role` (+ `…task-iam-role-network-host` in `host` mode) |
//! | `pidMode` / `ipcMode` | `ecs.capability.pid-ipc-namespace-sharing` |
//! | `proxyConfiguration` | `ecs.capability.aws-appmesh` |
//! | EFS volume | `ecs.capability.efs`; with IAM/access point/transit encryption also `ecs.capability.efsAuth` |
//! | docker volume with `driver` D | `ecs.capability.docker-plugin.D` |
//! | ECR image (`<acct>.dkr.ecr.<region>.amazonaws.com/…`) | `com.amazonaws.ecs.capability.ecr-auth`; with `executionRoleArn` also `ecs.capability.execution-role-ecr-pull` |
//! | `logConfiguration.logDriver` D | `com.amazonaws.ecs.capability.logging-driver.D` |
//! | awslogs | + `…docker-remote-api.1.19`; with `executionRoleArn` + `ecs.capability.execution-role-awslogs` |
//! | `logConfiguration.secretOptions` | `ecs.capability.secrets.{ssm,asm}.bootstrap.log-driver` |
//! | `secrets` | `ecs.capability.secrets.{ssm,asm}.environment-variables` (asm when `valueFrom` is a Secrets Manager ARN) |
//! | `repositoryCredentials` | `com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager` |
//! | `environmentFiles` | `ecs.capability.env-files.s3` |
//! | `firelensConfiguration` type T | `ecs.capability.firelens.T` |
//! | `healthCheck` | `ecs.capability.container-health-check`, `…docker-remote-api.1.24` |
//! | `dependsOn` | `ecs.capability.container-ordering` |
//! | `privileged: true` | `com.amazonaws.ecs.capability.privileged-container` |
//! | `dockerSecurityOptions` `label…` / `apparmor…` | `com.amazonaws.ecs.capability.selinux` / `…apparmor` |
//! | `ulimits`, `dockerLabels` | `…docker-remote-api.1.18` |
//! | `memoryReservation` | `…docker-remote-api.1.21` |
//! | `linuxParameters.capabilities` | `…docker-remote-api.1.17` |
//! | `linuxParameters.tmpfs` | `…docker-remote-api.1.22` |
//! | `linuxParameters.initProcessEnabled: true` | `…docker-remote-api.1.25` |
//!
//! Task-level cpu/memory add nothing (observed: no `task-cpu-mem-limit`
//! in ECS output even for EC2-only definitions). The list is deduplicated
//! and sorted by name so equal definitions always produce equal output;
//! ECS's own order carries no meaning.

use std::collections::BTreeSet;

use berth_types::{
    Attribute, EFSTransitEncryption, FirelensConfigurationType, LogDriver, NetworkMode, Secret,
};

use super::{Ctx, declared_volumes};

const DOCKER_API: &str = "com.amazonaws.ecs.capability.docker-remote-api.";
const LEGACY: &str = "com.amazonaws.ecs.capability.";
const CAP: &str = "ecs.capability.";

pub(crate) fn derive(ctx: &Ctx<'_>) -> Vec<Attribute> {
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut add = |prefix: &str, name: &str| {
        names.insert(format!("{prefix}{name}"));
    };
    let req = ctx.req;
    let has_execution_role = req
        .execution_role_arn
        .as_deref()
        .is_some_and(|r| !r.is_empty());

    if ctx.network_mode == NetworkMode::Awsvpc {
        add(CAP, "task-eni");
        add(DOCKER_API, "1.18");
    }
    if req.task_role_arn.as_deref().is_some_and(|r| !r.is_empty()) {
        add(LEGACY, "task-iam-role");
        if ctx.network_mode == NetworkMode::Host {
            add(LEGACY, "task-iam-role-network-host");
        }
    }
    if req.pid_mode.is_some() || req.ipc_mode.is_some() {
        add(CAP, "pid-ipc-namespace-sharing");
    }
    if req.proxy_configuration.is_some() {
        add(CAP, "aws-appmesh");
    }
    for volume in declared_volumes(req) {
        if let Some(efs) = &volume.efs_volume_configuration {
            add(CAP, "efs");
            if efs.authorization_config.is_some()
                || efs.transit_encryption == Some(EFSTransitEncryption::Enabled)
            {
                add(CAP, "efsAuth");
            }
        }
        if let Some(driver) = volume
            .docker_volume_configuration
            .as_ref()
            .and_then(|d| d.driver.as_deref())
            .filter(|d| !d.is_empty())
        {
            add(CAP, &format!("docker-plugin.{driver}"));
        }
    }

    for c in ctx.containers {
        if c.image.as_deref().is_some_and(is_ecr_image) {
            add(LEGACY, "ecr-auth");
            if has_execution_role {
                add(CAP, "execution-role-ecr-pull");
            }
        }
        if let Some(log) = &c.log_configuration {
            add(
                LEGACY,
                &format!("logging-driver.{}", log.log_driver.as_str()),
            );
            if log.log_driver == LogDriver::Awslogs {
                add(DOCKER_API, "1.19");
                if has_execution_role {
                    add(CAP, "execution-role-awslogs");
                }
            }
            for secret in log.secret_options.as_deref().unwrap_or_default() {
                add(
                    CAP,
                    &format!("secrets.{}.bootstrap.log-driver", secret_store(secret)),
                );
            }
        }
        for secret in c.secrets.as_deref().unwrap_or_default() {
            add(
                CAP,
                &format!("secrets.{}.environment-variables", secret_store(secret)),
            );
        }
        if c.repository_credentials.is_some() {
            add(LEGACY, "private-registry-authentication.secretsmanager");
        }
        if c.environment_files
            .as_deref()
            .is_some_and(|f| !f.is_empty())
        {
            add(CAP, "env-files.s3");
        }
        if let Some(firelens) = &c.firelens_configuration {
            add(
                CAP,
                match firelens.r#type {
                    FirelensConfigurationType::Fluentbit => "firelens.fluentbit",
                    FirelensConfigurationType::Fluentd => "firelens.fluentd",
                },
            );
        }
        if c.health_check.is_some() {
            add(CAP, "container-health-check");
            add(DOCKER_API, "1.24");
        }
        if c.depends_on.as_deref().is_some_and(|d| !d.is_empty()) {
            add(CAP, "container-ordering");
        }
        if c.privileged == Some(true) {
            add(LEGACY, "privileged-container");
        }
        for option in c.docker_security_options.as_deref().unwrap_or_default() {
            if option.starts_with("label") {
                add(LEGACY, "selinux");
            } else if option.starts_with("apparmor") {
                add(LEGACY, "apparmor");
            }
        }
        if c.ulimits.as_deref().is_some_and(|u| !u.is_empty())
            || c.docker_labels.as_ref().is_some_and(|l| !l.is_empty())
        {
            add(DOCKER_API, "1.18");
        }
        if c.memory_reservation.is_some() {
            add(DOCKER_API, "1.21");
        }
        if let Some(linux) = &c.linux_parameters {
            if linux.capabilities.is_some() {
                add(DOCKER_API, "1.17");
            }
            if linux.tmpfs.as_deref().is_some_and(|t| !t.is_empty()) {
                add(DOCKER_API, "1.22");
            }
            if linux.init_process_enabled == Some(true) {
                add(DOCKER_API, "1.25");
            }
        }
    }

    names
        .into_iter()
        .map(|name| Attribute {
            name,
            ..Attribute::default()
        })
        .collect()
}

/// `asm` for Secrets Manager ARNs, `ssm` for Parameter Store ARNs and bare
/// parameter names.
fn secret_store(secret: &Secret) -> &'static str {
    if secret.value_from.contains(":secretsmanager:") {
        "asm"
    } else {
        "ssm"
    }
}

/// Whether `image` lives in a private ECR registry
/// (`<12-digit account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]/repo…`),
/// which the agent must authenticate to before pulling.
pub(crate) fn is_ecr_image(image: &str) -> bool {
    let Some((host, _)) = image.split_once('/') else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let Some(rest) = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
    else {
        return false;
    };
    let mut labels = rest.split('.');
    let account = labels.next().unwrap_or("");
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && labels.next() == Some("dkr")
        && labels.next().is_some_and(|l| l == "ecr" || l == "ecr-fips")
        && labels.next().is_some_and(|region| !region.is_empty())
}
