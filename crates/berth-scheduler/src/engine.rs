//! Placement engine: picks a container instance for each of N tasks.
//!
//! Owns ECS's evaluation order (ecs-semantics §3.1): hard filters (status,
//! agent, required attributes, CPU, memory, GPU, TCP/UDP ports), then
//! constraints (`distinctInstance`, `memberOf`), then strategies applied in
//! the order given, each narrowing the candidate set to its best ties; a
//! seeded RNG breaks the remaining ties so runs are reproducible.
//!
//! The snapshot is updated after every placement (resources, ports, group
//! counts) so later tasks of the same request see earlier ones. When nothing
//! fits, the failure names the *closest* instance: the one that got furthest
//! through the filter order, and the reason it stopped there.
//!
//! Two implementations give identical answers for the same seed:
//! [`place_reference`] scans every instance per task (the oracle), and
//! [`place`] builds the crate's placement index (module `view`) for the
//! request and answers each task from it when the strategy list has the
//! shape that index handles (`[spread(attribute)?, binpack|spread(instanceId)
//! ×≤2, random?]`); other strategy lists fall back to the scan.
//! [`crate::placer::Placer`] keeps those indexes across calls.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use thiserror::Error;

use crate::cql::{self, Expr, InstanceView, ParseError};
use crate::view::{Plan, View};

/// Most constraints ECS accepts on one request.
pub const MAX_CONSTRAINTS: usize = 10;
/// Most strategies ECS accepts on one request.
pub const MAX_STRATEGIES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    Active,
    Draining,
    Inactive,
}

/// One container instance in the snapshot.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Container instance ARN or id; reported in failures.
    pub id: String,
    pub status: InstanceStatus,
    pub agent_connected: bool,
    pub agent_version: Option<String>,
    pub ec2_instance_id: Option<String>,
    pub registered_at_millis: i64,
    pub remaining_cpu: i64,
    pub remaining_memory: i64,
    pub remaining_gpu: u32,
    pub used_tcp_ports: BTreeSet<u16>,
    pub used_udp_ports: BTreeSet<u16>,
    /// Shared strings: thousands of hosts carry the same names and most of
    /// the same values.
    pub attributes: BTreeMap<Arc<str>, Arc<str>>,
    /// Tasks per task group (`family:x`, `service:y`) on this instance.
    pub group_counts: BTreeMap<String, u32>,
    pub running_tasks_count: u64,
}

impl Instance {
    /// An ACTIVE, connected instance with the given resources and nothing else.
    pub fn new(id: impl Into<String>, cpu: i64, memory: i64) -> Self {
        Instance {
            id: id.into(),
            status: InstanceStatus::Active,
            agent_connected: true,
            agent_version: None,
            ec2_instance_id: None,
            registered_at_millis: 0,
            remaining_cpu: cpu,
            remaining_memory: memory,
            remaining_gpu: 0,
            used_tcp_ports: BTreeSet::new(),
            used_udp_ports: BTreeSet::new(),
            attributes: BTreeMap::new(),
            group_counts: BTreeMap::new(),
            running_tasks_count: 0,
        }
    }

    /// Builder helper: sets an attribute.
    pub fn with_attribute(mut self, k: impl Into<Arc<str>>, v: impl Into<Arc<str>>) -> Self {
        self.attributes.insert(k.into(), v.into());
        self
    }
}

impl InstanceView for Instance {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(|v| &**v)
    }
    fn agent_connected(&self) -> bool {
        self.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.agent_version.as_deref()
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.ec2_instance_id.as_deref()
    }
    fn registered_at_millis(&self) -> i64 {
        self.registered_at_millis
    }
    fn running_tasks_count(&self) -> u64 {
        self.running_tasks_count
    }
    fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.group_counts
            .iter()
            .any(|(g, &n)| n > 0 && f(g.as_str()))
    }
}

/// Placement constraint as accepted from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    DistinctInstance,
    MemberOf(Expr),
}

