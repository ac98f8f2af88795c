//! The ECS wire vocabulary: request and response types generated from the
//! botocore model, timestamps as ECS puts them on the wire, ARNs, and the one
//! mapping from Berth's errors to ECS error names and HTTP statuses.

pub mod agent;
pub mod arn;
pub mod error;
#[rustfmt::skip]
pub mod generated;
mod timestamp;

pub use error::{EcsError, ErrorCode};
pub use generated::*;
pub use timestamp::Timestamp;
