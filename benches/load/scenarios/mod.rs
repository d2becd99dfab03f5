//! The scenarios, one file each, and the reporting they share.
//!
//! Each scenario starts its own server with the default flags plus only the
//! ones it is about (listed in the report's `flags` row), drives it, and
//! adds rows to the report. `run_scenario` bounds each one in time.

mod batch;
mod burst;
mod fanout;
mod h2;
mod h2_overlimit;
mod h2_tune;
mod idle;
mod saturate;
mod stalled;
mod startup;
mod topics;

use crate::harness::floor::Basis;
use crate::harness::params::Params;
use crate::harness::publisher::{publish_phase, Mode, Phase, Target, MIN_CPU_SECS};
use crate::harness::report::{thousands, Report, Verdict};
use crate::harness::server::{Env, Server};
use crate::harness::subscribers::{Merged, Opening, Subscribers};
use std::future::Future;
use std::time::{Duration, Instant};

/// Every scenario, in the order a full run takes them.
pub const SCENARIOS: [&str; 11] = [
    "idle",
    "fanout",
    "saturate",
    "burst",
    "topics",
    "batch",
    "stalled",
    "h2",
    "h2-overlimit",
    "h2-tune",
    "startup",
];

pub fn report_opening(report: &mut Report, name: &str, o: &Opening, target_rate: Option<f64>) {
    let value = format!(
        "{} streams/s ({} in {:.2} s; p50 {:.1} ms, max {:.1} ms)",
        thousands(o.rate() as u64),
        thousands(o.opened as u64),
        o.elapsed.as_secs_f64(),
        o.pct_ms(0.5),
        o.max_ms(),
    );
    match target_rate {
        Some(t) => report.at_least(
            name,
            "connect rate",
            value,
            o.rate(),
            t,
            &format!("≥ {}/s", thousands(t as u64)),
        ),
        None => report.info(name, "connect rate", value),
    }
    println!(
        "[{name}] opened {} of {} streams in {:.2} s",
        o.opened,
        o.requested,
        o.elapsed.as_secs_f64()
    );
    if !o.failed.is_empty() {
        report.fail(
            name,
            format!(
                "{} streams failed to open; first: {}",
                o.failed.len(),
                o.failed[0]
            ),
        );
    }
}

