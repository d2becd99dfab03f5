//! The accept loop, the per-connection HTTP/1.1 + h2c builder (or, with
//! TLS, the handshake and the protocol ALPN chose), the heartbeat ticker,
//! the SIGHUP reload hooks, and shutdown.
//!
//! Shutdown is a future passed in by the caller (a signal in the binary, a
//! channel in tests). hyper's graceful shutdown only stops keep-alive and
//! sends GOAWAY; an endless SSE body never finishes by itself (hyper issue
//! 2787), so the hub ends every stream first and the connections then drain.

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use log::{debug, info, warn};
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::access_log;
use crate::auth::{Auth, Role};
use crate::config::Config;
use crate::event;
use crate::h1_stream;
use crate::hub::{Hub, HubOptions, MemoryLog, Stats};
use crate::hyper_io::HyperIo;
use crate::service::{self, App};
use crate::socket::{self, Socket};
use crate::stall::{self, StreamExecutor};

/// Largest request head accepted; larger gets 431 (HTTP/1) or a refused
/// stream (HTTP/2). Subscribe and publish requests need a few hundred bytes.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Something to redo on SIGHUP (re-read the TLS certificate; other
/// reloadable state adds its own). Each call returns the work as a future;
/// the hooks run one after another on the signal's task, never on a
/// connection's.
pub type ReloadHook = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A bound, not yet running, server.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    /// TLS for every accepted connection, when `--tls-cert`/`--tls-key` are given.
    #[cfg(feature = "tls")]
    tls: Option<Arc<crate::tls::Tls>>,
    /// Run on each SIGHUP; the listener for it is set up only if there are any.
    reload_hooks: Vec<ReloadHook>,
}

