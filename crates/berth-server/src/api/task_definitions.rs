//! Task definitions: register (validated by berth-core, revisions that never
//! repeat), describe by family, family:revision or ARN, list, deregister
//! (ACTIVE → INACTIVE) and delete (INACTIVE → DELETE_IN_PROGRESS).

use berth_store::Txn;
use berth_types::arn::Arn;
use berth_types::{
    DeleteTaskDefinitionsRequest, DeleteTaskDefinitionsResponse, DeregisterTaskDefinitionRequest,
    DeregisterTaskDefinitionResponse, DescribeTaskDefinitionRequest,
    DescribeTaskDefinitionResponse, EcsError, Failure, ListTaskDefinitionFamiliesRequest,
    ListTaskDefinitionFamiliesResponse, ListTaskDefinitionsRequest, ListTaskDefinitionsResponse,
    RegisterTaskDefinitionRequest, RegisterTaskDefinitionResponse, SortOrder, Tag, TaskDefinition,
    TaskDefinitionFamilyStatus, TaskDefinitionField, TaskDefinitionStatus, Timestamp,
};

use super::{Api, Ctx, failure, includes, merge_tags, paginate_ordered, validate_tags};
use crate::state::{
    FamilyRecord, MAX_CAS_ATTEMPTS, TaskDefinitionRecord, Versioned, Write, contention, encode,
    guard, key, prefix,
};

fn revision_key(ctx: &Ctx, family: &str, revision: i32) -> String {
    key::<TaskDefinitionRecord>(&ctx.scope, &format!("{family}/{revision:010}"))
}

fn family_revisions_prefix(ctx: &Ctx, family: &str) -> String {
    format!("{}{family}/", prefix::<TaskDefinitionRecord>(&ctx.scope))
}

/// A reference split into family and, when given, revision.
fn parse_reference(reference: &str) -> Option<(&str, Option<i32>)> {
    let body = match Arn::parse(reference) {
        Some(arn) if arn.resource_type == "task-definition" => arn.resource,
        Some(_) => return None,
        None => reference,
    };
    match body.rsplit_once(':') {
        Some((family, revision)) => Some((family, Some(revision.parse().ok()?))),
        None => Some((body, None)),
    }
}

/// Resolves `family` (latest ACTIVE revision), `family:revision` or an ARN.
pub fn resolve(
    api: &Api,
    ctx: &Ctx,
    reference: &str,
) -> Option<(String, Versioned<TaskDefinitionRecord>)> {
    let (family, revision) = parse_reference(reference)?;
    if !berth_types::arn::is_valid_name(family) {
        return None;
    }
    match revision {
        Some(revision) => {
            let key = revision_key(ctx, family, revision);
            api.cache
                .get::<TaskDefinitionRecord>(&key)
                .map(|v| (key, v))
        }
        None => api
            .cache
            .list::<TaskDefinitionRecord>(&family_revisions_prefix(ctx, family))
            .into_iter()
            .rfind(|(_, v)| v.value.task_definition.status == Some(TaskDefinitionStatus::Active)),
    }
}

fn not_found() -> EcsError {
    EcsError::client("Unable to describe task definition.")
}

pub async fn register(
    api: &Api,
    ctx: &Ctx,
    req: RegisterTaskDefinitionRequest,
) -> Result<RegisterTaskDefinitionResponse, EcsError> {
    let validated = berth_core::taskdef::validate(&req)?;
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let family = req.family.clone();
    let template = TaskDefinition {
        status: Some(TaskDefinitionStatus::Active),
        registered_by: Some(ctx.principal()),
        ..validated.task_definition(&req)
    };
    let family_key = key::<FamilyRecord>(&ctx.scope, &family);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let current = api.cache.get::<FamilyRecord>(&family_key);
        let seen = current.as_ref().map_or(0, |v| v.mod_revision);
        let revision = current.map_or(0, |v| v.value.last_revision) + 1;
        let task_definition = TaskDefinition {
            task_definition_arn: Some(ctx.scope.task_definition(&family, revision)),
            revision,
            registered_at: Some(Timestamp::now()),
            ..template.clone()
        };
        let record = TaskDefinitionRecord {
            task_definition,
            tags: tags.clone(),
        };
        let txn = guard(Txn::new(), &family_key, seen)
            .put(
                family_key.clone(),
                encode(&FamilyRecord {
                    last_revision: revision,
                })?,
            )
            .put(revision_key(ctx, &family, revision), encode(&record)?);
        if api.writer.commit(txn).await? {
            return Ok(RegisterTaskDefinitionResponse {
                task_definition: Some(record.task_definition),
                tags: Some(record.tags),
            });
        }
    }
    Err(contention())
}

