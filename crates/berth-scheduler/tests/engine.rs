//! Placement engine: golden cases (every failure reason) and properties.

use std::collections::BTreeMap;

use berth_scheduler::engine::{
    BinpackField, Constraint, Instance, InstanceStatus, Request, RequestError, SpreadField,
    Strategy, place, place_reference,
};
use proptest::prelude::*;
use proptest::strategy::Strategy as PStrategy;

fn req(cpu: i64, memory: i64, count: usize) -> Request {
    Request {
        cpu,
        memory,
        count,
        group: "family:web".into(),
        ..Request::default()
    }
}

fn member_of(e: &str) -> Constraint {
    Constraint::from_api("memberOf", Some(e)).unwrap()
}

/// Runs one request and returns (placed instance ids, failure reasons with instance ids).
fn run(insts: &mut [Instance], r: &Request) -> (Vec<String>, Vec<(&'static str, Option<String>)>) {
    let out = place(insts, r, 7).unwrap();
    (
        out.placements
            .iter()
            .map(|&i| insts[i].id.clone())
            .collect(),
        out.failures
            .iter()
            .map(|f| (f.reason.as_str(), f.instance_id.clone()))
            .collect(),
    )
}

#[test]
fn golden_failures() {
    let base = || {
        vec![
            Instance::new("a", 1024, 2048),
            Instance::new("b", 512, 4096),
        ]
    };
    type Case = (
        &'static str,
        Box<dyn Fn(&mut Vec<Instance>, &mut Request)>,
        &'static str,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "cpu",
            Box::new(|_, r| r.cpu = 2048),
            "RESOURCE:CPU",
            Some("a"),
        ),
        (
            "memory",
            Box::new(|_, r| r.memory = 8192),
            "RESOURCE:MEMORY",
            Some("a"),
        ),
        // b has the memory but not the CPU; a has the CPU but not the memory:
        // a got further through the filter order, so it is the closest.
        (
            "memory-closest",
            Box::new(|_, r| {
                r.cpu = 1000;
                r.memory = 3000;
            }),
            "RESOURCE:MEMORY",
            Some("a"),
        ),
        ("gpu", Box::new(|_, r| r.gpu = 1), "RESOURCE:GPU", Some("a")),
        (
            "ports",
            Box::new(|i, r| {
                for x in i.iter_mut() {
                    x.used_tcp_ports.insert(80);
                }
                r.tcp_ports = vec![80];
            }),
            "RESOURCE:PORTS",
            Some("a"),
        ),
        (
            "ports-udp",
            Box::new(|i, r| {
                for x in i.iter_mut() {
                    x.used_udp_ports.insert(53);
                }
                r.udp_ports = vec![53];
            }),
            "RESOURCE:PORTS_UDP",
            Some("a"),
        ),
        (
            "agent",
            Box::new(|i, _| {
                for x in i.iter_mut() {
                    x.agent_connected = false;
                }
            }),
            "AGENT",
            Some("a"),
        ),
        (
            "attribute",
            Box::new(|_, r| r.required_attributes = vec!["ecs.capability.task-eni".into()]),
            "ATTRIBUTE",
            Some("a"),
        ),
        (
            "member-of",
            Box::new(|_, r| r.constraints = vec![member_of("attribute:stack == prod")]),
            "MemberOf placement constraint unsatisfied",
            Some("a"),
        ),
        (
            "distinct",
            Box::new(|i, r| {
                for x in i.iter_mut() {
                    x.group_counts.insert("family:web".into(), 1);
                }
                r.constraints = vec![Constraint::DistinctInstance];
            }),
            "DistinctInstance placement constraint unsatisfied",
            Some("a"),
        ),
        (
            "draining",
            Box::new(|i, _| {
                for x in i.iter_mut() {
                    x.status = InstanceStatus::Draining;
                }
            }),
            "NO ACTIVE INSTANCES",
            None,
        ),
        (
            "empty",
            Box::new(|i, _| i.clear()),
            "NO ACTIVE INSTANCES",
            None,
        ),
        (
            "dup-ports",
            Box::new(|_, r| r.tcp_ports = vec![80, 80]),
            "RESOURCE:PORTS",
            Some("a"),
        ),
    ];
    for (name, setup, reason, at) in cases {
        let mut insts = base();
        let mut r = req(256, 256, 1);
        setup(&mut insts, &mut r);
        let (placed, failures) = run(&mut insts, &r);
        assert!(placed.is_empty(), "{name}: placed {placed:?}");
        assert_eq!(failures, vec![(reason, at.map(String::from))], "{name}");
    }
}

