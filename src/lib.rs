//! ssehub: a small, fast server-sent events hub on hyper.
//!
//! Publishers `POST /publish`; subscribers `GET /events` over HTTP/1.1 or
//! HTTP/2 (h2c, or over TLS chosen by ALPN) and receive every event of their topics, in order, resuming after a
//! reconnect from `Last-Event-ID`.
//!
//! # Layout
//!
//! Data flows one way: request → [`service`] → [`hub`] → a subscriber's
//! channel → [`stream`] → socket. No module reaches back up.
//!
//! - [`config`]: the command line and its `SSEHUB_*` environment fallbacks.
//! - [`event`]: the SSE wire format: encoding an event once, the control
//!   frames, name and topic rules, and the batch parser.
//! - [`hub`]: topics, subscribers, closed topics, and fan-out under one
//!   lock; [`hub::log`] is the event log (history and ids), the seam where a
//!   second backend plugs in.
//! - [`channel`]: the per-subscriber bounded queue from hub to body, and
//!   [`channel::Chunk`], one event's bytes or a batch handed to one write.
//! - [`stream`]: the response bodies, above all the channel-fed event stream
//!   that hands waiting events to the socket together.
//! - [`service`]: routing, request validation, publish authorisation, CORS.
//! - [`mercure`]: the Mercure protocol on `/.well-known/mercure`: its
//!   subscribe (topic selectors) and form publish, parsed and validated
//!   into the hub's own subscribe and publish.
//! - [`auth`]: JWTs with Mercure's claims: keys (reloaded on SIGHUP),
//!   where a token comes from, and which topics it grants;
//!   [`auth::selector`] matches topics against URI templates.
//! - [`query`]: strict query strings: RFC 3986 decoding, known parameters.
//! - [`console`]: the browser side: the console page at `/`, the client
//!   module `/ssehub.js` (both kept in `web/`), and the `/stats` JSON.
//! - [`access_log`]: the line per request and per ended stream.
//! - [`logging`]: the logger, in text or JSON (`--log-format`).
//! - [`hyper_io`]: what hyper's connections get on top of [`socket`]: a
//!   reason in hyper's own bodiless 431 and 400, a dead peer noted for the
//!   access log.
//! - [`h1_stream`]: HTTP/1.1 event streams written straight to the socket,
//!   without hyper's per-connection buffers; everything else goes to hyper.
//! - [`server`]: the accept loop, HTTP/1.1 + h2c connections (or TLS ones,
//!   by ALPN), the heartbeat ticker, the SIGHUP reload hooks, and shutdown.
//! - [`tls`] (feature `tls`, default on): the certificate files, the
//!   rustls configuration with ALPN, handshakes, reload on SIGHUP, and the
//!   TLS connection type the fast path and hyper serve.
//! - [`socket`]: what each accepted socket gets so dead and stalled peers
//!   are found (write deadline, TCP_USER_TIMEOUT), and the fd limit.
//! - [`stall`]: HTTP/2 streams stuck behind flow control: the executor
//!   that runs each stream as a task the hub's heartbeat can end.
//! - [`metrics`]: the counters and the Prometheus text of `/metrics`.
//! - [`random`]: jitter for reconnect delays, and epochs.
//! - [`redis_log`] (feature `redis`): the shared log of several nodes on
//!   Redis Streams: publishing through it, and the reader that feeds the
//!   hub's [`hub::tail`] (the local tail of the shared log).

pub mod access_log;
pub mod auth;
pub mod channel;
pub mod config;
pub mod console;
pub mod event;
pub mod h1_stream;
pub mod hub;
pub mod hyper_io;
pub mod logging;
pub mod mercure;
pub mod metrics;
pub mod query;
pub mod random;
#[cfg(feature = "redis")]
pub mod redis_log;
pub mod server;
pub mod service;
pub mod socket;
pub mod stall;
pub mod stream;
#[cfg(feature = "tls")]
pub mod tls;

pub use config::Config;
pub use server::Server;
