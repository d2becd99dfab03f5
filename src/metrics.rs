//! `GET /metrics`: the Prometheus text exposition of the hub's figures and
//! the server's connection counters.
//!
//! Nothing here is touched per delivery. The hub counts publishes and
//! deliveries as plain integers under the lock it holds anyway; the
//! counters below move once per connection, per shed stream, or (bytes
//! written) once per 64 KiB a connection writes.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::hub::Stats;
use crate::socket::SocketCounters;

/// Server-level counters, shared by the accept loop and the service.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections_accepted: AtomicU64,
    /// Connections whose socket reported the peer gone (TCP_USER_TIMEOUT);
    /// write deadlines and PING timeouts are counted in [`SocketCounters`].
    pub dead_closed: AtomicU64,
    /// Publish requests being handled now; shutdown waits for them.
    pub publishes_in_flight: AtomicUsize,
    pub socket: std::sync::Arc<SocketCounters>,
    /// Requests refused for their credential, by role and reason.
    pub auth_refused: crate::auth::RefusalCounters,
    pub tls: std::sync::Arc<TlsCounters>,
}

impl Counters {
    /// Connections closed as dead, however it was found: the socket's
    /// error (TCP_USER_TIMEOUT), the write deadline, or a PING timeout.
    pub fn dead_peers(&self) -> u64 {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        load(&self.dead_closed) + load(&self.socket.write_timeouts) + load(&self.socket.ping_timeouts)
    }
}

/// Counters of the TLS layer: shown in builds with TLS, zero while it is
/// not configured, so the set of metrics does not depend on the flags.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// Handshakes that failed or timed out (plaintext, garbage, a refused
    /// certificate, a client that hung up).
    pub handshake_failures: AtomicU64,
    /// SIGHUP reloads that installed a new certificate.
    pub reloads_ok: AtomicU64,
    /// SIGHUP reloads that failed and kept the old certificate.
    pub reloads_error: AtomicU64,
}

struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const fn m(name: &'static str, kind: &'static str, help: &'static str) -> Metric {
    Metric { name, kind, help }
}

/// Renders every metric in the text format, version 0.0.4.
pub fn render(stats: &Stats, counters: &Counters) -> String {
    let mut out = String::with_capacity(2048);
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let dead = counters.dead_peers();

    let mut family = |metric: Metric, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {} {}", metric.name, metric.help);
        let _ = writeln!(out, "# TYPE {} {}", metric.name, metric.kind);
        for (labels, value) in samples {
            let _ = writeln!(out, "{}{} {}", metric.name, labels, value);
        }
    };
    family(
        m(
            "ssehub_open_streams",
            "gauge",
            "Event streams open now, by HTTP version.",
        ),
        &[
            ("{protocol=\"http1\"}", stats.open_http1 as u64),
            ("{protocol=\"http2\"}", stats.open_http2 as u64),
        ],
    );
    family(
        m("ssehub_topics", "gauge", "Topics with at least one subscriber."),
        &[("", stats.topics as u64)],
    );
    family(
        m(
            "ssehub_connections_accepted_total",
            "counter",
            "TCP connections accepted.",
        ),
        &[("", load(&counters.connections_accepted))],
    );
    family(
        m(
            "ssehub_streams_shed_total",
            "counter",
            "Streams answered with a long retry and ended because --max-connections were open.",
        ),
        &[("", stats.shed)],
    );
    family(
        m(
            "ssehub_events_published_total",
            "counter",
            "Events accepted by /publish.",
        ),
        &[("", stats.events_published)],
    );
    family(
        m(
            "ssehub_events_replayed_total",
            "counter",
            "Events resent from history after a Last-Event-ID.",
        ),
        &[("", stats.events_replayed)],
    );
    family(
        m(
            "ssehub_deliveries_total",
            "counter",
            "Events handed to subscriber queues.",
        ),
        &[("", stats.deliveries)],
    );
    family(
        m(
            "ssehub_subscribers_dropped_full_total",
            "counter",
            "Subscribers disconnected because their queue was full.",
        ),
        &[("", stats.dropped_full)],
    );
    family(
        m(
            "ssehub_subscribers_closed_dead_total",
            "counter",
            "Connections closed because the peer stopped reading or answering.",
        ),
        &[("", dead)],
    );
    family(
        m(
            "ssehub_resets_sent_total",
            "counter",
            "Reset events sent for a Last-Event-ID that could not be honoured.",
        ),
        &[("", stats.resets_sent)],
    );
    family(
        m(
            "ssehub_topics_closed_total",
            "counter",
            "Topics closed by /close.",
        ),
        &[("", stats.topics_closed)],
    );
    family(
        m(
            "ssehub_bytes_written_total",
            "counter",
            "Bytes written to client sockets (in steps of up to 64 KiB).",
        ),
        &[("", load(&counters.socket.bytes_written))],
    );
    let refused = counters.auth_refused.samples();
    let refused: Vec<(&str, u64)> = refused.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    family(
        m(
            "ssehub_auth_refused_total",
            "counter",
            "Requests refused for a missing, invalid or insufficient credential.",
        ),
        &refused,
    );
    // Only in builds with TLS (zero when it is not configured).
    #[cfg(feature = "tls")]
    family(
        m(
            "ssehub_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out (plaintext, garbage, a client that hung up).",
        ),
        &[("", load(&counters.tls.handshake_failures))],
    );
    #[cfg(feature = "tls")]
    family(
        m(
            "ssehub_tls_reloads_total",
            "counter",
            "Certificate reloads on SIGHUP, by result (an error keeps the old certificate).",
        ),
        &[
            ("{result=\"ok\"}", load(&counters.tls.reloads_ok)),
            ("{result=\"error\"}", load(&counters.tls.reloads_error)),
        ],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_type_and_a_sample() {
        let text = render(&Stats::default(), &Counters::default());
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert!(names.len() >= 12);
        for name in names {
            assert!(name.starts_with("ssehub_"));
            assert!(text.contains(&format!("# HELP {name} ")));
            assert!(text.lines().any(|l| l.starts_with(name) && !l.starts_with('#')));
        }
    }
}
