//! Tests of the service scheduler. `sim` holds the builders and a tiny
//! cluster that applies decisions the way the server will (stops become
//! STOPPING then STOPPED, launches become PENDING then RUNNING), so the
//! worked examples of `ecs-semantics.md` §2.4 can be played round by round.

mod breaker;
mod daemon;
mod draining;
mod events;
mod examples;
mod health;
mod history;
mod lost;
mod props;
mod scale_in;
mod sim;
mod stable;
mod throttle;
