//! `idle`: memory per idle HTTP/1.1 stream, connect rate, a connect burst.

use super::start_with_h1_streams;
use crate::harness::params::Params;
use crate::harness::report::Report;
use crate::harness::server::Env;

pub async fn idle(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "idle";
    let targets = (Some(15_000.0), Some(5 * 1024));
    // The one flag this scenario is about: room for every stream it opens.
    let max = (p.idle_streams + p.burst + 16).max(10_000).to_string();
    let (server, mut subs, _) = start_with_h1_streams(
        env,
        p,
        report,
        name,
        &["--max-connections", &max],
        (p.idle_streams, 0),
        |_| "idle".into(),
        targets,
    )
    .await?;

    // The burst: every connect launched at once.
    let b = subs
        .open_h1(server.addr, p.burst, p.idle_streams, p.burst, |_| "idle".into())
        .await;
    if !b.failed.is_empty() {
        report.fail(
            name,
            format!("{} burst streams failed; first: {}", b.failed.len(), b.failed[0]),
        );
    }
    let slow = b.times.iter().filter(|d| d.as_millis() >= 1000).count();
    let value = format!(
        "max {:.1} ms, p50 {:.1} ms; {} of {} ≥ 1 s",
        b.max_ms(),
        b.pct_ms(0.5),
        slow,
        b.opened
    );
    report.at_most(
        name,
        &format!("burst of {} connects", p.burst),
        value,
        b.max_ms(),
        999.9,
        "no connect ≥ 1 s",
    );
    let m = subs.finish().await;
    if m.server_ended > 0 {
        report.note(name, format!("the server ended {} idle streams", m.server_ended));
    }
    if !m.errors.is_empty() {
        report.note(
            name,
            format!("{} idle streams failed; first: {}", m.errors.len(), m.errors[0]),
        );
    }
    server.stop(report).await;
    Ok(())
}
