//! Service deployments and service revisions: ListServiceDeployments,
//! DescribeServiceDeployments and DescribeServiceRevisions.
//!
//! The scheduler keeps a service's deployment history in its state
//! (`berth_core::service::ServiceDeploymentRecord`, moved along every
//! round); the revisions those deployments roll out are captured on the
//! service record when CreateService or UpdateService starts a deployment,
//! and forgotten once no service deployment names them. A service
//! deployment shares its id with the revision it introduces (the digits of
//! its `ecs-svc/` deployment). Deleting a service deletes its service
//! deployments, as in ECS: only an ACTIVE service shows any.

use berth_core::service::{RevisionCounts, ServiceDeploymentRecord, ServiceState};
use berth_types::arn::{Arn, Scope};
use berth_types::{
    ContainerImage, DeploymentConfiguration, DescribeServiceDeploymentsRequest,
    DescribeServiceDeploymentsResponse, DescribeServiceRevisionsRequest,
    DescribeServiceRevisionsResponse, EcsError, ListServiceDeploymentsRequest,
    ListServiceDeploymentsResponse, Rollback, Service, ServiceConnectConfiguration,
    ServiceDeployment, ServiceDeploymentAlarms, ServiceDeploymentBrief,
    ServiceDeploymentCircuitBreaker, ServiceDeploymentRollbackMonitorsStatus, ServiceRevision,
    ServiceRevisionSummary, Timestamp,
};
use serde::{Deserialize, Serialize};

use super::{Api, Ctx, clusters, failure, paginate_ordered, services, task_definitions};
use crate::state::ServiceRecord;

/// Both Describe operations take at most 20 ARNs.
const MAX_ARNS: usize = 20;

/// A service revision as captured when its deployment started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub id: String,
    pub revision: ServiceRevision,
    /// The deploymentConfiguration of the service deployment that
    /// introduced the revision; each introduces exactly one, so this is
    /// where DescribeServiceDeployments finds it.
    pub deployment_configuration: Option<DeploymentConfiguration>,
}

/// Captures the revision of the deployment CreateService or UpdateService
/// just began (the service's configuration now), and forgets the revisions
/// nothing names any more.
pub fn capture_revision(api: &Api, ctx: &Ctx, cluster: &str, record: &mut ServiceRecord) {
    let Some(h) = record.state.history.first() else {
        return;
    };
    let service = &record.service;
    let name = service.service_name.as_deref().unwrap_or_default();
    let task_definition = service.task_definition.clone().unwrap_or_default();
    let revision = ServiceRevision {
        service_revision_arn: Some(
            ctx.scope
                .service_revision(cluster, name, &h.target.revision),
        ),
        service_arn: service.service_arn.clone(),
        cluster_arn: service.cluster_arn.clone(),
        container_images: Some(container_images(api, ctx, &task_definition)),
        task_definition: Some(task_definition),
        launch_type: service.launch_type,
        capacity_provider_strategy: non_empty(&service.capacity_provider_strategy),
        platform_version: service.platform_version.clone(),
        platform_family: service.platform_family.clone(),
        load_balancers: non_empty(&service.load_balancers),
        service_registries: non_empty(&service.service_registries),
        network_configuration: service.network_configuration.clone(),
        service_connect_configuration: Some(ServiceConnectConfiguration::default()),
        guard_duty_enabled: false,
        created_at: Some(Timestamp::from_millis(h.created_at_millis)),
        ..ServiceRevision::default()
    };
    let captured = RevisionRecord {
        id: h.target.revision.clone(),
        revision,
        deployment_configuration: service.deployment_configuration.clone(),
    };
    record.revisions.push(captured);
    let state = &record.state;
    record.revisions.retain(|r| is_named(state, &r.id));
}

fn non_empty<T: Clone>(list: &Option<Vec<T>>) -> Option<Vec<T>> {
    list.clone().filter(|l| !l.is_empty())
}