impl Server {
    /// Binds the listener (with `--listen-backlog`), reads the TLS files
    /// if given, and builds the hub; nothing is served until
    /// [`run`](Self::run). A TLS file problem is an `io::Error` wrapping a
    /// `tls::StartupError` (the binary exits 2 on it).
    pub async fn bind(config: Config) -> io::Result<Server> {
        let counters: Arc<crate::metrics::Counters> = Arc::default();
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut reload_hooks: Vec<ReloadHook> = Vec::new();
        #[cfg(feature = "tls")]
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let tls = Arc::new(
                    crate::tls::Tls::new(cert, key, counters.tls.clone()).map_err(io::Error::other)?,
                );
                let hook_tls = tls.clone();
                reload_hooks.push(Box::new(move || {
                    let tls = hook_tls.clone();
                    Box::pin(async move { tls.reload().await })
                }));
                Some(tls)
            }
            _ => None,
        };
        #[cfg(not(feature = "tls"))]
        if config.tls_cert.is_some() {
            return Err(io::Error::other(NoTls));
        }
        let socket = if config.listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        // Name the address and the flag: "Address already in use" alone
        // does not say which address, nor where it came from.
        let cannot_listen = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {} (--listen): {}", config.listen, describe(&e)),
            )
        };
        socket.bind(config.listen).map_err(cannot_listen)?;
        let listener = socket.listen(config.listen_backlog).map_err(cannot_listen)?;
        let options = HubOptions {
            max_backlog: config.max_subscriber_backlog,
            max_closed_topics: config.max_closed_topics,
            max_subscribers: config.max_connections,
        };
        #[cfg(feature = "redis")]
        let (hub, shared) = match &config.redis {
            Some(url) => {
                let shared = crate::redis_log::RedisLog::new(
                    url,
                    &config.redis_prefix,
                    config.history,
                    config.max_closed_topics,
                )
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tail = crate::hub::TailLog::new(config.history);
                (Hub::new(options, Box::new(tail)), Some(Arc::new(shared)))
            }
            None => (Hub::new(options, Box::new(MemoryLog::new(config.history))), None),
        };
        #[cfg(not(feature = "redis"))]
        let hub = Hub::new(options, Box::new(MemoryLog::new(config.history)));
        // Checked by config::parse already; a hand-built Config may not be.
        let auth =
            Auth::new(config.auth.clone()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Server {
            listener,
            app: Arc::new(App {
                hub,
                config,
                counters,
                #[cfg(feature = "redis")]
                shared,
                auth,
            }),
            #[cfg(feature = "tls")]
            tls,
            reload_hooks,
        })
    }

    /// Adds something to redo on each SIGHUP.
    pub fn on_reload(&mut self, hook: ReloadHook) {
        self.reload_hooks.push(hook);
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The hub's figures, as a handle that outlives `run`'s borrow.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.app.hub.clone())
    }

    /// Serves until `shutdown` completes; then stops accepting, lets
    /// publishes in flight finish, ends every stream with a fresh random
    /// `retry:` field, and waits for connections to close, all within
    /// `--shutdown-grace`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Server {
            listener,
            app,
            #[cfg(feature = "tls")]
            tls,
            reload_hooks,
        } = self;
        let config = &app.config;
        let publisher_key = app.auth.has_key(Role::Publisher);
        if config.publish_token.is_none() && !publisher_key {
            warn!("no publish token configured: /publish and /close accept any loopback client without authentication");
        }
        // Which keys are configured, never what they are.
        if app.auth.has_key(Role::Subscriber) {
            let model = if config.auth.anonymous {
                "anonymous subscribers get public events"
            } else {
                "subscribers need a token"
            };
            info!("subscriber JWT key configured; {model}");
        }
        if publisher_key {
            info!("publisher JWT key configured");
        }
        // Listening for SIGHUP starts before "listening on" is logged, so a
        // reload signalled from then on is never the default action (exit).
        let reloader = reload_on_sighup(reload_hooks)?;
        #[cfg(feature = "tls")]
        if tls.is_some() {
            info!("TLS only on this address: TLS 1.2 and 1.3, ALPN h2 and http/1.1; SIGHUP reloads the certificate");
        }
        let local = listener.local_addr()?;
        info!("listening on {local}");
        if config.ui_enabled() {
            let scheme = if config.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            info!("console at {scheme}://{local}/ (--ui off hides it)");
        }

        let ticker = tokio::spawn(heartbeat(app.hub.clone(), config.heartbeat));
        #[cfg(feature = "redis")]
        let reader = app.shared.clone().map(|shared| {
            info!(
                "sharing the event log through Redis at {} (prefix {})",
                shared.describe(),
                config.redis_prefix
            );
            tokio::spawn(shared.follow(app.hub.clone()))
        });
        // The JWT keys' reload listens for SIGHUP on its own, beside the hooks.
        let key_reloader = tokio::spawn(reload_keys_on_sighup(app.clone()));
        let builder = Arc::new(connection_builder(config));
        #[cfg(feature = "tls")]
        let tls_builders = tls.as_ref().map(|_| {
            Arc::new(TlsBuilders {
                h1: connection_builder(config).http1_only(),
                h2: connection_builder(config).http2_only(),
            })
        });
        let graceful = GracefulShutdown::new();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors: pause so closing streams can
                        // free some, instead of spinning on the error.
                        let pause = if socket::is_resource_exhausted(&e) { 100 } else { 5 };
                        warn!("accept failed: {e}; pausing {pause} ms");
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            app.counters.connections_accepted.fetch_add(1, Ordering::Relaxed);
            let watcher = graceful.watcher();
            // TLS connections get a task of their own kind, so cleartext
            // ones do not carry the TLS state's size in theirs.
            #[cfg(feature = "tls")]
            if let (Some(tls), Some(builders)) = (&tls, &tls_builders) {
                tokio::spawn(serve_tls_connection(
                    app.clone(),
                    builders.clone(),
                    tls.clone(),
                    watcher,
                    stop_rx.clone(),
                    stream,
                    peer,
                ));
                continue;
            }
            tokio::spawn(serve_connection(
                app.clone(),
                builder.clone(),
                watcher,
                stop_rx.clone(),
                stream,
                peer,
            ));
        }

        info!("shutting down");
        let deadline = Instant::now() + config.shutdown_grace;
        drop(listener);
        let _ = stop_tx.send(true);
        app.counters.socket.shutting_down.store(true, Ordering::Relaxed);
        ticker.abort();
        #[cfg(feature = "redis")]
        if let Some(reader) = reader {
            reader.abort();
        }
        key_reloader.abort();
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        // Connections stop keep-alive (HTTP/1) or get GOAWAY (HTTP/2) now, so
        // no new request starts; requests under way go on.
        let drained = tokio::spawn(graceful.shutdown());
        while app.counters.publishes_in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        app.hub
            .shutdown(|| event::retry(service::retry_millis(&app.config)));
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            warn!(
                "connections still open after {:?}; closing them",
                config.shutdown_grace
            );
        }
        Ok(())
    }
}