impl Constraint {
    /// Builds a constraint from the API's `{type, expression}`.
    pub fn from_api(kind: &str, expression: Option<&str>) -> Result<Self, RequestError> {
        match (kind, expression) {
            ("distinctInstance", None) => Ok(Constraint::DistinctInstance),
            ("distinctInstance", Some(_)) => Err(RequestError::ExpressionNotAllowed),
            ("memberOf", Some(e)) => Ok(Constraint::MemberOf(cql::parse(e)?)),
            ("memberOf", None) => Err(RequestError::ExpressionRequired),
            (k, _) => Err(RequestError::UnknownConstraintType(k.to_string())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinpackField {
    Cpu,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadField {
    /// `instanceId` or `host`.
    Instance,
    Attribute(String),
}

/// Placement strategy as accepted from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Binpack(BinpackField),
    Spread(SpreadField),
    Random,
}

impl Strategy {
    /// Builds a strategy from the API's `{type, field}`.
    pub fn from_api(kind: &str, field: Option<&str>) -> Result<Self, RequestError> {
        let bad = || RequestError::InvalidStrategyField {
            kind: kind.to_string(),
            field: field.unwrap_or("").to_string(),
        };
        match kind {
            "random" => Ok(Strategy::Random),
            "binpack" => match field.map(str::to_ascii_lowercase).as_deref() {
                Some("cpu") => Ok(Strategy::Binpack(BinpackField::Cpu)),
                Some("memory") => Ok(Strategy::Binpack(BinpackField::Memory)),
                _ => Err(bad()),
            },
            "spread" => match field {
                Some("instanceId" | "host") => Ok(Strategy::Spread(SpreadField::Instance)),
                Some(f) => match f.strip_prefix("attribute:") {
                    Some(a) if !a.is_empty() => {
                        Ok(Strategy::Spread(SpreadField::Attribute(a.into())))
                    }
                    _ => Err(bad()),
                },
                None => Err(bad()),
            },
            k => Err(RequestError::UnknownStrategyType(k.to_string())),
        }
    }
}

/// What to place.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub cpu: i64,
    pub memory: i64,
    pub gpu: u32,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    pub count: usize,
    /// Attribute names the task definition requires (`requiresAttributes`).
    pub required_attributes: Vec<String>,
    pub constraints: Vec<Constraint>,
    pub strategies: Vec<Strategy>,
    /// Task group (`family:x` or `service:y`); spread and distinctInstance count it.
    pub group: String,
}

/// Invalid request (maps to `InvalidParameterException`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("too many placement constraints: {0} (max {MAX_CONSTRAINTS})")]
    TooManyConstraints(usize),
    #[error("too many placement strategies: {0} (max {MAX_STRATEGIES})")]
    TooManyStrategies(usize),
    #[error("distinctInstance constraint does not take an expression")]
    ExpressionNotAllowed,
    #[error("memberOf constraint requires an expression")]
    ExpressionRequired,
    #[error("unknown placement constraint type `{0}`")]
    UnknownConstraintType(String),
    #[error("unknown placement strategy type `{0}`")]
    UnknownStrategyType(String),
    #[error("invalid field `{field}` for placement strategy `{kind}`")]
    InvalidStrategyField { kind: String, field: String },
    #[error(transparent)]
    Expression(#[from] ParseError),
}

/// ECS `failures[].reason` for placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// No ACTIVE instance at all.
    NoActiveInstances,
    Agent,
    Attribute,
    Cpu,
    Memory,
    Gpu,
    Ports,
    PortsUdp,
    DistinctInstance,
    MemberOf,
}

impl Reason {
    /// The string ECS puts in `failures[].reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoActiveInstances => "NO ACTIVE INSTANCES",
            Reason::Agent => "AGENT",
            Reason::Attribute => "ATTRIBUTE",
            Reason::Cpu => "RESOURCE:CPU",
            Reason::Memory => "RESOURCE:MEMORY",
            Reason::Gpu => "RESOURCE:GPU",
            Reason::Ports => "RESOURCE:PORTS",
            Reason::PortsUdp => "RESOURCE:PORTS_UDP",
            Reason::DistinctInstance => "DistinctInstance placement constraint unsatisfied",
            Reason::MemberOf => "MemberOf placement constraint unsatisfied",
        }
    }

    /// How far through the filter order an instance rejected with this
    /// reason got; the highest stage is the "closest" instance. Constraints
    /// are evaluated in request order, so their stage adds their index.
    fn stage(self, constraint_index: usize) -> usize {
        match self {
            Reason::DistinctInstance | Reason::MemberOf => 100 + constraint_index,
            r => r as usize,
        }
    }
}

/// One task that could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    /// Index into the snapshot of the closest instance, if any.
    pub instance: Option<usize>,
    /// The closest instance's id (the failure `arn`).
    pub instance_id: Option<String>,
}

/// Result of one placement call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Snapshot index for each placed task, in placement order.
    pub placements: Vec<usize>,
    /// One entry per task that could not be placed.
    pub failures: Vec<Failure>,
}