#[test]
fn golden_placements() {
    // binpack memory picks the tightest host.
    let mut insts = vec![
        Instance::new("big", 4096, 8192),
        Instance::new("tight", 4096, 1024),
        Instance::new("mid", 4096, 2048),
    ];
    let mut r = req(128, 512, 2);
    r.strategies = vec![Strategy::Binpack(BinpackField::Memory)];
    assert_eq!(run(&mut insts, &r).0, vec!["tight", "tight"]);
    // third lands on mid: tight is full (0 left).
    let (p, _) = run(&mut insts, &req_with(&r, 1));
    assert_eq!(p, vec!["mid"]);

    // spread AZ then binpack memory: alternate AZs, tightest within each.
    let mut insts = vec![
        Instance::new("a1", 4096, 4096).with_attribute("ecs.availability-zone", "a"),
        Instance::new("a2", 4096, 2048).with_attribute("ecs.availability-zone", "a"),
        Instance::new("b1", 4096, 8192).with_attribute("ecs.availability-zone", "b"),
    ];
    let mut r = req(128, 512, 4);
    r.strategies = vec![
        Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
        Strategy::Binpack(BinpackField::Memory),
    ];
    let (p, f) = run(&mut insts, &r);
    assert!(f.is_empty());
    let zone = |id: &str| id.chars().next().unwrap();
    let a = p.iter().filter(|id| zone(id) == 'a').count();
    assert_eq!(a, 2, "{p:?}");
    assert_eq!(p.iter().filter(|id| *id == "a2").count(), 2, "{p:?}");

    // memberOf narrows; distinctInstance spreads one per host and fails the rest.
    let mut insts = vec![
        Instance::new("x", 4096, 4096).with_attribute("stack", "prod"),
        Instance::new("y", 4096, 4096).with_attribute("stack", "dev"),
        Instance::new("z", 4096, 4096).with_attribute("stack", "prod"),
    ];
    let mut r = req(1, 1, 3);
    r.constraints = vec![
        member_of("attribute:stack == prod"),
        Constraint::DistinctInstance,
    ];
    let (mut p, f) = run(&mut insts, &r);
    p.sort();
    assert_eq!(p, vec!["x", "z"]);
    assert_eq!(
        f,
        vec![(
            "DistinctInstance placement constraint unsatisfied",
            Some("x".into())
        )]
    );
}

fn req_with(r: &Request, count: usize) -> Request {
    Request { count, ..r.clone() }
}

#[test]
fn api_validation() {
    assert!(matches!(
        Constraint::from_api("distinctInstance", Some("x")),
        Err(RequestError::ExpressionNotAllowed)
    ));
    assert!(matches!(
        Constraint::from_api("memberOf", None),
        Err(RequestError::ExpressionRequired)
    ));
    assert!(matches!(
        Constraint::from_api("memberOf", Some("attribute:a ==")),
        Err(RequestError::Expression(e)) if e.position == 14
    ));
    assert!(Constraint::from_api("affinity", None).is_err());
    assert_eq!(
        Strategy::from_api("spread", Some("host")).unwrap(),
        Strategy::Spread(SpreadField::Instance)
    );
    assert_eq!(
        Strategy::from_api("binpack", Some("memory")).unwrap(),
        Strategy::Binpack(BinpackField::Memory)
    );
    assert!(Strategy::from_api("binpack", Some("disk")).is_err());
    assert!(Strategy::from_api("spread", None).is_err());
    assert!(Strategy::from_api("pack", None).is_err());
    let mut r = req(1, 1, 1);
    r.strategies = vec![Strategy::Random; 6];
    assert!(matches!(
        place(&mut [], &r, 0),
        Err(RequestError::TooManyStrategies(6))
    ));
    let mut r = req(1, 1, 1);
    r.constraints = vec![Constraint::DistinctInstance; 11];
    assert!(matches!(
        place(&mut [], &r, 0),
        Err(RequestError::TooManyConstraints(11))
    ));
}

