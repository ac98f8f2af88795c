//! The persistent `Placer`: golden failure cases (every reason, with the
//! closest instance named), and properties — agreement with the plain-scan
//! oracle after arbitrary interleavings of upsert/remove/update/place, no
//! over-commit, no double-booked ports, balanced spread, tightest binpack,
//! determinism.

use std::collections::BTreeMap;

use berth_scheduler::engine::{
    BinpackField, Constraint, Instance, InstanceStatus, Request, SpreadField, Strategy,
    place_reference,
};
use berth_scheduler::placer::{MAX_VIEWS, Placed, Placer};
use proptest::prelude::*;
use proptest::strategy::Strategy as PStrategy;

const GROUP: &str = "family:web";

fn req(cpu: i64, memory: i64, count: usize) -> Request {
    Request {
        cpu,
        memory,
        count,
        group: GROUP.into(),
        ..Request::default()
    }
}

fn member_of(e: &str) -> Constraint {
    Constraint::from_api("memberOf", Some(e)).unwrap()
}

fn az() -> Strategy {
    Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into()))
}

/// What the oracle answers on a copy of the placer's snapshot, and the
/// snapshot it leaves behind.
fn oracle(snapshot: &[Instance], r: &Request, seed: u64) -> (Placed, Vec<Instance>) {
    let mut after = snapshot.to_vec();
    let out = place_reference(&mut after, r, seed).unwrap();
    let placed = Placed {
        placements: out
            .placements
            .iter()
            .map(|&i| after[i].id.clone())
            .collect(),
        failures: out.failures,
    };
    (placed, after)
}

fn debug_all<'a>(it: impl IntoIterator<Item = &'a Instance>) -> Vec<String> {
    it.into_iter().map(|i| format!("{i:?}")).collect()
}

/// Places through the placer and checks the oracle agrees on everything:
/// placements, failures (reason, closest instance), and the new snapshot.
fn place_checked(placer: &mut Placer, r: &Request, seed: u64) -> Placed {
    let before: Vec<Instance> = placer.instances().cloned().collect();
    let (expected, expected_after) = oracle(&before, r, seed);
    let got = placer.place(r, seed).unwrap();
    assert_eq!(got, expected, "placer vs oracle for {r:?}");
    assert_eq!(debug_all(placer.instances()), debug_all(&expected_after));
    got
}

// ---------------------------------------------------------------- golden

/// Three hosts that differ in how far each gets through the filters, so
/// the closest instance is a real choice, not just the first one.
fn golden_hosts() -> Vec<Instance> {
    vec![
        Instance::new("small", 256, 512)
            .with_attribute("ecs.availability-zone", "a")
            .with_attribute("stack", "dev"),
        Instance::new("medium", 1024, 1024)
            .with_attribute("ecs.availability-zone", "b")
            .with_attribute("stack", "dev"),
        Instance::new("large", 4096, 8192)
            .with_attribute("ecs.availability-zone", "c")
            .with_attribute("stack", "prod"),
    ]
}

type Setup = fn(&mut Vec<Instance>, &mut Request);

