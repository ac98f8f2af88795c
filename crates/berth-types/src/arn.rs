//! Long-format ECS ARNs: building them, and recognising a name, id or ARN
//! wherever ECS accepts either.

/// Where resources live: every ARN carries the partition, region and account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub region: String,
    pub account: String,
}

impl Scope {
    pub fn new(region: impl Into<String>, account: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            account: account.into(),
        }
    }

    /// The AWS partition of the region, as ARNs spell it.
    pub fn partition(&self) -> &'static str {
        let r = self.region.as_str();
        if r.starts_with("cn-") {
            "aws-cn"
        } else if r.starts_with("us-gov-") {
            "aws-us-gov"
        } else if r.starts_with("us-isob-") {
            "aws-iso-b"
        } else if r.starts_with("us-iso-") {
            "aws-iso"
        } else {
            "aws"
        }
    }

    fn prefix(&self) -> String {
        format!(
            "arn:{}:ecs:{}:{}",
            self.partition(),
            self.region,
            self.account
        )
    }
    pub fn cluster(&self, name: &str) -> String {
        format!("{}:cluster/{name}", self.prefix())
    }
    pub fn task_definition(&self, family: &str, revision: i32) -> String {
        format!("{}:task-definition/{family}:{revision}", self.prefix())
    }
    pub fn container_instance(&self, cluster: &str, id: &str) -> String {
        format!("{}:container-instance/{cluster}/{id}", self.prefix())
    }
    pub fn task(&self, cluster: &str, id: &str) -> String {
        format!("{}:task/{cluster}/{id}", self.prefix())
    }
    pub fn container(&self, cluster: &str, task_id: &str, id: &str) -> String {
        format!("{}:container/{cluster}/{task_id}/{id}", self.prefix())
    }
    pub fn service(&self, cluster: &str, name: &str) -> String {
        format!("{}:service/{cluster}/{name}", self.prefix())
    }
    pub fn service_deployment(&self, cluster: &str, service: &str, id: &str) -> String {
        format!(
            "{}:service-deployment/{cluster}/{service}/{id}",
            self.prefix()
        )
    }
    pub fn service_revision(&self, cluster: &str, service: &str, id: &str) -> String {
        format!(
            "{}:service-revision/{cluster}/{service}/{id}",
            self.prefix()
        )
    }
    pub fn capacity_provider(&self, name: &str) -> String {
        format!("{}:capacity-provider/{name}", self.prefix())
    }
}

/// A parsed ECS ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub region: &'a str,
    pub account: &'a str,
    /// `cluster`, `task-definition`, `container-instance`, …
    pub resource_type: &'a str,
    /// Everything after the first `/` (for task definitions, `family:revision`).
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    pub fn parse(s: &'a str) -> Option<Self> {
        let mut parts = s.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let _partition = parts.next()?;
        if parts.next()? != "ecs" {
            return None;
        }
        let region = parts.next()?;
        let account = parts.next()?;
        let rest = parts.next()?;
        let (resource_type, resource) = rest.split_once('/')?;
        if resource.is_empty() {
            return None;
        }
        Some(Self {
            region,
            account,
            resource_type,
            resource,
        })
    }

    /// The last path segment: a cluster name, a task id, a container instance id.
    pub fn last_segment(&self) -> &'a str {
        self.resource.rsplit('/').next().unwrap_or(self.resource)
    }
}

/// Whether `s` is a valid ECS resource name: 1–255 of `[A-Za-z0-9_-]`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh 32-hex-digit id, the form ECS uses for tasks and container instances.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses() {
        let scope = Scope::new("us-east-1", "000000000000");
        let arn = scope.container_instance("prod", "abc");
        assert_eq!(
            arn,
            "arn:aws:ecs:us-east-1:000000000000:container-instance/prod/abc"
        );
        let parsed = Arn::parse(&arn).unwrap();
        assert_eq!(parsed.resource_type, "container-instance");
        assert_eq!(parsed.last_segment(), "abc");
        let td_arn = scope.task_definition("web", 3);
        let td = Arn::parse(&td_arn).unwrap();
        assert_eq!(td.resource, "web:3");
        let revision = scope.service_revision("prod", "web", "9223370301165174807");
        assert_eq!(
            revision,
            "arn:aws:ecs:us-east-1:000000000000:service-revision/prod/web/9223370301165174807"
        );
        let parsed = Arn::parse(&revision).unwrap();
        assert_eq!(parsed.resource_type, "service-revision");
        assert_eq!(parsed.resource, "prod/web/9223370301165174807");
        assert!(
            scope
                .service_deployment("prod", "web", "1")
                .ends_with(":service-deployment/prod/web/1")
        );
        assert!(Arn::parse("web").is_none());
        assert!(Arn::parse("arn:aws:ecs:r:a:cluster/").is_none());
    }

    #[test]
    fn partitions_follow_the_region() {
        assert!(
            Scope::new("cn-north-1", "1")
                .cluster("c")
                .starts_with("arn:aws-cn:ecs:cn-north-1:")
        );
        assert!(
            Scope::new("us-gov-west-1", "1")
                .cluster("c")
                .starts_with("arn:aws-us-gov:")
        );
        assert!(
            Scope::new("eu-west-1", "1")
                .cluster("c")
                .starts_with("arn:aws:")
        );
    }

    #[test]
    fn ids_are_32_hex_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
