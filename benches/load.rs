//! Load-test harness: starts `target/release/ssehub` as a child process on
//! loopback and drives it with many subscribers and a publisher.
//!
//! ```text
//! cargo bench --bench load -- [SCENARIO...] [--size small|full] [--bin PATH]
//! ```
//!
//! Scenarios: idle, fanout, saturate, topics, batch, h2, h2-overlimit,
//! startup (no names: all of them, in that order). `--size small` is a smoke
//! test that finishes in seconds; `cargo test --all-targets` runs this file
//! without `--bench`, and then it runs the small size against the binary
//! cargo built for the test profile.
//!
//! The server is pinned to core 0 (taskset) and this process to core 1,
//! running everything on one current-thread tokio runtime. Subscribers bind
//! their source address round-robin over 127.0.0.2..=127.0.0.250 so the
//! ephemeral ports of one address are no limit. Every event's data is
//! `SEQ SEND_NANOS xxx...` (nanoseconds since this process started, one
//! monotonic clock for publisher and subscribers), so each subscriber counts
//! what it got, finds duplicates and gaps, and measures latency.
//!
//! Every loop is bounded in count and time, and only 127.0.0.0/8 is used.
//! The exit status is non-zero only when the harness could not do its job
//! (the server would not start, connections or publishes failed), never
//! because of a performance figure: the targets are printed, not asserted.

use bytes::Bytes;
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

const SCENARIOS: [&str; 8] = [
    "idle",
    "fanout",
    "saturate",
    "topics",
    "batch",
    "h2",
    "h2-overlimit",
    "startup",
];

/// The one clock: nanoseconds since the harness started.
static START: OnceLock<Instant> = OnceLock::new();

fn now_nanos() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Size {
    Small,
    Full,
}

/// Every count and time limit of a run.
struct Params {
    size: Size,
    data_bytes: usize,
    idle_streams: usize,
    burst: usize,
    fanout_streams: usize,
    fanout_events: u64,
    fanout_rate: u64,
    saturate_streams: usize,
    saturate_events: u64,
    topics_streams: usize,
    topics_rate: u64,
    topics_events: u64,
    batch_streams: usize,
    batch_requests: u64,
    batch_events: u64,
    h2_conns: usize,
    h2_per_conn: usize,
    over_conns: usize,
    over_per_conn: usize,
    over_limit: u32,
    over_events: u64,
    startup_runs: usize,
    /// HTTP/1.1 connects in flight at once while opening streams.
    connect_concurrency: usize,
    /// Time one stream (or one h2 `ready`) may take to open.
    open_timeout: Duration,
    /// The delivery wait ends when nothing arrived for this long.
    drain_idle: Duration,
    /// Hard bound on the delivery wait.
    drain_max: Duration,
    /// Hard bound on one scenario.
    scenario_limit: Duration,
}