pub fn report_rss(
    report: &mut Report,
    name: &str,
    before: Option<u64>,
    after: Option<u64>,
    streams: usize,
    target: Option<u64>,
) {
    let (Some(before), Some(after)) = (before, after) else {
        report.note(name, "could not read the server's VmRSS".into());
        return;
    };
    let per = after.saturating_sub(before) as f64 / streams.max(1) as f64;
    let value = format!(
        "{:.0} B = {:.2} KiB ({:.1} → {:.1} MiB)",
        per,
        per / 1024.0,
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    match target {
        Some(t) => report.at_most(
            name,
            "server RSS per stream",
            value,
            per,
            t as f64,
            &format!("≤ {} KiB", t / 1024),
        ),
        None => report.info(name, "server RSS per stream", value),
    }
}

/// Targets of a delivery scenario (None: reported without a target).
#[derive(Default)]
pub struct Targets {
    pub zero_lost: bool,
    /// No stream ended by the server (or with an error) during the run.
    pub zero_closed: bool,
    /// Every subscriber got its events in order (ids increasing, and each
    /// publisher's sequence numbers increasing).
    pub in_order: bool,
    pub p99_ms: Option<f64>,
    pub per_sec: Option<f64>,
    /// The floor server CPU per delivery is compared with, and the target
    /// ratio to it, if any.
    pub cpu_basis: Basis,
    pub cpu_ratio: Option<f64>,
}

/// Delivery figures; returns deliveries per server CPU-second.
pub fn report_delivery(
    report: &mut Report,
    name: &str,
    phase: &Phase,
    m: &Merged,
    t: &Targets,
) -> Option<f64> {
    let pb = &phase.published;
    if !pb.errors.is_empty() {
        report.fail(
            name,
            format!("{} publish errors; first: {}", pb.errors.len(), pb.errors[0]),
        );
    }
    let lost = pb.expected.saturating_sub(m.unique);
    let value = format!(
        "{} of {} (lost {}, dup {}, reordered {})",
        thousands(m.delivered),
        thousands(pb.expected),
        thousands(lost),
        m.dups,
        m.reordered
    );
    let clean = lost == 0 && m.dups == 0 && m.reordered == 0 && m.bad == 0;
    if t.zero_lost {
        let verdict = if clean { Verdict::Met } else { Verdict::Missed };
        report.row(name, "delivered / expected", value, "0 lost".into(), verdict);
    } else {
        report.info(name, "delivered / expected", value);
    }
    if m.bad > 0 {
        report.note(
            name,
            format!("{} data lines that were not the harness's events", m.bad),
        );
    }
    if lost > 0 {
        report.note(
            name,
            format!("{lost} deliveries lost of {} expected", pb.expected),
        );
    }
    if m.server_ended > 0 {
        report.note(
            name,
            format!(
                "the server ended {} of {} streams during the run",
                m.server_ended, m.streams
            ),
        );
    }
    if !m.errors.is_empty() {
        report.note(
            name,
            format!(
                "{} streams ended with an error; first: {}",
                m.errors.len(),
                m.errors[0]
            ),
        );
    }
    for e in m.h2_conn_errors.iter().take(3) {
        report.note(name, e.clone());
    }
    let closed = m.server_ended + m.errors.len();
    let value = format!(
        "{closed} of {} ({} ended by the server, {} with an error)",
        thousands(m.streams as u64),
        m.server_ended,
        m.errors.len()
    );
    if t.zero_closed {
        let verdict = if closed == 0 {
            Verdict::Met
        } else {
            Verdict::Missed
        };
        report.row(name, "streams closed during the run", value, "0".into(), verdict);
    } else {
        report.info(name, "streams closed during the run", value);
    }
    if t.in_order {
        let value = format!(
            "{} events behind an earlier one of their publisher, {} ids not increasing",
            m.reordered, m.id_disorder
        );
        let verdict = if m.reordered == 0 && m.id_disorder == 0 {
            Verdict::Met
        } else {
            Verdict::Missed
        };
        report.row(name, "order", value, "every subscriber in order".into(), verdict);
    } else if m.id_disorder > 0 {
        report.note(
            name,
            format!("{} ids not increasing on their stream", m.id_disorder),
        );
    }

    let lat = format!(
        "p50 {:.2} / p99 {:.2} / max {:.2} ms",
        m.lat_ms(0.5),
        m.lat_ms(0.99),
        m.lat_ms(1.0)
    );
    match t.p99_ms {
        _ if m.lat_us.is_empty() => {}
        Some(limit) => report.at_most(
            name,
            "latency",
            lat,
            m.lat_ms(0.99),
            limit,
            &format!("p99 ≤ {limit} ms"),
        ),
        None => report.info(name, "latency", lat),
    }

    let window = m.last_rx.saturating_sub(pb.first_send) as f64 / 1e9;
    let per_sec = if window > 0.0 {
        m.delivered as f64 / window
    } else {
        0.0
    };
    let value = format!("{} /s (over {:.2} s)", thousands(per_sec as u64), window);
    match t.per_sec {
        Some(limit) => report.at_least(
            name,
            "deliveries per second",
            value,
            per_sec,
            limit,
            &format!("≥ {}/s", thousands(limit as u64)),
        ),
        None => report.info(name, "deliveries per second", value),
    }

    let own_us = phase.harness_cpu * 1e6 / m.delivered.max(1) as f64;
    report.info(
        name,
        "harness CPU (its one core)",
        format!(
            "{:.0}% busy, {own_us:.2} µs per delivery; other processes: {}",
            phase.harness_busy * 100.0,
            phase
                .others_busy
                .map_or("?".into(), |o| format!("{:.0}% of a core", o * 100.0))
        ),
    );
    if let Some(o) = phase.others_busy.filter(|o| *o > 0.15) {
        report.note(
            name,
            format!(
                "other processes used {:.0}% of a core during the publish phase: its figures are noisy",
                o * 100.0
            ),
        );
    }
    if phase.harness_busy > 0.8 {
        report.note(
            name,
            format!(
                "the harness was {:.0}% busy during the publish phase: its latency and rate figures are \
                 bounded by the client as much as by the server",
                phase.harness_busy * 100.0
            ),
        );
    }

    let cpu = phase.cpu_secs?;
    if m.delivered == 0 {
        return None;
    }
    let us = cpu * 1e6 / m.delivered as f64;
    let detail = format!("{cpu:.3} CPU-s / {} deliveries", thousands(m.delivered));
    report.cpu(
        name,
        "server CPU per delivery",
        us,
        &detail,
        t.cpu_basis,
        t.cpu_ratio,
        cpu >= MIN_CPU_SECS,
    );
    (cpu > 0.0).then(|| m.delivered as f64 / cpu)
}

pub async fn settle_rss(server: &Server) -> Option<u64> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.rss()
}

