//! `batch`: large batch publishes to a hundred streams.

use super::{report_delivery, start_with_h1_streams, Targets};
use crate::harness::params::Params;
use crate::harness::publisher::{publish, publish_phase, Mode, Target};
use crate::harness::report::{thousands, Report};
use crate::harness::server::Env;

pub async fn batch(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "batch";
    let total = p.batch_requests * p.batch_events;
    // The server hands each subscriber a whole batch as one queue entry, so
    // the default queue holds the run.
    let (server, subs, o) = start_with_h1_streams(
        env,
        p,
        report,
        name,
        &["--heartbeat", "60s"],
        (p.batch_streams, total),
        |_| "b".into(),
        (None, None),
    )
    .await?;
    let mode = Mode::Batch {
        requests: p.batch_requests,
        per_request: p.batch_events,
    };
    let target = Target::One {
        topic: "b".into(),
        subscribers: o.opened as u64,
    };
    // For comparison: the same batches to a topic nobody listens to, so
    // the figure is parsing and publishing without the fan-out.
    let alone = publish(
        server.addr,
        Mode::Batch {
            requests: p.batch_requests.min(3),
            per_request: p.batch_events,
        },
        Target::One {
            topic: "nobody".into(),
            subscribers: 0,
        },
        p.data_bytes,
    )
    .await;
    if let Some(e) = alone.errors.first() {
        report.fail(name, format!("batch publish without subscribers: {e}"));
    }
    let phase = publish_phase(env, p, &server, &subs, mode, target).await;
    let m = subs.finish().await;
    let pb = &phase.published;
    let secs = pb.last_ok.saturating_sub(pb.first_send) as f64 / 1e9;
    let rate = pb.events as f64 / secs.max(1e-9);
    let alone_secs = alone.last_ok.saturating_sub(alone.first_send) as f64 / 1e9;
    report.info(
        name,
        "accepted per second, no subscribers",
        format!(
            "{} /s ({} requests × {} events in {alone_secs:.3} s)",
            thousands((alone.events as f64 / alone_secs.max(1e-9)) as u64),
            alone.requests,
            thousands(p.batch_events)
        ),
    );
    report.at_least(
        name,
        "events accepted per second",
        format!(
            "{} /s ({} requests × {} events in {secs:.3} s)",
            thousands(rate as u64),
            p.batch_requests,
            thousands(p.batch_events)
        ),
        rate,
        300_000.0,
        "≥ 300,000/s",
    );
    report_delivery(report, name, &phase, &m, &Targets::default());
    server.stop(report).await;
    Ok(())
}