fn arb_instances() -> impl PStrategy<Value = Vec<Instance>> {
    proptest::collection::vec(
        (
            0i64..4096,
            0i64..8192,
            0u32..2,
            0u8..3,
            proptest::collection::btree_set(80u16..84, 0..2),
            any::<bool>(),
        ),
        0..12,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (cpu, mem, gpu, az, ports, connected))| {
                let mut x = Instance::new(format!("i{i}"), cpu, mem)
                    .with_attribute("ecs.availability-zone", format!("az{az}"));
                x.remaining_gpu = gpu;
                x.used_tcp_ports = ports;
                x.agent_connected = connected || i % 3 != 0;
                x
            })
            .collect()
    })
}

fn arb_strategy() -> impl PStrategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::Random),
        Just(Strategy::Binpack(BinpackField::Cpu)),
        Just(Strategy::Binpack(BinpackField::Memory)),
        Just(Strategy::Spread(SpreadField::Instance)),
        Just(Strategy::Spread(SpreadField::Attribute(
            "ecs.availability-zone".into()
        ))),
    ]
}

fn arb_request() -> impl PStrategy<Value = Request> {
    (
        0i64..1024,
        0i64..2048,
        0u32..2,
        proptest::collection::vec(80u16..84, 0..2),
        1usize..20,
        proptest::collection::vec(arb_strategy(), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(cpu, memory, gpu, tcp_ports, count, strategies, distinct, member)| {
                let mut constraints = vec![];
                if distinct {
                    constraints.push(Constraint::DistinctInstance);
                }
                if member {
                    constraints.push(member_of("attribute:ecs.availability-zone != az2"));
                }
                Request {
                    cpu,
                    memory,
                    gpu,
                    tcp_ports,
                    count,
                    constraints,
                    strategies,
                    group: "family:web".into(),
                    ..Request::default()
                }
            },
        )
}

fn arb_indexable_strategies() -> impl PStrategy<Value = Vec<Strategy>> {
    let az = || Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into()));
    prop_oneof![
        Just(vec![]),
        Just(vec![Strategy::Binpack(BinpackField::Memory)]),
        Just(vec![Strategy::Binpack(BinpackField::Cpu)]),
        Just(vec![az()]),
        Just(vec![az(), Strategy::Binpack(BinpackField::Memory)]),
        Just(vec![az(), Strategy::Binpack(BinpackField::Cpu)]),
        Just(vec![
            Strategy::Spread(SpreadField::Attribute("missing".into())),
            Strategy::Binpack(BinpackField::Memory)
        ]),
        Just(vec![az(), Strategy::Spread(SpreadField::Instance)]),
        Just(vec![Strategy::Spread(SpreadField::Instance)]),
        Just(vec![Strategy::Random]),
        Just(vec![az(), Strategy::Random]),
        Just(vec![
            az(),
            Strategy::Spread(SpreadField::Instance),
            Strategy::Binpack(BinpackField::Memory),
            Strategy::Random
        ]),
        Just(vec![
            Strategy::Binpack(BinpackField::Cpu),
            Strategy::Binpack(BinpackField::Memory)
        ]),
        // Not indexable (falls back), still must agree.
        Just(vec![Strategy::Random, az()]),
    ]
}