/// Starts the server with `flags`, opens `streams` HTTP/1.1 subscribers
/// (stream `i` on `topic(i)`, each expecting `events` events), and reports
/// the connect rate and the server's RSS per stream against the targets.
#[allow(clippy::too_many_arguments)]
pub async fn start_with_h1_streams(
    env: &Env,
    p: &Params,
    report: &mut Report,
    name: &str,
    flags: &[&str],
    (streams, events): (usize, u64),
    topic: impl Fn(usize) -> String,
    (rate_target, rss_target): (Option<f64>, Option<u64>),
) -> Result<(Server, Subscribers, Opening), String> {
    let server = Server::start(env, report, name, flags).await?;
    let before = settle_rss(&server).await;
    let mut subs = Subscribers::new(p, events);
    let o = subs
        .open_h1(server.addr, streams, 0, p.connect_concurrency, topic)
        .await;
    let after = settle_rss(&server).await;
    report_opening(report, name, &o, rate_target);
    report_rss(report, name, before, after, o.opened, rss_target);
    Ok((server, subs, o))
}

/// Publishes `mode` to `topic`, which all `opened` subscribers listen to,
/// and collects what they received.
pub async fn publish_to_all(
    env: &Env,
    p: &Params,
    server: &Server,
    subs: Subscribers,
    (topic, opened): (&str, usize),
    mode: Mode,
) -> (Phase, Merged) {
    let target = Target::One {
        topic: topic.into(),
        subscribers: opened as u64,
    };
    let phase = publish_phase(env, p, server, &subs, mode, target).await;
    (phase, subs.finish().await)
}

pub async fn run_scenario(name: &str, env: &Env, p: &Params, report: &mut Report) {
    println!();
    println!("=== {name} ({:?}) ===", p.size);
    let t0 = Instant::now();
    let result = match name {
        "idle" => bounded(p, idle::idle(env, p, report)).await,
        "fanout" => bounded(p, fanout::fanout(env, p, report)).await,
        "saturate" => bounded(p, saturate::saturate(env, p, report)).await,
        "topics" => bounded(p, topics::topics(env, p, report)).await,
        "batch" => bounded(p, batch::batch(env, p, report)).await,
        "h2" => bounded(p, h2::h2(env, p, report)).await,
        "h2-overlimit" => bounded(p, h2_overlimit::h2_overlimit(env, p, report)).await,
        "h2-tune" => bounded(p, h2_tune::h2_tune(env, p, report)).await,
        "burst" => bounded(p, burst::burst(env, p, report)).await,
        "stalled" => bounded(p, stalled::stalled(env, p, report)).await,
        "startup" => startup::startup(env, p, report),
        _ => Err(format!("unknown scenario {name}")),
    };
    if let Err(e) = result {
        report.fail(name, e);
    }
    println!("[{name}] took {:.1} s", t0.elapsed().as_secs_f64());
}

pub async fn bounded(p: &Params, f: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    // The server child is killed on drop when the scenario is cut short.
    tokio::time::timeout(p.scenario_limit, f)
        .await
        .unwrap_or_else(|_| Err(format!("did not finish within {:?}", p.scenario_limit)))
}
