//! `fanout`: one topic, many streams, paced publishes: each event reaches an
//! idle subscriber, so each delivery is one write (the one-event floor).
//! Flags: `--heartbeat 60s` (no heartbeat in the CPU figure).

use super::{publish_to_all, report_delivery, start_with_h1_streams, Targets};
use crate::harness::floor::Basis;
use crate::harness::params::Params;
use crate::harness::publisher::Mode;
use crate::harness::report::{thousands, Report};
use crate::harness::server::Env;

pub async fn fanout(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "fanout";
    let streams = (p.fanout_streams, p.fanout_events);
    let (server, subs, o) = start_with_h1_streams(
        env,
        p,
        report,
        name,
        &["--heartbeat", "60s"],
        streams,
        |_| "t".into(),
        (None, None),
    )
    .await?;
    let mode = Mode::Rate {
        events: p.fanout_events,
        per_sec: p.fanout_rate,
    };
    let (phase, m) = publish_to_all(env, p, &server, subs, ("t", o.opened), mode).await;
    let t = Targets {
        zero_lost: true,
        p99_ms: Some(50.0),
        zero_closed: true,
        cpu_basis: Basis::One,
        cpu_ratio: Some(1.1),
        ..Targets::default()
    };
    let per_cpu = report_delivery(report, name, &phase, &m, &t);
    if let Some(v) = per_cpu {
        report.info(
            name,
            "deliveries per CPU-second",
            format!("{} /CPU-s", thousands(v as u64)),
        );
    }
    report.fanout_per_cpu_s = per_cpu;
    server.stop(report).await;
    Ok(())
}
