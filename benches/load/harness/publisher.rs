//! The publisher: keep-alive POSTs (single, paced or back to back, and
//! batches), and the measured publish phase of a scenario.

use super::decode::find;
use super::now_nanos;
use super::params::Params;
use super::server::{Env, Server};
use super::subscribers::Subscribers;
use super::sys::{machine_cpu_secs, own_cpu_secs};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for one publish answer (a batch of 10,000 events included).
pub const POST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Publisher {
    pub s: TcpStream,
    pub buf: Vec<u8>,
}

impl Publisher {
    pub async fn connect(server: SocketAddr) -> Result<Publisher, String> {
        let s = TcpStream::connect(server)
            .await
            .map_err(|e| format!("publisher connect: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Publisher {
            s,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// One keep-alive POST; returns the status and the response body.
    pub async fn post(
        &mut self,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        tokio::time::timeout(POST_TIMEOUT, self.exchange(target, content_type, body))
            .await
            .unwrap_or_else(|_| Err(format!("publish: no answer within {POST_TIMEOUT:?}")))
    }

    pub async fn exchange(
        &mut self,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        let mut req = Vec::with_capacity(body.len() + 160);
        let _ = write!(
            req,
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(ct) = content_type {
            let _ = write!(req, "Content-Type: {ct}\r\n");
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body);
        self.s
            .write_all(&req)
            .await
            .map_err(|e| format!("publish write: {e}"))?;
        let end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            match self.s.read_buf(&mut self.buf).await {
                Ok(0) => return Err("publish: connection closed before the response".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("publish read: {e}")),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("publish: bad status line in {head:?}"))?;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("publish: response without content-length")?;
        let total = end + 4 + len;
        while self.buf.len() < total {
            match self.s.read_buf(&mut self.buf).await {
                Ok(0) => return Err("publish: connection closed inside the response body".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("publish read: {e}")),
            }
        }
        let resp_body = self.buf[end + 4..total].to_vec();
        self.buf.drain(..total);
        Ok((status, resp_body))
    }
}

/// `SEQ SEND_NANOS xxx…`, padded to `size` bytes.
pub fn payload(seq: u64, sent: u64, size: usize, out: &mut String) {
    let start = out.len();
    let _ = write!(out, "{seq} {sent} ");
    while out.len() - start < size {
        out.push('x');
    }
}

pub enum Mode {
    /// `events` single publishes at `per_sec`.
    Rate { events: u64, per_sec: u64 },
    /// `events` single publishes, each sent when the previous got its 200.
    BackToBack { events: u64 },
    /// The same, numbered from `first` (one of several concurrent publishers).
    From { first: u64, events: u64 },
    /// `requests` batch publishes of `per_request` events each.
    Batch { requests: u64, per_request: u64 },
}

pub enum Target {
    /// Every event to this topic, which has `subscribers` subscribers.
    One { topic: String, subscribers: u64 },
    /// Each event to `t{k}` for a random k below this; one subscriber each.
    Random(usize),
}

#[derive(Default)]
pub struct Published {
    /// Events accepted (answered 200).
    pub events: u64,
    pub requests: u64,
    pub expected: u64,
    pub first_send: u64,
    pub last_ok: u64,
    pub errors: Vec<String>,
}

impl Published {
    /// Adds another publisher's counts (they ran at the same time or after).
    pub fn merge(&mut self, other: Published) {
        if self.requests == 0 || (other.requests > 0 && other.first_send < self.first_send) {
            self.first_send = other.first_send;
        }
        self.events += other.events;
        self.requests += other.requests;
        self.expected += other.expected;
        self.last_ok = self.last_ok.max(other.last_ok);
        self.errors.extend(other.errors);
    }
}

/// xorshift64*: the random topics; no need for a crate.
pub struct Rng(u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

pub async fn publish(server: SocketAddr, mode: Mode, target: Target, data_bytes: usize) -> Published {
    let mut out = Published::default();
    let mut publisher = match Publisher::connect(server).await {
        Ok(p) => p,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut body = String::with_capacity(1024);
    let (first, events, interval) = match mode {
        Mode::Rate { events, per_sec } => (
            0,
            events,
            Some(Duration::from_nanos(1_000_000_000 / per_sec.max(1))),
        ),
        Mode::BackToBack { events } => (0, events, None),
        Mode::From { first, events } => (first, events, None),
        Mode::Batch {
            requests,
            per_request,
        } => {
            let mut seq = 0;
            for _ in 0..requests {
                body.clear();
                let sent = now_nanos();
                for _ in 0..per_request {
                    body.push_str("data: ");
                    payload(seq, sent, data_bytes, &mut body);
                    body.push_str("\n\n");
                    seq += 1;
                }
                let (topic, subscribers) = match &target {
                    Target::One { topic, subscribers } => (topic.clone(), *subscribers),
                    Target::Random(n) => (format!("t{}", rng.below(*n)), 1),
                };
                if out.requests == 0 {
                    out.first_send = now_nanos();
                }
                out.requests += 1;
                let path = format!("/publish?topic={topic}");
                match publisher
                    .post(&path, Some("text/event-stream"), body.as_bytes())
                    .await
                {
                    Ok((200, ids)) => {
                        let accepted = ids.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
                        if accepted != per_request {
                            out.errors
                                .push(format!("batch: {accepted} ids for {per_request} events"));
                        }
                        out.events += accepted;
                        out.expected += accepted * subscribers;
                        out.last_ok = now_nanos();
                    }
                    Ok((status, text)) => {
                        out.errors.push(format!(
                            "batch publish: {status} {}",
                            String::from_utf8_lossy(&text).trim()
                        ));
                    }
                    Err(e) => {
                        out.errors.push(e);
                        return out;
                    }
                }
            }
            return out;
        }
    };
    let mut ticker = interval.map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    for seq in first..first + events {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        let (topic, subscribers) = match &target {
            Target::One { topic, subscribers } => (topic.clone(), *subscribers),
            Target::Random(n) => (format!("t{}", rng.below(*n)), 1),
        };
        body.clear();
        let sent = now_nanos();
        payload(seq, sent, data_bytes, &mut body);
        if out.requests == 0 {
            out.first_send = sent;
        }
        out.requests += 1;
        let path = format!("/publish?topic={topic}");
        match publisher.post(&path, None, body.as_bytes()).await {
            Ok((200, _)) => {
                out.events += 1;
                out.expected += subscribers;
                out.last_ok = now_nanos();
            }
            Ok((status, text)) => {
                out.errors.push(format!(
                    "publish: {status} {}",
                    String::from_utf8_lossy(&text).trim()
                ));
                if out.errors.len() > 20 {
                    return out;
                }
            }
            Err(e) => {
                out.errors.push(e);
                return out;
            }
        }
    }
    out
}

/// The publish phase of a scenario, measured.
pub struct Phase {
    pub published: Published,
    /// Server CPU seconds from just before the first publish until every
    /// expected delivery arrived (or the wait gave up).
    pub cpu_secs: Option<f64>,
    /// This process's CPU time over the same span, and as a share of it: near
    /// 100% means the harness (one core) bounds the latency and rate figures.
    pub harness_busy: f64,
    pub harness_cpu: f64,
    /// CPU used by everything else on the machine, in cores: other load
    /// makes every figure noisy.
    pub others_busy: Option<f64>,
}

/// CPU figures over less server CPU time than this are printed but not judged.
pub const MIN_CPU_SECS: f64 = 0.05;

/// Publishes, then waits until every expected delivery arrived, nothing
/// arrived for `drain_idle`, or `drain_max` passed.
pub async fn publish_phase(
    env: &Env,
    p: &Params,
    server: &Server,
    subs: &Subscribers,
    mode: Mode,
    target: Target,
) -> Phase {
    let addr = server.addr;
    let data_bytes = p.data_bytes;
    measure(env, p, server, subs, publish(addr, mode, target, data_bytes)).await
}

/// Runs `publishing`, then waits for its deliveries as `publish_phase`
/// does, measuring the server's CPU time and the machine's over both.
pub async fn measure(
    env: &Env,
    p: &Params,
    server: &Server,
    subs: &Subscribers,
    publishing: impl std::future::Future<Output = Published>,
) -> Phase {
    let cpu0 = server.cpu_secs(env);
    let own0 = own_cpu_secs();
    let all0 = machine_cpu_secs(env.clk_tck);
    let t0 = Instant::now();
    let published = publishing.await;
    let deadline = Instant::now() + p.drain_max;
    let mut last = subs.delivered();
    let mut last_change = Instant::now();
    while subs.delivered() < published.expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = subs.delivered();
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > p.drain_idle {
            break;
        }
    }
    let cpu1 = server.cpu_secs(env);
    let own = own_cpu_secs() - own0;
    let all = machine_cpu_secs(env.clk_tck).zip(all0).map(|(b, a)| b - a);
    let wall = t0.elapsed().as_secs_f64();
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    // A moment more, for duplicates that would come after the last expected one.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Phase {
        published,
        cpu_secs: server_cpu,
        // Over less than a second the clock ticks say nothing.
        others_busy: all
            .filter(|_| wall >= 1.0)
            .map(|all| (all - own - server_cpu.unwrap_or(0.0)).max(0.0) / wall),
        harness_busy: own / wall.max(1e-9),
        harness_cpu: own,
    }
}
