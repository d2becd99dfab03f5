//! `h2-overlimit`: more streams per connection than the server allows.

use super::{report_delivery, Targets};
use crate::harness::params::Params;
use crate::harness::publisher::{publish_phase, Mode, Target};
use crate::harness::report::{thousands, Report, Verdict};
use crate::harness::server::{Env, Server};
use crate::harness::subscribers::Subscribers;

pub async fn h2_overlimit(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "h2-overlimit";
    let limit = p.over_limit.to_string();
    let server = Server::start(env, report, name, &["--h2-max-concurrent-streams", &limit]).await?;
    let mut subs = Subscribers::new(p, p.over_events);
    let o = subs
        .open_h2(server.addr, p.over_conns, p.over_per_conn, "t")
        .await;
    let asked = p.over_conns * p.over_per_conn;
    let allowed = p.over_conns * p.over_limit as usize;
    report.row(
        name,
        "streams opened",
        format!(
            "{} of {asked} ({} conns × {}; limit {})",
            o.opened, p.over_conns, p.over_per_conn, p.over_limit
        ),
        format!("{allowed} (= conns × limit)"),
        if o.opened == allowed {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
    report.info(
        name,
        "streams refused / never opened",
        format!(
            "{} refused (RST_STREAM), {} never opened (client held them back past {:?})",
            o.refused, o.not_opened, p.open_timeout
        ),
    );
    if !o.failed.is_empty() {
        report.fail(
            name,
            format!("{} streams failed; first: {}", o.failed.len(), o.failed[0]),
        );
    }
    let mode = Mode::Rate {
        events: p.over_events,
        per_sec: p.fanout_rate.max(10),
    };
    let target = Target::One {
        topic: "t".into(),
        subscribers: o.opened as u64,
    };
    let phase = publish_phase(env, p, &server, &subs, mode, target).await;
    let conn_errors = subs.h2_conn_errors.lock().unwrap().len();
    let m = subs.finish().await;
    let lost = phase.published.expected.saturating_sub(m.unique);
    report.row(
        name,
        "connections alive after the overflow",
        format!(
            "{} of {}; opened streams got {} of {} events",
            p.over_conns - conn_errors.min(p.over_conns),
            p.over_conns,
            thousands(m.unique),
            thousands(phase.published.expected)
        ),
        "all, 0 lost".into(),
        if conn_errors == 0 && lost == 0 && m.server_ended == 0 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    );
    report_delivery(report, name, &phase, &m, &Targets::default());
    server.stop(report).await;
    Ok(())
}
