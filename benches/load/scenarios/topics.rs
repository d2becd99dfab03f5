//! `topics`: one subscriber per topic, publishes to random topics.

use super::{report_delivery, start_with_h1_streams, Targets};
use crate::harness::floor::Basis;
use crate::harness::params::Params;
use crate::harness::publisher::{publish_phase, Mode, Target, MIN_CPU_SECS};
use crate::harness::report::{thousands, Report};
use crate::harness::server::Env;

pub async fn topics(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "topics";
    let streams = (p.topics_streams, p.topics_events);
    let (server, subs, _) = start_with_h1_streams(
        env,
        p,
        report,
        name,
        &["--heartbeat", "60s"],
        streams,
        |i| format!("t{i}"),
        (None, None),
    )
    .await?;
    let mode = Mode::Rate {
        events: p.topics_events,
        per_sec: p.topics_rate,
    };
    let phase = publish_phase(env, p, &server, &subs, mode, Target::Random(p.topics_streams)).await;
    let m = subs.finish().await;
    let t = Targets {
        zero_lost: true,
        cpu_basis: Basis::One,
        ..Targets::default()
    };
    report_delivery(report, name, &phase, &m, &t);
    let pb = &phase.published;
    let secs = pb.last_ok.saturating_sub(pb.first_send) as f64 / 1e9;
    report.info(
        name,
        "publish rate achieved",
        format!(
            "{} /s ({} publishes in {secs:.2} s)",
            thousands((pb.events as f64 / secs.max(1e-9)) as u64),
            pb.events
        ),
    );
    if let Some(cpu) = phase.cpu_secs {
        let us = cpu * 1e6 / pb.events.max(1) as f64;
        let detail = format!("{cpu:.3} CPU-s / {} publishes", thousands(pb.events));
        report.cpu(
            name,
            "server CPU per publish, with its HTTP request",
            us,
            &detail,
            Basis::One,
            Some(5.0),
            cpu >= MIN_CPU_SECS,
        );
    }
    server.stop(report).await;
    Ok(())
}