impl Params {
    fn new(size: Size) -> Params {
        match size {
            Size::Full => Params {
                size,
                data_bytes: 64,
                idle_streams: 10_000,
                burst: 256,
                fanout_streams: 5_000,
                fanout_events: 200,
                fanout_rate: 10,
                saturate_streams: 2_000,
                saturate_events: 500,
                topics_streams: 5_000,
                topics_rate: 500,
                topics_events: 2_500,
                batch_streams: 100,
                batch_requests: 10,
                batch_events: 10_000,
                h2_conns: 100,
                h2_per_conn: 100,
                over_conns: 20,
                over_per_conn: 150,
                over_limit: 100,
                over_events: 20,
                startup_runs: 5,
                connect_concurrency: 128,
                open_timeout: Duration::from_secs(2),
                drain_idle: Duration::from_secs(3),
                drain_max: Duration::from_secs(60),
                scenario_limit: Duration::from_secs(240),
            },
            Size::Small => Params {
                size,
                data_bytes: 64,
                idle_streams: 50,
                burst: 16,
                fanout_streams: 50,
                fanout_events: 20,
                fanout_rate: 100,
                saturate_streams: 50,
                saturate_events: 20,
                topics_streams: 50,
                topics_rate: 100,
                topics_events: 20,
                batch_streams: 10,
                batch_requests: 2,
                batch_events: 100,
                h2_conns: 5,
                h2_per_conn: 10,
                over_conns: 2,
                over_per_conn: 15,
                over_limit: 10,
                over_events: 5,
                startup_runs: 2,
                connect_concurrency: 16,
                open_timeout: Duration::from_millis(500),
                drain_idle: Duration::from_secs(1),
                drain_max: Duration::from_secs(5),
                scenario_limit: Duration::from_secs(30),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Met,
    Missed,
    Info,
}

struct Row {
    scenario: String,
    figure: String,
    value: String,
    target: String,
    verdict: Verdict,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    /// Things seen that are worth a look (server log warnings, cut streams).
    notes: Vec<String>,
    /// Harness failures: these make the exit status non-zero.
    failures: Vec<String>,
    /// Deliveries per CPU-second of `fanout`, for the `h2` comparison.
    fanout_per_cpu_s: Option<f64>,
    /// Compare performance figures with their targets (not at the small
    /// size, whose samples are too small to mean anything).
    judge: bool,
}

impl Report {
    fn info(&mut self, scenario: &str, figure: &str, value: String) {
        self.row(scenario, figure, value, String::new(), Verdict::Info);
    }

    fn row(&mut self, scenario: &str, figure: &str, value: String, target: String, verdict: Verdict) {
        self.rows.push(Row {
            scenario: scenario.to_string(),
            figure: figure.to_string(),
            value,
            target,
            verdict,
        });
    }

    /// A figure with an upper bound.
    fn at_most(&mut self, scenario: &str, figure: &str, value: String, v: f64, limit: f64, target: &str) {
        let verdict = if !self.judge {
            Verdict::Info
        } else if v <= limit {
            Verdict::Met
        } else {
            Verdict::Missed
        };
        self.row(scenario, figure, value, target.to_string(), verdict);
    }

    /// A figure with a lower bound.
    fn at_least(&mut self, scenario: &str, figure: &str, value: String, v: f64, limit: f64, target: &str) {
        let verdict = if !self.judge {
            Verdict::Info
        } else if v >= limit {
            Verdict::Met
        } else {
            Verdict::Missed
        };
        self.row(scenario, figure, value, target.to_string(), verdict);
    }

    fn note(&mut self, scenario: &str, text: String) {
        println!("[{scenario}] note: {text}");
        self.notes.push(format!("{scenario}: {text}"));
    }

    fn fail(&mut self, scenario: &str, text: String) {
        println!("[{scenario}] HARNESS FAILURE: {text}");
        self.failures.push(format!("{scenario}: {text}"));
    }

    fn print(&self, title: &str) {
        let headers = ["scenario", "figure", "value", "target", ""];
        let mut widths = headers.map(str::len);
        for r in &self.rows {
            widths[0] = widths[0].max(r.scenario.chars().count());
            widths[1] = widths[1].max(r.figure.chars().count());
            widths[2] = widths[2].max(r.value.chars().count());
            widths[3] = widths[3].max(r.target.chars().count());
        }
        let total: usize = widths.iter().sum::<usize>() + 4 * 3 + 4;
        println!();
        println!("{title}");
        println!("{}", "=".repeat(total));
        let line = |c: [&str; 5]| {
            println!(
                "{:<w0$} | {:<w1$} | {:<w2$} | {:<w3$} | {}",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
            );
        };
        line(headers);
        println!("{}", "-".repeat(total));
        let mut last = "";
        for r in &self.rows {
            if !last.is_empty() && last != r.scenario {
                println!("{}", "-".repeat(total));
            }
            last = &r.scenario;
            let verdict = match r.verdict {
                Verdict::Met => "ok",
                Verdict::Missed => "MISS",
                Verdict::Info => "",
            };
            line([&r.scenario, &r.figure, &r.value, &r.target, verdict]);
        }
        println!("{}", "=".repeat(total));
        let met = self.rows.iter().filter(|r| r.verdict == Verdict::Met).count();
        let missed = self.rows.iter().filter(|r| r.verdict == Verdict::Missed).count();
        if self.judge {
            println!("targets: {met} met, {missed} missed (informational; nothing is asserted)");
        } else {
            println!(
                "size small: performance figures are not compared with their targets; \
                 correctness rows: {met} met, {missed} missed"
            );
        }
        if !self.notes.is_empty() {
            println!();
            println!("notes:");
            for n in &self.notes {
                println!("  - {n}");
            }
        }
        if !self.failures.is_empty() {
            println!();
            println!("HARNESS FAILURES:");
            for f in &self.failures {
                println!("  - {f}");
            }
        }
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------
// Process set-up: affinity, descriptors
// ---------------------------------------------------------------------------

fn cpus_available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins the calling thread (and every thread it starts later) to `core`.
fn pin_to_core(core: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it,
    // and sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Raises RLIMIT_NOFILE to its hard limit; returns the limit now in force.
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write the struct passed.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                return lim.rlim_max as u64;
            }
        }
        lim.rlim_cur as u64
    }
}

fn in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn read_sysctl(name: &str) -> String {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::read_to_string(path)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

struct Env {
    bin: PathBuf,
    taskset: Option<PathBuf>,
    /// Pin the server to core 0 and us to core 1 (two or more cores).
    pin: bool,
    log_dir: PathBuf,
    clk_tck: f64,
}

struct Server {
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
    name: String,
}

fn free_port() -> Result<u16, String> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl Server {
    /// Starts the binary with the common flags plus `extra`, and waits until
    /// it accepts a connection.
    async fn start(env: &Env, name: &str, extra: &[&str]) -> Result<Server, String> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = env.log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match (&env.taskset, env.pin) {
            (Some(taskset), true) => {
                let mut c = tokio::process::Command::new(taskset);
                c.arg("-c").arg("0").arg(&env.bin);
                c
            }
            _ => tokio::process::Command::new(&env.bin),
        };
        let listen = addr.to_string();
        let mut args = vec![
            "--listen",
            &listen,
            "--max-connections",
            "100000",
            "--heartbeat",
            "60s",
        ];
        args.extend_from_slice(extra);
        cmd.args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", env.bin.display()))?;
        let pid = child.id().ok_or("the server exited at once")?;
        println!("[{name}] server pid {pid}: ssehub {}", args.join(" "));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "the server exited with {status} before accepting: {}",
                    tail.trim()
                ));
            }
            if let Ok(Ok(_probe)) =
                tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("the server did not accept on {addr} within 10 s"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Server {
            child,
            pid,
            addr,
            log,
            name: name.to_string(),
        })
    }

    /// VmRSS in bytes.
    fn rss(&self) -> Option<u64> {
        rss_of(self.pid)
    }

    /// utime + stime, in seconds.
    fn cpu_secs(&self, env: &Env) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the command name, which may itself hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) as f64 / env.clk_tck)
    }

    /// Kills the server and reports what its log says beyond the usual.
    async fn stop(mut self, report: &mut Report) {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                report.fail(&self.name, format!("the server exited during the run: {status}"))
            }
            _ => {
                let _ = self.child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
            }
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let odd: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panick"))
            .filter(|l| !l.contains("no publish token configured"))
            .collect();
        if !odd.is_empty() {
            report.note(
                &self.name,
                format!(
                    "server log has {} warning/error lines (see {}); first: {}",
                    odd.len(),
                    self.log.display(),
                    odd[0]
                ),
            );
        }
    }
}

fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

// ---------------------------------------------------------------------------
// Subscribers: what each one counts
// ---------------------------------------------------------------------------

/// What one subscriber saw.
struct Tally {
    /// Events of the scenario (sequence numbers are 0..n_events).
    n_events: u64,
    delivered: u64,
    /// Distinct sequence numbers received.
    unique: u64,
    dups: u64,
    reordered: u64,
    /// Data lines that were not ours, or sequence numbers out of range.
    bad: u64,
    max_seq: Option<u64>,
    seen: Vec<u64>,
    lat_us: Vec<u32>,
    last_rx: u64,
}

