//! TLS benchmarks: starts `target/release/ssehub` with a certificate made
//! here (rcgen, ECDSA P-256) and measures, each beside the same run's
//! cleartext figure where the target is a ratio:
//!
//! - `tls-idle`: server RSS per idle TLS HTTP/1.1 stream (and cleartext).
//! - `tls-connect`: full TLS 1.3 handshakes per second, and server CPU per
//!   handshake (no resumption; the client skips certificate checks so that
//!   the client core is not the limit).
//! - `tls-fanout`: server CPU per delivery over TLS HTTP/1.1 vs cleartext.
//! - `tls-h2`: connections × streams over TLS h2 vs h2c, CPU per delivery.
//!
//! ```text
//! cargo bench --bench tls -- [SCENARIO...] [--size small|full] [--bin PATH]
//!                              [--cert-key CERT.pem KEY.pem]
//! ```
//!
//! The certificate is ECDSA P-256 unless `--cert-key` names another (an
//! RSA one, to compare handshake costs).
//!
//! Self-contained on purpose (the load harness is being reorganised): the
//! server is pinned to core 0 with taskset when there are two cores, this
//! process to core 1, and CPU is read from /proc (user + system time of the
//! server process), so other work on the machine does not change the
//! figures the way wall time would. Only 127.0.0.0/8 is used; every loop is
//! bounded. Figures are printed, never asserted.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// Sizes of one run.
struct Size {
    idle_streams: usize,
    handshakes: usize,
    handshake_concurrency: usize,
    fanout_subscribers: usize,
    fanout_events: usize,
    /// Time between fan-out publishes: as in the load harness's `fanout`,
    /// each event reaches idle subscribers (one wake-up and one write each).
    fanout_interval: Duration,
    h2_connections: usize,
    h2_streams: usize,
    h2_events: usize,
}

const FULL: Size = Size {
    idle_streams: 10_000,
    handshakes: 20_000,
    handshake_concurrency: 64,
    fanout_subscribers: 5_000,
    fanout_events: 200,
    fanout_interval: Duration::from_millis(100),
    h2_connections: 100,
    h2_streams: 100,
    h2_events: 50,
};

const SMALL: Size = Size {
    idle_streams: 200,
    handshakes: 200,
    handshake_concurrency: 8,
    fanout_subscribers: 50,
    fanout_events: 10,
    fanout_interval: Duration::from_millis(10),
    h2_connections: 4,
    h2_streams: 10,
    h2_events: 5,
};

// ---------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------

struct Env {
    bin: PathBuf,
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    pin: bool,
    clk_tck: f64,
}

struct Server {
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
}

impl Server {
    async fn start(env: &Env, name: &str, tls: bool) -> Result<Server, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(env.dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let mut cmd = if env.pin {
            let mut c = tokio::process::Command::new("taskset");
            c.args(["-c", "0"]).arg(&env.bin);
            c
        } else {
            tokio::process::Command::new(&env.bin)
        };
        let listen = addr.to_string();
        cmd.args([
            "--listen",
            &listen,
            "--max-connections",
            "100000",
            "--heartbeat",
            "60s",
        ]);
        if tls {
            cmd.arg("--tls-cert")
                .arg(&env.cert)
                .arg("--tls-key")
                .arg(&env.key);
        }
        cmd.env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", env.bin.display()))?;
        let pid = child.id().ok_or("the server exited at once")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the server exited with {status}"));
            }
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err("the server did not accept within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Server { child, pid, addr })
    }

    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }

    fn cpu_secs(&self, env: &Env) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let Some(end) = stat.rfind(')') else { return 0.0 };
        let fields: Vec<&str> = stat[end + 2..].split_whitespace().collect();
        let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        (utime + stime) as f64 / env.clk_tck
    }

    /// RSS once the server has been quiet a moment (allocator settles).
    async fn settled_rss(&self) -> u64 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.rss()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// Accepts any certificate without checking signatures: the benchmarks
/// measure the server, and a verifying client would spend more CPU per
/// handshake than the server does.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `a / b`, or a note when a run was too short for the CPU clock (10 ms ticks).
fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "too short to measure (use --size full)".into()
    }
}

