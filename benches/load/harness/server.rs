//! The server under test: spawning it pinned, reading its RSS and CPU, stopping it.

use super::report::Report;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Env {
    pub bin: PathBuf,
    pub taskset: Option<PathBuf>,
    /// Pin the server to core 0 and us to core 1 (two or more cores).
    pub pin: bool,
    pub log_dir: PathBuf,
    pub clk_tck: f64,
}

pub struct Server {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub log: PathBuf,
    pub name: String,
}

pub fn free_port() -> Result<u16, String> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl Server {
    /// Starts the binary at its defaults plus `flags` (the ones the scenario
    /// is about: nothing else is passed but `--listen`), records the flags
    /// in the report, and waits until the server accepts a connection.
    pub async fn start(env: &Env, report: &mut Report, name: &str, flags: &[&str]) -> Result<Server, String> {
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
        let mut args = vec!["--listen", &listen];
        args.extend_from_slice(flags);
        report.info(
            name,
            "server flags (beyond the defaults)",
            if flags.is_empty() {
                "none".into()
            } else {
                flags.join(" ")
            },
        );
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
    pub fn rss(&self) -> Option<u64> {
        rss_of(self.pid)
    }

    /// CPU time of all the server's threads, in seconds: the sum of each
    /// thread's scheduler run time (`/proc/PID/task/*/schedstat`, in ns, the
    /// same clock as the floor's `CLOCK_THREAD_CPUTIME_ID`). The kernel here
    /// has no IRQ time accounting, so softirq work done on a thread's behalf
    /// (loopback delivery to the reader) is in its figure, as in the floor's.
    /// Falls back to utime + stime (10 ms ticks) if schedstat is missing.
    pub fn cpu_secs(&self, env: &Env) -> Option<f64> {
        let mut total_ns: u64 = 0;
        let mut threads = 0;
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) {
            for t in dir.flatten() {
                let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) else {
                    continue;
                };
                if let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) {
                    total_ns += ns;
                    threads += 1;
                }
            }
        }
        if threads > 0 {
            return Some(total_ns as f64 / 1e9);
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the command name, which may itself hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) as f64 / env.clk_tck)
    }

    /// The server's `ssehub_subscribers_*_total` counters from `/metrics`
    /// (why it closed subscribers: a full queue or backlog, a dead peer),
    /// as `name value` pairs; whatever names the server version uses.
    pub async fn subscriber_counters(&self) -> Option<String> {
        let get = async {
            let mut s = TcpStream::connect(self.addr).await.ok()?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.ok()?;
            Some(buf)
        };
        let buf = tokio::time::timeout(Duration::from_secs(2), get).await.ok()??;
        let text = String::from_utf8_lossy(&buf);
        let found: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("ssehub_subscribers_") && !l.starts_with('#'))
            .map(|l| l.trim_start_matches("ssehub_subscribers_").to_string())
            .collect();
        (!found.is_empty()).then(|| found.join(", "))
    }

    /// Peak RSS of the server so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        status_field(self.pid, "VmHWM:")
    }

    /// Kills the server and reports what its log says beyond the usual.
    pub async fn stop(mut self, report: &mut Report) {
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

/// VmRSS of a process, in bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// A `kB` field of `/proc/PID/status`, in bytes.
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