#[test]
fn golden_failures_name_the_closest_instance() {
    // (case, setup, reason, closest instance)
    let cases: &[(&str, Setup, &str, Option<&str>)] = &[
        (
            "cpu: every host is short of CPU, the first is named",
            |_, r| r.cpu = 8192,
            "RESOURCE:CPU",
            Some("small"),
        ),
        (
            "memory: only large has the CPU, and it lacks memory",
            |_, r| {
                r.cpu = 2048;
                r.memory = 16_384;
            },
            "RESOURCE:MEMORY",
            Some("large"),
        ),
        (
            "memory beats cpu: medium has the CPU, small does not",
            |_, r| {
                r.cpu = 512;
                r.memory = 16_384;
            },
            "RESOURCE:MEMORY",
            Some("medium"),
        ),
        (
            "gpu: medium gets past CPU and memory",
            |i, r| {
                r.cpu = 512;
                r.gpu = 2;
                i[2].remaining_gpu = 1;
                i[2].remaining_cpu = 0;
            },
            "RESOURCE:GPU",
            Some("medium"),
        ),
        (
            "ports: large has the port busy, the others lack memory",
            |i, r| {
                r.memory = 2048;
                r.tcp_ports = vec![80];
                i[2].used_tcp_ports.insert(80);
            },
            "RESOURCE:PORTS",
            Some("large"),
        ),
        (
            "ports beat gpu",
            |i, r| {
                r.gpu = 1;
                r.tcp_ports = vec![443];
                i[1].remaining_gpu = 1;
                i[1].used_tcp_ports.insert(443);
            },
            "RESOURCE:PORTS",
            Some("medium"),
        ),
        (
            "udp ports: the tcp port is free on large only",
            |i, r| {
                r.tcp_ports = vec![80];
                r.udp_ports = vec![53];
                i[0].used_tcp_ports.insert(80);
                i[1].used_tcp_ports.insert(80);
                i[2].used_udp_ports.insert(53);
            },
            "RESOURCE:PORTS_UDP",
            Some("large"),
        ),
        (
            "agent: every agent is disconnected",
            |i, _| {
                for x in i.iter_mut() {
                    x.agent_connected = false;
                }
            },
            "AGENT",
            Some("small"),
        ),
        (
            "attribute beats agent",
            |i, r| {
                i[0].agent_connected = false;
                r.required_attributes = vec!["ecs.capability.task-eni".into()];
            },
            "ATTRIBUTE",
            Some("medium"),
        ),
        (
            "cpu beats attribute",
            |i, r| {
                r.required_attributes = vec!["ecs.capability.task-eni".into()];
                r.cpu = 8192;
                i[2].attributes
                    .insert("ecs.capability.task-eni".into(), "".into());
            },
            "RESOURCE:CPU",
            Some("large"),
        ),
        (
            "memberOf: only large fits, and it is not dev",
            |_, r| {
                r.memory = 2048;
                r.constraints = vec![member_of("attribute:stack == dev")];
            },
            "MemberOf placement constraint unsatisfied",
            Some("large"),
        ),
        (
            "memberOf beats resources",
            |_, r| {
                r.memory = 1024;
                r.constraints = vec![member_of("attribute:stack == test")];
            },
            "MemberOf placement constraint unsatisfied",
            Some("medium"),
        ),
        (
            "distinctInstance: every fitting host runs the group already",
            |i, r| {
                i[1].group_counts.insert(GROUP.into(), 1);
                i[2].group_counts.insert(GROUP.into(), 1);
                r.memory = 1024;
                r.constraints = vec![Constraint::DistinctInstance];
            },
            "DistinctInstance placement constraint unsatisfied",
            Some("medium"),
        ),
        (
            "a later constraint is further: memberOf after distinctInstance",
            |i, r| {
                i[0].group_counts.insert(GROUP.into(), 1);
                r.constraints = vec![
                    Constraint::DistinctInstance,
                    member_of("attribute:stack == none"),
                ];
            },
            "MemberOf placement constraint unsatisfied",
            Some("medium"),
        ),
        (
            "duplicate static ports can never fit",
            |_, r| r.tcp_ports = vec![80, 80],
            "RESOURCE:PORTS",
            Some("small"),
        ),
        (
            "draining and inactive hosts are not candidates",
            |i, _| {
                i[0].status = InstanceStatus::Draining;
                i[1].status = InstanceStatus::Inactive;
                i[2].status = InstanceStatus::Draining;
            },
            "NO ACTIVE INSTANCES",
            None,
        ),
        (
            "an empty cluster",
            |i, _| i.clear(),
            "NO ACTIVE INSTANCES",
            None,
        ),
        (
            "only active hosts are named",
            |i, r| {
                i[2].status = InstanceStatus::Draining;
                r.memory = 2048;
            },
            "RESOURCE:MEMORY",
            Some("small"),
        ),
    ];
    for strategies in [vec![], vec![az(), Strategy::Binpack(BinpackField::Memory)]] {
        for &(name, setup, reason, closest) in cases {
            let mut hosts = golden_hosts();
            let mut r = req(128, 256, 1);
            r.strategies = strategies.clone();
            setup(&mut hosts, &mut r);
            let mut placer = Placer::from_instances(hosts);
            let out = place_checked(&mut placer, &r, 3);
            assert!(out.placements.is_empty(), "{name}: placed {out:?}");
            let got: Vec<_> = out
                .failures
                .iter()
                .map(|f| (f.reason.as_str(), f.instance_id.as_deref()))
                .collect();
            assert_eq!(got, vec![(reason, closest)], "{name}");
            let f = &out.failures[0];
            assert_eq!(
                f.instance
                    .map(|i| placer.instances().nth(i).unwrap().id.as_str()),
                closest,
                "{name}: index and id name the same instance"
            );
        }
    }
}

