//! `h2-tune`: the HTTP/2 window and send-buffer settings side by side: the
//! new defaults against hyper's, at 100 and 250 streams per connection
//! (rows `h2-tune-STREAMS-new` and `-hyper`; 1,000 per connection is past this machine's memory for the client and
//! server together, at 100 connections). For each: RSS per stream, CPU per
//! delivery and p99, from the same fan-out as `h2`.

use super::{report_delivery, report_opening, report_rss, settle_rss, Targets};
use crate::harness::params::Params;
use crate::harness::publisher::{publish_phase, Mode, Target};
use crate::harness::report::Report;
use crate::harness::server::{Env, Server};
use crate::harness::subscribers::Subscribers;

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
    for per_conn in [p.h2_per_conn, p.h2_per_conn * 5 / 2] {
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
            let o = subs.open_h2(server.addr, p.h2_conns, per_conn, "t").await;
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
        }
    }
    Ok(())
}