/// Whether a deployment, the rollback target or a service deployment
/// still refers to revision `id`.
fn is_named(state: &ServiceState, id: &str) -> bool {
    state.deployments.iter().any(|d| d.revision() == id)
        || state
            .last_completed
            .as_ref()
            .is_some_and(|c| c.revision() == id)
        || state.history.iter().any(|h| {
            h.target.revision == id
                || h.sources.iter().any(|s| s.revision == id)
                || h.rollback.as_ref().is_some_and(|r| r.revision == id)
        })
}

/// The images of a task definition's containers, as a revision lists them.
fn container_images(api: &Api, ctx: &Ctx, task_definition: &str) -> Vec<ContainerImage> {
    task_definitions::resolve(api, ctx, task_definition)
        .map(|(_, found)| found.value.task_definition.container_definitions)
        .unwrap_or_default()
        .unwrap_or_default()
        .into_iter()
        .map(|c| ContainerImage {
            container_name: c.name,
            image: c.image,
            image_digest: None,
        })
        .collect()
}

/// `Service.currentServiceDeployment`: the newest service deployment.
pub fn current_arn(service: &Service, state: &ServiceState) -> Option<String> {
    let h = state.history.first()?;
    let arn = Arn::parse(service.service_arn.as_deref()?)?;
    let (cluster, name) = arn.resource.split_once('/')?;
    Some(Scope::new(arn.region, arn.account).service_deployment(cluster, name, &h.id))
}

/// The service deployments a service shows: none once it is deleted.
fn history(record: &ServiceRecord) -> &[ServiceDeploymentRecord] {
    if record.service.status.as_deref() == Some(services::ACTIVE) {
        &record.state.history
    } else {
        &[]
    }
}

fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn millis(at: Option<i64>) -> Option<Timestamp> {
    at.map(Timestamp::from_millis)
}

/// Where a service's deployments and revisions live, for their ARNs.
struct Owner<'a> {
    scope: &'a Scope,
    cluster: &'a str,
    service: &'a str,
}

impl Owner<'_> {
    fn deployment_arn(&self, id: &str) -> String {
        self.scope
            .service_deployment(self.cluster, self.service, id)
    }

    fn revision_arn(&self, id: &str) -> String {
        self.scope.service_revision(self.cluster, self.service, id)
    }

    fn summary(&self, c: &RevisionCounts) -> ServiceRevisionSummary {
        ServiceRevisionSummary {
            arn: Some(self.revision_arn(&c.revision)),
            requested_task_count: count(c.requested),
            running_task_count: count(c.running),
            pending_task_count: count(c.pending),
            ..ServiceRevisionSummary::default()
        }
    }

    fn brief(&self, record: &ServiceRecord, h: &ServiceDeploymentRecord) -> ServiceDeploymentBrief {
        ServiceDeploymentBrief {
            service_deployment_arn: Some(self.deployment_arn(&h.id)),
            service_arn: record.service.service_arn.clone(),
            cluster_arn: record.service.cluster_arn.clone(),
            created_at: Some(Timestamp::from_millis(h.created_at_millis)),
            started_at: millis(h.started_at_millis),
            finished_at: millis(h.finished_at_millis),
            target_service_revision_arn: Some(self.revision_arn(&h.target.revision)),
            status: Some(h.status),
            status_reason: h.status_reason.clone(),
        }
    }

    fn deployment(&self, record: &ServiceRecord, h: &ServiceDeploymentRecord) -> ServiceDeployment {
        let configuration = record
            .revisions
            .iter()
            .find(|r| r.id == h.target.revision)
            .and_then(|r| r.deployment_configuration.clone());
        ServiceDeployment {
            service_deployment_arn: Some(self.deployment_arn(&h.id)),
            service_arn: record.service.service_arn.clone(),
            cluster_arn: record.service.cluster_arn.clone(),
            created_at: Some(Timestamp::from_millis(h.created_at_millis)),
            started_at: millis(h.started_at_millis),
            finished_at: millis(h.finished_at_millis),
            stopped_at: millis(h.stopped_at_millis),
            updated_at: Some(Timestamp::from_millis(h.updated_at_millis)),
            source_service_revisions: Some(h.sources.iter().map(|s| self.summary(s)).collect()),
            target_service_revision: Some(self.summary(&h.target)),
            status: Some(h.status),
            status_reason: h.status_reason.clone(),
            deployment_configuration: configuration,
            rollback: h.rollback.as_ref().map(|r| Rollback {
                reason: Some(r.reason.clone()),
                started_at: Some(Timestamp::from_millis(r.started_at_millis)),
                service_revision_arn: Some(self.revision_arn(&r.revision)),
            }),
            deployment_circuit_breaker: h.circuit_breaker.map(|b| {
                ServiceDeploymentCircuitBreaker {
                    status: Some(b.status),
                    failure_count: count(b.failure_count),
                    threshold: count(b.threshold),
                }
            }),
            // Berth watches no CloudWatch alarms.
            alarms: Some(ServiceDeploymentAlarms {
                status: Some(ServiceDeploymentRollbackMonitorsStatus::Disabled),
                ..ServiceDeploymentAlarms::default()
            }),
            ..ServiceDeployment::default()
        }
    }
}

