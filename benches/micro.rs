//! Micro-benchmarks of the hot paths, without sockets and without criterion:
//! a timing loop over many iterations, reported in ns per operation.
//!
//! ```text
//! cargo bench --bench micro
//! ```
//!
//! - `event::encode` of one event with 64-byte and 1 KiB data;
//! - one `Hub::publish` to a topic with 10,000 subscribers (the channels are
//!   drained between rounds, untimed, so no queue fills and no subscriber
//!   is dropped): ns per publish and per delivery.
//!
//! Run by `cargo test --all-targets` too (no `--bench` argument): then it
//! does a few iterations only, as a smoke test.

use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use ssehub::channel::{Chunk, Receiver};
use ssehub::hub::{Hub, HubOptions, MemoryLog, Protocol, Subscribe, Topics};

const SUBSCRIBERS: usize = 10_000;
/// Publishes per round, between two drains; well under the backlog cap.
const PER_ROUND: usize = 256;
const MAX_BACKLOG: usize = 16 * 1024 * 1024;

struct Figure {
    name: String,
    ns: f64,
    detail: String,
}

/// Runs `op` in batches until `budget` has passed (at least `min_iters`
/// times); returns ns per call.
fn time_loop(budget: Duration, min_iters: u64, mut op: impl FnMut()) -> (f64, u64) {
    // Warm-up.
    for _ in 0..min_iters.min(1000) {
        op();
    }
    let start = Instant::now();
    let mut iters = 0u64;
    while iters < min_iters || start.elapsed() < budget {
        for _ in 0..1000 {
            op();
        }
        iters += 1000;
    }
    (start.elapsed().as_nanos() as f64 / iters as f64, iters)
}

fn encode(budget: Duration, min_iters: u64, figures: &mut Vec<Figure>) {
    let id = "1795551404925000001";
    for (label, size) in [("64 B", 64), ("1 KiB", 1024)] {
        let data = "x".repeat(size);
        let (ns, iters) = time_loop(budget, min_iters, || {
            black_box(ssehub::event::encode(
                black_box(id),
                black_box(None),
                black_box(&data),
            ));
        });
        figures.push(Figure {
            name: format!("event::encode, {label} data"),
            ns,
            detail: format!("{iters} iterations"),
        });
    }
}

/// A waker that does nothing: the queues are drained by polling.
struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Takes everything queued; returns how many events that was.
fn drain(rx: &mut Receiver, cx: &mut Context<'_>) -> u64 {
    let mut n = 0;
    while let Poll::Ready(Some(chunk)) = rx.poll_recv(cx, usize::MAX) {
        n += match &chunk {
            Chunk::One(_) => 1,
            Chunk::Many(parts) => parts.len() as u64,
        };
        black_box(chunk);
    }
    n
}

fn publish(rounds: usize, figures: &mut Vec<Figure>) -> Result<(), String> {
    let hub = Hub::new(
        HubOptions {
            max_backlog: MAX_BACKLOG,
            max_closed_topics: 10,
            max_subscribers: 100_000,
        },
        Box::new(MemoryLog::new(1024)),
    );
    let mut subs = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        match hub.subscribe(Topics::Some(vec![Arc::from("t")]), None, Protocol::Http1) {
            Subscribe::Stream(s) => subs.push(s),
            _ => return Err("the hub refused a subscriber".into()),
        }
    }
    let data = "x".repeat(64);
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut timed = Duration::ZERO;
    let mut publishes = 0u64;
    let mut received = 0u64;
    // Warm-up round, untimed.
    for r in 0..=rounds {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            black_box(
                hub.publish(Some("t"), None, black_box(&data))
                    .map_err(|e| format!("{e:?}"))?,
            );
        }
        let elapsed = start.elapsed();
        for s in &mut subs {
            let rx = s.live.as_mut().ok_or("a subscription without a live channel")?;
            let n = drain(rx, &mut cx);
            if r > 0 {
                received += n;
            }
        }
        if r > 0 {
            timed += elapsed;
            publishes += PER_ROUND as u64;
        }
    }
    let expected = publishes * SUBSCRIBERS as u64;
    if received != expected {
        return Err(format!("received {received} deliveries, expected {expected}"));
    }
    let per_publish = timed.as_nanos() as f64 / publishes as f64;
    figures.push(Figure {
        name: format!(
            "Hub::publish, {} subscribers, 64 B",
            thousands(SUBSCRIBERS as u64)
        ),
        ns: per_publish,
        detail: format!("{publishes} publishes"),
    });
    figures.push(Figure {
        name: "  of which per delivery".into(),
        ns: per_publish / SUBSCRIBERS as f64,
        detail: format!("{} deliveries", thousands(expected)),
    });
    Ok(())
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() -> std::process::ExitCode {
    // `cargo bench` passes --bench; `cargo test` does not: a quick smoke run.
    let bench = std::env::args().any(|a| a == "--bench");
    let (budget, min_iters, rounds) = if bench {
        (Duration::from_secs(1), 100_000, 40)
    } else {
        (Duration::ZERO, 1000, 1)
    };
    let mut figures = Vec::new();
    encode(budget, min_iters, &mut figures);
    if let Err(e) = publish(rounds, &mut figures) {
        eprintln!("micro: {e}");
        return std::process::ExitCode::FAILURE;
    }
    println!();
    println!(
        "ssehub micro-benchmarks{}",
        if bench { "" } else { " (cargo test smoke run)" }
    );
    let width = figures.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &figures {
        println!("{:<width$}  {:>12.1} ns   ({})", f.name, f.ns, f.detail);
    }
    std::process::ExitCode::SUCCESS
}