#[test]
fn golden_placements() {
    // spread AZ then binpack memory, persistent across calls of count 1.
    let mut placer = Placer::from_instances([
        Instance::new("a-roomy", 4096, 8192).with_attribute("ecs.availability-zone", "a"),
        Instance::new("a-tight", 4096, 2048).with_attribute("ecs.availability-zone", "a"),
        Instance::new("b-only", 4096, 4096).with_attribute("ecs.availability-zone", "b"),
    ]);
    let mut r = req(128, 1024, 1);
    r.strategies = vec![az(), Strategy::Binpack(BinpackField::Memory)];
    let ids: Vec<String> = (0..6)
        .flat_map(|seed| place_checked(&mut placer, &r, seed).placements)
        .collect();
    assert_eq!(
        ids,
        [
            "a-tight", "b-only", "a-tight", "b-only", "b-only", "a-roomy"
        ],
        "spread keeps the least-loaded AZs, binpack the tightest host among them"
    );
    // A task on a-tight stopped: its AZ is least loaded again, and a-tight
    // is again the tightest host there that fits.
    assert!(placer.update("a-tight", |i| {
        i.remaining_memory += 1024;
        *i.group_counts.get_mut(GROUP).unwrap() -= 1;
    }));
    assert_eq!(place_checked(&mut placer, &r, 9).placements, ["a-tight"]);
    assert!(!placer.update("missing", |_| {}));
}

#[test]
fn rename_through_instance_mut_is_undone() {
    let mut placer = Placer::from_instances([Instance::new("a", 10, 10)]);
    placer.instance_mut("a").unwrap().id = "b".into();
    placer.instance_mut("a").unwrap().remaining_cpu = 5;
    assert!(placer.instance("b").is_none());
    assert_eq!(
        placer
            .instance("a")
            .map(|i| (i.id.as_str(), i.remaining_cpu)),
        Some(("a", 5))
    );
    assert!(placer.update("a", |i| i.id = "c".into()));
    assert_eq!(
        placer.instances().map(|i| i.id.clone()).collect::<Vec<_>>(),
        ["a"]
    );
    let out = place_checked(&mut placer, &req(5, 1, 2), 0);
    assert_eq!(out.placements, ["a"]);
}

#[test]
fn stale_and_evicted_views_are_rebuilt() {
    let hosts = (0..40).map(|i| {
        Instance::new(format!("h{i}"), 1 << 20, 1 << 20)
            .with_attribute("ecs.availability-zone", format!("az{}", i % 3))
    });
    let mut placer = Placer::from_instances(hosts);
    let shape = |cpu: i64| {
        let mut r = req(cpu, 1, 3);
        r.strategies = vec![az(), Strategy::Binpack(BinpackField::Cpu)];
        r
    };
    // More changes between uses than the change log keeps: views rebuild.
    for round in 0..4u64 {
        for cpu in 0..3 {
            place_checked(&mut placer, &shape(cpu), round * 10 + cpu as u64);
        }
        for k in 0..1500u64 {
            placer.update(&format!("h{}", k % 40), |i| {
                i.remaining_cpu = ((k + round) * 7919 % 1000) as i64 + 20;
                if k % 11 == 0 {
                    i.attributes.insert(
                        "ecs.availability-zone".into(),
                        format!("az{}", k % 4).into(),
                    );
                }
            });
        }
    }
    // More shapes than the placer keeps: views are evicted and rebuilt.
    for round in 0..3u64 {
        for cpu in 0..MAX_VIEWS as i64 + 4 {
            place_checked(&mut placer, &shape(cpu), round * 100 + cpu as u64);
            placer.update(&format!("h{cpu}"), |i| i.remaining_cpu += 7 * cpu);
        }
    }
}