pub async fn list(
    api: &Api,
    ctx: &Ctx,
    req: ListServiceDeploymentsRequest,
) -> Result<ListServiceDeploymentsResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    let name = services::name_of(&req.service).ok_or_else(services::not_found)?;
    let statuses = req.status.unwrap_or_default();
    let window = req.created_at.unwrap_or_default();
    let after = window.after.map_or(i64::MIN, Timestamp::millis);
    let before = window.before.map_or(i64::MAX, Timestamp::millis);
    if after > before {
        return Err(EcsError::invalid_parameter(
            "createdAt.after must not be later than createdAt.before.",
        ));
    }
    let owner = Owner {
        scope: &ctx.scope,
        cluster: &cluster,
        service: name,
    };
    let items = api
        .cache
        .peek::<ServiceRecord, _>(&services::service_key(ctx, &cluster, name), |record| {
            history(record)
                .iter()
                .filter(|h| statuses.is_empty() || statuses.contains(&h.status))
                .filter(|h| (after..=before).contains(&h.created_at_millis))
                .map(|h| {
                    // Newest first: the key orders by creation time, then id.
                    let key = format!("{:020}/{}", h.created_at_millis.max(0), h.id);
                    (key, owner.brief(record, h))
                })
                .collect::<Vec<_>>()
        })
        .ok_or_else(services::not_found)?;
    let (page, next_token) = paginate_ordered(
        items,
        req.max_results,
        req.next_token.as_deref(),
        20,
        100,
        true,
    )?;
    Ok(ListServiceDeploymentsResponse {
        service_deployments: Some(page),
        next_token,
    })
}

