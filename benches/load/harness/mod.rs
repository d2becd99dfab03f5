//! The shared harness: everything a scenario needs to start the server,
//! drive it and report what it saw.
//!
//! - `params`: every count and time limit, at the small and full sizes.
//! - `sys`: core pinning, the descriptor limit, CPU clocks.
//! - `server`: the server under test, spawned pinned to core 0.
//! - `floor`: the cost of one loopback write, measured on this machine.
//! - `decode`: the chunked decoder and the per-subscriber tally.
//! - `subscribers`: HTTP/1.1 and h2c subscribers, opened in bulk.
//! - `publisher`: single, paced and batch publishes, and a measured phase.
//! - `report`: the table of figures and targets.

pub mod decode;
pub mod floor;
pub mod params;
pub mod publisher;
pub mod report;
pub mod server;
pub mod subscribers;
pub mod sys;

use std::sync::OnceLock;
use std::time::Instant;

/// The one clock: nanoseconds since the harness started.
static START: OnceLock<Instant> = OnceLock::new();

/// Starts the clock (first call) and reads it.
pub fn now_nanos() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}