#[test]
fn many_ties_across_buckets_match_the_oracle() {
    // Hundreds of identical hosts: every call has large tie sets spread
    // over several AZs (the rank/select path), and removals reorder them.
    let hosts = (0..600).map(|i| {
        Instance::new(format!("h{i}"), 1 << 20, 1 << 20)
            .with_attribute("ecs.availability-zone", format!("az{}", i % 4))
    });
    let mut placer = Placer::from_instances(hosts);
    let lists = [
        vec![],
        vec![az()],
        vec![Strategy::Random],
        vec![az(), Strategy::Spread(SpreadField::Instance)],
        vec![
            az(),
            Strategy::Binpack(BinpackField::Memory),
            Strategy::Random,
        ],
    ];
    for seed in 0..60u64 {
        let mut r = req(1, 1, 1 + seed as usize % 10);
        r.strategies = lists[seed as usize % lists.len()].clone();
        place_checked(&mut placer, &r, seed);
        if seed % 7 == 0 {
            placer.remove(&format!("h{}", seed * 3));
        }
    }
}

// ---------------------------------------------------------------- properties

fn arb_instance() -> impl PStrategy<Value = Instance> {
    (
        (0u8..8, 0i64..2048, 0i64..4096, 0u32..3),
        (
            proptest::option::of(0u8..3),
            any::<bool>(),
            proptest::collection::btree_set(80u16..83, 0..2),
            proptest::collection::btree_set(53u16..55, 0..2),
        ),
        (0u8..8, 0u32..3, 0u32..2, any::<bool>()),
    )
        .prop_map(
            |((id, cpu, mem, gpu), (zone, prod, tcp, udp), (status, web, db, eni))| {
                let mut x = Instance::new(format!("i{id}"), cpu, mem);
                if let Some(z) = zone {
                    x.attributes
                        .insert("ecs.availability-zone".into(), format!("az{z}").into());
                }
                x.attributes
                    .insert("stack".into(), if prod { "prod" } else { "dev" }.into());
                if eni {
                    x.attributes
                        .insert("ecs.capability.task-eni".into(), "".into());
                }
                x.remaining_gpu = gpu;
                x.used_tcp_ports = tcp;
                x.used_udp_ports = udp;
                x.status = match status {
                    0 => InstanceStatus::Draining,
                    1 => InstanceStatus::Inactive,
                    _ => InstanceStatus::Active,
                };
                x.agent_connected = id % 5 != 0 || status % 2 == 0;
                x.group_counts.insert(GROUP.into(), web);
                x.group_counts.insert("family:db".into(), db);
                x.running_tasks_count = u64::from(web + db);
                x
            },
        )
}

fn arb_strategy() -> impl PStrategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::Random),
        Just(Strategy::Binpack(BinpackField::Cpu)),
        Just(Strategy::Binpack(BinpackField::Memory)),
        Just(Strategy::Spread(SpreadField::Instance)),
        Just(az()),
        Just(Strategy::Spread(SpreadField::Attribute("stack".into()))),
    ]
}

fn arb_strategies() -> impl PStrategy<Value = Vec<Strategy>> {
    prop_oneof![
        // Shapes the indexes answer...
        Just(vec![az(), Strategy::Binpack(BinpackField::Memory)]),
        Just(vec![az(), Strategy::Spread(SpreadField::Instance)]),
        Just(vec![]),
        Just(vec![Strategy::Binpack(BinpackField::Cpu), Strategy::Random]),
        // ...and anything else, some of which needs the plain scan.
        proptest::collection::vec(arb_strategy(), 0..4),
    ]
}

