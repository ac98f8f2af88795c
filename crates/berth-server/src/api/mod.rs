//! The ECS operations: one module per resource, one table that routes an
//! operation name to its handler, and the helpers the handlers share
//! (resolving names or ARNs, pagination, tags, failures).

use std::future::Future;
use std::sync::Arc;

use berth_store::{Store, StoreError};
use berth_types::arn::{Arn, Scope};
use berth_types::{EcsError, ErrorCode, Failure, Operation, Tag};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::decode;
use crate::state::{Cache, Writer};

mod account_settings;
mod agent;
mod attributes;
mod capacity_providers;
pub(crate) mod clusters;
pub(crate) mod container_instances;
pub(crate) mod service_deployments;
pub(crate) mod services;
mod tags;
mod task_definitions;
pub(crate) mod tasks;

/// Everything a handler needs: the cache for reads, the writer for writes.
pub struct Api {
    pub cache: Arc<Cache>,
    pub writer: Writer,
    pub hub: crate::hub::Hub,
    pub lanes: crate::placement::Lanes,
    account: String,
    default_region: String,
}

impl Api {
    pub async fn start(
        store: Arc<dyn Store>,
        account: &str,
        default_region: &str,
    ) -> Result<Arc<Self>, StoreError> {
        let cache = Cache::start(Arc::clone(&store)).await?;
        let writer = Writer::new(store, Arc::clone(&cache));
        Ok(Arc::new(Self {
            lanes: crate::placement::Lanes::new(Arc::clone(&cache), writer.clone()),
            writer,
            hub: crate::hub::Hub::default(),
            cache,
            account: account.to_owned(),
            default_region: default_region.to_owned(),
        }))
    }
}

/// Per-request facts: where the caller's resources live, and who calls.
pub struct Ctx {
    pub scope: Scope,
    /// The `Host` the request was sent to, to tell agents where to connect.
    pub host: Option<String>,
}

impl Ctx {
    pub fn new(api: &Api, region: Option<String>) -> Self {
        Self {
            scope: Scope::new(
                region.unwrap_or_else(|| api.default_region.clone()),
                api.account.clone(),
            ),
            host: None,
        }
    }

    /// The IAM principal requests are attributed to (`registeredBy`, account settings).
    pub fn principal(&self) -> String {
        format!(
            "arn:{}:iam::{}:root",
            self.scope.partition(),
            self.scope.account
        )
    }
}

macro_rules! operations {
    ($($op:ident => $handler:path,)+) => {
        /// Whether Berth implements the operation (drives docs/api-coverage.md).
        pub fn is_implemented(name: &str) -> bool {
            matches!(name, $(stringify!($op))|+)
        }

        pub async fn dispatch(
            api: &Api,
            ctx: &Ctx,
            operation: Operation,
            body: &[u8],
        ) -> Result<Bytes, EcsError> {
            match operation {
                $(Operation::$op => run(body, |req| $handler(api, ctx, req)).await,)+
                other => Err(EcsError::new(
                    ErrorCode::UnsupportedFeatureException,
                    format!("The operation {} is not implemented by Berth yet.", other.name()),
                )),
            }
        }
    };
}