fn client_config(alpn: &[u8]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    // Every handshake a full one.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Source addresses 127.0.0.2..=127.0.0.250, round-robin, so ephemeral
/// ports of one address are no limit.
async fn connect_from(i: usize, server: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((
        Ipv4Addr::new(127, 0, 0, 2 + (i % 249) as u8),
        0,
    )))?;
    let s = sock.connect(server).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

async fn open(i: usize, server: SocketAddr, tls: Option<&Arc<ClientConfig>>) -> Result<Box<dyn Io>, String> {
    let tcp = connect_from(i, server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let name = ServerName::try_from("localhost").expect("name");
            let s = TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            Ok(Box::new(s))
        }
    }
}

/// Opens an HTTP/1.1 event stream and reads its head (and the opening retry).
async fn h1_stream(
    i: usize,
    server: SocketAddr,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Box<dyn Io>, String> {
    let mut s = open(i, server, tls).await?;
    s.write_all(b"GET /events?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 256];
    while !String::from_utf8_lossy(&buf).contains("retry:") {
        let n = s.read(&mut byte).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the head".into());
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Ok(s)
}

/// Reads until `events` event blocks (`\n\n` after the opening retry) arrived.
async fn count_events(mut s: Box<dyn Io>, events: usize, got: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut last = 0u8;
    let mut seen = 0usize;
    while seen < events {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' && last == b'\n' {
                seen += 1;
            }
            // Chunk framing's CR LF between events must not hide a "\n\n".
            if b != b'\r' {
                last = b;
            }
        }
    }
    got.fetch_add(seen as u64, Ordering::Relaxed);
}

/// Publishes `n` events of 64 bytes to topic `t`, one request each, over
/// one keep-alive HTTP/1.1 connection, `every` apart (zero: back to back).
async fn publish(
    server: SocketAddr,
    tls: Option<&Arc<ClientConfig>>,
    n: usize,
    every: Duration,
) -> Result<(), String> {
    let io = open(10_000_000, server, tls).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let data = Bytes::from(vec![b'x'; 64]);
    let start = tokio::time::Instant::now();
    for i in 0..n {
        tokio::time::sleep_until(start + every * i as u32).await;
        let req = hyper::Request::post("/publish?topic=t")
            .header("host", "x")
            .body(Full::new(data.clone()))
            .map_err(|e| e.to_string())?;
        send.ready().await.map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        if resp.status() != 200 {
            return Err(format!("publish -> {}", resp.status()));
        }
        resp.into_body().collect().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

async fn idle_rss(env: &Env, n: usize, tls: bool) -> Result<f64, String> {
    let server = Server::start(env, if tls { "tls-idle" } else { "idle" }, tls).await?;
    let config = client_config(b"http/1.1");
    let before = server.settled_rss().await;
    let mut streams = Vec::with_capacity(n);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let config = config.clone();
        let addr = server.addr;
        tasks.spawn(async move { h1_stream(i, addr, tls.then_some(&config)).await });
        if tasks.len() >= 64 {
            if let Some(r) = tasks.join_next().await {
                streams.push(r.map_err(|e| e.to_string())??);
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        streams.push(r.map_err(|e| e.to_string())??);
    }
    let after = server.settled_rss().await;
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    drop(streams);
    server.stop().await;
    Ok(per)
}

async fn tls_idle(env: &Env, size: &Size) -> Result<(), String> {
    let n = size.idle_streams;
    let tls = idle_rss(env, n, true).await?;
    let plain = idle_rss(env, n, false).await?;
    println!(
        "tls-idle: {n} idle HTTP/1.1 streams: TLS {:.2} KB per stream (target <= 10 KB); cleartext {:.2} KB; TLS adds {:.2} KB",
        tls / 1000.0,
        plain / 1000.0,
        (tls - plain) / 1000.0
    );
    Ok(())
}

async fn tls_connect(env: &Env, size: &Size) -> Result<(), String> {
    let server = Server::start(env, "tls-connect", true).await?;
    let config = client_config(b"http/1.1");
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu0 = server.cpu_secs(env);
    let t0 = Instant::now();
    let per_worker = size.handshakes / size.handshake_concurrency;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..size.handshake_concurrency {
        let (config, done, failed, addr) = (config.clone(), done.clone(), failed.clone(), server.addr);
        tasks.spawn(async move {
            for k in 0..per_worker {
                match open(w * per_worker + k, addr, Some(&config)).await {
                    Ok(mut s) => {
                        let _ = s.shutdown().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let wall = t0.elapsed().as_secs_f64();
    // Let the server finish closing what the clients closed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = server.cpu_secs(env) - cpu0;
    let n = done.load(Ordering::Relaxed) as f64;
    let per = cpu / n;
    println!(
        "tls-connect: {} full TLS 1.3 handshakes ({} failed): server CPU {:.1} us per handshake = {:.0} handshakes/s per core (target >= 4,000/s); measured {:.0}/s wall with the client on one core",
        n,
        failed.load(Ordering::Relaxed),
        per * 1e6,
        1.0 / per,
        n / wall
    );
    server.stop().await;
    Ok(())
}

/// Server CPU per delivery for `subs` HTTP/1.1 subscribers and `events` events.
async fn fanout_cpu(
    env: &Env,
    subs: usize,
    events: usize,
    every: Duration,
    tls: bool,
) -> Result<f64, String> {
    let server = Server::start(env, if tls { "tls-fanout" } else { "fanout" }, tls).await?;
    let config = client_config(b"http/1.1");
    let tls_config = tls.then_some(&config);
    let got = Arc::new(AtomicU64::new(0));
    let mut readers = tokio::task::JoinSet::new();
    for i in 0..subs {
        let s = h1_stream(i, server.addr, tls_config).await?;
        readers.spawn(count_events(s, events, got.clone()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu0 = server.cpu_secs(env);
    publish(server.addr, tls_config, events, every).await?;
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    let cpu = server.cpu_secs(env) - cpu0;
    let delivered = got.load(Ordering::Relaxed);
    if delivered < (subs * events) as u64 {
        return Err(format!(
            "only {delivered} of {} deliveries arrived",
            subs * events
        ));
    }
    server.stop().await;
    Ok(cpu / delivered as f64)
}

async fn tls_fanout(env: &Env, size: &Size) -> Result<(), String> {
    let (s, e, every) = (size.fanout_subscribers, size.fanout_events, size.fanout_interval);
    let plain = fanout_cpu(env, s, e, every, false).await?;
    let tls = fanout_cpu(env, s, e, every, true).await?;
    println!(
        "tls-fanout: {s} HTTP/1.1 subscribers x {e} events of 64 B, {:.0}/s: TLS {:.2} us per delivery, cleartext {:.2} us: {} (target <= 1.3x)",
        1.0 / every.as_secs_f64(),
        tls * 1e6,
        plain * 1e6,
        ratio(tls, plain)
    );
    Ok(())
}

/// Server CPU per delivery for `conns` HTTP/2 connections × `streams` streams.
async fn h2_cpu(env: &Env, conns: usize, streams: usize, events: usize, tls: bool) -> Result<f64, String> {
    let server = Server::start(env, if tls { "tls-h2" } else { "h2c" }, tls).await?;
    let config = client_config(b"h2");
    let tls_config = tls.then_some(&config);
    let got = Arc::new(AtomicU64::new(0));
    let mut readers = tokio::task::JoinSet::new();
    let mut senders = Vec::new();
    for c in 0..conns {
        let io = open(c, server.addr, tls_config).await?;
        let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(io),
        )
        .await
        .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        for _ in 0..streams {
            send.ready().await.map_err(|e| e.to_string())?;
            let req = hyper::Request::get("http://localhost/events?topic=t")
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let got = got.clone();
            readers.spawn(async move {
                let mut body = resp.into_body();
                let mut seen = 0usize;
                // The opening retry block is one frame too.
                while seen < events + 1 {
                    match body.frame().await {
                        Some(Ok(f)) => {
                            if let Ok(d) = f.into_data() {
                                seen += d.windows(2).filter(|w| w == b"\n\n").count();
                            }
                        }
                        _ => break,
                    }
                }
                got.fetch_add(seen.saturating_sub(1) as u64, Ordering::Relaxed);
            });
        }
        senders.push(send);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = server.cpu_secs(env);
    publish(
        server.addr,
        tls.then_some(&client_config(b"http/1.1")),
        events,
        Duration::ZERO,
    )
    .await?;
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    let cpu = server.cpu_secs(env) - cpu0;
    let delivered = got.load(Ordering::Relaxed);
    if delivered < (conns * streams * events) as u64 {
        return Err(format!(
            "only {delivered} of {} deliveries arrived",
            conns * streams * events
        ));
    }
    drop(senders);
    server.stop().await;
    Ok(cpu / delivered as f64)
}

async fn tls_h2(env: &Env, size: &Size) -> Result<(), String> {
    let (c, s, e) = (size.h2_connections, size.h2_streams, size.h2_events);
    let tls = h2_cpu(env, c, s, e, true).await?;
    let plain = h2_cpu(env, c, s, e, false).await?;
    println!(
        "tls-h2: {c} connections x {s} streams x {e} events: TLS h2 {:.2} us per delivery, h2c {:.2} us: {} (target <= 1.3x)",
        tls * 1e6,
        plain * 1e6,
        ratio(tls, plain)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

fn pin_self(core: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this process.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit with valid pointers.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut size = &FULL;
    let mut bin = PathBuf::from("target/release/ssehub");
    let mut scenarios = Vec::new();
    let mut given: Option<(PathBuf, PathBuf)> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            // Another certificate (an RSA one, to compare handshake costs).
            "--cert-key" => match (args.next(), args.next()) {
                (Some(c), Some(k)) => given = Some((c.into(), k.into())),
                _ => {
                    eprintln!("--cert-key takes CERT.pem KEY.pem");
                    return ExitCode::from(2);
                }
            },
            "--size" => {
                size = if args.next().as_deref() == Some("small") {
                    &SMALL
                } else {
                    &FULL
                }
            }
            "--bin" => bin = args.next().map(PathBuf::from).unwrap_or(bin),
            "--bench" => {}
            s if ["tls-idle", "tls-connect", "tls-fanout", "tls-h2"].contains(&s) => {
                scenarios.push(s.to_string())
            }
            other => {
                eprintln!("unknown argument {other}; usage: cargo bench --bench tls -- [tls-idle|tls-connect|tls-fanout|tls-h2...] [--size small|full] [--bin PATH]");
                return ExitCode::from(2);
            }
        }
    }
    if scenarios.is_empty() {
        scenarios = ["tls-idle", "tls-connect", "tls-fanout", "tls-h2"]
            .map(String::from)
            .to_vec();
    }
    raise_nofile();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pin = cores >= 2 && std::process::Command::new("taskset").arg("-V").output().is_ok();
    if pin {
        pin_self(1);
    }
    let dir = std::env::temp_dir().join(format!("ssehub-bench-tls-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let (cert, key) = match given {
        Some(pair) => pair,
        None => {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if std::fs::write(&cert, made.cert.pem())
                .and(std::fs::write(&key, made.signing_key.serialize_pem()))
                .is_err()
            {
                eprintln!("cannot write the certificate");
                return ExitCode::FAILURE;
            }
            (cert, key)
        }
    };
    // SAFETY: sysconf has no preconditions.
    let clk_tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let env = Env {
        bin,
        dir: dir.clone(),
        cert,
        key,
        pin,
        clk_tck,
    };
    println!(
        "server {} {}, certificate {}; this process on core 1; CPU is the server's user + system time",
        env.bin.display(),
        if pin { "on core 0 (taskset)" } else { "unpinned" },
        env.cert.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut failed = false;
    for s in &scenarios {
        let result = rt.block_on(async {
            match s.as_str() {
                "tls-idle" => tls_idle(&env, size).await,
                "tls-connect" => tls_connect(&env, size).await,
                "tls-fanout" => tls_fanout(&env, size).await,
                _ => tls_h2(&env, size).await,
            }
        });
        if let Err(e) = result {
            println!("{s}: FAILED: {e}");
            failed = true;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