/// Small deterministic RNG (xorshift64*); quality is ample for tie-breaking.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Zero is a fixed point of xorshift; mix the seed so 0 is usable.
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 32).wrapping_mul(n as u64) >> 32) as usize
    }
}

/// Validates limits (≤10 constraints, ≤5 strategies).
pub fn validate(req: &Request) -> Result<(), RequestError> {
    if req.constraints.len() > MAX_CONSTRAINTS {
        return Err(RequestError::TooManyConstraints(req.constraints.len()));
    }
    if req.strategies.len() > MAX_STRATEGIES {
        return Err(RequestError::TooManyStrategies(req.strategies.len()));
    }
    Ok(())
}

/// Runs the filters in ECS order; on rejection returns the reason and its
/// stage (see [`Reason::stage`]).
fn check(inst: &Instance, req: &Request) -> Result<(), (Reason, usize)> {
    check_resources(inst, req).map_err(|r| (r, r.stage(0)))?;
    for (ix, c) in req.constraints.iter().enumerate() {
        let r = match c {
            Constraint::DistinctInstance => {
                if inst.group_counts.get(&req.group).copied().unwrap_or(0) > 0 {
                    Reason::DistinctInstance
                } else {
                    continue;
                }
            }
            Constraint::MemberOf(e) => {
                if e.eval(inst) {
                    continue;
                }
                Reason::MemberOf
            }
        };
        return Err((r, r.stage(ix)));
    }
    Ok(())
}

fn check_resources(inst: &Instance, req: &Request) -> Result<(), Reason> {
    if !inst.agent_connected {
        return Err(Reason::Agent);
    }
    if req
        .required_attributes
        .iter()
        .any(|a| !inst.attributes.contains_key(a.as_str()))
    {
        return Err(Reason::Attribute);
    }
    if inst.remaining_cpu < req.cpu {
        return Err(Reason::Cpu);
    }
    if inst.remaining_memory < req.memory {
        return Err(Reason::Memory);
    }
    if inst.remaining_gpu < req.gpu {
        return Err(Reason::Gpu);
    }
    if req
        .tcp_ports
        .iter()
        .any(|p| inst.used_tcp_ports.contains(p))
    {
        return Err(Reason::Ports);
    }
    if req
        .udp_ports
        .iter()
        .any(|p| inst.used_udp_ports.contains(p))
    {
        return Err(Reason::PortsUdp);
    }
    Ok(())
}

/// True if the request's static ports repeat (the task could never fit).
pub(crate) fn has_duplicate_ports(req: &Request) -> bool {
    let dup = |p: &[u16]| {
        let mut s = BTreeSet::new();
        !p.iter().all(|x| s.insert(*x))
    };
    dup(&req.tcp_ports) || dup(&req.udp_ports)
}

/// Places `req.count` tasks on `instances`, updating the snapshot in place
/// for each placement. Deterministic for a given `seed`.
pub fn place(
    instances: &mut [Instance],
    req: &Request,
    seed: u64,
) -> Result<Outcome, RequestError> {
    validate(req)?;
    let Some(plan) = Plan::for_strategies(&req.strategies) else {
        return place_reference(instances, req, seed);
    };
    let mut out = Outcome::default();
    if req.count == 0 {
        return Ok(out);
    }
    let mut rng = Rng::new(seed);
    let mut view = View::build(instances, req, plan);
    for _ in 0..req.count {
        match view.pick(&mut rng) {
            Ok(pick) => {
                commit(&mut instances[pick], req);
                view.resync(instances, req, pick);
                out.placements.push(pick);
            }
            Err(closest) => out.failures.push(failure(instances, closest)),
        }
    }
    Ok(out)
}

/// The straightforward algorithm: for every task, scan every instance, then
/// narrow by each strategy. Kept public as the oracle the indexed path is
/// tested against; gives identical results for the same seed.
pub fn place_reference(
    instances: &mut [Instance],
    req: &Request,
    seed: u64,
) -> Result<Outcome, RequestError> {
    validate(req)?;
    let mut rng = Rng::new(seed);
    let mut out = Outcome::default();
    let dup_ports = has_duplicate_ports(req);
    let mut candidates: Vec<usize> = Vec::with_capacity(instances.len());
    for _ in 0..req.count {
        candidates.clear();
        // (reason, stage, instance index) of the instance that got furthest.
        let mut closest: Option<(Reason, usize, usize)> = None;
        for (i, inst) in instances.iter().enumerate() {
            if inst.status != InstanceStatus::Active {
                continue;
            }
            match evaluate(inst, req, dup_ports) {
                Ok(()) => candidates.push(i),
                Err((reason, stage)) => {
                    if closest.is_none_or(|(_, s, _)| stage > s) {
                        closest = Some((reason, stage, i));
                    }
                }
            }
        }
        if candidates.is_empty() {
            out.failures.push(failure(
                instances,
                closest.map(|(reason, _, i)| (reason, i)),
            ));
            continue;
        }
        for s in &req.strategies {
            if candidates.len() <= 1 {
                break;
            }
            narrow(instances, req, s, &mut candidates, &mut rng);
        }
        let pick = candidates[rng.below(candidates.len())];
        commit(&mut instances[pick], req);
        out.placements.push(pick);
    }
    Ok(out)
}