fn arb_request() -> impl PStrategy<Value = Request> {
    (
        (0i64..512, 0i64..1024, 0u32..2, 1usize..11),
        (
            proptest::collection::vec(80u16..83, 0..2),
            proptest::collection::vec(53u16..55, 0..2),
            any::<bool>(),
        ),
        (0u8..6, any::<bool>(), arb_strategies()),
    )
        .prop_map(
            |((cpu, memory, gpu, count), (tcp, udp, eni), (constraint, db, strategies))| {
                let constraints = match constraint {
                    0 => vec![Constraint::DistinctInstance],
                    1 => vec![member_of("attribute:stack == prod")],
                    // memberOf on state that placements change.
                    2 => vec![member_of(
                        "runningTasksCount < 4 and not(task:group == family:db)",
                    )],
                    3 => vec![
                        member_of("attribute:ecs.availability-zone != az2"),
                        Constraint::DistinctInstance,
                    ],
                    _ => vec![],
                };
                Request {
                    cpu,
                    memory,
                    gpu,
                    tcp_ports: tcp,
                    udp_ports: udp,
                    count,
                    required_attributes: if eni {
                        vec!["ecs.capability.task-eni".into()]
                    } else {
                        vec![]
                    },
                    constraints,
                    strategies,
                    group: if db { "family:db" } else { GROUP }.into(),
                }
            },
        )
}

#[derive(Debug, Clone)]
enum Edit {
    /// A task stopped: its resources come back.
    Release(i64, i64),
    Status(InstanceStatus),
    Agent(bool),
    Zone(Option<u8>),
    ClearGroups,
}

