//! Micro benchmark: placements per second on 5,000 hosts with
//! memberOf + spread(attribute:ecs.availability-zone) + binpack(memory),
//! through the persistent `Placer` (count 1 and count 10 per call), the
//! per-call-indexed `engine::place`, and the plain-scan oracle.
//!
//! Run: `cargo run --release -p berth-scheduler --example placement_bench`

use std::time::{Duration, Instant};

use berth_scheduler::engine::{Constraint, Instance, Request, Strategy, place, place_reference};
use berth_scheduler::placer::Placer;

const HOSTS: usize = 5_000;
/// Wall time per measurement; long enough to average out noise.
const RUN_FOR: Duration = Duration::from_secs(1);

fn hosts() -> Vec<Instance> {
    let zones = ["us-east-1a", "us-east-1b", "us-east-1c"];
    let types = ["m5.large", "m5.xlarge", "c5.large", "r5.large"];
    (0..HOSTS)
        .map(|i| {
            Instance::new(format!("ci-{i}"), 16_384, 65_536)
                .with_attribute("ecs.availability-zone", zones[i % zones.len()])
                .with_attribute("ecs.instance-type", types[i % types.len()])
                .with_attribute("ecs.os-type", "linux")
        })
        .collect()
}

fn request(count: usize) -> Result<Request, Box<dyn std::error::Error>> {
    Ok(Request {
        cpu: 64,
        memory: 128,
        count,
        constraints: vec![Constraint::from_api(
            "memberOf",
            Some(
                "attribute:ecs.os-type == linux and attribute:ecs.instance-type in [m5.large, m5.xlarge, c5.large]",
            ),
        )?],
        strategies: vec![
            Strategy::from_api("spread", Some("attribute:ecs.availability-zone"))?,
            Strategy::from_api("binpack", Some("memory"))?,
        ],
        group: "service:web".into(),
        ..Request::default()
    })
}

/// Calls `place_batch` (which returns how many tasks it placed) until
/// `RUN_FOR` has passed; returns (calls, placements, seconds).
fn measure(
    mut place_batch: impl FnMut(u64) -> Result<usize, String>,
) -> Result<(u64, usize, f64), String> {
    let start = Instant::now();
    let (mut calls, mut placed) = (0u64, 0usize);
    while start.elapsed() < RUN_FOR {
        // Check the clock every 64 calls so reading it costs nothing.
        for _ in 0..64 {
            placed += place_batch(calls)?;
            calls += 1;
        }
    }
    Ok((calls, placed, start.elapsed().as_secs_f64()))
}

fn report(label: &str, (calls, placed, secs): (u64, usize, f64)) {
    println!(
        "{label:<40} {calls:>8} calls, {placed:>8} placements in {secs:.2}s: {:>10.0} calls/s, {:>10.0} placements/s",
        calls as f64 / secs,
        placed as f64 / secs,
    );
}

/// Capacity: 3,750 hosts pass memberOf, each fits 256 tasks (CPU-bound),
/// so 960,000 tasks. A placer is refilled once it is past two thirds full so
/// every measured call succeeds; refills are not timed as placements but do
/// count towards wall time, so the figures are conservative.
fn placer_run(count: usize) -> Result<(u64, usize, f64), String> {
    let req = request(count).map_err(|e| e.to_string())?;
    let mut placer = Placer::from_instances(hosts());
    let mut since_refill = 0usize;
    measure(|seed| {
        if since_refill > 600_000 {
            placer = Placer::from_instances(hosts());
            since_refill = 0;
        }
        let out = placer.place(&req, seed).map_err(|e| e.to_string())?;
        if !out.failures.is_empty() {
            return Err(format!("unexpected failure: {:?}", out.failures[0]));
        }
        since_refill += out.placements.len();
        Ok(out.placements.len())
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("{HOSTS} hosts; memberOf + spread(attribute:ecs.availability-zone) + binpack(memory)");
    report("Placer::place count=1", placer_run(1)?);
    report("Placer::place count=10", placer_run(10)?);

    // The stateless entry point rebuilds its index on every call.
    let req = request(1)?;
    let mut snapshot = hosts();
    report(
        "engine::place count=1 (per-call index)",
        measure(|seed| {
            let out = place(&mut snapshot, &req, seed).map_err(|e| e.to_string())?;
            Ok(out.placements.len())
        })?,
    );

    // The plain-scan oracle scans every host for every task.
    let mut snapshot = hosts();
    report(
        "place_reference count=1 (scan)",
        measure(|seed| {
            let out = place_reference(&mut snapshot, &req, seed).map_err(|e| e.to_string())?;
            Ok(out.placements.len())
        })?,
    );
    Ok(())
}
