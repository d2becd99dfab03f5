//! Every count and time limit of a run, at the two sizes.

use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Size {
    Small,
    Full,
}

/// Every count and time limit of a run.
pub struct Params {
    pub size: Size,
    pub data_bytes: usize,
    pub idle_streams: usize,
    pub burst: usize,
    pub fanout_streams: usize,
    pub fanout_events: u64,
    pub fanout_rate: u64,
    pub saturate_streams: usize,
    pub saturate_events: u64,
    pub topics_streams: usize,
    pub topics_rate: u64,
    pub topics_events: u64,
    pub batch_streams: usize,
    pub batch_requests: u64,
    pub batch_events: u64,
    pub h2_conns: usize,
    pub h2_per_conn: usize,
    pub over_conns: usize,
    pub over_per_conn: usize,
    pub over_limit: u32,
    pub over_events: u64,
    pub startup_runs: usize,
    /// One-event writes per round of the floor (a fifth as many ten-event ones).
    pub floor_writes: usize,
    /// `burst`: subscribers, the one batch's events, then single publishes
    /// split over `burst_publishers` connections at once.
    pub burst_streams: usize,
    pub burst_batch: u64,
    pub burst_singles: u64,
    pub burst_publishers: u64,
    /// `stalled`: subscribers, how many stop reading, the events (in
    /// batches of `stalled_batch`), and the server's `--heartbeat`.
    pub stalled_streams: usize,
    pub stalled_stuck: usize,
    pub stalled_events: u64,
    pub stalled_batch: u64,
    pub stalled_heartbeat: Duration,
    /// HTTP/1.1 connects in flight at once while opening streams.
    pub connect_concurrency: usize,
    /// Time one stream (or one h2 `ready`) may take to open.
    pub open_timeout: Duration,
    /// The delivery wait ends when nothing arrived for this long.
    pub drain_idle: Duration,
    /// Hard bound on the delivery wait.
    pub drain_max: Duration,
    /// Hard bound on one scenario.
    pub scenario_limit: Duration,
}

impl Params {
    pub fn new(size: Size) -> Params {
        match size {
            Size::Full => Params {
                size,
                data_bytes: 64,
                idle_streams: 10_000,
                burst: 256,
                fanout_streams: 5_000,
                fanout_events: 200,
                fanout_rate: 10,
                saturate_streams: 2_000,
                saturate_events: 500,
                topics_streams: 5_000,
                topics_rate: 500,
                topics_events: 2_500,
                batch_streams: 100,
                batch_requests: 10,
                batch_events: 10_000,
                h2_conns: 100,
                h2_per_conn: 100,
                over_conns: 20,
                over_per_conn: 150,
                over_limit: 100,
                over_events: 20,
                startup_runs: 5,
                floor_writes: 20_000,
                burst_streams: 2_000,
                burst_batch: 20_000,
                burst_singles: 20_000,
                burst_publishers: 4,
                stalled_streams: 2_000,
                stalled_stuck: 100,
                stalled_events: 100_000,
                stalled_batch: 100,
                stalled_heartbeat: Duration::from_secs(5),
                connect_concurrency: 128,
                open_timeout: Duration::from_secs(2),
                drain_idle: Duration::from_secs(3),
                drain_max: Duration::from_secs(60),
                scenario_limit: Duration::from_secs(240),
            },
            Size::Small => Params {
                size,
                data_bytes: 64,
                idle_streams: 50,
                burst: 16,
                fanout_streams: 50,
                fanout_events: 20,
                fanout_rate: 100,
                saturate_streams: 50,
                saturate_events: 20,
                topics_streams: 50,
                topics_rate: 100,
                topics_events: 20,
                batch_streams: 10,
                batch_requests: 2,
                batch_events: 100,
                h2_conns: 5,
                h2_per_conn: 10,
                over_conns: 2,
                over_per_conn: 15,
                over_limit: 10,
                over_events: 5,
                startup_runs: 2,
                floor_writes: 2_000,
                burst_streams: 50,
                burst_batch: 200,
                burst_singles: 200,
                burst_publishers: 4,
                stalled_streams: 50,
                stalled_stuck: 5,
                stalled_events: 2_000,
                stalled_batch: 100,
                stalled_heartbeat: Duration::from_secs(1),
                connect_concurrency: 16,
                open_timeout: Duration::from_millis(500),
                drain_idle: Duration::from_secs(1),
                drain_max: Duration::from_secs(5),
                scenario_limit: Duration::from_secs(30),
            },
        }
    }
}
