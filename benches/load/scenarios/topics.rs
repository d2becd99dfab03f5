//! `topics`: one subscriber per topic, publishes to random topics.

use super::{report_delivery, start_with_h1_streams, Targets};
use crate::harness::params::Params;
use crate::harness::publisher::{publish_phase, Mode, Target, MIN_TICKS};
use crate::harness::report::{thousands, Report, Verdict};
use crate::harness::server::Env;

pub async fn topics(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "topics";
    let streams = (p.topics_streams, p.topics_events);
    let (server, subs, _) = start_with_h1_streams(
        env,
        p,
        report,
        name,
        &[],
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
    report_delivery(report, name, &phase, &m, &Targets::default());
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
        let ticks = (cpu * env.clk_tck).round() as u64;
        let value = format!("{us:.1} µs ({cpu:.2} CPU-s = {ticks} ticks)");
        if ticks >= MIN_TICKS {
            report.at_most(name, "server CPU per publish", value, us, 60.0, "≤ 60 µs");
        } else {
            let value = format!("{value}: too few ticks to judge");
            report.row(
                name,
                "server CPU per publish",
                value,
                "≤ 60 µs".into(),
                Verdict::Info,
            );
        }
    }
    server.stop(report).await;
    Ok(())
}
