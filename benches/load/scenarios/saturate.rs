//! `saturate`: one topic, single publishes back to back, at the default
//! flags: subscribers fall behind, so the server writes several events at
//! once (compared with the ten-events-per-write floor).

use super::{publish_to_all, report_delivery, start_with_h1_streams, Targets};
use crate::harness::floor::Basis;
use crate::harness::params::Params;
use crate::harness::publisher::Mode;
use crate::harness::report::{thousands, Report};
use crate::harness::server::Env;

pub async fn saturate(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "saturate";
    let streams = (p.saturate_streams, p.saturate_events);
    let (server, subs, o) =
        start_with_h1_streams(env, p, report, name, &[], streams, |_| "t".into(), (None, None)).await?;
    let mode = Mode::BackToBack {
        events: p.saturate_events,
    };
    let (phase, m) = publish_to_all(env, p, &server, subs, ("t", o.opened), mode).await;
    let t = Targets {
        zero_lost: true,
        per_sec: Some(600_000.0),
        zero_closed: true,
        cpu_basis: Basis::TenPerEvent,
        cpu_ratio: Some(1.5),
        ..Targets::default()
    };
    report_delivery(report, name, &phase, &m, &t);
    let pb = &phase.published;
    let secs = pb.last_ok.saturating_sub(pb.first_send) as f64 / 1e9;
    if secs > 0.0 {
        report.info(
            name,
            "publishes per second",
            format!(
                "{} /s (each waits for its 200)",
                thousands((pb.events as f64 / secs) as u64)
            ),
        );
    }
    server.stop(report).await;
    Ok(())
}