impl Tally {
    fn new(n_events: u64) -> Tally {
        Tally {
            n_events,
            delivered: 0,
            unique: 0,
            dups: 0,
            reordered: 0,
            bad: 0,
            max_seq: None,
            seen: Vec::new(),
            lat_us: Vec::new(),
            last_rx: 0,
        }
    }

    /// One SSE line (without its line break).
    fn line(&mut self, line: &[u8], now: u64) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data: ") else {
            return;
        };
        match parse_u64(data).and_then(|(seq, rest)| Some((seq, parse_u64(rest.strip_prefix(b" ")?)?.0))) {
            Some((seq, sent)) => self.event(seq, sent, now),
            None => self.bad += 1,
        }
    }

    fn event(&mut self, seq: u64, sent: u64, now: u64) {
        self.delivered += 1;
        if seq >= self.n_events {
            self.bad += 1;
            return;
        }
        if self.seen.is_empty() {
            self.seen = vec![0; (self.n_events as usize).div_ceil(64)];
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.dups += 1;
            return;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        if self.max_seq.is_some_and(|m| seq < m) {
            self.reordered += 1;
        }
        self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
        self.lat_us
            .push((now.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32);
        self.last_rx = now;
    }
}

fn parse_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let v = b[..digits].iter().fold(0u64, |v, c| v * 10 + u64::from(c - b'0'));
    Some((v, &b[digits..]))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data,
    DataEnd,
}

/// Incremental HTTP/1.1 chunked decoder feeding an SSE line splitter.
#[derive(Default)]
struct Decoder {
    chunked: bool,
    state: ChunkState,
    chunk_left: usize,
    size_line: Vec<u8>,
    line: Vec<u8>,
    /// The terminating zero-size chunk came: the server ended the stream.
    ended: bool,
}

impl Decoder {
    fn feed(&mut self, mut input: &[u8], tally: &mut Tally, now: u64) -> Result<(), String> {
        if !self.chunked {
            self.body(input, tally, now);
            return Ok(());
        }
        while !input.is_empty() && !self.ended {
            match self.state {
                ChunkState::Size => match memchr(b'\n', input) {
                    Some(i) => {
                        self.size_line.extend_from_slice(&input[..i]);
                        input = &input[i + 1..];
                        let text = String::from_utf8_lossy(&self.size_line);
                        let hex = text.split(';').next().unwrap_or("").trim();
                        let size = usize::from_str_radix(hex, 16)
                            .map_err(|_| format!("bad chunk size line {hex:?}"))?;
                        self.size_line.clear();
                        if size == 0 {
                            self.ended = true;
                        } else {
                            self.chunk_left = size;
                            self.state = ChunkState::Data;
                        }
                    }
                    None => {
                        self.size_line.extend_from_slice(input);
                        input = &[];
                    }
                },
                ChunkState::Data => {
                    let n = self.chunk_left.min(input.len());
                    self.body(&input[..n], tally, now);
                    input = &input[n..];
                    self.chunk_left -= n;
                    if self.chunk_left == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => match memchr(b'\n', input) {
                    Some(i) => {
                        input = &input[i + 1..];
                        self.state = ChunkState::Size;
                    }
                    None => input = &[],
                },
            }
        }
        Ok(())
    }

    fn body(&mut self, mut data: &[u8], tally: &mut Tally, now: u64) {
        while let Some(i) = memchr(b'\n', data) {
            if self.line.is_empty() {
                tally.line(&data[..i], now);
            } else {
                self.line.extend_from_slice(&data[..i]);
                let line = std::mem::take(&mut self.line);
                tally.line(&line, now);
                self.line = line;
                self.line.clear();
            }
            data = &data[i + 1..];
        }
        self.line.extend_from_slice(data);
    }
}

#[derive(Debug)]
enum Ready {
    /// Open: the response head came after this long.
    Opened(Duration),
    /// The server refused the stream (h2 RST_STREAM REFUSED_STREAM).
    Refused,
    /// Did not open within the open timeout (h2: held back by the client).
    NotOpened,
    Failed(String),
}

enum End {
    /// We stopped it.
    Stopped,
    /// The server ended it (EOF, final chunk, END_STREAM).
    ServerEnded,
    Error(String),
    /// It never opened.
    NeverOpened,
}

struct StreamResult {
    tally: Tally,
    end: End,
}

/// What all subscriber tasks of a scenario share.
#[derive(Clone)]
struct Shared {
    stop: watch::Receiver<bool>,
    /// Deliveries so far, over every stream.
    delivered: Arc<AtomicU64>,
    ready: mpsc::UnboundedSender<Ready>,
    n_events: u64,
    open_timeout: Duration,
}

/// Source addresses 127.0.0.2..=127.0.0.250, round-robin.
fn source_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 249) as u8)
}

async fn connect_from(src: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((src, 0)))?;
    let s = sock.connect(server).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Connects, sends the request and reads the response head. Returns the
