//! `h2-tune`: the HTTP/2 window and send-buffer settings side by side: the
//! new defaults against hyper's, at 100 and 250 streams per connection over
//! 100 connections, and at 1,000 per connection over 10 (100,000 streams
//! would be past this machine's memory for the client and server together;
//! 10 × 1,000 keeps the 10,000 streams of the first row). Rows
//! `h2-tune-STREAMS-new` and `-hyper`. For each: RSS per stream, CPU per
//! delivery and p99, from the same fan-out as `h2`. At 100 per connection,
//! also the memory pinned by 10 % more streams that stop reading (window 0)
//! while bigger events are published to them (`…-pinned`).

use super::{report_delivery, report_opening, report_rss, settle_rss, Targets};
use crate::harness::params::Params;
use crate::harness::publisher::{publish, publish_phase, Mode, Target};
use crate::harness::report::Report;
use crate::harness::server::{Env, Server};
use crate::harness::subscribers::{Stall, Subscribers};

/// hyper's own defaults for what the new flags set.
const HYPER_DEFAULTS: &[&str] = &[
    "--h2-initial-stream-window",
    "1048576",
    "--h2-initial-connection-window",
    "1048576",
    "--h2-max-send-buffer",
    "409600",
    "--h2-max-local-error-resets",
    "1024",
];

pub async fn h2_tune(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let rows = [
        (p.h2_conns, p.h2_per_conn),
        (p.h2_conns, p.h2_per_conn * 5 / 2),
        ((p.h2_conns / 10).max(1), p.h2_per_conn * 10),
    ];
    for (conns, per_conn) in rows {
        for (label, extra) in [("new", &[][..]), ("hyper", HYPER_DEFAULTS)] {
            // The name is also the server log's file name: no slash.
            let name = format!("h2-tune-{per_conn}-{label}");
            let streams = per_conn.to_string();
            // More streams than --max-connections' default 10,000 at 250 per connection.
            let mut flags = vec![
                "--heartbeat",
                "60s",
                "--max-connections",
                "100000",
                "--h2-max-concurrent-streams",
                &streams,
            ];
            flags.extend_from_slice(extra);
            let server = Server::start(env, report, &name, &flags).await?;
            let before = settle_rss(&server).await;
            let mut subs = Subscribers::new(p, p.fanout_events);
            let o = subs.open_h2(server.addr, conns, per_conn, "t").await;
            let after = settle_rss(&server).await;
            report_opening(report, &name, &o, None);
            report_rss(report, &name, before, after, o.opened, Some(2 * 1024));
            let mode = Mode::Rate {
                events: p.fanout_events,
                per_sec: p.fanout_rate,
            };
            let target = Target::One {
                topic: "t".into(),
                subscribers: o.opened as u64,
            };
            let phase = publish_phase(env, p, &server, &subs, mode, target).await;
            let m = subs.finish().await;
            let t = Targets {
                zero_lost: true,
                ..Targets::default()
            };
            report_delivery(report, &name, &phase, &m, &t);
            server.stop(report).await;
            if per_conn == p.h2_per_conn {
                pinned(env, p, report, &format!("{name}-pinned"), &flags, conns, per_conn).await?;
            }
        }
    }
    Ok(())
}

/// Events published to the stalled streams, and their data size: 200 KB
/// per stream, more than the new default send buffer (64 KiB) and less than
/// hyper's (400 KiB), so the two settings differ in where the events wait.
const PINNED_EVENTS: u64 = 200;
const PINNED_BYTES: usize = 1_000;

/// A server of its own with the row's flags (a fresh heap: on one that has
/// already served the fan-out, new allocations reuse freed memory and RSS
/// does not show them), 10 % of the row's connections (as many streams
/// each) that never open their window, then 200 events of 1 KB to their
/// topic. The RSS they add, per stalled stream, is what a stalled stream
/// pins until the stall rule (two heartbeats; 60 s here) drops it. It
/// includes each stream's share of the 200 events in the history (200 KB
/// over all of them).
async fn pinned(
    env: &Env,
    p: &Params,
    report: &mut Report,
    name: &str,
    flags: &[&str],
    conns: usize,
    per_conn: usize,
) -> Result<(), String> {
    let server = Server::start(env, report, name, flags).await?;
    let mut stuck = Subscribers::new(p, PINNED_EVENTS);
    stuck.shared.stall = Some(Stall { after: 0, rcvbuf: 0 });
    let o = stuck
        .open_h2(server.addr, (conns / 10).max(1), per_conn, "pinned")
        .await;
    let before = settle_rss(&server).await;
    let target = Target::One {
        topic: "pinned".into(),
        subscribers: o.opened as u64,
    };
    let published = publish(
        server.addr,
        Mode::BackToBack {
            events: PINNED_EVENTS,
        },
        target,
        PINNED_BYTES,
    )
    .await;
    let after = settle_rss(&server).await;
    let _ = stuck.finish().await;
    server.stop(report).await;
    let (Some(before), Some(after)) = (before, after) else {
        report.note(name, "could not read the server's VmRSS".into());
        return Ok(());
    };
    let per = after.saturating_sub(before) as f64 / o.opened.max(1) as f64;
    report.info(
        name,
        "RSS pinned per stream that stops reading",
        format!(
            "{per:.0} B ({} streams with window 0; {} events of {PINNED_BYTES} B published to them; {:.1} → {:.1} MiB)",
            o.opened,
            published.events,
            before as f64 / 1048576.0,
            after as f64 / 1048576.0
        ),
    );
    Ok(())
}
