//! Load-test harness: starts `target/release/ssehub` as a child process on
//! loopback and drives it with many subscribers and publishers.
//!
//! ```text
//! cargo bench --bench load -- [SCENARIO...] [--size small|full] [--bin PATH]
//! ```
//!
//! Scenarios: idle, fanout, saturate, burst, topics, batch, stalled, h2,
//! h2-overlimit, h2-tune, startup (no names: all of them, in that order), one file
//! each in `scenarios/`; the shared machinery is in `harness/` (its
//! `mod.rs` has the map). `--size small` is a smoke test that finishes in
//! seconds; `cargo test --all-targets` runs this target without `--bench`,
//! and then it runs the small size against the binary cargo built for the
//! test profile.
//!
//! Every run first measures the floor (`harness/floor.rs`): the writer's
//! CPU for one loopback TCP write of a scenario event, and of ten, from the
//! server's core to the harness's. Every server CPU figure is reported in
//! µs and as a ratio to it. Each scenario runs the server at its defaults
//! plus only the flags it is about, and the report lists them.
//!
//! The server is pinned to core 0 (taskset) and this process to core 1,
//! running everything on one current-thread tokio runtime. Subscribers bind
//! their source address round-robin over 127.0.0.2..=127.0.0.250 so the
//! ephemeral ports of one address are no limit. Every event's data is
//! `SEQ SEND_NANOS xxx...` (nanoseconds since this process started, one
//! monotonic clock for publisher and subscribers), so each subscriber counts
//! what it got, finds duplicates and gaps, checks the order, and measures
//! latency.
//!
//! Every loop is bounded in count and time, and only 127.0.0.0/8 is used.
//! The exit status is non-zero only when the harness could not do its job
//! (the server would not start, connections or publishes failed), never
//! because of a performance figure or a lost event: the targets are
//! printed, not asserted.

mod harness;
mod scenarios;

use harness::params::{Params, Size};
use harness::report::{thousands, Report};
use harness::server::Env;
use harness::sys::{cpus_available, in_path, pin_to_core, raise_nofile, read_sysctl};
use scenarios::{run_scenario, SCENARIOS};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: cargo bench --bench load -- [SCENARIO...] [--size small|full] [--bin PATH]
scenarios: idle fanout saturate burst topics batch stalled h2 h2-overlimit h2-tune startup (default: all;
the floor is measured first in every run)";

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
    harness::now_nanos();
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

    // The floor first: every CPU figure below is also a ratio to it.
    match harness::floor::measure(p.data_bytes, p.floor_writes, env.pin) {
        Ok(f) => {
            let rounds = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.3}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            report.info(
                "floor",
                &format!("floor₁: one event per write ({} B)", f.one_bytes),
                format!(
                    "{:.3} µs per write (median of rounds {} µs)",
                    f.one_us,
                    rounds(&f.one_rounds)
                ),
            );
            report.info(
                "floor",
                &format!("floor₁₀: ten events per write ({} B)", f.ten_bytes),
                format!(
                    "{:.3} µs per write = {:.3} µs per event (rounds {} µs)",
                    f.ten_us,
                    f.ten_per_event_us(),
                    rounds(&f.ten_rounds)
                ),
            );
            report.info(
                "floor",
                "how",
                format!(
                    "writer CPU (CLOCK_THREAD_CPUTIME_ID), {} writes per round; writer on core 0, reader on core 1: {}",
                    thousands(p.floor_writes as u64),
                    if f.pinned { "pinned" } else { "not pinned" }
                ),
            );
            report.floor = Some(f);
        }
        Err(e) => report.fail("floor", e),
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
