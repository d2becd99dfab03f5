//! The accept loop, the per-connection HTTP/1.1 + h2c builder, the heartbeat
//! ticker, and shutdown.
//!
//! Shutdown is a future passed in by the caller (a signal in the binary, a
//! channel in tests). hyper's graceful shutdown only stops keep-alive and
//! sends GOAWAY; an endless SSE body never finishes by itself (hyper issue
//! 2787), so the hub ends every stream first and the connections then drain.

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use log::{debug, info, warn};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::event;
use crate::hub::{Hub, HubOptions, MemoryLog, Stats};
use crate::service::{self, App};

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections get to drain after the streams are ended.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A bound, not yet running, server.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
}

impl Server {
    /// Binds the listener and builds the hub; nothing is served until [`run`](Self::run).
    pub async fn bind(config: Config) -> io::Result<Server> {
        let listener = TcpListener::bind(config.listen).await?;
        let hub = Hub::new(
            HubOptions {
                queue: config.queue,
                max_closed_topics: config.max_closed_topics,
            },
            Box::new(MemoryLog::new(config.history)),
        );
        Ok(Server {
            listener,
            app: Arc::new(App { hub, config }),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The hub's figures, as a handle that outlives `run`'s borrow.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.app.hub.clone())
    }

    /// Serves until `shutdown` completes, then ends every stream with a
    /// `retry:` field and waits (up to a grace period) for connections to close.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Server { listener, app } = self;
        let config = &app.config;
        if config.publish_token.is_none() {
            warn!("no publish token configured: /publish and /close accept any loopback client without authentication");
        }
        info!("listening on {}", listener.local_addr()?);

        let ticker = tokio::spawn(heartbeat(app.hub.clone(), config.heartbeat));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(config.h2_max_concurrent_streams);
        let graceful = GracefulShutdown::new();

        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors or a connection reset before
                        // accept: back off briefly rather than spin or exit.
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            debug!("connection opened from {peer}");
            let app = app.clone();
            let service = service_fn(move |req| service::handle(app.clone(), peer, req));
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                match conn.await {
                    Ok(()) => debug!("connection closed from {peer}"),
                    Err(e) => debug!("connection closed from {peer}: {e}"),
                }
            });
        }

        info!("shutting down");
        drop(listener);
        ticker.abort();
        app.hub
            .shutdown(|| event::retry(service::retry_millis(&app.config)));
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
        }
        Ok(())
    }
}

/// Read access to the hub's figures from outside the server task.
#[derive(Clone)]
pub struct StatsHandle(Arc<Hub>);

impl StatsHandle {
    pub fn stats(&self) -> Stats {
        self.0.stats()
    }
}

/// One timer for the whole hub rather than one per stream: the comment goes
/// to every subscriber each interval, which keeps proxies from cutting idle
/// streams and makes a dead peer's socket fail.
async fn heartbeat(hub: Arc<Hub>, every: Duration) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        hub.heartbeat();
    }
}

/// Completes on SIGINT or SIGTERM (what container runtimes send).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
