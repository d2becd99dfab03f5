//! Shared-log benches (`--redis`): a real `redis-server` on a unix socket
//! and the release binary as child processes, driven over loopback.
//!
//! ```text
//! cargo bench --bench redis -- [redis-publish] [cluster] [--size small|full]
//! ```
//!
//! - `redis-publish`: single-event publishes per second through one node
//!   from 8 concurrent keep-alive publishers, and batch events per second
//!   (batches of 1,000 from one publisher), with the node's and Redis's
//!   CPU per event.
//! - `cluster`: 3 nodes plus Redis, 3,000 subscribers spread over them, 200
//!   events at 10/s published to one node: delivered, lost and duplicated
//!   per node, p99 latency, total ssehub CPU per delivery as a ratio to one
//!   in-memory node doing the same fan-out in the same run, and Redis CPU
//!   per event.
//!
//! Every node runs at its default flags except `--redis` and a long
//! `--heartbeat` (so heartbeats do not disturb the CPU figures). The nodes
//! share core 0 (taskset) and this process runs on core 1. Every loop is
//! bounded in count and time, and only loopback is used. Figures are
//! printed, never asserted: the exit status says only whether the harness
//! could do its job.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Result<T> = std::result::Result<T, String>;

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User plus system CPU seconds of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clk_tck()
}

fn pin_self(core: usize) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn two_cores() -> bool {
    std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
}

