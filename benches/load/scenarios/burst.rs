//! `burst`: at the default flags, 2,000 subscribers get one batch publish of
//! 20,000 events and then 20,000 single publishes sent over 4 connections
//! at once. Nothing may be closed or lost, and every subscriber must get
//! its events in order: ids increasing, and each publisher's events in the
//! order it sent them (the four publishers' events interleave freely).
//!
//! The batch lands in every subscriber's backlog as one piece, so each
//! subscriber is about 2 MB behind when the singles start: a server whose
//! per-subscriber limit counts events or pieces rather than bytes drops
//! them here.

use super::{report_delivery, report_opening, Targets};
use crate::harness::floor::Basis;
use crate::harness::params::Params;
use crate::harness::publisher::{measure, publish, Mode, Published, Target};
use crate::harness::report::{thousands, Report};
use crate::harness::server::{Env, Server};
use crate::harness::subscribers::Subscribers;

pub async fn burst(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "burst";
    let server = Server::start(env, report, name, &[]).await?;
    let total = p.burst_batch + p.burst_singles;
    let publishers = p.burst_publishers.max(1);
    let per = p.burst_singles / publishers;
    let mut subs = Subscribers::new(p, total);
    // Lanes of `per` events: each publisher's share is one lane, the batch
    // several (it is in order as a whole, so in each part too).
    subs.shared.checks.lane = per.max(1);
    subs.shared.checks.latency = false;
    let o = subs
        .open_h1(server.addr, p.burst_streams, 0, p.connect_concurrency, |_| {
            "t".into()
        })
        .await;
    report_opening(report, name, &o, None);
    let n = o.opened as u64;
    let addr = server.addr;
    let data = p.data_bytes;
    let batch = p.burst_batch;
    let one = move || Target::One {
        topic: "t".into(),
        subscribers: n,
    };
    let publishing = async move {
        let batch_mode = Mode::Batch {
            requests: 1,
            per_request: batch,
        };
        let mut all = publish(addr, batch_mode, one(), data).await;
        let batch_done = all.last_ok;
        let singles: Vec<_> = (0..publishers)
            .map(|k| {
                let mode = Mode::From {
                    first: batch + k * per,
                    events: per,
                };
                tokio::spawn(publish(addr, mode, one(), data))
            })
            .collect();
        let mut single = Published::default();
        for h in singles {
            match h.await {
                Ok(r) => single.merge(r),
                Err(_) => single.errors.push("a publisher task panicked".into()),
            }
        }
        let singles_secs = single.last_ok.saturating_sub(batch_done) as f64 / 1e9;
        all.merge(single);
        (all, singles_secs)
    };
    let mut secs = 0.0;
    let phase = measure(env, p, &server, &subs, async {
        let (all, s) = publishing.await;
        secs = s;
        all
    })
    .await;
    let m = subs.finish().await;
    report.info(
        name,
        "publishing",
        format!(
            "1 batch of {} events, then {} singles from {publishers} connections in {secs:.2} s ({} /s)",
            thousands(batch),
            thousands(per * publishers),
            thousands(((per * publishers) as f64 / secs.max(1e-9)) as u64)
        ),
    );
    let t = Targets {
        zero_lost: true,
        zero_closed: true,
        in_order: true,
        cpu_basis: Basis::TenPerEvent,
        ..Targets::default()
    };
    report_delivery(report, name, &phase, &m, &t);
    if let Some(c) = server.subscriber_counters().await {
        report.info(name, "server's subscriber counters", c);
    }
    server.stop(report).await;
    Ok(())
}