pub async fn describe(
    api: &Api,
    ctx: &Ctx,
    req: DescribeTaskDefinitionRequest,
) -> Result<DescribeTaskDefinitionResponse, EcsError> {
    let (_, found) = resolve(api, ctx, &req.task_definition).ok_or_else(not_found)?;
    let with_tags = includes(req.include.as_ref(), &TaskDefinitionField::Tags);
    Ok(DescribeTaskDefinitionResponse {
        task_definition: Some(found.value.task_definition),
        tags: with_tags.then_some(found.value.tags),
    })
}

pub async fn list(
    api: &Api,
    ctx: &Ctx,
    req: ListTaskDefinitionsRequest,
) -> Result<ListTaskDefinitionsResponse, EcsError> {
    let status = req.status.unwrap_or(TaskDefinitionStatus::Active);
    // ECS matches familyPrefix against the whole family name here (unlike
    // ListTaskDefinitionFamilies, where it is a prefix).
    let scan_prefix = match &req.family_prefix {
        Some(family) => family_revisions_prefix(ctx, family),
        None => prefix::<TaskDefinitionRecord>(&ctx.scope),
    };
    let items: Vec<(String, String)> = api
        .cache
        .list::<TaskDefinitionRecord>(&scan_prefix)
        .into_iter()
        .filter(|(_, v)| v.value.task_definition.status == Some(status))
        .map(|(k, v)| {
            (
                k,
                v.value
                    .task_definition
                    .task_definition_arn
                    .unwrap_or_default(),
            )
        })
        .collect();
    let descending = req.sort == Some(SortOrder::Desc);
    let (arns, next_token) = paginate_ordered(
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
        100,
        descending,
    )?;
    Ok(ListTaskDefinitionsResponse {
        task_definition_arns: Some(arns),
        next_token,
    })
}

pub async fn list_families(
    api: &Api,
    ctx: &Ctx,
    req: ListTaskDefinitionFamiliesRequest,
) -> Result<ListTaskDefinitionFamiliesResponse, EcsError> {
    let status = req.status.unwrap_or(TaskDefinitionFamilyStatus::All);
    let family_prefix = req.family_prefix.clone().unwrap_or_default();
    let families = api
        .cache
        .list::<FamilyRecord>(&(prefix::<FamilyRecord>(&ctx.scope) + &family_prefix));
    let mut items = Vec::new();
    for (key, _) in families {
        let family = key.rsplit('/').next().unwrap_or_default().to_owned();
        let has_active = api
            .cache
            .count::<TaskDefinitionRecord>(&family_revisions_prefix(ctx, &family), |r| {
                r.task_definition.status == Some(TaskDefinitionStatus::Active)
            })
            > 0;
        let wanted = match status {
            TaskDefinitionFamilyStatus::All => true,
            TaskDefinitionFamilyStatus::Active => has_active,
            TaskDefinitionFamilyStatus::Inactive => !has_active,
        };
        if wanted {
            items.push((key, family));
        }
    }
    let (families, next_token) = paginate_ordered(
        items,
        req.max_results,
        req.next_token.as_deref(),
        100,
        100,
        false,
    )?;
    Ok(ListTaskDefinitionFamiliesResponse {
        families: Some(families),
        next_token,
    })
}

/// A reference that must carry a revision (deregister, delete).
fn resolve_revision(
    api: &Api,
    ctx: &Ctx,
    reference: &str,
) -> Result<(String, Versioned<TaskDefinitionRecord>), EcsError> {
    match parse_reference(reference) {
        Some((_, Some(_))) => {}
        _ => {
            return Err(EcsError::client(format!(
                "Invalid revision number in task definition '{reference}': use family:revision or a full ARN."
            )));
        }
    }
    resolve(api, ctx, reference)
        .ok_or_else(|| EcsError::client("The specified task definition does not exist."))
}

