//! Berth's task placement: pure, deterministic, no IO.
//!
//! - [`cql`] owns ECS's cluster query language (parse + evaluate against one
//!   container instance).
//! - [`engine`] owns choosing container instances for N tasks: resource and
//!   constraint filtering, strategy ordering, and ECS failure reasons.
//! - [`placer`] owns the persistent per-cluster snapshot the server places
//!   on, and keeps its placement indexes across calls.
//!
//! Internal: `view` is the incremental placement index for one request
//! shape (shared by [`engine::place`] and [`placer::Placer`]); `blockset` is
//! the ordered set with rank/select it is built from.

mod blockset;
pub mod cql;
pub mod engine;
pub mod placer;
mod view;
