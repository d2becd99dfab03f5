//! `h2`: fan-out over h2c, many streams per connection.

use super::{report_delivery, report_opening, report_rss, settle_rss, Targets};
use crate::harness::params::Params;
use crate::harness::publisher::{publish_phase, Mode, Target};
use crate::harness::report::{thousands, Report, Verdict};
use crate::harness::server::{Env, Server};
use crate::harness::subscribers::Subscribers;

pub async fn h2(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "h2";
    let server = Server::start(env, report, name, &["--heartbeat", "60s"]).await?;
    let before = settle_rss(&server).await;
    let mut subs = Subscribers::new(p, p.fanout_events);
    let o = subs.open_h2(server.addr, p.h2_conns, p.h2_per_conn, "t").await;
    let after = settle_rss(&server).await;
    report_opening(report, name, &o, None);
    if o.refused + o.not_opened > 0 {
        report.note(
            name,
            format!("{} streams refused, {} not opened", o.refused, o.not_opened),
        );
    }
    report_rss(report, name, before, after, o.opened, Some(2 * 1024));
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
    if let Some(v) = report_delivery(report, name, &phase, &m, &t) {
        let value = format!("{} /CPU-s", thousands(v as u64));
        match report.fanout_per_cpu_s {
            Some(f) => report.at_least(
                name,
                "deliveries per CPU-second",
                format!("{value} = {:.2}× fanout", v / f),
                v,
                2.0 * f,
                &format!("≥ 2× fanout ({})", thousands((2.0 * f) as u64)),
            ),
            None => report.row(
                name,
                "deliveries per CPU-second",
                value,
                "≥ 2× fanout (fanout not run)".into(),
                Verdict::Info,
            ),
        }
    }
    server.stop(report).await;
    Ok(())
}