/// Keeps only the candidates a strategy ranks best (ties survive).
fn narrow(
    instances: &[Instance],
    req: &Request,
    s: &Strategy,
    candidates: &mut Vec<usize>,
    rng: &mut Rng,
) {
    let group_count =
        |i: &Instance| i64::from(i.group_counts.get(&req.group).copied().unwrap_or(0));
    let keep_min = |candidates: &mut Vec<usize>, key: &dyn Fn(usize) -> i64| {
        let best = candidates.iter().map(|&i| key(i)).min().unwrap_or(0);
        candidates.retain(|&i| key(i) == best);
    };
    match s {
        Strategy::Random => {
            let pick = candidates[rng.below(candidates.len())];
            candidates.clear();
            candidates.push(pick);
        }
        Strategy::Binpack(BinpackField::Cpu) => {
            keep_min(candidates, &|i| instances[i].remaining_cpu);
        }
        Strategy::Binpack(BinpackField::Memory) => {
            keep_min(candidates, &|i| instances[i].remaining_memory);
        }
        Strategy::Spread(SpreadField::Instance) => {
            keep_min(candidates, &|i| group_count(&instances[i]));
        }
        Strategy::Spread(SpreadField::Attribute(name)) => {
            // Count the group's tasks per attribute value over the whole
            // cluster (not just feasible hosts): balance is about where
            // tasks already run. Hosts without the attribute share one bucket.
            let mut per_value: HashMap<Option<&str>, i64> = HashMap::new();
            for inst in instances {
                if inst.status == InstanceStatus::Active || group_count(inst) > 0 {
                    let e = per_value.entry(inst.attribute(name)).or_default();
                    *e = e.saturating_add(group_count(inst));
                }
            }
            keep_min(candidates, &|i| {
                per_value
                    .get(&instances[i].attribute(name))
                    .copied()
                    .unwrap_or(0)
            });
        }
    }
}

/// Reserves one task of `req` on `inst`.
pub(crate) fn commit(inst: &mut Instance, req: &Request) {
    // Saturating: inputs are untrusted and must never panic.
    inst.remaining_cpu = inst.remaining_cpu.saturating_sub(req.cpu);
    inst.remaining_memory = inst.remaining_memory.saturating_sub(req.memory);
    inst.remaining_gpu = inst.remaining_gpu.saturating_sub(req.gpu);
    inst.used_tcp_ports.extend(req.tcp_ports.iter().copied());
    inst.used_udp_ports.extend(req.udp_ports.iter().copied());
    // get_mut first: the group's entry usually exists, and cloning the
    // group name for `entry` would allocate on every placement.
    match inst.group_counts.get_mut(&req.group) {
        Some(n) => *n = n.saturating_add(1),
        None => {
            inst.group_counts.insert(req.group.clone(), 1);
        }
    }
    inst.running_tasks_count = inst.running_tasks_count.saturating_add(1);
}

/// The failure for a task nothing could take, naming the closest instance.
pub(crate) fn failure(instances: &[Instance], closest: Option<(Reason, usize)>) -> Failure {
    match closest {
        Some((reason, i)) => Failure {
            reason,
            instance: Some(i),
            instance_id: Some(instances[i].id.clone()),
        },
        None => Failure {
            reason: Reason::NoActiveInstances,
            instance: None,
            instance_id: None,
        },
    }
}

/// Filters one instance; a request whose own static ports repeat can never
/// fit anywhere, which ECS reports as a ports failure.
pub(crate) fn evaluate(
    inst: &Instance,
    req: &Request,
    dup_ports: bool,
) -> Result<(), (Reason, usize)> {
    if dup_ports {
        Err((Reason::Ports, Reason::Ports.stage(0)))
    } else {
        check(inst, req)
    }
}