fn start_redis(dir: &Path) -> Result<Proc> {
    let sock = dir.join("redis.sock");
    let _ = std::fs::remove_file(&sock);
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", "redis-server", "--port", "0", "--unixsocket"])
        .arg(&sock)
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start redis-server (apt-get install redis-server): {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
    Ok(Proc(child))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Starts a node; waits until `/readyz` answers 200.
async fn start_node(bin: &Path, redis: Option<&Path>, log: &Path) -> Result<(Proc, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0"])
        .arg(bin)
        .args(["--listen", &addr.to_string(), "--heartbeat", "10m"]);
    if let Some(sock) = redis {
        cmd.arg("--redis").arg(format!("unix://{}", sock.display()));
    }
    let err = std::fs::File::create(log).map_err(|e| e.to_string())?;
    cmd.stdout(Stdio::null()).stderr(err).env("RUST_LOG", "warn");
    let child = Proc(
        cmd.spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((200, _)) = request(addr, "GET", "/readyz", b"", None).await {
            return Ok((child, addr));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "node at {addr} never became ready; see {}",
                log.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.1 request on a fresh connection; (status, body).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    ctype: Option<&str>,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut conn = KeepAlive::default();
    conn.send(&mut s, method, path, body, ctype).await
}

/// A keep-alive HTTP/1.1 client on raw TCP (no pipelining).
#[derive(Default)]
struct KeepAlive {
    buf: Vec<u8>,
}

impl KeepAlive {
    async fn send(
        &mut self,
        s: &mut TcpStream,
        method: &str,
        path: &str,
        body: &[u8],
        ctype: Option<&str>,
    ) -> Result<(u16, String)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = ctype {
            req.push_str(&format!("Content-Type: {t}\r\n"));
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body);
        s.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).to_string();
                    self.buf.drain(..end + 4 + len);
                    return Ok((status, body));
                }
            }
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `redis-publish`.
async fn redis_publish(bin: &Path, dir: &Path, secs: u64) -> Result<()> {
    let redis = start_redis(dir)?;
    let (node, addr) = start_node(bin, Some(&dir.join("redis.sock")), &dir.join("node.log")).await?;
    let done = Arc::new(AtomicU64::new(0));
    let (c0, r0, t0) = (cpu_secs(node.pid()), cpu_secs(redis.pid()), Instant::now());
    let until = t0 + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for p in 0..8 {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let mut conn = KeepAlive::default();
            let body = [b'x'; 64];
            while Instant::now() < until {
                let (status, text) = conn
                    .send(&mut s, "POST", &format!("/publish?topic=p{p}"), &body, None)
                    .await?;
                if status != 200 {
                    return Err(format!("publish answered {status}: {text}"));
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let wall = t0.elapsed().as_secs_f64();
    let (node_cpu, redis_cpu) = (cpu_secs(node.pid()) - c0, cpu_secs(redis.pid()) - r0);
    let n = done.load(Ordering::Relaxed) as f64;
    println!(
        "redis-publish single: {:.0} publishes/s from 8 publishers (target >= 30,000/s); node CPU {:.1} us/publish, Redis CPU {:.1} us/publish",
        n / wall,
        node_cpu / n * 1e6,
        redis_cpu / n * 1e6
    );

    // Batches of 1,000 from one publisher.
    let batch: String = (0..1000).map(|i| format!("data: {i:060}\n\n")).collect();
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut conn = KeepAlive::default();
    let (c0, r0, t0) = (cpu_secs(node.pid()), cpu_secs(redis.pid()), Instant::now());
    let mut events = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        let (status, text) = conn
            .send(
                &mut s,
                "POST",
                "/publish?topic=b",
                batch.as_bytes(),
                Some("text/event-stream"),
            )
            .await?;
        if status != 200 {
            return Err(format!("batch answered {status}: {text}"));
        }
        events += 1000;
    }
    let wall = t0.elapsed().as_secs_f64();
    let (node_cpu, redis_cpu) = (cpu_secs(node.pid()) - c0, cpu_secs(redis.pid()) - r0);
    println!(
        "redis-publish batch: {:.0} events/s in batches of 1,000 (target >= 200,000/s); node CPU {:.2} us/event, Redis CPU {:.2} us/event",
        events as f64 / wall,
        node_cpu / events as f64 * 1e6,
        redis_cpu / events as f64 * 1e6
    );
    Ok(())
}

/// What the subscribers of one node saw.
#[derive(Default)]
struct Seen {
    delivered: u64,
    dup: u64,
    latencies_us: Vec<u64>,
    /// Sequence numbers each subscriber got.
    per_sub: Vec<Vec<u64>>,
}

/// Opens `n` raw HTTP/1.1 subscribers on `addr`; each records `(seq, latency)`.
async fn subscribers(
    addr: SocketAddr,
    n: usize,
    start: Instant,
) -> Result<Vec<tokio::task::JoinHandle<Vec<(u64, u64)>>>> {
    let mut handles = Vec::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(n);
    for i in 0..n {
        let tx = tx.clone();
        let src = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i % 200) as u8);
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let socket = match tokio::net::TcpSocket::new_v4() {
                Ok(s) => s,
                Err(_) => return got,
            };
            let _ = socket.bind(SocketAddr::from((src, 0)));
            let Ok(mut s) = socket.connect(addr).await else {
                return got;
            };
            if s.write_all(b"GET /events?topic=c HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_err()
            {
                return got;
            }
            let mut buf = vec![0u8; 16384];
            let mut pending = Vec::new();
            let mut ready = Some(tx);
            loop {
                let n = match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return got,
                };
                if let Some(tx) = ready.take() {
                    let _ = tx.send(()).await;
                }
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Some(rest) = line.strip_prefix(b"data: ") {
                        let text = String::from_utf8_lossy(rest);
                        let mut parts = text.split_whitespace();
                        let seq: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
                        let sent: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                        let now = start.elapsed().as_micros() as u64;
                        if seq == u64::MAX - 1 {
                            return got;
                        }
                        got.push((seq, now.saturating_sub(sent)));
                    }
                }
            }
        }));
    }
    drop(tx);
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .map_err(|_| "subscribers did not all open".to_string())?;
    }
    Ok(handles)
}

fn tally(results: Vec<Vec<(u64, u64)>>, events: u64) -> Seen {
    let mut seen = Seen::default();
    for got in results {
        let mut seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        seen.latencies_us.extend(got.iter().map(|(_, l)| *l));
        seen.delivered += seqs.len() as u64;
        seqs.sort_unstable();
        let before = seqs.len();
        seqs.dedup();
        seen.dup += (before - seqs.len()) as u64;
        seqs.retain(|s| *s < events);
        seen.per_sub.push(seqs);
    }
    seen
}

fn p99(mut v: Vec<u64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)] as f64 / 1000.0
}

/// Publishes `events` at `rate`/s to `addr`, then the end marker.
async fn paced(addr: SocketAddr, events: u64, rate: u64, start: Instant) -> Result<()> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut conn = KeepAlive::default();
    let every = Duration::from_micros(1_000_000 / rate);
    let t0 = Instant::now();
    for seq in 0..events {
        let due = t0 + every * seq as u32;
        tokio::time::sleep_until(due.into()).await;
        let body = format!("{seq} {} {}", start.elapsed().as_micros(), "x".repeat(32));
        let (status, text) = conn
            .send(&mut s, "POST", "/publish?topic=c", body.as_bytes(), None)
            .await?;
        if status != 200 {
            return Err(format!("publish answered {status}: {text}"));
        }
    }
    let end = format!("{} 0", u64::MAX - 1);
    conn.send(&mut s, "POST", "/publish?topic=c", end.as_bytes(), None)
        .await?;
    Ok(())
}

