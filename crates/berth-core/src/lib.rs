//! The domain rules of ECS, free of IO: pure functions that take wire types
//! from `berth-types` and decide what ECS would accept, compute, or reject.
//! Nothing here touches the network, the clock, the store or Docker, so the
//! rules can be tested (and fuzzed) in isolation and shared by every caller.

pub mod capacity;
pub mod launch;
pub mod lifecycle;
/// The service scheduler's decisions: one pure round, (snapshot, state, now) → actions.
pub mod service;
pub mod taskdef;
