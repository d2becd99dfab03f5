//! The floor: what one loopback TCP write costs the writer on this machine.
//!
//! A server cannot deliver an event for less than the write that carries it,
//! so every CPU figure is also reported as a ratio to this floor, measured
//! at the start of each run on the same machine and under the same load.
//! A writer thread pinned to the server's core (0) writes to a reader
//! thread pinned to the harness's core (1) over a TCP connection on
//! 127.0.0.1, with `TCP_NODELAY` as the server sets it, and the writer's
//! own CPU time (`CLOCK_THREAD_CPUTIME_ID`, which here includes the softirq
//! work of loopback delivery done on its behalf, as in the server's figure)
//! is divided by the writes. Two shapes, each the bytes the HTTP/1.1 path
//! sends for the scenarios' events (`id`, one `data` line, chunk framing):
//!
//! - one event per write: a lone event to an idle subscriber (`fanout`,
//!   `topics`);
//! - ten events per write, as one chunk: a subscriber with a backlog gets
//!   several events in one write (`saturate`, `burst`, `batch`).
//!
//! Each write goes to an idle connection (the writer waits for the reader
//! between writes, unmeasured), as the server's write to a subscriber that
//! keeps up. Each shape runs three rounds after a warm-up; the median
//! round counts.

use super::publisher::payload;
use super::sys::pin_to_core;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The floor measured in this run.
#[derive(Clone, Debug)]
pub struct Floor {
    /// Bytes of one event as written (chunk framing included).
    pub one_bytes: usize,
    /// Bytes of one write of ten events (one chunk).
    pub ten_bytes: usize,
    /// Writer CPU per write of one event, µs.
    pub one_us: f64,
    /// Writer CPU per write of ten events, µs.
    pub ten_us: f64,
    /// The three rounds of each shape, µs per write, for the spread.
    pub one_rounds: Vec<f64>,
    pub ten_rounds: Vec<f64>,
    /// Writer and reader were pinned to different cores.
    pub pinned: bool,
}

impl Floor {
    /// Writer CPU per event when ten go in one write, µs.
    pub fn ten_per_event_us(&self) -> f64 {
        self.ten_us / 10.0
    }
}

/// Which floor a figure is compared with.
#[derive(Clone, Copy, Default)]
pub enum Basis {
    /// One event per write, per write (= per event).
    One,
    /// Ten events per write, per event.
    #[default]
    TenPerEvent,
}

impl Basis {
    pub fn us(self, f: &Floor) -> f64 {
        match self {
            Basis::One => f.one_us,
            Basis::TenPerEvent => f.ten_per_event_us(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Basis::One => "floor₁",
            Basis::TenPerEvent => "floor₁₀/event",
        }
    }
}

/// The HTTP/1.1 bytes of `events` events of `data_bytes` data in one chunk,
/// with a 19-digit id like the server's.
pub fn wire_chunk(events: usize, data_bytes: usize) -> Vec<u8> {
    let mut body = String::new();
    for i in 0..events {
        body.push_str("id: 1795551404925");
        body.push_str(&format!("{:06}", i));
        body.push_str("\ndata: ");
        payload(i as u64, 1_234_567_890_123, data_bytes, &mut body);
        body.push_str("\n\n");
    }
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// This thread's CPU time, in ns.
fn thread_cpu_ns() -> u64 {
    // SAFETY: clock_gettime writes into the timespec passed.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

/// The cost of reading the thread CPU clock twice in a row, ns (the median
/// of many tries): subtracted from each bracketed write.
fn clock_overhead_ns() -> u64 {
    let mut v: Vec<u64> = (0..1001)
        .map(|_| {
            let a = thread_cpu_ns();
            thread_cpu_ns() - a
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

/// Writer CPU per write, µs, for `writes` writes of `buf` (after a warm-up
/// of a tenth as many), one round.
///
/// Each write goes to an idle connection, as a server's write to a
/// subscriber that has kept up: the writer waits (unmeasured) until the
/// reader has read everything before it writes again. Otherwise the writer
/// runs ahead, its writes only append to a send queue that the other
/// core's softirq drains when ACKs come, and the floor would be a memcpy.
/// Each write is bracketed by reads of the thread's CPU clock.
fn round(buf: &[u8], writes: usize, pin: bool) -> Result<f64, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("floor: bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let warm = writes / 10;
    let total = (warm + writes) * buf.len();
    let read = AtomicUsize::new(0);
    let read = &read;
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<usize, String> {
            if pin {
                pin_to_core(1);
            }
            let (mut s, _) = listener.accept().map_err(|e| format!("floor: accept: {e}"))?;
            // Polling, never asleep: a subscriber's reader that is busy
            // anyway, so the writer pays no wake-up of a sleeping thread.
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            let mut b = vec![0u8; 64 * 1024];
            let mut got = 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            while got < total {
                match s.read(&mut b) {
                    Ok(0) => break,
                    Ok(n) => {
                        got += n;
                        read.store(got, Ordering::Release);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err("floor: no data for 60 s".into());
                        }
                        std::hint::spin_loop();
                    }
                    Err(e) => return Err(format!("floor: read: {e}")),
                }
            }
            Ok(got)
        });
        let writer = scope.spawn(move || -> Result<f64, String> {
            if pin {
                pin_to_core(0);
            }
            let overhead = clock_overhead_ns();
            let mut s = TcpStream::connect(addr).map_err(|e| format!("floor: connect: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut sent = 0;
            let mut ns = 0u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            for i in 0..warm + writes {
                let a = thread_cpu_ns();
                s.write_all(buf).map_err(|e| format!("floor: write: {e}"))?;
                let b = thread_cpu_ns();
                if i >= warm {
                    ns += (b - a).saturating_sub(overhead);
                }
                sent += buf.len();
                while read.load(Ordering::Acquire) < sent {
                    if Instant::now() > deadline {
                        return Err("floor: the reader fell behind for 60 s".into());
                    }
                    std::hint::spin_loop();
                }
            }
            Ok(ns as f64 / 1e3 / writes.max(1) as f64)
        });
        let us = writer
            .join()
            .map_err(|_| "floor: writer panicked".to_string())??;
        let got = reader
            .join()
            .map_err(|_| "floor: reader panicked".to_string())??;
        if got != total {
            return Err(format!("floor: the reader got {got} of {total} bytes"));
        }
        Ok(us)
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Measures both shapes: `writes` one-event writes and `writes / 5`
/// ten-event writes per round.
pub fn measure(data_bytes: usize, writes: usize, pin: bool) -> Result<Floor, String> {
    let one = wire_chunk(1, data_bytes);
    let ten = wire_chunk(10, data_bytes);
    let t0 = Instant::now();
    let mut one_rounds = Vec::new();
    let mut ten_rounds = Vec::new();
    for _ in 0..3 {
        one_rounds.push(round(&one, writes, pin)?);
        ten_rounds.push(round(&ten, (writes / 5).max(1), pin)?);
    }
    let f = Floor {
        one_bytes: one.len(),
        ten_bytes: ten.len(),
        one_us: median(&one_rounds),
        ten_us: median(&ten_rounds),
        one_rounds,
        ten_rounds,
        pinned: pin,
    };
    println!(
        "[floor] one event per write ({} B): {:.3} µs; ten per write ({} B): {:.3} µs = {:.3} µs per event ({:.1} s)",
        f.one_bytes,
        f.one_us,
        f.ten_bytes,
        f.ten_us,
        f.ten_per_event_us(),
        t0.elapsed().as_secs_f64()
    );
    Ok(f)
}