impl Edit {
    fn apply(&self, x: &mut Instance) {
        match self {
            Edit::Release(cpu, mem) => {
                x.remaining_cpu += cpu;
                x.remaining_memory += mem;
                x.used_tcp_ports.clear();
            }
            Edit::Status(s) => x.status = *s,
            Edit::Agent(c) => x.agent_connected = *c,
            Edit::Zone(Some(z)) => {
                x.attributes
                    .insert("ecs.availability-zone".into(), format!("az{z}").into());
            }
            Edit::Zone(None) => {
                x.attributes.remove("ecs.availability-zone");
            }
            Edit::ClearGroups => {
                x.group_counts.clear();
                x.running_tasks_count = 0;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(Instance),
    Remove(u8),
    Update(u8, Edit),
    /// Through `instance_mut`, also trying to rename (which must not stick).
    Borrow(u8, Edit, bool),
    Place(usize, usize, u64),
}

fn arb_edit() -> impl PStrategy<Value = Edit> {
    prop_oneof![
        (0i64..512, 0i64..1024).prop_map(|(c, m)| Edit::Release(c, m)),
        prop_oneof![
            Just(InstanceStatus::Active),
            Just(InstanceStatus::Draining),
            Just(InstanceStatus::Inactive)
        ]
        .prop_map(Edit::Status),
        any::<bool>().prop_map(Edit::Agent),
        proptest::option::of(0u8..3).prop_map(Edit::Zone),
        Just(Edit::ClearGroups),
    ]
}

fn arb_op(pool: usize) -> impl PStrategy<Value = Op> {
    prop_oneof![
        2 => arb_instance().prop_map(Op::Upsert),
        1 => (0u8..8).prop_map(Op::Remove),
        2 => (0u8..8, arb_edit()).prop_map(|(i, e)| Op::Update(i, e)),
        1 => (0u8..8, arb_edit(), any::<bool>()).prop_map(|(i, e, r)| Op::Borrow(i, e, r)),
        4 => (0..pool, 1usize..11, any::<u64>()).prop_map(|(p, c, s)| Op::Place(p, c, s)),
    ]
}

fn arb_scenario() -> impl PStrategy<Value = (Vec<Instance>, Vec<Request>, Vec<Op>)> {
    (1usize..5).prop_flat_map(|pool| {
        (
            proptest::collection::vec(arb_instance(), 0..10),
            proptest::collection::vec(arb_request(), pool),
            proptest::collection::vec(arb_op(pool), 1..40),
        )
    })
}

/// Applies `op` to the placer and to a plain `Vec` model with the same
/// semantics; for placements, checks the placer against the oracle run on
/// the model (the equivalent fresh snapshot).
fn step(placer: &mut Placer, model: &mut Vec<Instance>, requests: &[Request], op: &Op) {
    let find = |model: &[Instance], n: u8| model.iter().position(|x| x.id == format!("i{n}"));
    match op {
        Op::Upsert(x) => {
            match model.iter().position(|m| m.id == x.id) {
                Some(i) => model[i] = x.clone(),
                None => model.push(x.clone()),
            }
            placer.upsert(x.clone());
        }
        Op::Remove(n) => {
            let expected = find(model, *n).map(|i| model.swap_remove(i));
            let removed = placer.remove(&format!("i{n}"));
            assert_eq!(
                removed.map(|x| format!("{x:?}")),
                expected.map(|x| format!("{x:?}"))
            );
        }
        Op::Update(n, edit) => {
            let expected = find(model, *n).inspect(|&i| edit.apply(&mut model[i]));
            assert_eq!(
                placer.update(&format!("i{n}"), |x| edit.apply(x)),
                expected.is_some()
            );
        }
        Op::Borrow(n, edit, rename) => {
            if let Some(i) = find(model, *n) {
                edit.apply(&mut model[i]);
            }
            if let Some(x) = placer.instance_mut(&format!("i{n}")) {
                edit.apply(x);
                if *rename {
                    x.id = "renamed".into();
                }
            }
        }
        Op::Place(p, count, seed) => {
            let r = Request {
                count: *count,
                ..requests[*p].clone()
            };
            let (expected, after) = oracle(model, &r, *seed);
            assert_eq!(placer.place(&r, *seed).unwrap(), expected, "{r:?}");
            *model = after;
            assert_eq!(debug_all(placer.instances()), debug_all(model.iter()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The persistent placer agrees with the oracle on an equivalent fresh
    /// snapshot after any interleaving of upsert/remove/update/place.
    #[test]
    fn agrees_with_oracle_after_any_interleaving((initial, requests, ops) in arb_scenario()) {
        let mut placer = Placer::new();
        let mut model = Vec::new();
        for x in initial {
            step(&mut placer, &mut model, &requests, &Op::Upsert(x));
        }
        for op in &ops {
            step(&mut placer, &mut model, &requests, op);
        }
        // A final placement of every shape, after whatever ran last.
        for p in 0..requests.len() {
            step(&mut placer, &mut model, &requests, &Op::Place(p, 3, 1));
        }
        prop_assert_eq!(placer.len(), model.len());
        prop_assert_eq!(placer.is_empty(), model.is_empty());
        for x in &model {
            prop_assert_eq!(placer.instance(&x.id).map(|y| format!("{y:?}")), Some(format!("{x:?}")));
        }
    }

    /// Same seed, same history: same answers.
    #[test]
    fn deterministic((initial, requests, ops) in arb_scenario()) {
        let run = || {
            let mut placer = Placer::from_instances(initial.clone());
            let mut answers = Vec::new();
            for op in &ops {
                match op {
                    Op::Place(p, count, seed) => {
                        let r = Request { count: *count, ..requests[*p].clone() };
                        answers.push(placer.place(&r, *seed).unwrap());
                    }
                    Op::Upsert(x) => placer.upsert(x.clone()),
                    Op::Remove(n) => { placer.remove(&format!("i{n}")); }
                    Op::Update(n, e) | Op::Borrow(n, e, _) => {
                        placer.update(&format!("i{n}"), |x| e.apply(x));
                    }
                }
            }
            answers
        };
        prop_assert_eq!(run(), run());
    }

    /// Never over-commits CPU, memory or GPU, and never books a static port
    /// twice on one host, across many calls on the same placer.
    #[test]
    fn never_over_commits(
        initial in proptest::collection::vec(arb_instance(), 0..10),
        requests in proptest::collection::vec(arb_request(), 1..30),
        seed in any::<u64>(),
    ) {
        let mut placer = Placer::from_instances(initial);
        for (n, r) in requests.iter().enumerate() {
            let before: BTreeMap<String, Instance> =
                placer.instances().map(|x| (x.id.clone(), x.clone())).collect();
            let out = placer.place(r, seed ^ n as u64).unwrap();
            prop_assert_eq!(out.placements.len() + out.failures.len(), r.count);
            let mut per: BTreeMap<&str, i64> = BTreeMap::new();
            for id in &out.placements {
                *per.entry(id).or_default() += 1;
            }
            for (id, k) in per {
                let b = &before[id];
                prop_assert!(b.status == InstanceStatus::Active && b.agent_connected);
                prop_assert!(k * r.cpu <= b.remaining_cpu);
                prop_assert!(k * r.memory <= b.remaining_memory);
                prop_assert!(k * i64::from(r.gpu) <= i64::from(b.remaining_gpu));
                let after = placer.instance(id).unwrap();
                prop_assert!(after.remaining_cpu >= 0 && after.remaining_memory >= 0);
                if !r.tcp_ports.is_empty() || !r.udp_ports.is_empty() {
                    prop_assert_eq!(k, 1);
                    prop_assert!(r.tcp_ports.iter().all(|p| !b.used_tcp_ports.contains(p)));
                    prop_assert!(r.udp_ports.iter().all(|p| !b.used_udp_ports.contains(p)));
                }
            }
        }
    }

    /// Spread over equal hosts stays balanced within one task, call after
    /// call, by instance or by attribute.
    #[test]
    fn spread_over_equal_hosts_is_balanced(
        hosts in 1usize..25,
        calls in proptest::collection::vec(1usize..11, 1..20),
        seed in any::<u64>(),
        by_attribute in any::<bool>(),
    ) {
        let mut placer = Placer::from_instances((0..hosts).map(|i| {
            Instance::new(format!("h{i}"), 1 << 20, 1 << 20).with_attribute("k", format!("v{i}"))
        }));
        let field = if by_attribute {
            SpreadField::Attribute("k".into())
        } else {
            SpreadField::Instance
        };
        for (n, count) in calls.into_iter().enumerate() {
            let mut r = req(1, 1, count);
            r.strategies = vec![Strategy::Spread(field.clone())];
            prop_assert_eq!(placer.place(&r, seed.wrapping_add(n as u64)).unwrap().placements.len(), count);
            let counts: Vec<u32> = placer
                .instances()
                .map(|i| i.group_counts.get(GROUP).copied().unwrap_or(0))
                .collect();
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            prop_assert!(hi - lo <= 1, "{:?}", counts);
        }
    }

    /// Binpack puts each task on the feasible host with the least of the
    /// field left, however the placer got to its current state.
    #[test]
    fn binpack_picks_the_tightest_feasible_host(
        initial in proptest::collection::vec(arb_instance(), 0..10),
        tasks in proptest::collection::vec((0i64..512, 0i64..1024, any::<bool>()), 1..20),
        seed in any::<u64>(),
    ) {
        let mut placer = Placer::from_instances(initial);
        for (cpu, memory, by_cpu) in tasks {
            let field = if by_cpu { BinpackField::Cpu } else { BinpackField::Memory };
            let left = |i: &Instance| if by_cpu { i.remaining_cpu } else { i.remaining_memory };
            let fits = |i: &Instance| {
                i.status == InstanceStatus::Active
                    && i.agent_connected
                    && i.remaining_cpu >= cpu
                    && i.remaining_memory >= memory
            };
            let tightest = placer.instances().filter(|i| fits(i)).map(left).min();
            let mut r = req(cpu, memory, 1);
            r.strategies = vec![Strategy::Binpack(field)];
            let out = placer.place(&r, seed).unwrap();
            match (out.placements.first(), tightest) {
                (Some(id), Some(best)) => {
                    let chosen = placer.instance(id).unwrap();
                    let before = if by_cpu { chosen.remaining_cpu + cpu } else { chosen.remaining_memory + memory };
                    prop_assert_eq!(before, best);
                }
                (None, None) => {}
                (got, want) => prop_assert!(false, "placed {:?}, tightest {:?}", got, want),
            }
        }
    }
}