/// stream, the body bytes read with the head, and whether it is chunked.
async fn h1_open(
    src: Ipv4Addr,
    server: SocketAddr,
    topic: &str,
) -> Result<(TcpStream, Vec<u8>, bool), String> {
    let mut s = connect_from(src, server)
        .await
        .map_err(|e| format!("connect from {src}: {e}"))?;
    let req = format!("GET /events?topic={topic} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() > 16 * 1024 {
            return Err("response head over 16 KiB".into());
        }
        match s.read_buf(&mut buf).await {
            Ok(0) => return Err("closed before the response head".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("http/1.1 200") {
        return Err(format!("status line {status:?}"));
    }
    if !head.contains("content-type: text/event-stream") {
        return Err("not text/event-stream".into());
    }
    let chunked = head.contains("transfer-encoding: chunked");
    Ok((s, buf[end + 4..].to_vec(), chunked))
}

/// One HTTP/1.1 subscriber: open, report, then count events until stopped.
async fn h1_subscriber(
    sh: Shared,
    src: Ipv4Addr,
    server: SocketAddr,
    topic: String,
    permit: Option<OwnedSemaphorePermit>,
) -> StreamResult {
    let mut tally = Tally::new(sh.n_events);
    let t0 = Instant::now();
    let (mut sock, leftover, chunked) =
        match tokio::time::timeout(sh.open_timeout * 5, h1_open(src, server, &topic)).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                let _ = sh.ready.send(Ready::Failed(e));
                return StreamResult {
                    tally,
                    end: End::NeverOpened,
                };
            }
            Err(_) => {
                let _ = sh.ready.send(Ready::Failed(format!(
                    "no response head within {:?}",
                    sh.open_timeout * 5
                )));
                return StreamResult {
                    tally,
                    end: End::NeverOpened,
                };
            }
        };
    let _ = sh.ready.send(Ready::Opened(t0.elapsed()));
    drop(permit);

    let mut dec = Decoder {
        chunked,
        ..Decoder::default()
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut end = match dec.feed(&leftover, &mut tally, now_nanos()) {
        Ok(()) => None,
        Err(e) => Some(End::Error(e)),
    };
    let mut stop = sh.stop.clone();
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    while end.is_none() && !dec.ended {
        tokio::select! {
            biased;
            _ = &mut stopped => end = Some(End::Stopped),
            r = sock.read(&mut buf) => match r {
                Ok(0) => end = Some(End::ServerEnded),
                Ok(n) => {
                    let before = tally.delivered;
                    if let Err(e) = dec.feed(&buf[..n], &mut tally, now_nanos()) {
                        end = Some(End::Error(e));
                    }
                    sh.delivered.fetch_add(tally.delivered - before, Ordering::Relaxed);
                }
                Err(e) => end = Some(End::Error(e.to_string())),
            },
        }
    }
    StreamResult {
        tally,
        end: end.unwrap_or(End::ServerEnded),
    }
}

/// One h2 stream: wait for the response head, then count events.
async fn h2_subscriber(
    sh: Shared,
    response: h2::client::ResponseFuture,
    t0: Instant,
    head: Option<oneshot::Sender<()>>,
) -> StreamResult {
    let mut tally = Tally::new(sh.n_events);
    let never = |tally| StreamResult {
        tally,
        end: End::NeverOpened,
    };
    let resp = match tokio::time::timeout(sh.open_timeout, response).await {
        Ok(Ok(r)) if r.status() == 200 => r,
        Ok(Ok(r)) => {
            let _ = sh.ready.send(Ready::Failed(format!("status {}", r.status())));
            return never(tally);
        }
        Ok(Err(e)) if e.reason() == Some(h2::Reason::REFUSED_STREAM) => {
            let _ = sh.ready.send(Ready::Refused);
            return never(tally);
        }
        Ok(Err(e)) => {
            let _ = sh.ready.send(Ready::Failed(format!("h2 response: {e}")));
            return never(tally);
        }
        Err(_) => {
            let _ = sh.ready.send(Ready::NotOpened);
            return never(tally);
        }
    };
    let _ = sh.ready.send(Ready::Opened(t0.elapsed()));
    if let Some(head) = head {
        let _ = head.send(());
    }
    let mut body = resp.into_body();
    let mut dec = Decoder::default();
    let mut stop = sh.stop.clone();
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    let end = loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break End::Stopped,
            d = body.data() => match d {
                None => break End::ServerEnded,
                Some(Ok(bytes)) => {
                    let _ = body.flow_control().release_capacity(bytes.len());
                    let before = tally.delivered;
                    let _ = dec.feed(&bytes, &mut tally, now_nanos());
                    sh.delivered.fetch_add(tally.delivered - before, Ordering::Relaxed);
                }
                Some(Err(e)) => break End::Error(format!("h2 body: {e}")),
            },
        }
    };
    StreamResult { tally, end }
}

/// Opening statistics of a group of streams.
#[derive(Default)]
struct Opening {
    requested: usize,
    opened: usize,
    refused: usize,
    not_opened: usize,
    failed: Vec<String>,
    times: Vec<Duration>,
    elapsed: Duration,
}