/// The ARNs to describe, each once, in the order given.
fn distinct(arns: &[String], what: &str) -> Result<Vec<String>, EcsError> {
    if arns.is_empty() || arns.len() > MAX_ARNS {
        return Err(EcsError::invalid_parameter(format!(
            "{what}Arns must list between 1 and {MAX_ARNS} ARNs, got {}.",
            arns.len()
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(arns.len());
    for arn in arns {
        if !out.contains(arn) {
            out.push(arn.clone());
        }
    }
    Ok(out)
}

/// The cluster, service and id of a `kind` ARN (`service-deployment` or
/// `service-revision`); `None` when it names another region or account.
fn parse<'a>(ctx: &Ctx, arn: &'a str, kind: &str) -> Result<Option<[&'a str; 3]>, EcsError> {
    let invalid = || EcsError::invalid_parameter(format!("Invalid {kind} ARN: {arn}"));
    let parsed = Arn::parse(arn)
        .filter(|a| a.resource_type == kind)
        .ok_or_else(invalid)?;
    let parts: Vec<&str> = parsed.resource.split('/').collect();
    let [cluster, service, id] = parts[..] else {
        return Err(invalid());
    };
    if [cluster, service, id].iter().any(|p| p.is_empty()) {
        return Err(invalid());
    }
    let here = parsed.region == ctx.scope.region && parsed.account == ctx.scope.account;
    Ok(here.then_some([cluster, service, id]))
}

/// Looks each ARN up in its service's record with `find`; what is not
/// found is a MISSING failure, as ECS reports it.
fn describe_each<T>(
    api: &Api,
    ctx: &Ctx,
    arns: &[String],
    kind: &str,
    find: impl Fn(&Owner<'_>, &ServiceRecord, &str) -> Option<T>,
) -> Result<(Vec<T>, Vec<berth_types::Failure>), EcsError> {
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for arn in arns {
        let hit = parse(ctx, arn, kind)?.and_then(|[cluster, service, id]| {
            let owner = Owner {
                scope: &ctx.scope,
                cluster,
                service,
            };
            api.cache
                .peek::<ServiceRecord, _>(&services::service_key(ctx, cluster, service), |r| {
                    find(&owner, r, id)
                })
                .flatten()
        });
        match hit {
            Some(item) => found.push(item),
            None => failures.push(failure(arn.clone(), "MISSING")),
        }
    }
    Ok((found, failures))
}

pub async fn describe(
    api: &Api,
    ctx: &Ctx,
    req: DescribeServiceDeploymentsRequest,
) -> Result<DescribeServiceDeploymentsResponse, EcsError> {
    let arns = distinct(&req.service_deployment_arns, "serviceDeployment")?;
    let (deployments, failures) = describe_each(
        api,
        ctx,
        &arns,
        "service-deployment",
        |owner, record, id| {
            history(record)
                .iter()
                .find(|h| h.id == id)
                .map(|h| owner.deployment(record, h))
        },
    )?;
    Ok(DescribeServiceDeploymentsResponse {
        service_deployments: Some(deployments),
        failures: Some(failures),
    })
}

pub async fn describe_revisions(
    api: &Api,
    ctx: &Ctx,
    req: DescribeServiceRevisionsRequest,
) -> Result<DescribeServiceRevisionsResponse, EcsError> {
    let arns = distinct(&req.service_revision_arns, "serviceRevision")?;
    let (revisions, failures) =
        describe_each(api, ctx, &arns, "service-revision", |_, record, id| {
            let active = record.service.status.as_deref() == Some(services::ACTIVE);
            record
                .revisions
                .iter()
                .find(|r| active && r.id == id)
                .map(|r| r.revision.clone())
        })?;
    Ok(DescribeServiceRevisionsResponse {
        service_revisions: Some(revisions),
        failures: Some(failures),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            scope: Scope::new("us-east-1", "000000000000"),
            host: None,
        }
    }

    #[test]
    fn arns_are_checked_and_deduplicated() {
        let ctx = ctx();
        let arn = ctx.scope.service_deployment("prod", "web", "42");
        assert_eq!(
            parse(&ctx, &arn, "service-deployment").unwrap(),
            Some(["prod", "web", "42"])
        );
        let elsewhere = Scope::new("eu-west-1", "000000000000").service_deployment("p", "w", "1");
        assert_eq!(parse(&ctx, &elsewhere, "service-deployment").unwrap(), None);
        for bad in [
            "42",
            "arn:aws:ecs:us-east-1:000000000000:service/prod/web",
            "arn:aws:ecs:us-east-1:000000000000:service-deployment/prod/web",
            "arn:aws:ecs:us-east-1:000000000000:service-deployment/prod/web/1/2",
            "arn:aws:ecs:us-east-1:000000000000:service-deployment/prod//1",
        ] {
            let err = parse(&ctx, bad, "service-deployment").unwrap_err();
            assert!(err.message.contains(bad), "{err}");
        }
        let many: Vec<String> = (0..21).map(|n| n.to_string()).collect();
        assert!(distinct(&many, "serviceDeployment").is_err());
        assert!(distinct(&[], "serviceDeployment").is_err());
        let twice = vec![arn.clone(), arn.clone()];
        assert_eq!(distinct(&twice, "serviceDeployment").unwrap(), [arn]);
    }
}