proptest! {
    /// The indexed fast path must agree exactly with the plain scan.
    #[test]
    fn indexed_matches_reference(
        mut insts in arb_instances(),
        mut r in arb_request(),
        strategies in arb_indexable_strategies(),
        seed in any::<u64>(),
        draining in proptest::collection::vec(any::<bool>(), 12),
        existing in proptest::collection::vec(0u32..3, 12),
        task_group_expr in any::<bool>(),
    ) {
        for (i, x) in insts.iter_mut().enumerate() {
            if draining[i] && i % 4 == 1 {
                x.status = InstanceStatus::Draining;
            }
            x.group_counts.insert("family:web".into(), existing[i]);
            if i % 5 == 2 {
                x.attributes.clear();
            }
        }
        r.strategies = strategies;
        if task_group_expr {
            // memberOf on state that placements change.
            r.constraints.push(member_of("runningTasksCount < 3 and not(task:group == family:web and runningTasksCount > 1)"));
        }
        let mut a = insts.clone();
        let mut b = insts.clone();
        let fast = place(&mut a, &r, seed).unwrap();
        let slow = place_reference(&mut b, &r, seed).unwrap();
        prop_assert_eq!(&fast, &slow);
        for (x, y) in a.iter().zip(&b) {
            prop_assert_eq!(x.remaining_memory, y.remaining_memory);
            prop_assert_eq!(&x.group_counts, &y.group_counts);
        }
    }

    #[test]
    fn placement_invariants(insts in arb_instances(), r in arb_request(), seed in any::<u64>()) {
        let before = insts.clone();
        let mut after = insts.clone();
        let out = place(&mut after, &r, seed).unwrap();
        prop_assert_eq!(out.placements.len() + out.failures.len(), r.count);

        // Same seed, same answer.
        let mut again = insts.clone();
        prop_assert_eq!(&place(&mut again, &r, seed).unwrap(), &out);

        let mut per: BTreeMap<usize, i64> = BTreeMap::new();
        for &i in &out.placements {
            *per.entry(i).or_default() += 1;
        }
        for (&i, &n) in &per {
            let b = &before[i];
            // Never over-commits.
            prop_assert!(n * r.cpu <= b.remaining_cpu);
            prop_assert!(n * r.memory <= b.remaining_memory);
            prop_assert!(n * i64::from(r.gpu) <= i64::from(b.remaining_gpu));
            prop_assert!(after[i].remaining_cpu >= 0 && after[i].remaining_memory >= 0);
            // Static ports never double-booked.
            if !r.tcp_ports.is_empty() {
                prop_assert_eq!(n, 1);
                prop_assert!(r.tcp_ports.iter().all(|p| !b.used_tcp_ports.contains(p)));
            }
            // distinctInstance: at most one per instance.
            if r.constraints.iter().any(|c| matches!(c, Constraint::DistinctInstance)) {
                prop_assert_eq!(n, 1);
            }
            prop_assert!(b.agent_connected);
        }
    }

    #[test]
    fn binpack_picks_tightest(insts in arb_instances(), cpu in 0i64..1024, mem in 0i64..2048, seed in any::<u64>()) {
        let mut r = req(cpu, mem, 1);
        r.strategies = vec![Strategy::Binpack(BinpackField::Memory)];
        let mut after = insts.clone();
        let out = place(&mut after, &r, seed).unwrap();
        let feasible: Vec<&Instance> = insts.iter()
            .filter(|i| i.agent_connected && i.remaining_cpu >= cpu && i.remaining_memory >= mem)
            .collect();
        match out.placements.first() {
            Some(&p) => {
                let best = feasible.iter().map(|i| i.remaining_memory).min().unwrap();
                prop_assert_eq!(insts[p].remaining_memory, best);
            }
            None => prop_assert!(feasible.is_empty()),
        }
    }

    #[test]
    fn spread_balances_equal_hosts(hosts in 1usize..20, count in 0usize..100, seed in any::<u64>(), by_attr in any::<bool>()) {
        let mut insts: Vec<Instance> = (0..hosts)
            .map(|i| Instance::new(format!("h{i}"), 1 << 20, 1 << 20).with_attribute("k", format!("v{i}")))
            .collect();
        let mut r = req(1, 1, count);
        r.strategies = vec![if by_attr {
            Strategy::Spread(SpreadField::Attribute("k".into()))
        } else {
            Strategy::Spread(SpreadField::Instance)
        }];
        let out = place(&mut insts, &r, seed).unwrap();
        prop_assert_eq!(out.placements.len(), count);
        let counts: Vec<u32> = insts.iter().map(|i| i.group_counts.get("family:web").copied().unwrap_or(0)).collect();
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        prop_assert!(hi - lo <= 1, "{:?}", counts);
    }
}

#[test]
fn no_panic_on_extreme_numbers() {
    let mut insts = vec![Instance::new("a", i64::MIN, i64::MAX)];
    let r = req(i64::MIN, i64::MIN, 3);
    let out = place(&mut insts, &r, 0).unwrap();
    assert_eq!(out.placements.len() + out.failures.len(), 3);
}