operations! {
    CreateCluster => clusters::create,
    DescribeClusters => clusters::describe,
    ListClusters => clusters::list,
    UpdateCluster => clusters::update,
    UpdateClusterSettings => clusters::update_settings,
    PutClusterCapacityProviders => clusters::put_capacity_providers,
    DeleteCluster => clusters::delete,
    RegisterTaskDefinition => task_definitions::register,
    DescribeTaskDefinition => task_definitions::describe,
    ListTaskDefinitions => task_definitions::list,
    ListTaskDefinitionFamilies => task_definitions::list_families,
    DeregisterTaskDefinition => task_definitions::deregister,
    DeleteTaskDefinitions => task_definitions::delete,
    RegisterContainerInstance => container_instances::register,
    DeregisterContainerInstance => container_instances::deregister,
    DescribeContainerInstances => container_instances::describe,
    ListContainerInstances => container_instances::list,
    UpdateContainerInstancesState => container_instances::update_state,
    PutAttributes => attributes::put,
    DeleteAttributes => attributes::delete,
    ListAttributes => attributes::list,
    TagResource => tags::tag,
    UntagResource => tags::untag,
    ListTagsForResource => tags::list,
    ListAccountSettings => account_settings::list,
    PutAccountSetting => account_settings::put,
    PutAccountSettingDefault => account_settings::put_default,
    DeleteAccountSetting => account_settings::delete,
    CreateCapacityProvider => capacity_providers::create,
    DescribeCapacityProviders => capacity_providers::describe,
    UpdateCapacityProvider => capacity_providers::update,
    DeleteCapacityProvider => capacity_providers::delete,
    RunTask => tasks::run,
    StartTask => tasks::start,
    StopTask => tasks::stop,
    DescribeTasks => tasks::describe,
    ListTasks => tasks::list,
    CreateService => services::create,
    DescribeServices => services::describe,
    ListServices => services::list,
    ListServicesByNamespace => services::list_by_namespace,
    UpdateService => services::update,
    DeleteService => services::delete,
    ListServiceDeployments => service_deployments::list,
    DescribeServiceDeployments => service_deployments::describe,
    DescribeServiceRevisions => service_deployments::describe_revisions,
    DiscoverPollEndpoint => agent::discover_poll_endpoint,
    SubmitTaskStateChange => agent::submit_task_state_change,
    SubmitContainerStateChange => agent::submit_container_state_change,
}

async fn run<Req, Resp, Fut>(
    body: &[u8],
    handler: impl FnOnce(Req) -> Fut,
) -> Result<Bytes, EcsError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    Fut: Future<Output = Result<Resp, EcsError>>,
{
    let request = decode::<Req>(body)?;
    let response = handler(request).await?;
    serde_json::to_vec(&response)
        .map(Bytes::from)
        .map_err(|e| EcsError::server(format!("cannot encode the response: {e}")))
}

/// Resolves a cluster reference (name or ARN; absent means `default`) to its name.
pub fn cluster_name(ctx: &Ctx, reference: Option<&str>) -> Result<String, EcsError> {
    let reference = reference.unwrap_or("default");
    let name = match Arn::parse(reference) {
        Some(arn) if arn.resource_type == "cluster" => {
            if arn.region != ctx.scope.region || arn.account != ctx.scope.account {
                return Err(EcsError::cluster_not_found());
            }
            arn.resource
        }
        Some(_) => {
            return Err(EcsError::invalid_parameter(format!(
                "Invalid cluster ARN: {reference}"
            )));
        }
        None => reference,
    };
    if !berth_types::arn::is_valid_name(name) {
        return Err(EcsError::cluster_not_found());
    }
    Ok(name.to_owned())
}

/// The id part of a reference that may be an id or an ARN of `resource_type`
/// (`container-instance/cluster/id` or the older `container-instance/id`).
pub fn resource_id<'a>(reference: &'a str, resource_type: &str) -> Option<&'a str> {
    match Arn::parse(reference) {
        Some(arn) if arn.resource_type == resource_type => Some(arn.last_segment()),
        Some(_) => None,
        None => Some(reference),
    }
}

/// A page of `items` (in ascending key order) after `next_token`.
pub fn paginate<T>(
    items: Vec<(String, T)>,
    max_results: Option<i32>,
    next_token: Option<&str>,
    default_page: i32,
    max_page: i32,
) -> Result<(Vec<T>, Option<String>), EcsError> {
    paginate_ordered(
        items,
        max_results,
        next_token,
        default_page,
        max_page,
        false,
    )
}