/// `cluster`, and the in-memory node it is compared with.
async fn cluster(bin: &Path, dir: &Path, subs: usize, events: u64) -> Result<()> {
    let start = Instant::now();
    // The in-memory baseline: one node, every subscriber on it.
    let (mem, mem_addr) = start_node(bin, None, &dir.join("memory.log")).await?;
    let handles = subscribers(mem_addr, subs, start).await?;
    let c0 = cpu_secs(mem.pid());
    paced(mem_addr, events, 10, start).await?;
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.map_err(|e| e.to_string())?);
    }
    let mem_cpu = cpu_secs(mem.pid()) - c0;
    let mem_seen = tally(results, events);
    drop(mem);
    let mem_per = mem_cpu / mem_seen.delivered.max(1) as f64 * 1e6;
    println!(
        "cluster baseline (one in-memory node, {subs} subscribers): {} delivered, {:.2} us CPU/delivery, p99 {:.1} ms",
        mem_seen.delivered,
        mem_per,
        p99(mem_seen.latencies_us.clone())
    );

    let redis = start_redis(dir)?;
    let sock = dir.join("redis.sock");
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(start_node(bin, Some(&sock), &dir.join(format!("node{i}.log"))).await?);
    }
    let mut per_node = Vec::new();
    for (_, addr) in &nodes {
        per_node.push(subscribers(*addr, subs / 3, start).await?);
    }
    let c0: f64 = nodes.iter().map(|(p, _)| cpu_secs(p.pid())).sum();
    let r0 = cpu_secs(redis.pid());
    paced(nodes[0].1, events, 10, start).await?;
    let mut total = 0;
    let mut lat = Vec::new();
    for (i, handles) in per_node.into_iter().enumerate() {
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.map_err(|e| e.to_string())?);
        }
        let seen = tally(results, events);
        let expected = events * seen.per_sub.len() as u64;
        let unique: u64 = seen.per_sub.iter().map(|s| s.len() as u64).sum();
        println!(
            "cluster node {i}: {} subscribers, delivered {unique} of {expected}, lost {}, dup {}",
            seen.per_sub.len(),
            expected - unique.min(expected),
            seen.dup
        );
        total += seen.delivered;
        lat.extend(seen.latencies_us);
    }
    let cpu: f64 = nodes.iter().map(|(p, _)| cpu_secs(p.pid())).sum::<f64>() - c0;
    let redis_cpu = cpu_secs(redis.pid()) - r0;
    let per = cpu / total.max(1) as f64 * 1e6;
    println!(
        "cluster: 3 nodes, {total} deliveries, p99 {:.1} ms; ssehub CPU {:.2} us/delivery = {:.2} x the in-memory node (target <= 1.2 x); Redis CPU {:.0} us/event",
        p99(lat),
        per,
        per / mem_per.max(1e-9),
        redis_cpu / events as f64 * 1e6
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let small = args.windows(2).any(|w| w[0] == "--size" && w[1] == "small");
    let wanted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["redis-publish", "cluster"].contains(a))
        .collect();
    let run = |name: &str| wanted.is_empty() || wanted.contains(&name);
    let bin = PathBuf::from(std::env::var("SSEHUB_BIN").unwrap_or_else(|_| "target/release/ssehub".into()));
    if !bin.is_file() {
        eprintln!(
            "no {}: run `cargo build --release` first (make bench does)",
            bin.display()
        );
        return ExitCode::FAILURE;
    }
    if two_cores() {
        pin_self(1);
    }
    let dir = std::env::temp_dir().join(format!("ssehub-redis-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    let mut report = |name: &str, r: Result<()>| {
        if let Err(e) = r {
            eprintln!("{name}: harness failed: {e}");
            failed = true;
        }
    };
    if run("redis-publish") {
        let r = runtime.block_on(redis_publish(&bin, &dir, if small { 1 } else { 5 }));
        report("redis-publish", r);
    }
    if run("cluster") {
        let (subs, events) = if small { (30, 10) } else { (3000, 200) };
        let r = runtime.block_on(cluster(&bin, &dir, subs, events));
        report("cluster", r);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
