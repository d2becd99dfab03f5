//! `stalled`: 2,000 subscribers on one topic, 100 of which stop reading
//! after the first batch (raw sockets with a 4 KiB receive buffer that
//! never call read again), while 100,000 events are published in batches
//! of 100. The server must drop each stalled subscriber within two
//! heartbeats (its write deadline), keep its memory bounded meanwhile
//! (the peak, VmHWM, is reported), and the other 1,900 must get everything.
//!
//! Flags: `--heartbeat 5s` (the one this scenario is about: it sets the
//! write deadline), so the run is bounded. The drop is timed from the
//! moment the first stalled subscriber stopped reading to the moment the
//! server's side of the last one left ESTABLISHED in /proc/net/tcp (polled
//! every 50 ms): the subscriber itself, reading nothing, cannot see it.

use super::{report_delivery, report_opening, settle_rss, Targets};
use crate::harness::floor::Basis;
use crate::harness::now_nanos;
use crate::harness::params::Params;
use crate::harness::publisher::{measure, publish, Mode, Target};
use crate::harness::report::{thousands, Report, Verdict};
use crate::harness::server::{Env, Server};
use crate::harness::subscribers::{Stall, Subscribers};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// `ADDR:PORT` as /proc/net/tcp writes an IPv4 socket address.
fn proc_addr(a: SocketAddr) -> Option<String> {
    let SocketAddr::V4(v4) = a else { return None };
    Some(format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    ))
}

/// How many of the stalled subscribers' connections the server still holds
/// open: its side of each (local = the server, remote = the subscriber) in
/// state ESTABLISHED in /proc/net/tcp. Once the server closes one, its side
/// leaves ESTABLISHED at once (FIN_WAIT1, the FIN queued behind the data
/// the subscriber never read, or gone on a reset), while the subscriber's
/// side, which reads nothing, cannot tell yet.
fn still_open(server: SocketAddr, remotes: &HashSet<String>) -> Option<usize> {
    let local = proc_addr(server)?;
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    Some(
        table
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().take(4).collect();
                f.len() == 4 && f[1] == local && f[3] == "01" && remotes.contains(f[2])
            })
            .count(),
    )
}

/// When the server closed the stalled subscribers, in `now_nanos` times.
#[derive(Default)]
struct Drops {
    /// When the first was closed, and when the last.
    first: Option<u64>,
    all: Option<u64>,
    /// Closed at the last look.
    closed: usize,
}

/// Looks at /proc/net/tcp every 50 ms until every stalled subscriber's
/// connection is closed on the server's side, `stop` is set, or `limit`
/// passes.
async fn watch_drops(
    server: SocketAddr,
    remotes: HashSet<String>,
    mut stop: watch::Receiver<bool>,
    limit: Duration,
) -> Drops {
    let mut d = Drops::default();
    let deadline = tokio::time::Instant::now() + limit;
    while !*stop.borrow() && tokio::time::Instant::now() < deadline {
        if let Some(open) = still_open(server, &remotes) {
            d.closed = remotes.len() - open.min(remotes.len());
            let now = now_nanos();
            if d.closed > 0 && d.first.is_none() {
                d.first = Some(now);
            }
            if open == 0 {
                d.all = Some(now);
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), stop.changed()).await;
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
    let want = os.opened;
    let mode = Mode::Batch {
        requests: p.stalled_events / p.stalled_batch.max(1),
        per_request: p.stalled_batch.max(1),
    };
    let target = Target::One {
        topic: "t".into(),
        // Only the readers count towards the expected deliveries.
        subscribers: o.opened as u64,
    };
    // The watcher starts once every stalling subscriber has stopped (after
    // the first batch), so it knows their addresses.
    let stalled_addrs = stuck.shared.stalled_addrs.clone();
    let n_stalled = stuck.shared.stalled.clone();
    let limit = p.scenario_limit;
    let watcher = tokio::spawn(async move {
        let t0 = tokio::time::Instant::now();
        while n_stalled.load(Ordering::Relaxed) < want as u64 && t0.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let remotes: HashSet<String> = stalled_addrs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|a| proc_addr(*a))
            .collect();
        watch_drops(addr, remotes, stop_rx, limit).await
    });
    let phase = measure(
        env,
        p,
        &server,
        &readers,
        publish(addr, mode, target, p.data_bytes),
    )
    .await;

    // The drop may come after the last publish: wait for it, up to three
    // heartbeats after the first subscriber stopped reading.
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
        "{} of {} stopped readers closed by the server (seen at their end: {}); all by {}, first at {} after the first stopped reading",
        drops.closed,
        n_stalled,
        ms.server_ended,
        all_s.map_or("never".into(), |s| format!("{s:.2} s")),
        after(drops.first).map_or("never".into(), |s| format!("{s:.2} s")),
    );
    let met = all_s.is_some_and(|s| s <= limit) && n_stalled == want as u64;
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
    if let Some(c) = server.subscriber_counters().await {
        report.info(name, "server's subscriber counters", c);
    }
    server.stop(report).await;
    Ok(())
}