/// One connection, from its first bytes to its end: an HTTP/1.1 event
/// stream on the fast path, everything else (and whatever follows a fast-path
/// stream) through hyper.
///
/// Not an `async fn`: that would copy its arguments into the future a
/// second time (rustc keeps both copies), and this future is every
/// stream's task, for the stream's whole life.
fn serve_connection(
    app: Arc<App>,
    builder: Arc<auto::Builder<StreamExecutor>>,
    watcher: Watcher,
    stopping: tokio::sync::watch::Receiver<bool>,
    stream: TcpStream,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send {
    // The auto builder waits for the first bytes to tell HTTP/1 from h2c
    // with no timeout of its own: guard that phase, and give up at once on
    // shutdown (a browser's idle preconnect must not hold shutdown up).
    // Boxed, being brief: inline, its timers would stay in the task for the
    // life of the stream. It owns the socket and the shutdown watch until
    // it is done, so the task keeps neither for the stream's life.
    let first = Box::pin(first_request(stream, stopping, app.config.header_timeout));
    async move {
        debug!("connection opened from {peer}");
        let Some((stream, h2)) = first.await else {
            debug!("connection closed from {peer}: no request");
            return;
        };
        // HTTP/1.1 event streams are served without hyper's buffers; hyper
        // takes the connection for anything else, and after. The socket is
        // made in the call, never a local of this future (a borrowed local
        // would keep a second copy of it here for the stream's life).
        let io = match h1_stream::serve(&app, socket(&app, stream, h2)).await {
            h1_stream::Outcome::NotMine(io) | h1_stream::Outcome::Done(io) => io,
            h1_stream::Outcome::Closed(error) => {
                if error.as_ref().is_some_and(|e| is_dead_peer(e)) {
                    app.counters.dead_closed.fetch_add(1, Ordering::Relaxed);
                }
                debug!("connection closed from {peer}");
                return;
            }
        };
        // Boxed: inline, hyper's phase (432 B) would size the task of every
        // fast-path stream, which never uses it.
        Box::pin(serve_with_hyper(&app, &builder, watcher, io, peer, h2)).await;
    }
}

/// Waits for a connection's first bytes (see [`serve_connection`]):
/// `None` if the client closed, sent nothing in time, or the server is
/// shutting down; else the stream, and whether it speaks HTTP/2.
async fn first_request(
    stream: TcpStream,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    timeout: Duration,
) -> Option<(TcpStream, bool)> {
    let first = tokio::select! {
        first = tokio::time::timeout(timeout, first_bytes(&stream)) => first,
        _ = stopping.wait_for(|stop| *stop) => Ok(FirstBytes::Closed),
    };
    match first {
        Ok(FirstBytes::Http2) => Some((stream, true)),
        Ok(FirstBytes::Other) => Some((stream, false)),
        Ok(FirstBytes::Closed) | Err(_) => None,
    }
}

/// The accepted socket with its write deadline: two heartbeats without
/// write progress means the peer is gone or stopped reading.
fn socket(app: &App, stream: TcpStream, h2: bool) -> Socket {
    let mut io = Socket::new(stream, app.config.heartbeat * 2, app.counters.socket.clone());
    if h2 {
        io.watch_pings(app.config.h2_keepalive_timeout);
    }
    io
}

/// Serves the rest of a connection with hyper, until it ends.
async fn serve_with_hyper<T>(
    app: &Arc<App>,
    builder: &auto::Builder<StreamExecutor>,
    watcher: Watcher,
    io: T,
    peer: SocketAddr,
    h2: bool,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // hyper's own refusals (431, 400) come without a body: give them a
    // reason. With the access log on, streams learn of a dead peer.
    let logging = access_log::enabled(&app.config);
    let mut io = HyperIo::new(io, !h2, logging.then_some(peer));
    let fate = logging.then(|| io.fate(h2.then_some(app.config.h2_keepalive_timeout)));
    let svc_app = app.clone();
    let service = service_fn(move |req| service::handle(&svc_app, peer, fate.as_ref(), req));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    // Boxed: inline, hyper's connection state would size this task, and so
    // every fast-path stream, at over 2 KB.
    // HTTP/2 connections run under a switch that closes them once all
    // their event streams ended stalled behind flow control.
    match Box::pin(stall::connection(watcher.watch(conn), h2)).await {
        None => debug!("connection closed from {peer}: every stream stalled behind flow control"),
        Some(Ok(())) => debug!("connection closed from {peer}"),
        Some(Err(e)) => {
            if is_dead_peer(&*e) {
                app.counters.dead_closed.fetch_add(1, Ordering::Relaxed);
            }
            debug!("connection closed from {peer}: {e}");
        }
    }
}

/// The connection builders of a TLS listener: ALPN has already chosen the
/// protocol, so each serves one only (no h2c preface sniffing).
#[cfg(feature = "tls")]
struct TlsBuilders {
    h1: auto::Builder<StreamExecutor>,
    h2: auto::Builder<StreamExecutor>,
}

/// One TLS connection: the handshake on this task (never the accept
/// loop's), then HTTP/2 if ALPN chose `h2`, else HTTP/1.1 with the same
/// fast path as cleartext.
#[cfg(feature = "tls")]
async fn serve_tls_connection(
    app: Arc<App>,
    builders: Arc<TlsBuilders>,
    tls: Arc<crate::tls::Tls>,
    watcher: Watcher,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    debug!("TLS connection opened from {peer}");
    // The write deadline and TCP_USER_TIMEOUT apply from the handshake on.
    let socket = Socket::new(stream, app.config.heartbeat * 2, app.counters.socket.clone());
    let deadline = Instant::now() + app.config.header_timeout;
    // The handshake and, for HTTP/1.1, the wait for the request share one
    // --header-timeout, and give up at once on shutdown. Boxed, being
    // brief: its state would otherwise stay in the task for the stream's life.
    let handshake = Box::pin(async {
        tokio::select! {
            done = tokio::time::timeout_at(deadline, tls.accept(socket)) => Some(done),
            _ = stopping.wait_for(|stop| *stop) => None,
        }
    })
    .await;
    let mut io = match handshake {
        Some(Ok(Ok(io))) => io,
        Some(Ok(Err(e))) => {
            tls.count_handshake_failure();
            debug!("TLS handshake with {peer} failed: {e}");
            return;
        }
        Some(Err(_)) => {
            tls.count_handshake_failure();
            debug!("TLS handshake with {peer} timed out");
            return;
        }
        None => return,
    };
    if io.alpn() == Some(crate::tls::ALPN_H2) {
        io.socket_mut().watch_pings(app.config.h2_keepalive_timeout);
        return serve_with_hyper(&app, &builders.h2, watcher, io, peer, true).await;
    }
    let request = Box::pin(async {
        tokio::select! {
            n = tokio::time::timeout_at(deadline, io.fill(h1_stream::MAX_HEAD)) => matches!(n, Ok(Ok(n)) if n > 0),
            _ = stopping.wait_for(|stop| *stop) => false,
        }
    })
    .await;
    if !request {
        debug!("TLS connection closed from {peer}: no request");
        return;
    }
    let io = match h1_stream::serve(&app, io).await {
        h1_stream::Outcome::NotMine(io) | h1_stream::Outcome::Done(io) => io,
        h1_stream::Outcome::Closed(error) => {
            if error.as_ref().is_some_and(|e| is_dead_peer(e)) {
                app.counters.dead_closed.fetch_add(1, Ordering::Relaxed);
            }
            debug!("TLS connection closed from {peer}");
            return;
        }
    };
    serve_with_hyper(&app, &builders.h1, watcher, io, peer, false).await;
}

/// The error of a build without the `tls` feature given TLS files.
#[cfg(not(feature = "tls"))]
#[derive(Debug)]
pub struct NoTls;

#[cfg(not(feature = "tls"))]
impl std::fmt::Display for NoTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("this ssehub was built without TLS (the `tls` feature); --tls-cert and --tls-key need a default build")
    }
}