/// A page of `items`, in key order (descending when `descending`), after
/// `next_token`. Tokens are the hex of the last returned key, so pages stay
/// stable while items are added or removed.
pub fn paginate_ordered<T>(
    mut items: Vec<(String, T)>,
    max_results: Option<i32>,
    next_token: Option<&str>,
    default_page: i32,
    max_page: i32,
    descending: bool,
) -> Result<(Vec<T>, Option<String>), EcsError> {
    let page = match max_results {
        None => default_page,
        Some(n) if (1..=max_page).contains(&n) => n,
        Some(n) => {
            return Err(EcsError::invalid_parameter(format!(
                "maxResults must be between 1 and {max_page}, got {n}."
            )));
        }
    };
    let after =
        match next_token {
            None | Some("") => None,
            Some(token) => Some(decode_token(token).ok_or_else(|| {
                EcsError::invalid_parameter("The nextToken provided is not valid.")
            })?),
        };
    // Tokens compare keys, so the order must be the keys' own.
    items.sort_by(|a, b| {
        if descending {
            b.0.cmp(&a.0)
        } else {
            a.0.cmp(&b.0)
        }
    });
    let page = usize::try_from(page).unwrap_or(1);
    let is_after = |key: &str| match &after {
        None => true,
        Some(a) if descending => key < a.as_str(),
        Some(a) => key > a.as_str(),
    };
    let mut rest = items
        .into_iter()
        .filter(|(key, _)| is_after(key))
        .peekable();
    let mut out = Vec::with_capacity(page);
    let mut last_key = None;
    while out.len() < page {
        let Some((key, item)) = rest.next() else {
            break;
        };
        last_key = Some(key);
        out.push(item);
    }
    let token = if rest.peek().is_some() {
        last_key.map(|k| encode_token(&k))
    } else {
        None
    };
    Ok((out, token))
}

fn encode_token(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) || token.len() > 4096 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

pub fn failure(arn: impl Into<String>, reason: &str) -> Failure {
    Failure {
        arn: Some(arn.into()),
        reason: Some(reason.to_owned()),
        detail: None,
    }
}

/// Checks tags as ECS does: at most 50, keys 1–128 and values at most 256
/// characters, and no `aws:` prefix, which AWS reserves.
pub fn validate_tags(tags: &[Tag]) -> Result<(), EcsError> {
    if tags.len() > 50 {
        return Err(EcsError::invalid_parameter(
            "Too many tags: a resource can have at most 50 tags.",
        ));
    }
    for tag in tags {
        let key = tag.key.as_deref().unwrap_or("");
        let value = tag.value.as_deref().unwrap_or("");
        if key.is_empty() || key.chars().count() > 128 {
            return Err(EcsError::invalid_parameter(
                "Tag keys must be between 1 and 128 characters.",
            ));
        }
        if value.chars().count() > 256 {
            return Err(EcsError::invalid_parameter(format!(
                "The value of tag '{key}' must be at most 256 characters."
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(EcsError::invalid_parameter(
                "Tag keys beginning with 'aws:' are reserved for AWS use.",
            ));
        }
    }
    Ok(())
}

/// Applies `new` over `existing`: a tag with the same key is replaced.
pub fn merge_tags(existing: &mut Vec<Tag>, new: &[Tag]) {
    for tag in new {
        existing.retain(|t| t.key != tag.key);
        existing.push(tag.clone());
    }
}

/// Whether an `include` list asks for `wanted`.
pub fn includes<T: PartialEq>(include: Option<&Vec<T>>, wanted: &T) -> bool {
    include.is_some_and(|list| list.contains(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_walks_every_item_once() {
        let items: Vec<(String, i32)> = (0..25).map(|i| (format!("k{i:03}"), i)).collect();
        let mut token = None;
        let mut seen = Vec::new();
        loop {
            let (page, next) =
                paginate(items.clone(), Some(10), token.as_deref(), 100, 100).unwrap();
            assert!(page.len() <= 10);
            seen.extend(page);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
        assert!(paginate(items.clone(), Some(0), None, 100, 100).is_err());
        assert!(paginate(items.clone(), Some(101), None, 100, 100).is_err());
        assert!(paginate(items, None, Some("zz"), 100, 100).is_err());
    }
}
