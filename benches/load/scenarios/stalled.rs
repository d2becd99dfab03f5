//! `stalled`: 2,000 subscribers on one topic, 100 of which stop reading
//! after the first batch (raw sockets with a 4 KiB receive buffer that
//! never call read again), while 100,000 events are published in batches
//! of 100. The server must drop each stalled subscriber within two
//! heartbeats (its write deadline), keep its memory bounded meanwhile
//! (the peak, VmHWM, is reported), and the other 1,900 must get everything.
//!
//! Flags: `--heartbeat 5s` (the one this scenario is about: it sets the
//! write deadline), so the run is bounded; the drop is timed from
//! `/metrics` (its `ssehub_subscribers_*_total` counters), polled every
//! 100 ms, from the moment the last stalled subscriber stopped reading.

use super::{report_delivery, report_opening, settle_rss, Targets};
use crate::harness::floor::Basis;
use crate::harness::now_nanos;
use crate::harness::params::Params;
use crate::harness::publisher::{measure, publish, Mode, Target};
use crate::harness::report::{thousands, Report, Verdict};
use crate::harness::server::{Env, Server};
use crate::harness::subscribers::{Stall, Subscribers};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Subscribers the server has closed so far: the sum of its
/// `ssehub_subscribers_*_total` counters (dropped for a full queue or
/// backlog, closed as dead), whatever the server version calls them.
async fn closed_subscribers(addr: SocketAddr) -> Option<u64> {
    let get = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(2), get).await.ok()??;
    let text = String::from_utf8_lossy(&buf);
    let mut sum = 0;
    let mut any = false;
    for line in text.lines() {
        let Some((name, value)) = line.split_once(' ') else {
            continue;
        };
        if name.starts_with("ssehub_subscribers_") && name.ends_with("_total") {
            sum += value.trim().parse::<u64>().ok()?;
            any = true;
        }
    }
    any.then_some(sum)
}

/// What the /metrics watcher saw, in `now_nanos` times.
#[derive(Default)]
struct Drops {
    /// When the closed count first went up, and when it reached the target.
    first: Option<u64>,
    all: Option<u64>,
    /// Subscribers closed at the last poll.
    closed: u64,
    polls: u64,
    failed_polls: u64,
}

/// Polls /metrics every 100 ms until `want` subscribers are closed, `stop`
/// is set, or `limit` passes.
async fn watch_drops(addr: SocketAddr, want: u64, mut stop: watch::Receiver<bool>, limit: Duration) -> Drops {
    let mut d = Drops::default();
    let base = closed_subscribers(addr).await.unwrap_or(0);
    let deadline = tokio::time::Instant::now() + limit;
    while !*stop.borrow() && tokio::time::Instant::now() < deadline {
        d.polls += 1;
        match closed_subscribers(addr).await {
            Some(n) => {
                d.closed = n.saturating_sub(base);
                let now = now_nanos();
                if d.closed > 0 && d.first.is_none() {
                    d.first = Some(now);
                }
                if d.closed >= want && d.all.is_none() {
                    d.all = Some(now);
                    break;
                }
            }
            None => d.failed_polls += 1,
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), stop.changed()).await;
    }
    d
}

pub async fn stalled(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "stalled";
    let hb = p.stalled_heartbeat;
    let hb_flag = format!("{}ms", hb.as_millis());
    let server = Server::start(env, report, name, &["--heartbeat", &hb_flag]).await?;
    let addr = server.addr;
    let n_readers = p.stalled_streams.saturating_sub(p.stalled_stuck);

    let mut readers = Subscribers::new(p, p.stalled_events);
    readers.shared.checks.latency = false;
    let o = readers
        .open_h1(addr, n_readers, 0, p.connect_concurrency, |_| "t".into())
        .await;
    report_opening(report, name, &o, None);
    let mut stuck = Subscribers::new(p, p.stalled_events);
    stuck.shared.checks.latency = false;
    stuck.shared.stall = Some(Stall {
        after: p.stalled_batch,
        rcvbuf: 4096,
    });
    let os = stuck
        .open_h1(addr, p.stalled_stuck, n_readers, p.connect_concurrency, |_| {
            "t".into()
        })
        .await;
    if !os.failed.is_empty() {
        report.fail(
            name,
            format!(
                "{} stalling streams failed to open; first: {}",
                os.failed.len(),
                os.failed[0]
            ),
        );
    }
    let rss_open = settle_rss(&server).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let want = os.opened as u64;
    let watcher = tokio::spawn(watch_drops(addr, want, stop_rx, p.scenario_limit));
    let mode = Mode::Batch {
        requests: p.stalled_events / p.stalled_batch.max(1),
        per_request: p.stalled_batch.max(1),
    };
    let target = Target::One {
        topic: "t".into(),
        // Only the readers count towards the expected deliveries.
        subscribers: o.opened as u64,
    };
    let phase = measure(
        env,
        p,
        &server,
        &readers,
        publish(addr, mode, target, p.data_bytes),
    )
    .await;

    // The drop may come after the last publish: wait for it, up to three
    // heartbeats after the last subscriber stopped reading.
    let stalled_at = stuck.shared.stalled_at.load(Ordering::Relaxed);
    let n_stalled = stuck.shared.stalled.load(Ordering::Relaxed);
    let wait_until = stalled_at + 3 * hb.as_nanos() as u64;
    while !watcher.is_finished() && now_nanos() < wait_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    let drops = watcher.await.unwrap_or_default();
    let peak = server.peak_rss();
    let m = readers.finish().await;
    let ms = stuck.finish().await;

    let t = Targets {
        zero_lost: true,
        zero_closed: true,
        cpu_basis: Basis::TenPerEvent,
        ..Targets::default()
    };
    report_delivery(report, name, &phase, &m, &t);

    let after = |at: Option<u64>| at.map(|t| t.saturating_sub(stalled_at) as f64 / 1e9);
    let limit = 2.0 * hb.as_secs_f64();
    let all_s = after(drops.all);
    let value = format!(
        "{} of {} stopped readers closed by the server (seen at their end: {}); all by {}, first at {} after the last stopped reading",
        drops.closed.min(want),
        n_stalled,
        ms.server_ended,
        all_s.map_or("never".into(), |s| format!("{s:.2} s")),
        after(drops.first).map_or("never".into(), |s| format!("{s:.2} s")),
    );
    let met = all_s.is_some_and(|s| s <= limit) && n_stalled == want;
    report.row(
        name,
        "stopped readers dropped",
        value,
        format!("all within 2 × --heartbeat = {limit:.0} s"),
        if !report.judge {
            Verdict::Info
        } else if met {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
    if drops.closed > want {
        report.note(
            name,
            format!(
                "the server closed {} subscribers, more than the {want} that stopped reading",
                drops.closed
            ),
        );
    }
    if drops.failed_polls > 0 {
        report.note(
            name,
            format!("{} of {} /metrics polls failed", drops.failed_polls, drops.polls),
        );
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    report.info(
        name,
        "server peak RSS (VmHWM)",
        format!(
            "{:.1} MiB ({:.1} MiB with the {} streams open, before publishing)",
            peak.map_or(f64::NAN, mib),
            rss_open.map_or(f64::NAN, mib),
            thousands((o.opened + os.opened) as u64)
        ),
    );
    server.stop(report).await;
    Ok(())
}