#[cfg(not(feature = "tls"))]
impl StdError for NoTls {}

/// True when `err` (from [`Server::bind`]) is a set-up mistake the operator
/// must fix (a TLS file), as opposed to a failure of the system: the binary
/// exits 2 on these, as on a command-line mistake.
pub fn is_startup_mistake(err: &io::Error) -> bool {
    let Some(inner) = err.get_ref() else { return false };
    #[cfg(feature = "tls")]
    return inner.is::<crate::tls::StartupError>();
    #[cfg(not(feature = "tls"))]
    return inner.is::<NoTls>();
}

/// Starts the task that runs the reload hooks on each SIGHUP (none if there
/// are no hooks). The one place the process listens for SIGHUP.
fn reload_on_sighup(hooks: Vec<ReloadHook>) -> io::Result<Option<tokio::task::JoinHandle<()>>> {
    if hooks.is_empty() {
        return Ok(None);
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup())?;
        Ok(Some(tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                info!("SIGHUP: reloading");
                for hook in &hooks {
                    hook().await;
                }
            }
        })))
    }
    #[cfg(not(unix))]
    {
        drop(hooks);
        Ok(None)
    }
}

fn connection_builder(config: &Config) -> auto::Builder<StreamExecutor> {
    let mut builder = auto::Builder::new(StreamExecutor);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .max_header_list_size(config.h2_max_header_list_size)
        .initial_stream_window_size(config.h2_initial_stream_window)
        .initial_connection_window_size(config.h2_initial_connection_window)
        .max_frame_size(config.h2_max_frame_size)
        .max_send_buf_size(config.h2_max_send_buffer)
        .max_pending_accept_reset_streams(config.h2_max_pending_reset_streams)
        .max_local_error_reset_streams(config.h2_max_local_error_resets)
        .keep_alive_interval(config.h2_keepalive)
        .keep_alive_timeout(config.h2_keepalive_timeout);
    builder
}

