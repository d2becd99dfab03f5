//! `startup`: spawn to first accepted connection, and the binary size.

use crate::harness::params::Params;
use crate::harness::report::{thousands, Report};
use crate::harness::server::{free_port, rss_of, Env};
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Spawn to first accepted connection (and to the first answer), without
/// taskset, the child pinned to core 0 before exec.
pub fn startup(env: &Env, p: &Params, report: &mut Report) -> Result<(), String> {
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