pub async fn deregister(
    api: &Api,
    ctx: &Ctx,
    req: DeregisterTaskDefinitionRequest,
) -> Result<DeregisterTaskDefinitionResponse, EcsError> {
    let (key, _) = resolve_revision(api, ctx, &req.task_definition)?;
    let record = api
        .writer
        .update::<TaskDefinitionRecord, TaskDefinitionRecord>(&key, |current| {
            let mut record = current
                .ok_or_else(|| EcsError::client("The specified task definition does not exist."))?;
            let td = &mut record.task_definition;
            match td.status {
                Some(TaskDefinitionStatus::Active) => {
                    td.status = Some(TaskDefinitionStatus::Inactive);
                    td.deregistered_at = Some(Timestamp::now());
                    Ok((Some(Write::Put(record.clone())), record))
                }
                // Deregistering twice is harmless and answers with the definition.
                Some(TaskDefinitionStatus::Inactive) => Ok((None, record)),
                _ => Err(EcsError::client(
                    "The specified task definition is being deleted.",
                )),
            }
        })
        .await?;
    Ok(DeregisterTaskDefinitionResponse {
        task_definition: Some(record.task_definition),
    })
}

pub async fn delete(
    api: &Api,
    ctx: &Ctx,
    req: DeleteTaskDefinitionsRequest,
) -> Result<DeleteTaskDefinitionsResponse, EcsError> {
    if req.task_definitions.is_empty() || req.task_definitions.len() > 10 {
        return Err(EcsError::invalid_parameter(
            "taskDefinitions must list between 1 and 10 task definitions.",
        ));
    }
    let mut deleted = Vec::new();
    let mut failures: Vec<Failure> = Vec::new();
    for reference in &req.task_definitions {
        let (key, found) = match resolve_revision(api, ctx, reference) {
            Ok(found) => found,
            Err(err) => {
                failures.push(failure(reference.clone(), &err.message));
                continue;
            }
        };
        let arn = found
            .value
            .task_definition
            .task_definition_arn
            .clone()
            .unwrap_or_default();
        let outcome = api
            .writer
            .update::<TaskDefinitionRecord, Result<TaskDefinition, &'static str>>(&key, |current| {
                let Some(mut record) = current else {
                    return Ok((None, Err("The specified task definition does not exist.")));
                };
                let td = &mut record.task_definition;
                match td.status {
                    Some(TaskDefinitionStatus::Active) => Ok((
                        None,
                        Err("The specified task definition is still in ACTIVE status. Please deregister the target and try again."),
                    )),
                    Some(TaskDefinitionStatus::Inactive) => {
                        td.status = Some(TaskDefinitionStatus::DeleteInProgress);
                        td.delete_requested_at = Some(Timestamp::now());
                        let td = td.clone();
                        Ok((Some(Write::Put(record)), Ok(td)))
                    }
                    _ => Ok((None, Ok(td.clone()))),
                }
            })
            .await?;
        match outcome {
            Ok(td) => deleted.push(td),
            Err(reason) => failures.push(failure(arn, reason)),
        }
    }
    Ok(DeleteTaskDefinitionsResponse {
        task_definitions: Some(deleted),
        failures: Some(failures),
    })
}

/// Adds and removes tags on one revision (TagResource/UntagResource).
pub async fn retag(
    api: &Api,
    ctx: &Ctx,
    reference: &str,
    add: &[Tag],
    remove: &[String],
) -> Result<(), EcsError> {
    let (key, _) = resolve_revision(api, ctx, reference).map_err(|_| super::tags::not_found())?;
    api.writer
        .update::<TaskDefinitionRecord, ()>(&key, |current| {
            let mut record = current.ok_or_else(super::tags::not_found)?;
            record
                .tags
                .retain(|t| !t.key.as_ref().is_some_and(|k| remove.contains(k)));
            merge_tags(&mut record.tags, add);
            validate_tags(&record.tags)?;
            Ok((Some(Write::Put(record)), ()))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(parse_reference("web"), Some(("web", None)));
        assert_eq!(parse_reference("web:3"), Some(("web", Some(3))));
        assert_eq!(
            parse_reference("arn:aws:ecs:us-east-1:000000000000:task-definition/web:12"),
            Some(("web", Some(12)))
        );
        assert_eq!(parse_reference("web:x"), None);
        assert_eq!(
            parse_reference("arn:aws:ecs:us-east-1:000000000000:cluster/web"),
            None
        );
    }
}