impl Opening {
    fn rate(&self) -> f64 {
        self.opened as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn max_ms(&self) -> f64 {
        self.times.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    fn pct_ms(&self, p: f64) -> f64 {
        let mut t = self.times.clone();
        t.sort_unstable();
        percentile(&t, p).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// A scenario's subscribers.
struct Subscribers {
    stop_tx: watch::Sender<bool>,
    shared: Shared,
    ready_rx: mpsc::UnboundedReceiver<Ready>,
    handles: Vec<JoinHandle<StreamResult>>,
    /// h2 connection drivers that ended before we stopped, with why.
    h2_conn_errors: Arc<Mutex<Vec<String>>>,
    h2_conns: Vec<JoinHandle<()>>,
}

impl Subscribers {
    fn new(p: &Params, n_events: u64) -> Subscribers {
        let (stop_tx, stop) = watch::channel(false);
        let (ready, ready_rx) = mpsc::unbounded_channel();
        Subscribers {
            stop_tx,
            shared: Shared {
                stop,
                delivered: Arc::new(AtomicU64::new(0)),
                ready,
                n_events,
                open_timeout: p.open_timeout,
            },
            ready_rx,
            handles: Vec::new(),
            h2_conn_errors: Arc::default(),
            h2_conns: Vec::new(),
        }
    }

    fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    /// Waits for `n` opening reports.
    async fn collect_ready(&mut self, n: usize, t0: Instant, limit: Duration, o: &mut Opening) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = 0;
        while got < n {
            match tokio::time::timeout_at(deadline, self.ready_rx.recv()).await {
                Ok(Some(r)) => {
                    got += 1;
                    match r {
                        Ready::Opened(d) => {
                            o.opened += 1;
                            o.times.push(d);
                        }
                        Ready::Refused => o.refused += 1,
                        Ready::NotOpened => o.not_opened += 1,
                        Ready::Failed(e) => o.failed.push(e),
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    o.failed
                        .push(format!("{} streams did not report within {limit:?}", n - got));
                    break;
                }
            }
        }
        o.elapsed = t0.elapsed();
    }

    /// Opens `n` HTTP/1.1 streams, `concurrency` connects at a time,
    /// subscriber `i` on `topic(i)`; `first` numbers the source addresses.
    async fn open_h1(
        &mut self,
        server: SocketAddr,
        n: usize,
        first: usize,
        concurrency: usize,
        topic: impl Fn(usize) -> String,
    ) -> Opening {
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let t0 = Instant::now();
        for i in 0..n {
            let permit = sem.clone().acquire_owned().await.ok();
            let task = h1_subscriber(
                self.shared.clone(),
                source_addr(first + i),
                server,
                topic(i),
                permit,
            );
            self.handles.push(tokio::spawn(task));
        }
        let mut o = Opening {
            requested: n,
            ..Opening::default()
        };
        self.collect_ready(n, t0, Duration::from_secs(120), &mut o).await;
        o
    }

    /// Opens `conns` h2c connections with `per_conn` streams each, all on
    /// `topic`. The first stream of each connection is answered before the
    /// others are sent, so the client knows the server's SETTINGS.
    async fn open_h2(&mut self, server: SocketAddr, conns: usize, per_conn: usize, topic: &str) -> Opening {
        let t0 = Instant::now();
        let mut starters = Vec::new();
        for c in 0..conns {
            let sh = self.shared.clone();
            let errors = self.h2_conn_errors.clone();
            let topic = topic.to_string();
            starters.push(tokio::spawn(h2_connection(
                sh,
                errors,
                source_addr(c),
                server,
                per_conn,
                topic,
            )));
        }
        let mut o = Opening {
            requested: conns * per_conn,
            ..Opening::default()
        };
        self.collect_ready(conns * per_conn, t0, Duration::from_secs(120), &mut o)
            .await;
        for s in starters {
            if let Ok((driver, streams)) = s.await {
                self.h2_conns.extend(driver);
                self.handles.extend(streams);
            }
        }
        o
    }

    /// Stops every stream and merges what they saw.
    async fn finish(self) -> Merged {
        let _ = self.stop_tx.send(true);
        let mut m = Merged::default();
        for h in self.handles {
            let Ok(r) = h.await else {
                m.errors.push("a subscriber task panicked".into());
                continue;
            };
            match r.end {
                End::NeverOpened => continue,
                End::Stopped => {}
                End::ServerEnded => m.server_ended += 1,
                End::Error(e) => m.errors.push(e),
            }
            m.streams += 1;
            let t = r.tally;
            m.delivered += t.delivered;
            m.unique += t.unique;
            m.dups += t.dups;
            m.reordered += t.reordered;
            m.bad += t.bad;
            m.last_rx = m.last_rx.max(t.last_rx);
            m.lat_us.extend_from_slice(&t.lat_us);
        }
        for c in self.h2_conns {
            let _ = tokio::time::timeout(Duration::from_secs(1), c).await;
        }
        m.h2_conn_errors = std::mem::take(&mut *self.h2_conn_errors.lock().unwrap());
        m.lat_us.sort_unstable();
        m
    }
}

/// Starts one h2c connection and its streams; returns the connection's
/// driver and the stream tasks.
async fn h2_connection(
    sh: Shared,
    errors: Arc<Mutex<Vec<String>>>,
    src: Ipv4Addr,
    server: SocketAddr,
    per_conn: usize,
    topic: String,
) -> (Option<JoinHandle<()>>, Vec<JoinHandle<StreamResult>>) {
    let fail_all = |e: String| {
        for _ in 0..per_conn {
            let _ = sh.ready.send(Ready::Failed(e.clone()));
        }
        (None, Vec::new())
    };
    let tcp = match connect_from(src, server).await {
        Ok(t) => t,
        Err(e) => return fail_all(format!("h2 connect from {src}: {e}")),
    };
    let handshake = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 26)
        .handshake::<_, Bytes>(tcp)
        .await;
    let (send, conn) = match handshake {
        Ok(x) => x,
        Err(e) => return fail_all(format!("h2 handshake: {e}")),
    };
    let mut stop = sh.stop.clone();
    let stopping = sh.stop.clone();
    let driver = tokio::spawn(async move {
        tokio::select! {
            r = conn => {
                let why = match r {
                    Ok(()) => "closed".to_string(),
                    Err(e) => e.to_string(),
                };
                if !*stopping.borrow() {
                    errors.lock().unwrap().push(format!("h2 connection from {src} ended: {why}"));
                }
            }
            _ = stop.wait_for(|s| *s) => {}
        }
    });
    let uri = format!("http://{server}/events?topic={topic}");
    let mut streams = Vec::with_capacity(per_conn);
    for j in 0..per_conn {
        let t0 = Instant::now();
        let ready = match tokio::time::timeout(sh.open_timeout, send.clone().ready()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                for _ in j..per_conn {
                    let _ = sh.ready.send(Ready::Failed(format!("h2 ready: {e}")));
                }
                break;
            }
            Err(_) => {
                // The peer's SETTINGS_MAX_CONCURRENT_STREAMS is reached and
                // the previous request is still queued in the client.
                for _ in j..per_conn {
                    let _ = sh.ready.send(Ready::NotOpened);
                }
                break;
            }
        };
        let mut ready = ready;
        let request = hyper::Request::get(&uri).body(()).expect("a valid request");
        let response = match ready.send_request(request, true) {
            Ok((response, _)) => response,
            Err(e) => {
                for _ in j..per_conn {
                    let _ = sh.ready.send(Ready::Failed(format!("h2 send_request: {e}")));
                }
                break;
            }
        };
        if j == 0 {
            let (head_tx, head_rx) = oneshot::channel();
            streams.push(tokio::spawn(h2_subscriber(
                sh.clone(),
                response,
                t0,
                Some(head_tx),
            )));
            if head_rx.await.is_err() {
                // The first stream did not open: its report is sent; the
                // rest of this connection is not tried.
                for _ in 1..per_conn {
                    let _ = sh
                        .ready
                        .send(Ready::Failed("first stream of the connection failed".into()));
                }
                break;
            }
        } else {
            streams.push(tokio::spawn(h2_subscriber(sh.clone(), response, t0, None)));
        }
    }
    (Some(driver), streams)
}

/// Everything the subscribers of a scenario saw.
#[derive(Default)]
struct Merged {
    streams: usize,
    delivered: u64,
    unique: u64,
    dups: u64,
    reordered: u64,
    bad: u64,
    last_rx: u64,
    lat_us: Vec<u32>,
    server_ended: usize,
    errors: Vec<String>,
    h2_conn_errors: Vec<String>,
}

impl Merged {
    fn lat_ms(&self, p: f64) -> f64 {
        percentile(&self.lat_us, p).map_or(0.0, |us| f64::from(us) / 1e3)
    }
}

// ---------------------------------------------------------------------------
// The publisher
// ---------------------------------------------------------------------------

/// Longest wait for one publish answer (a batch of 10,000 events included).
const POST_TIMEOUT: Duration = Duration::from_secs(30);

struct Publisher {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Publisher {
    async fn connect(server: SocketAddr) -> Result<Publisher, String> {
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
    async fn post(
        &mut self,
        target: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        tokio::time::timeout(POST_TIMEOUT, self.exchange(target, content_type, body))
            .await
            .unwrap_or_else(|_| Err(format!("publish: no answer within {POST_TIMEOUT:?}")))
    }

    async fn exchange(
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
fn payload(seq: u64, sent: u64, size: usize, out: &mut String) {
    let start = out.len();
    let _ = write!(out, "{seq} {sent} ");
    while out.len() - start < size {
        out.push('x');
    }
}

enum Mode {
    /// `events` single publishes at `per_sec`.
    Rate { events: u64, per_sec: u64 },
    /// `events` single publishes, each sent when the previous got its 200.
    BackToBack { events: u64 },
    /// `requests` batch publishes of `per_request` events each.
    Batch { requests: u64, per_request: u64 },
}

enum Target {
    /// Every event to this topic, which has `subscribers` subscribers.
    One { topic: String, subscribers: u64 },
    /// Each event to `t{k}` for a random k below this; one subscriber each.
    Random(usize),
}

#[derive(Default)]
struct Published {
    /// Events accepted (answered 200).
    events: u64,
    requests: u64,
    expected: u64,
    first_send: u64,
    last_ok: u64,
    errors: Vec<String>,
}

/// xorshift64*: the random topics; no need for a crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

async fn publish(server: SocketAddr, mode: Mode, target: Target, data_bytes: usize) -> Published {
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
    let (events, interval) = match mode {
        Mode::Rate { events, per_sec } => {
            (events, Some(Duration::from_nanos(1_000_000_000 / per_sec.max(1))))
        }
        Mode::BackToBack { events } => (events, None),
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
    for seq in 0..events {
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
struct Phase {
    published: Published,
    /// Server CPU seconds from just before the first publish until every
    /// expected delivery arrived (or the wait gave up).
    cpu_secs: Option<f64>,
    clk_tck: f64,
    /// This process's CPU time over the same span, and as a share of it: near
    /// 100% means the harness (one core) bounds the latency and rate figures.
    harness_busy: f64,
    harness_cpu: f64,
    /// CPU used by everything else on the machine, in cores: other load
    /// makes every figure noisy.
    others_busy: Option<f64>,
}

/// CPU time of every process on the machine (user + nice + system, so
/// interrupt time is left out), in seconds, from /proc/stat.
fn machine_cpu_secs(clk_tck: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    Some((f.first()? + f.get(1)? + f.get(2)?) as f64 / clk_tck)
}

/// This process's user + system CPU time, in seconds.
fn own_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the struct passed.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(ru.ru_utime) + secs(ru.ru_stime)
    }
}

/// CPU figures over fewer clock ticks than this are printed but not judged.
const MIN_TICKS: u64 = 10;

/// Publishes, then waits until every expected delivery arrived, nothing
/// arrived for `drain_idle`, or `drain_max` passed.
async fn publish_phase(
    env: &Env,
    p: &Params,
    server: &Server,
    subs: &Subscribers,
    mode: Mode,
    target: Target,
) -> Phase {
    let cpu0 = server.cpu_secs(env);
    let own0 = own_cpu_secs();
    let all0 = machine_cpu_secs(env.clk_tck);
    let t0 = Instant::now();
    let published = publish(server.addr, mode, target, p.data_bytes).await;
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
        clk_tck: env.clk_tck,
        // Over less than a second the clock ticks say nothing.
        others_busy: all
            .filter(|_| wall >= 1.0)
            .map(|all| (all - own - server_cpu.unwrap_or(0.0)).max(0.0) / wall),
        harness_busy: own / wall.max(1e-9),
        harness_cpu: own,
    }
}

// ---------------------------------------------------------------------------
// Reporting helpers shared by the scenarios
// ---------------------------------------------------------------------------

fn report_opening(report: &mut Report, name: &str, o: &Opening, target_rate: Option<f64>) {
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

fn report_rss(
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
struct Targets {
    zero_lost: bool,
    p99_ms: Option<f64>,
    per_sec: Option<f64>,
    cpu_us_per_delivery: Option<f64>,
}

/// Delivery figures; returns deliveries per server CPU-second.
fn report_delivery(report: &mut Report, name: &str, phase: &Phase, m: &Merged, t: &Targets) -> Option<f64> {
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

    let lat = format!(
        "p50 {:.2} / p99 {:.2} / max {:.2} ms",
        m.lat_ms(0.5),
        m.lat_ms(0.99),
        m.lat_ms(1.0)
    );
    match t.p99_ms {
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
    let ticks = (cpu * phase.clk_tck).round() as u64;
    let value = format!("{us:.3} µs ({cpu:.2} CPU-s = {ticks} ticks)");
    match t.cpu_us_per_delivery {
        Some(limit) if ticks >= MIN_TICKS => report.at_most(
            name,
            "server CPU per delivery",
            value,
            us,
            limit,
            &format!("≤ {limit} µs"),
        ),
        Some(limit) => report.row(
            name,
            "server CPU per delivery",
            format!("{value}: too few ticks to judge"),
            format!("≤ {limit} µs"),
            Verdict::Info,
        ),
        None => report.info(name, "server CPU per delivery", value),
    }
    (cpu > 0.0).then(|| m.delivered as f64 / cpu)
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

async fn settle_rss(server: &Server) -> Option<u64> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.rss()
}

/// Starts the server with `args`, opens `streams` HTTP/1.1 subscribers
/// (stream `i` on `topic(i)`, each expecting `events` events), and reports
/// the connect rate and the server's RSS per stream against the targets.
#[allow(clippy::too_many_arguments)]
async fn start_with_h1_streams(
    env: &Env,
    p: &Params,
    report: &mut Report,
    name: &str,
    args: &[&str],
    (streams, events): (usize, u64),
    topic: impl Fn(usize) -> String,
    (rate_target, rss_target): (Option<f64>, Option<u64>),
) -> Result<(Server, Subscribers, Opening), String> {
    let server = Server::start(env, name, args).await?;
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

async fn idle(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "idle";
    let targets = (Some(15_000.0), Some(5 * 1024));
    let (server, mut subs, _) = start_with_h1_streams(
        env,
        p,
        report,
        name,
        &[],
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

/// Publishes `mode` to `topic`, which all `opened` subscribers listen to,
/// and collects what they received.
async fn publish_to_all(
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

async fn fanout(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "fanout";
    let streams = (p.fanout_streams, p.fanout_events);
    let (server, subs, o) =
        start_with_h1_streams(env, p, report, name, &[], streams, |_| "t".into(), (None, None)).await?;
    let mode = Mode::Rate {
        events: p.fanout_events,
        per_sec: p.fanout_rate,
    };
    let (phase, m) = publish_to_all(env, p, &server, subs, ("t", o.opened), mode).await;
    let t = Targets {
        zero_lost: true,
        p99_ms: Some(50.0),
        cpu_us_per_delivery: Some(10.0),
        ..Targets::default()
    };
    let per_cpu = report_delivery(report, name, &phase, &m, &t);
    if let Some(v) = per_cpu {
        report.info(
            name,
            "deliveries per CPU-second",
            format!("{} /CPU-s", thousands(v as u64)),
        );
    }
    report.fanout_per_cpu_s = per_cpu;
    server.stop(report).await;
    Ok(())
}

async fn saturate(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "saturate";
    let streams = (p.saturate_streams, p.saturate_events);
    let (server, subs, o) =
        start_with_h1_streams(env, p, report, name, &[], streams, |_| "t".into(), (None, None)).await?;
    let mode = Mode::BackToBack {
        events: p.saturate_events,
    };
    let (phase, m) = publish_to_all(env, p, &server, subs, ("t", o.opened), mode).await;
    let t = Targets {
        zero_lost: true,
        per_sec: Some(600_000.0),
        cpu_us_per_delivery: Some(1.5),
        ..Targets::default()
    };
    report_delivery(report, name, &phase, &m, &t);
    let pb = &phase.published;
    let secs = pb.last_ok.saturating_sub(pb.first_send) as f64 / 1e9;
    if secs > 0.0 {
        report.info(
            name,
            "publishes per second",
            format!(
                "{} /s (each waits for its 200)",
                thousands((pb.events as f64 / secs) as u64)
            ),
        );
    }
    server.stop(report).await;
    Ok(())
}

async fn topics(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
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

async fn batch(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "batch";
    let total = p.batch_requests * p.batch_events;
    // The server hands each subscriber a whole batch as one queue entry, so
    // the default queue holds the run.
    let (server, subs, o) = start_with_h1_streams(
        env,
        p,
        report,
        name,
        &[],
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

async fn h2(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "h2";
    let server = Server::start(env, name, &[]).await?;
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

async fn h2_overlimit(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "h2-overlimit";
    let limit = p.over_limit.to_string();
    let server = Server::start(env, name, &["--h2-max-concurrent-streams", &limit]).await?;
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

/// Spawn to first accepted connection (and to the first answer), without
/// taskset, the child pinned to core 0 before exec.
fn startup(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
    let name = "startup";
    let mut accept_ms = Vec::new();
    let mut answer_ms = Vec::new();
    let mut rss = None;
    for run in 0..p.startup_runs {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = std::process::Command::new(&env.bin);
        cmd.args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if env.pin {
            use std::os::unix::process::CommandExt;
            // SAFETY: only an async-signal-safe system call between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_ZERO(&mut set);
                    libc::CPU_SET(0, &mut set);
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                    Ok(())
                });
            }
        }
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", env.bin.display()))?;
        let deadline = t0 + Duration::from_secs(5);
        let mut conn = loop {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_micros(100)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("run {run}: the server did not accept within 5 s: {e}"));
                }
            }
        };
        accept_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        use std::io::Read as _;
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut buf = Vec::new();
        let _ = conn.read_to_end(&mut buf);
        if buf.starts_with(b"HTTP/1.1 200") {
            answer_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        } else {
            report.note(
                name,
                format!("run {run}: /healthz answered {:?}", String::from_utf8_lossy(&buf)),
            );
        }
        if rss.is_none() {
            rss = rss_of(child.id());
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (a_min, a_max) = (
        accept_ms.iter().copied().fold(f64::INFINITY, f64::min),
        accept_ms.iter().copied().fold(0.0, f64::max),
    );
    let a = median(&mut accept_ms);
    report.at_most(
        name,
        "spawn → first accepted connection",
        format!(
            "{a:.2} ms median of {} (min {a_min:.2}, max {a_max:.2})",
            p.startup_runs
        ),
        a,
        20.0,
        "≤ 20 ms",
    );
    if !answer_ms.is_empty() {
        let h = median(&mut answer_ms);
        report.info(name, "spawn → first /healthz answer", format!("{h:.2} ms median"));
    }
    if let Some(rss) = rss {
        report.info(
            name,
            "server RSS at start",
            format!("{:.2} MiB", rss as f64 / 1048576.0),
        );
    }
    let size = std::fs::metadata(&env.bin).map_err(|e| e.to_string())?.len();
    let mib = size as f64 / 1048576.0;
    report.at_most(
        name,
        "binary size",
        format!("{} B = {mib:.3} MiB", thousands(size)),
        mib,
        1.25,
        "≤ 1.25 MiB",
    );
    Ok(())
}

async fn run_scenario(name: &str, env: &Env, p: &Params, report: &mut Report) {
    println!();
    println!("=== {name} ({:?}) ===", p.size);
    let t0 = Instant::now();
    let result = match name {
        "idle" => bounded(p, idle(env, p, report)).await,
        "fanout" => bounded(p, fanout(env, p, report)).await,
        "saturate" => bounded(p, saturate(env, p, report)).await,
        "topics" => bounded(p, topics(env, p, report)).await,
        "batch" => bounded(p, batch(env, p, report)).await,
        "h2" => bounded(p, h2(env, p, report)).await,
        "h2-overlimit" => bounded(p, h2_overlimit(env, p, report)).await,
        "startup" => startup(env, p, report),
        _ => Err(format!("unknown scenario {name}")),
    };
    if let Err(e) = result {
        report.fail(name, e);
    }
    println!("[{name}] took {:.1} s", t0.elapsed().as_secs_f64());
}

async fn bounded(p: &Params, f: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    // The server child is killed on drop when the scenario is cut short.
    tokio::time::timeout(p.scenario_limit, f)
        .await
        .unwrap_or_else(|_| Err(format!("did not finish within {:?}", p.scenario_limit)))
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

const USAGE: &str = "usage: cargo bench --bench load -- [SCENARIO...] [--size small|full] [--bin PATH]
scenarios: idle fanout saturate topics batch h2 h2-overlimit startup (default: all)";

struct Args {
    size: Size,
    scenarios: Vec<String>,
    bin: Option<PathBuf>,
    /// Run by `cargo test` (no `--bench`): the smoke test.
    test_mode: bool,
}

/// Parses the arguments; `Err(None)` means exit 0 quietly.
fn parse_args() -> Result<Args, Option<String>> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let test_mode = !raw.iter().any(|a| a == "--bench");
    let mut size = None;
    let mut scenarios = Vec::new();
    let mut others = Vec::new();
    let mut bin = None;
    let mut it = raw.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {}
            "--size" => size = it.next(),
            "--bin" => bin = it.next().map(PathBuf::from),
            "-h" | "--help" => return Err(Some(USAGE.into())),
            // libtest's listing: we have no unit tests to list.
            "--list" if test_mode => return Err(None),
            _ if a.starts_with("--size=") => size = Some(a["--size=".len()..].to_string()),
            _ if a.starts_with("--bin=") => bin = Some(PathBuf::from(&a["--bin=".len()..])),
            _ if SCENARIOS.contains(&a.as_str()) => scenarios.push(a),
            _ => others.push(a),
        }
    }
    if test_mode {
        // `cargo test FILTER` passes its filter and libtest flags to every
        // target: flags are ignored, and a filter that names no scenario
        // filters this smoke test out, as libtest would.
        if others.iter().any(|a| !a.starts_with('-')) && scenarios.is_empty() {
            println!("load: filtered out");
            return Err(None);
        }
    } else if let Some(a) = others.first() {
        return Err(Some(format!("unknown argument {a:?}\n{USAGE}")));
    }
    let size = match size.as_deref() {
        Some("small") => Size::Small,
        Some("full") => Size::Full,
        None if test_mode => Size::Small,
        None => Size::Full,
        Some(other) => return Err(Some(format!("--size must be small or full, not {other:?}"))),
    };
    if scenarios.is_empty() {
        scenarios = SCENARIOS.iter().map(|s| s.to_string()).collect();
    }
    Ok(Args {
        size,
        scenarios,
        bin,
        test_mode,
    })
}

fn main() -> ExitCode {
    START.get_or_init(Instant::now);
    let args = match parse_args() {
        Ok(a) => a,
        Err(None) => return ExitCode::SUCCESS,
        Err(Some(msg)) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    // Under `cargo bench` this is target/release/ssehub; under `cargo test`
    // the test profile's build of the same binary.
    let bin = args
        .bin
        .clone()
        .or_else(|| std::env::var_os("SSEHUB_BIN").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ssehub")));
    if !bin.is_file() {
        eprintln!(
            "load: the server binary {} is missing; build it first with `cargo build --release` \
             (or pass --bin PATH)",
            bin.display()
        );
        return ExitCode::FAILURE;
    }
    let log_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("ssehub-load");
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        eprintln!("load: cannot create {}: {e}", log_dir.display());
        return ExitCode::FAILURE;
    }
    let cores = cpus_available();
    let pin = cores >= 2 && pin_to_core(1);
    let nofile = raise_nofile();
    // SAFETY: sysconf has no preconditions.
    let clk_tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let env = Env {
        bin,
        taskset: in_path("taskset"),
        pin,
        log_dir,
        clk_tck,
    };
    let p = Params::new(args.size);

    println!(
        "ssehub load test, size {:?}{}",
        p.size,
        if args.test_mode {
            " (cargo test smoke run)"
        } else {
            ""
        }
    );
    println!("binary: {}", env.bin.display());
    println!(
        "cores: {cores}; server on core 0 via {}, harness on core 1: {}",
        if !pin {
            "nothing (not pinned)".to_string()
        } else if let Some(t) = &env.taskset {
            t.display().to_string()
        } else {
            "nothing (no taskset)".into()
        },
        if pin { "yes" } else { "no" }
    );
    println!(
        "RLIMIT_NOFILE {nofile}; somaxconn {}; tcp_max_syn_backlog {}; ip_local_port_range {}; server logs in {}",
        read_sysctl("net.core.somaxconn"),
        read_sysctl("net.ipv4.tcp_max_syn_backlog"),
        read_sysctl("net.ipv4.ip_local_port_range"),
        env.log_dir.display()
    );
    let need = (p.idle_streams + p.burst + 64) as u64;
    let mut report = Report {
        judge: p.size == Size::Full,
        ..Report::default()
    };
    if nofile < need {
        report.note(
            "setup",
            format!("RLIMIT_NOFILE is {nofile}, below the {need} descriptors the idle scenario needs"),
        );
    }

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t0 = Instant::now();
    runtime.block_on(async {
        for name in &args.scenarios {
            run_scenario(name, &env, &p, &mut report).await;
        }
    });
    let title = format!(
        "ssehub load test: size {:?}, {} scenarios in {:.1} s (server: {})",
        p.size,
        args.scenarios.len(),
        t0.elapsed().as_secs_f64(),
        env.bin.display()
    );
    report.print(&title);
    let _ = std::io::stdout().flush();
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
