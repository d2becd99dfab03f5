//! The `ssehub` binary: parse the command line, then serve until SIGINT or SIGTERM.

use ssehub::config::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let command = config::parse(std::env::args_os().skip(1), |name| std::env::var(name).ok());
    let config = match command {
        Ok(Command::Serve(config)) => config,
        Ok(Command::Help) => {
            print!("{}", config::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("ssehub {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ssehub: {e}");
            return ExitCode::from(2);
        }
    };
    // TLS files are checked before anything is logged, so that a mistake in
    // them is the one line printed, like a command-line mistake.
    #[cfg(feature = "tls")]
    if let Err(e) = ssehub::tls::check(&config) {
        eprintln!("ssehub: {e}");
        return ExitCode::from(2);
    }
    ssehub::logging::init(config.log_format);
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    for warning in config::env_warnings(names) {
        log::warn!("{warning}");
    }
    if let Some(limit) = ssehub::socket::raise_fd_limit() {
        log::info!("open file limit: {limit}");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Without the LIFO slot, a task woken by another runs after the tasks
    // already queued instead of next. That lets one HTTP/2 connection write
    // the frames of all its streams in one go after an event, rather than
    // one write per stream (3.7 -> 1.3 µs per delivery; see BENCHMARKS.md).
    // The knob is tokio-unstable: .cargo/config.toml enables it here, and a
    // build without it still works, only without the gain.
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ssehub: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Installed before the listener exists, so no SIGHUP can find the
        // default action (ending the process) once we are reachable.
        #[cfg(unix)]
        if let Ok(hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            tokio::spawn(hangups(hup));
        }
        let server = ssehub::Server::bind(*config).await?;
        server.run(ssehub::server::shutdown_signal()).await
    });
    // Whatever is still running after the grace period is abandoned, not awaited.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A TLS file that is missing, not PEM, or a key that does not match.
        Err(e) if ssehub::server::is_startup_mistake(&e) => {
            eprintln!("ssehub: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("ssehub: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGHUP is what `systemctl reload` sends (deploy/ssehub.service). Its
/// default action would end the process, so it is caught from the start
/// and logged; whatever reloads on it listens for it on its own.
#[cfg(unix)]
async fn hangups(mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        log::info!("SIGHUP received");
    }
}