/// An OS error in words, without Rust's "(os error 98)" suffix.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use".into(),
        io::ErrorKind::AddrNotAvailable => "no such address on this host".into(),
        io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need privileges)".into(),
        _ => e.to_string(),
    }
}

/// What a new connection's first bytes say.
enum FirstBytes {
    /// The h2c preface: HTTP/2 with prior knowledge.
    Http2,
    /// Anything else (HTTP/1, or garbage that hyper will refuse).
    Other,
    /// The client closed before sending anything.
    Closed,
}

/// Waits until the client has sent enough to tell HTTP/2 from the rest
/// (after which hyper's own timeouts take over).
async fn first_bytes(stream: &TcpStream) -> FirstBytes {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return FirstBytes::Closed,
            Ok(n) if buf[..n] != PREFACE[..n] => return FirstBytes::Other,
            Ok(n) if n == PREFACE.len() => return FirstBytes::Http2,
            // Part of the preface: wait for the rest (rare, so a short poll).
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// True when a connection ended because the kernel gave up on an
/// unacknowledged peer (TCP_USER_TIMEOUT). The write deadline counts itself.
fn is_dead_peer(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(libc::ETIMEDOUT) {
                return true;
            }
        }
        cur = e.source();
    }
    false
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

/// Re-reads the JWT key files on each SIGHUP, so keys rotate without a
/// restart. A key that fails to load leaves the old one in place.
async fn reload_keys_on_sighup(app: Arc<App>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            warn!("cannot listen for SIGHUP: JWT keys will not be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match app.auth.reload() {
                Ok(()) => info!("SIGHUP: JWT keys reloaded"),
                Err(e) => warn!("SIGHUP: JWT keys not reloaded, keeping the old ones: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    drop(app);
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
