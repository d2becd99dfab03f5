//! Configuration: the command line, its `SSEHUB_*` environment fallbacks, and
//! the defaults every flag documents in `--help`.
//!
//! Parsing is a pure function of the argument list and an environment lookup,
//! so it is tested without touching the process environment. A flag given on
//! the command line always wins over its environment variable.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::{AuthConfig, KeySource};

/// Everything the server needs to know; built by [`parse`] or by hand in tests.
#[derive(Clone)]
pub struct Config {
    /// Address the listener binds (`--listen`).
    pub listen: SocketAddr,
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients.
    pub h2_max_concurrent_streams: u32,
    /// Most bytes a subscriber may have waiting to be written (event bytes
    /// plus a slot's overhead each); past it the subscriber is disconnected
    /// and catches up from history.
    pub max_subscriber_backlog: usize,
    /// How many recent events the hub retains for `Last-Event-ID` replay.
    pub history: usize,
    /// Base reconnect delay sent in the `retry:` field.
    pub retry: Duration,
    /// Upper bound of the random delay added to `retry` per connection.
    pub retry_jitter: Duration,
    /// Interval of the comment heartbeat sent to every stream.
    pub heartbeat: Duration,
    /// Largest event data accepted by `/publish`, in bytes.
    pub max_event_bytes: usize,
    /// Largest request body accepted by a batch publish, in bytes.
    pub max_batch_bytes: usize,
    /// How many closed topics are remembered (oldest forgotten first).
    pub max_closed_topics: usize,
    /// Origins allowed to read `/events` and call `/publish` from a browser.
    pub cors_origins: Vec<String>,
    /// Bearer token required by `/publish` and `/close`; `None` means
    /// loopback-only publishing.
    pub publish_token: Option<String>,
    /// Interval of HTTP/2 PING keepalives.
    pub h2_keepalive: Duration,
    /// How long an HTTP/2 PING may go unanswered before the connection closes.
    pub h2_keepalive_timeout: Duration,
    /// HTTP/2 receive window per stream: bytes a client may send on one
    /// stream before we read them (SETTINGS_INITIAL_WINDOW_SIZE).
    pub h2_initial_stream_window: u32,
    /// HTTP/2 receive window of a whole connection.
    pub h2_initial_connection_window: u32,
    /// Largest HTTP/2 frame payload a client may send (SETTINGS_MAX_FRAME_SIZE).
    pub h2_max_frame_size: u32,
    /// Bytes h2 may buffer for one stream beyond what the client's window
    /// lets out; past it the body is not polled and the hub's backlog rules apply.
    pub h2_max_send_buffer: usize,
    /// Largest decoded request header list (SETTINGS_MAX_HEADER_LIST_SIZE).
    pub h2_max_header_list_size: u32,
    /// Streams a client may reset before the server has accepted them, at
    /// once (Rapid Reset's limit).
    pub h2_max_pending_reset_streams: usize,
    /// Streams a client may make the server reset by its errors before the
    /// connection gets GOAWAY (MadeYouReset's limit).
    pub h2_max_local_error_resets: usize,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// Most event streams open at once; more get a long `retry:` and end.
    pub max_connections: usize,
    /// How long shutdown may take before what is left is closed.
    pub shutdown_grace: Duration,
    /// Streams end after this long (plus jitter) so clients rebalance; `None` is off.
    pub max_stream_lifetime: Option<Duration>,
    /// Length of the kernel's queue of connections not yet accepted.
    pub listen_backlog: u32,
    /// PEM certificate chain (leaf first) and private key; with both,
    /// `--listen` speaks TLS only. The parser accepts both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The shared log's Redis URL (`--redis`); `None` keeps the log in
    /// memory. May hold a password: never logged.
    pub redis: Option<String>,
    /// Prefix of the shared log's keys, so several hubs share one Redis.
    pub redis_prefix: String,
    /// JWT keys and the subscriber model (`--jwt-*`, `--anonymous`).
    pub auth: AuthConfig,
    /// One `info` line per request and per ended stream (`--access-log`).
    pub access_log: bool,
    /// How log lines are written (`--log-format`).
    pub log_format: LogFormat,
    /// The browser console at `/` and `GET /stats` (`--ui`).
    pub ui: Ui,
}

/// `--ui`: whether the console at `/` (and its `/stats`) is served. `auto`
/// serves it only on a loopback listener, where nobody else can see the
/// topic names it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ui {
    On,
    Off,
    Auto,
}

/// `--log-format`: lines for people, or one JSON object per line for log
/// pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            h2_max_concurrent_streams: 100,
            max_subscriber_backlog: 16 * 1024 * 1024,
            history: 1024,
            retry: Duration::from_secs(3),
            retry_jitter: Duration::from_secs(2),
            heartbeat: Duration::from_secs(15),
            max_event_bytes: 64 * 1024,
            max_batch_bytes: 16 * 1024 * 1024,
            max_closed_topics: 10_000,
            cors_origins: Vec::new(),
            publish_token: None,
            h2_keepalive: Duration::from_secs(20),
            h2_keepalive_timeout: Duration::from_secs(10),
            h2_initial_stream_window: 65_535,
            h2_initial_connection_window: 256 * 1024,
            h2_max_frame_size: 16_384,
            h2_max_send_buffer: 64 * 1024,
            h2_max_header_list_size: 16 * 1024,
            h2_max_pending_reset_streams: 20,
            h2_max_local_error_resets: 128,
            header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(5),
            max_stream_lifetime: None,
            listen_backlog: 4096,
            redis: None,
            redis_prefix: "ssehub".to_string(),
            auth: AuthConfig::default(),
            access_log: true,
            log_format: LogFormat::Text,
            ui: Ui::Auto,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Config {
    /// Whether the console and `/stats` are served: `--ui`, with `auto`
    /// meaning a loopback listener.
    pub fn ui_enabled(&self) -> bool {
        match self.ui {
            Ui::On => true,
            Ui::Off => false,
            Ui::Auto => self.listen.ip().is_loopback(),
        }
    }
}

// The token must never reach a log line, even through `{:?}`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("h2_max_concurrent_streams", &self.h2_max_concurrent_streams)
            .field("max_subscriber_backlog", &self.max_subscriber_backlog)
            .field("h2_initial_stream_window", &self.h2_initial_stream_window)
            .field("h2_initial_connection_window", &self.h2_initial_connection_window)
            .field("h2_max_frame_size", &self.h2_max_frame_size)
            .field("h2_max_send_buffer", &self.h2_max_send_buffer)
            .field("h2_max_header_list_size", &self.h2_max_header_list_size)
            .field("h2_max_pending_reset_streams", &self.h2_max_pending_reset_streams)
            .field("h2_max_local_error_resets", &self.h2_max_local_error_resets)
            .field("history", &self.history)
            .field("retry", &self.retry)
            .field("retry_jitter", &self.retry_jitter)
            .field("heartbeat", &self.heartbeat)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("max_closed_topics", &self.max_closed_topics)
            .field("cors_origins", &self.cors_origins)
            .field(
                "publish_token",
                &self.publish_token.as_ref().map(|_| "<redacted>"),
            )
            .field("redis", &self.redis.as_ref().map(|_| "<redacted>"))
            .field("redis_prefix", &self.redis_prefix)
            // Keys print as their source only (see KeySource's Debug).
            .field("auth", &self.auth)
            .field("access_log", &self.access_log)
            .field("log_format", &self.log_format)
            .field("ui", &self.ui)
            // Whether, not which: paths' Debug would cost the minimal
            // binary more than it is worth here.
            .field("tls", &self.tls_cert.is_some())
            .finish()
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Serve(Box<Config>),
    Help,
    Version,
}

/// A command-line or environment error, worded for the person who typed it.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub const HELP: &str = "\
ssehub: a small, fast server-sent events hub

USAGE:
    ssehub [OPTIONS]

Every option can also be set through an environment variable named
SSEHUB_<OPTION> (for example SSEHUB_LISTEN, SSEHUB_H2_MAX_CONCURRENT_STREAMS);
the command line wins. Durations take a unit: 500ms, 15s, 2m.

OPTIONS:
    --listen ADDR                   address to listen on [default: 127.0.0.1:8080]
    --listen-backlog N              connections the kernel queues before accept
                                    [default: 4096]
    --max-connections N             event streams open at once; more get 200, a
                                    long retry and the end of the stream, so
                                    browsers come back later [default: 10000]
    --h2-max-concurrent-streams N   HTTP/2 streams a client may open on one
                                    connection [default: 100]
    --max-subscriber-backlog BYTES  bytes a subscriber may have waiting to be
                                    written; a subscriber further behind is
                                    disconnected and resumes from history
                                    [default: 16777216]
    --history N                     events kept for Last-Event-ID replay
                                    [default: 1024]
    --retry DUR                     reconnect delay sent to clients [default: 3s]
    --retry-jitter DUR              random extra delay per connection, up to this
                                    [default: 2s]
    --heartbeat DUR                 comment sent to every stream this often; a
                                    connection that cannot write for two
                                    heartbeats is closed as dead [default: 15s]
    --h2-keepalive DUR              HTTP/2 PING interval [default: 20s]
    --h2-keepalive-timeout DUR      close an HTTP/2 connection whose PING is not
                                    answered within this [default: 10s]
    --h2-initial-stream-window BYTES
                                    bytes a client may send on one HTTP/2 stream
                                    before the server reads them [default: 65535]
    --h2-initial-connection-window BYTES
                                    the same for a whole HTTP/2 connection
                                    [default: 262144]
    --h2-max-frame-size BYTES       largest HTTP/2 frame a client may send
                                    (16384 to 16777215) [default: 16384]
    --h2-max-send-buffer BYTES      bytes buffered for one HTTP/2 stream beyond
                                    the client's window [default: 65536]
    --h2-max-header-list-size BYTES largest HTTP/2 request header list
                                    [default: 16384]
    --h2-max-pending-reset-streams N
                                    streams a client may open and reset before
                                    the server accepts them [default: 20]
    --h2-max-local-error-resets N   streams a client may make the server reset
                                    before its connection is closed [default: 128]
    --header-timeout DUR            close a connection whose request headers take
                                    longer than this [default: 10s]
    --max-stream-lifetime DUR       end each stream after this long plus jitter,
                                    so clients rebalance over nodes; off or 0s
                                    disables [default: off]
    --shutdown-grace DUR            time to end streams and drain on SIGTERM or
                                    SIGINT [default: 5s]
    --max-event-bytes N             largest event data accepted [default: 65536]
    --max-batch-bytes N             largest batch publish body [default: 16777216]
    --max-closed-topics N           closed topics remembered [default: 10000]
    --redis URL                     share one event log between nodes through
                                    Redis Streams: redis://[user:pass@]host:port[/db]
                                    or unix:///path/to.sock (prefer SSEHUB_REDIS,
                                    which keeps a password out of the process
                                    list) [default: none, the log is in memory]
    --redis-prefix P                prefix of the Redis keys, so several hubs can
                                    share one Redis [default: ssehub]
    --cors-origin ORIGIN            origin allowed from browsers; repeatable, or
                                    comma-separated in SSEHUB_CORS_ORIGIN; `*`
                                    allows any origin without credentials
    --publish-token TOKEN           bearer token required by /publish and /close;
                                    prefer SSEHUB_PUBLISH_TOKEN or a file, which
                                    keep it out of the process list
    --publish-token-file FILE       read the token from FILE (trailing newline
                                    ignored)
    --jwt-key KEY                   JWT key for subscribers and publishers: an
                                    HMAC secret, or a PEM public key's text;
                                    prefer SSEHUB_JWT_KEY or a file
    --jwt-key-file FILE             read the JWT key (secret or PEM public key:
                                    RSA, EC P-256/P-384, Ed25519) from FILE;
                                    re-read on SIGHUP
    --subscriber-jwt-key KEY        the key for subscriber tokens only
    --subscriber-jwt-key-file FILE  the same, from FILE
    --publisher-jwt-key KEY         the key for publisher tokens only
    --publisher-jwt-key-file FILE   the same, from FILE
    --jwt-alg ALG                   the one algorithm tokens may use: HS256/384/
                                    512, RS256/384/512, PS256/384/512, ES256,
                                    ES384, EdDSA [default: HS256 for a secret,
                                    from the key type for a PEM key]
    --jwt-issuer ISS                tokens must carry this iss
    --jwt-audience AUD              tokens must carry this aud
    --jwt-cookie NAME               cookie a token is read from
                                    [default: mercureAuthorization]
    --anonymous                     with a subscriber key, anyone may still
                                    subscribe and receives public events;
                                    private events need a token
    --access-log on|off             one info line per request and per ended
                                    stream [default: on]
    --log-format text|json          log lines as text, or as one JSON object
                                    per line [default: text]
    --ui on|off|auto                the browser console at / and its /stats;
                                    auto serves them when --listen is a
                                    loopback address [default: auto]
    --tls-cert FILE                 PEM certificate chain, leaf first; given
                                    with the key, the listener speaks TLS only
                                    (HTTP/2 or HTTP/1.1 by ALPN); SIGHUP
                                    re-reads both files
    --tls-key FILE                  PEM private key (PKCS#8, RSA or SEC1 EC)
    -h, --help                      print this help
    -V, --version                   print the version

Without a publish token or a publisher key, /publish and /close accept only
loopback clients that are not behind a proxy. SIGHUP re-reads the JWT key
files (key rotation).
";

/// The flags that take a value, as (flag, environment variable) pairs, so the
/// environment fallback is applied uniformly.
const VALUE_FLAGS: &[&str] = &[
    "listen",
    "listen-backlog",
    "max-connections",
    "h2-keepalive",
    "h2-keepalive-timeout",
    "h2-initial-stream-window",
    "h2-initial-connection-window",
    "h2-max-frame-size",
    "h2-max-send-buffer",
    "h2-max-header-list-size",
    "h2-max-pending-reset-streams",
    "h2-max-local-error-resets",
    "header-timeout",
    "max-stream-lifetime",
    "shutdown-grace",
    "h2-max-concurrent-streams",
    "max-subscriber-backlog",
    // Retired; still recognised, to say what replaced it.
    "queue",
    "history",
    "retry",
    "retry-jitter",
    "heartbeat",
    "max-event-bytes",
    "max-batch-bytes",
    "max-closed-topics",
    "redis",
    "redis-prefix",
    "cors-origin",
    "publish-token",
    "publish-token-file",
    "jwt-key",
    "jwt-key-file",
    "subscriber-jwt-key",
    "subscriber-jwt-key-file",
    "publisher-jwt-key",
    "publisher-jwt-key-file",
    "jwt-alg",
    "jwt-issuer",
    "jwt-audience",
    "jwt-cookie",
    "access-log",
    "log-format",
    "ui",
    "tls-cert",
    "tls-key",
];

/// The flags that take no value; their environment variable takes `1`,
/// `true`, `0` or `false`.
const SWITCH_FLAGS: &[&str] = &["anonymous"];

/// Flags no longer accepted (they only name their replacement), with that
/// replacement: a variable close to a retired one is pointed at the
/// replacement, never at the retired flag.
const RETIRED_FLAGS: &[(&str, &str)] = &[("queue", "max-subscriber-backlog")];

fn env_name(flag: &str) -> String {
    format!("SSEHUB_{}", flag.replace('-', "_").to_ascii_uppercase())
}

/// Parses the command line (without the program name), falling back to
/// `env(NAME)` for every flag not given.
pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
    E: Fn(&str) -> Option<String>,
{
    use lexopt::prelude::*;

    let mut given: Vec<(&'static str, String)> = Vec::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(lexopt_error)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long(name) if SWITCH_FLAGS.contains(&name) => {
                let flag = SWITCH_FLAGS
                    .iter()
                    .find(|f| **f == name)
                    .copied()
                    .unwrap_or("anonymous");
                given.push((flag, "true".into()));
            }
            Long(name) => {
                let Some(flag) = VALUE_FLAGS.iter().find(|f| **f == name) else {
                    return Err(ConfigError(format!(
                        "unknown option '--{name}'; see 'ssehub --help'"
                    )));
                };
                let value = parser.value().map_err(lexopt_error)?;
                let value = value
                    .into_string()
                    .map_err(|_| ConfigError(format!("--{flag}: the value is not valid UTF-8")))?;
                given.push((flag, value));
            }
            other => return Err(lexopt_error(other.unexpected())),
        }
    }

    // Command line values, or else the environment's; `cors-origin` collects.
    let lookup = |flag: &str| -> Vec<(String, String)> {
        let from_args: Vec<_> = given
            .iter()
            .filter(|(f, _)| *f == flag)
            .map(|(f, v)| (format!("--{f}"), v.clone()))
            .collect();
        if !from_args.is_empty() {
            return from_args;
        }
        let name = env_name(flag);
        env(&name).map(|v| vec![(name, v)]).unwrap_or_default()
    };
    let last = |flag: &str| lookup(flag).pop();

    let mut config = Config::default();
    if let Some((src, v)) = last("listen") {
        config.listen = v.parse().map_err(|_| {
            ConfigError(format!(
                "{src}: '{v}' is not an address; use IP:PORT, e.g. 0.0.0.0:8080"
            ))
        })?;
    }
    if let Some((src, v)) = last("h2-max-concurrent-streams") {
        config.h2_max_concurrent_streams = parse_number(&src, &v, 1)?;
    }
    if let Some((src, _)) = last("queue") {
        // Retired: a queue counted in chunks dropped healthy subscribers
        // during bursts the server itself needed time to write.
        return Err(ConfigError(format!(
            "{src} is retired; subscribers are now bounded by bytes: use --max-subscriber-backlog BYTES"
        )));
    }
    if let Some((src, v)) = last("max-subscriber-backlog") {
        config.max_subscriber_backlog = parse_number(&src, &v, 1)?;
    }
    if let Some((src, v)) = last("history") {
        config.history = parse_number(&src, &v, 0)?;
    }
    if let Some((src, v)) = last("retry") {
        config.retry = parse_duration(&src, &v)?;
    }
    if let Some((src, v)) = last("retry-jitter") {
        config.retry_jitter = parse_duration(&src, &v)?;
    }
    if let Some((src, v)) = last("heartbeat") {
        config.heartbeat = parse_duration(&src, &v)?;
        if config.heartbeat.is_zero() {
            return Err(ConfigError(format!("{src}: the heartbeat must be longer than 0")));
        }
    }
    if let Some((src, v)) = last("max-event-bytes") {
        config.max_event_bytes = parse_number(&src, &v, 1)?;
    }
    if let Some((src, v)) = last("max-batch-bytes") {
        config.max_batch_bytes = parse_number(&src, &v, 1)?;
    }
    if let Some((src, v)) = last("max-closed-topics") {
        config.max_closed_topics = parse_number(&src, &v, 0)?;
    }
    if let Some((src, v)) = last("listen-backlog") {
        config.listen_backlog = parse_number(&src, &v, 1)?;
    }
    if let Some((src, v)) = last("max-connections") {
        config.max_connections = parse_number(&src, &v, 1)?;
    }
    if let Some((src, v)) = last("h2-keepalive") {
        config.h2_keepalive = parse_duration(&src, &v)?;
    }
    if let Some((src, v)) = last("h2-keepalive-timeout") {
        config.h2_keepalive_timeout = parse_duration(&src, &v)?;
    }
    // HTTP/2's own bounds (RFC 9113, 6.5.2); h2 would panic on a frame size
    // outside them, so they are refused here with the range.
    if let Some((src, v)) = last("h2-initial-stream-window") {
        config.h2_initial_stream_window = parse_in_range(&src, &v, 1, i32::MAX as u64)?;
    }
    if let Some((src, v)) = last("h2-initial-connection-window") {
        config.h2_initial_connection_window = parse_in_range(&src, &v, 1, i32::MAX as u64)?;
    }
    if let Some((src, v)) = last("h2-max-frame-size") {
        config.h2_max_frame_size = parse_in_range(&src, &v, 16_384, 16_777_215)?;
    }
    if let Some((src, v)) = last("h2-max-send-buffer") {
        config.h2_max_send_buffer = parse_in_range(&src, &v, 1, u32::MAX as u64)?;
    }
    if let Some((src, v)) = last("h2-max-header-list-size") {
        config.h2_max_header_list_size = parse_in_range(&src, &v, 1, u32::MAX as u64)?;
    }
    if let Some((src, v)) = last("h2-max-pending-reset-streams") {
        config.h2_max_pending_reset_streams = parse_number(&src, &v, 1)?;
    }
    if let Some((src, v)) = last("h2-max-local-error-resets") {
        config.h2_max_local_error_resets = parse_number(&src, &v, 1)?;
    }
    if let Some((src, v)) = last("header-timeout") {
        config.header_timeout = parse_duration(&src, &v)?;
    }
    if let Some((src, v)) = last("shutdown-grace") {
        config.shutdown_grace = parse_duration(&src, &v)?;
    }
    if let Some((src, v)) = last("max-stream-lifetime") {
        config.max_stream_lifetime = match v.as_str() {
            "off" => None,
            _ => Some(parse_duration(&src, &v)?).filter(|d| !d.is_zero()),
        };
    }
    if let Some((src, url)) = last("redis") {
        if !cfg!(feature = "redis") {
            return Err(ConfigError(format!(
                "{src}: this build has no Redis support (it was built without the `redis` feature)"
            )));
        }
        let scheme_ok = ["redis://", "unix://", "redis+unix://"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme_ok {
            // The value may hold a password: not repeated.
            return Err(ConfigError(format!(
                "{src}: not a Redis URL; use redis://[user:pass@]host:port[/db] or unix:///path/to.sock"
            )));
        }
        config.redis = Some(url);
    }
    if let Some((src, prefix)) = last("redis-prefix") {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError(format!(
                "{src}: '{prefix}' is not a key prefix; use printable ASCII without spaces"
            )));
        }
        config.redis_prefix = prefix;
    }
    for (src, v) in lookup("cors-origin") {
        for origin in v.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError(format!(
                    "{src}: '{origin}' is not an origin; use scheme://host[:port] or *"
                )));
            }
            config.cors_origins.push(origin.trim_end_matches('/').to_string());
        }
    }
    config.publish_token = match (last("publish-token"), last("publish-token-file")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError(
                "give the publish token once: either --publish-token or --publish-token-file".into(),
            ))
        }
        (Some((src, v)), None) => Some(check_token(&src, v)?),
        (None, Some((src, path))) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("{src}: cannot read '{path}': {e}")))?;
            Some(check_token(
                &src,
                text.trim_end_matches(['\r', '\n']).to_string(),
            )?)
        }
        (None, None) => None,
    };
    match (last("tls-cert"), last("tls-key")) {
        (Some((_, cert)), Some((_, key))) => {
            config.tls_cert = Some(PathBuf::from(cert));
            config.tls_key = Some(PathBuf::from(key));
        }
        (Some((src, _)), None) => {
            return Err(ConfigError(format!(
                "{src} needs --tls-key (or SSEHUB_TLS_KEY): give both files for TLS, or neither"
            )))
        }
        (None, Some((src, _))) => {
            return Err(ConfigError(format!(
                "{src} needs --tls-cert (or SSEHUB_TLS_CERT): give both files for TLS, or neither"
            )))
        }
        (None, None) => {}
    }
    if let Some((src, v)) = last("access-log") {
        config.access_log = match v.as_str() {
            "on" => true,
            "off" => false,
            _ => return Err(ConfigError(format!("{src}: '{v}' is neither on nor off"))),
        };
    }
    if let Some((src, v)) = last("log-format") {
        config.log_format = match v.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => return Err(ConfigError(format!("{src}: '{v}' is neither text nor json"))),
        };
    }
    if let Some((src, v)) = last("ui") {
        config.ui = match v.as_str() {
            "on" => Ui::On,
            "off" => Ui::Off,
            "auto" => Ui::Auto,
            _ => return Err(ConfigError(format!("{src}: '{v}' is not on, off or auto"))),
        };
    }
    config.auth = parse_auth(&lookup)?;
    Ok(Command::Serve(Box::new(config)))
}

/// The `--jwt-*` flags and `--anonymous`; the keys are loaded once here so
/// a bad key stops the server at start with the reason.
fn parse_auth(lookup: &dyn Fn(&str) -> Vec<(String, String)>) -> Result<AuthConfig, ConfigError> {
    let last = |flag: &str| lookup(flag).pop();
    let key = |flag: &str| -> Result<Option<KeySource>, ConfigError> {
        let file_flag = format!("{flag}-file");
        match (last(flag), last(&file_flag)) {
            (Some(_), Some(_)) => Err(ConfigError(format!(
                "give the key once: either --{flag} or --{file_flag}"
            ))),
            (Some((src, v)), None) if v.is_empty() => Err(ConfigError(format!("{src}: the key is empty"))),
            // `--jwt-key /etc/ssehub/key.pem` would otherwise be an HMAC
            // secret equal to the path, and every token would be refused.
            // The value is not repeated: if this guess is wrong, it is a secret.
            (Some((src, v)), None) if looks_like_a_key_path(&v) => Err(ConfigError(format!(
                "{src} takes the key itself, and this looks like a file path; give a key in a file with --{file_flag} FILE"
            ))),
            (Some((_, v)), None) => Ok(Some(KeySource::Inline(v))),
            (None, Some((_, path))) => Ok(Some(KeySource::File(path.into()))),
            (None, None) => Ok(None),
        }
    };
    let mut auth = AuthConfig {
        jwt_key: key("jwt-key")?,
        subscriber_jwt_key: key("subscriber-jwt-key")?,
        publisher_jwt_key: key("publisher-jwt-key")?,
        jwt_alg: last("jwt-alg").map(|(_, v)| v),
        jwt_issuer: last("jwt-issuer").map(|(_, v)| v),
        jwt_audience: last("jwt-audience").map(|(_, v)| v),
        jwt_cookie: None,
        anonymous: false,
    };
    if let Some((src, name)) = last("jwt-cookie") {
        // A cookie name is an RFC 6265 token.
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            return Err(ConfigError(format!("{src}: '{name}' is not a cookie name")));
        }
        auth.jwt_cookie = Some(name);
    }
    if let Some((src, v)) = last("anonymous") {
        auth.anonymous = match v.as_str() {
            "1" | "true" => true,
            "0" | "false" | "" => false,
            _ => return Err(ConfigError(format!("{src}: '{v}' is not 1, true, 0 or false"))),
        };
    }
    auth.load().map_err(ConfigError)?;
    Ok(auth)
}

/// Whether an inline JWT key is more likely the path of a key file: the
/// name of an existing file, or a one-line name ending in a key file's
/// extension (`.pem`, `.key`, `.pub`, `.der`; no base64 secret has a dot).
/// PEM text itself (`-----BEGIN`) is a key, whatever else it holds.
fn looks_like_a_key_path(value: &str) -> bool {
    if value.contains(['\n', '\r']) || value.contains("-----BEGIN") || value.len() > 4096 {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    let key_name = [".pem", ".key", ".pub", ".der"]
        .iter()
        .any(|ext| lower.len() > ext.len() && lower.ends_with(ext) && !lower.contains(char::is_whitespace));
    key_name || std::path::Path::new(value).is_file()
}

/// Warnings for environment variables that look like ours but name no
/// flag (`SSEHUB_QUEU=5` would otherwise be ignored without a word), with
/// the closest current flag's variable when one is near. Pure: `names` is
/// every variable name of the environment; the binary logs the result.
pub fn env_warnings<I, S>(names: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let retired = |f: &str| RETIRED_FLAGS.iter().any(|(r, _)| *r == f);
    // Every flag's variable is a candidate for "did you mean", switches
    // (SSEHUB_ANONYMOUS) included; a retired one is not.
    let current: Vec<String> = VALUE_FLAGS
        .iter()
        .chain(SWITCH_FLAGS)
        .filter(|f| !retired(f))
        .map(|f| env_name(f))
        .collect();
    let near = |name: &str, candidate: &str| edit_distance(name, candidate) <= 2.max(name.len() / 8);
    let known = |name: &str| {
        VALUE_FLAGS
            .iter()
            .chain(SWITCH_FLAGS)
            .any(|f| env_name(f) == name)
    };
    let mut warnings = Vec::new();
    for name in names {
        let name = name.as_ref();
        if !name.starts_with("SSEHUB_") || known(name) {
            continue;
        }
        let closest = current
            .iter()
            .map(|c| (edit_distance(name, c), c))
            .min()
            .filter(|(_, c)| near(name, c));
        let replaced = RETIRED_FLAGS.iter().find(|(old, _)| near(name, &env_name(old)));
        warnings.push(match (closest, replaced) {
            (Some((_, c)), _) => format!("unknown environment variable {name} (did you mean {c}?)"),
            (None, Some((old, new))) => format!(
                "unknown environment variable {name} (did you mean {}? {} is retired)",
                env_name(new),
                env_name(old)
            ),
            (None, None) => {
                format!("unknown environment variable {name} (see 'ssehub --help' for the flags)")
            }
        });
    }
    warnings
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

fn check_token(src: &str, token: String) -> Result<String, ConfigError> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError(format!(
            "{src}: the token must be non-empty printable ASCII without spaces"
        )));
    }
    Ok(token)
}

fn lexopt_error(e: lexopt::Error) -> ConfigError {
    ConfigError(format!("{e}; see 'ssehub --help'"))
}

fn parse_number<T: std::str::FromStr + PartialOrd + From<u8>>(
    src: &str,
    value: &str,
    min: u8,
) -> Result<T, ConfigError> {
    match value.parse::<T>() {
        Ok(n) if n >= T::from(min) => Ok(n),
        _ => Err(ConfigError(format!(
            "{src}: '{value}' is not a whole number of at least {min}"
        ))),
    }
}

/// A whole number in `min..=max`, converted to the field's type.
fn parse_in_range<T: TryFrom<u64>>(src: &str, value: &str, min: u64, max: u64) -> Result<T, ConfigError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            ConfigError(format!(
                "{src}: '{value}' is not a whole number from {min} to {max}"
            ))
        })
}

/// Parses `500ms`, `15s` or `2m`. A bare number is refused rather than
/// guessed, because `--heartbeat 15` could mean seconds or milliseconds.
pub fn parse_duration(src: &str, value: &str) -> Result<Duration, ConfigError> {
    let err = || {
        ConfigError(format!(
            "{src}: '{value}' is not a duration; use a whole number with ms, s or m, e.g. 15s"
        ))
    };
    let split = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits.parse().map_err(|_| err())?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(err)?),
        _ => return Err(err()),
    };
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match parse(args.iter().copied(), |k| env.get(k).cloned())? {
            Command::Serve(c) => Ok(*c),
            other => panic!("expected Serve, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse_with(&[], &[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.h2_max_concurrent_streams, 100);
        assert_eq!(c.max_subscriber_backlog, 16 * 1024 * 1024);
        assert_eq!(c.history, 1024);
        assert_eq!(c.retry, Duration::from_secs(3));
        assert_eq!(c.retry_jitter, Duration::from_secs(2));
        assert_eq!(c.heartbeat, Duration::from_secs(15));
        assert_eq!(c.max_event_bytes, 65536);
        assert!(c.publish_token.is_none());
        assert_eq!(c.h2_keepalive, Duration::from_secs(20));
        assert_eq!(c.h2_keepalive_timeout, Duration::from_secs(10));
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        assert_eq!(c.max_stream_lifetime, None);
        assert_eq!(c.listen_backlog, 4096);
        assert_eq!(c.h2_initial_stream_window, 65_535);
        assert_eq!(c.h2_initial_connection_window, 262_144);
        assert_eq!(c.h2_max_frame_size, 16_384);
        assert_eq!(c.h2_max_send_buffer, 65_536);
        assert_eq!(c.h2_max_header_list_size, 16_384);
        assert_eq!(c.h2_max_pending_reset_streams, 20);
        assert_eq!(c.h2_max_local_error_resets, 128);
    }

    #[test]
    fn h2_limits_have_environment_forms_and_refuse_values_out_of_range() {
        let c = parse_with(
            &["--h2-max-frame-size", "32768"],
            &[
                ("SSEHUB_H2_INITIAL_STREAM_WINDOW", "1000"),
                ("SSEHUB_H2_INITIAL_CONNECTION_WINDOW", "2000"),
                ("SSEHUB_H2_MAX_SEND_BUFFER", "3000"),
                ("SSEHUB_H2_MAX_HEADER_LIST_SIZE", "4000"),
                ("SSEHUB_H2_MAX_PENDING_RESET_STREAMS", "5"),
                ("SSEHUB_H2_MAX_LOCAL_ERROR_RESETS", "6"),
            ],
        )
        .unwrap();
        assert_eq!(
            (
                c.h2_initial_stream_window,
                c.h2_initial_connection_window,
                c.h2_max_frame_size,
                c.h2_max_send_buffer,
                c.h2_max_header_list_size,
                c.h2_max_pending_reset_streams,
                c.h2_max_local_error_resets
            ),
            (1000, 2000, 32768, 3000, 4000, 5, 6)
        );
        for (flag, bad) in [
            ("--h2-max-frame-size", "1000"),
            ("--h2-max-frame-size", "16777216"),
            ("--h2-initial-stream-window", "2147483648"),
            ("--h2-initial-connection-window", "0"),
            ("--h2-max-send-buffer", "-1"),
        ] {
            let e = parse_with(&[flag, bad], &[]).unwrap_err();
            assert!(e.0.contains(flag) && e.0.contains(" to "), "{e}");
        }
    }

    #[test]
    fn stream_lifetime_is_off_by_default_and_with_off_or_zero() {
        for off in ["off", "0s"] {
            let c = parse_with(&["--max-stream-lifetime", off], &[]).unwrap();
            assert_eq!(c.max_stream_lifetime, None);
        }
        let c = parse_with(&["--max-stream-lifetime", "10m"], &[]).unwrap();
        assert_eq!(c.max_stream_lifetime, Some(Duration::from_secs(600)));
    }

    #[test]
    fn durations_take_ms_s_and_m() {
        assert_eq!(parse_duration("x", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("x", "15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("x", "2m").unwrap(), Duration::from_secs(120));
        for bad in ["15", "s", "1.5s", "-1s", "1h", "", "1 s"] {
            assert!(parse_duration("x", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn flag_wins_over_environment() {
        let c = parse_with(
            &["--max-subscriber-backlog", "7000"],
            &[("SSEHUB_MAX_SUBSCRIBER_BACKLOG", "9000"), ("SSEHUB_HISTORY", "5")],
        )
        .unwrap();
        assert_eq!(c.max_subscriber_backlog, 7000);
        assert_eq!(c.history, 5);
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        let c = parse_with(
            &[],
            &[
                ("SSEHUB_LISTEN", "0.0.0.0:9000"),
                ("SSEHUB_H2_MAX_CONCURRENT_STREAMS", "250"),
                ("SSEHUB_RETRY", "1s"),
                ("SSEHUB_RETRY_JITTER", "0s"),
                ("SSEHUB_HEARTBEAT", "500ms"),
                ("SSEHUB_MAX_EVENT_BYTES", "10"),
                ("SSEHUB_CORS_ORIGIN", "https://a.example, https://b.example"),
                ("SSEHUB_PUBLISH_TOKEN", "s3cret"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.h2_max_concurrent_streams, 250);
        assert_eq!(c.retry, Duration::from_secs(1));
        assert_eq!(c.retry_jitter, Duration::ZERO);
        assert_eq!(c.heartbeat, Duration::from_millis(500));
        assert_eq!(c.max_event_bytes, 10);
        assert_eq!(c.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(c.publish_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn token_is_read_from_a_file_and_never_printed() {
        let path = std::env::temp_dir().join(format!("ssehub-token-{}", std::process::id()));
        std::fs::write(&path, "file-token\n").unwrap();
        let c = parse_with(&["--publish-token-file", path.to_str().unwrap()], &[]).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(c.publish_token.as_deref(), Some("file-token"));
        assert!(!format!("{c:?}").contains("file-token"));
    }

    #[test]
    fn mistakes_say_what_to_type() {
        let e = parse_with(&["--heartbeat", "15"], &[]).unwrap_err();
        assert!(e.0.contains("e.g. 15s"), "{e}");
        let e = parse_with(&["--max-subscriber-backlog", "0"], &[]).unwrap_err();
        assert!(e.0.contains("--max-subscriber-backlog"), "{e}");
        let e = parse_with(&["--queue", "100"], &[]).unwrap_err();
        assert!(
            e.0.contains("retired") && e.0.contains("--max-subscriber-backlog"),
            "{e}"
        );
        let e = parse_with(&["--nope"], &[]).unwrap_err();
        assert!(e.0.contains("--help"), "{e}");
        let e = parse_with(&["--cors-origin", "example.com"], &[]).unwrap_err();
        assert!(e.0.contains("scheme://"), "{e}");
    }

    #[test]
    fn jwt_flags_have_environment_forms_and_role_overrides() {
        let c = parse_with(
            &["--publisher-jwt-key", "pub-secret", "--anonymous"],
            &[
                ("SSEHUB_JWT_KEY", "both-secret"),
                ("SSEHUB_JWT_ISSUER", "https://issuer.example"),
                ("SSEHUB_JWT_AUDIENCE", "ssehub"),
                ("SSEHUB_JWT_COOKIE", "session"),
                ("SSEHUB_JWT_ALG", "HS512"),
            ],
        )
        .unwrap();
        let a = &c.auth;
        assert_eq!(
            a.subscriber_source(),
            Some(&KeySource::Inline("both-secret".into()))
        );
        assert_eq!(
            a.publisher_source(),
            Some(&KeySource::Inline("pub-secret".into()))
        );
        assert_eq!(a.jwt_issuer.as_deref(), Some("https://issuer.example"));
        assert_eq!(a.jwt_audience.as_deref(), Some("ssehub"));
        assert_eq!(a.cookie_name(), "session");
        assert_eq!(a.jwt_alg.as_deref(), Some("HS512"));
        assert!(a.anonymous);
        assert!(!format!("{c:?}").contains("secret"), "{c:?}");
        let c = parse_with(&[], &[("SSEHUB_ANONYMOUS", "1")]).unwrap();
        assert!(c.auth.anonymous);
        assert_eq!(c.auth.cookie_name(), "mercureAuthorization");
    }

    #[test]
    fn jwt_mistakes_are_refused_at_start() {
        for (args, want) in [
            (&["--jwt-key", "a", "--jwt-key-file", "/x"][..], "once"),
            (&["--jwt-key", "a", "--jwt-alg", "RS256"][..], "RS256"),
            (
                &["--jwt-key", "a", "--jwt-alg", "none"][..],
                "not a supported algorithm",
            ),
            (&["--jwt-key-file", "/nonexistent/key"][..], "cannot read"),
            (&["--jwt-cookie", "a;b"][..], "cookie name"),
            (&["--jwt-key", ""][..], "empty"),
            (&["--jwt-key", "/etc/ssehub/key.pem"][..], "--jwt-key-file FILE"),
            (&["--jwt-key", "keys/Public.PEM"][..], "--jwt-key-file FILE"),
            (
                &["--subscriber-jwt-key", "sub.key"][..],
                "--subscriber-jwt-key-file FILE",
            ),
            (
                &["--publisher-jwt-key", "Cargo.toml"][..],
                "--publisher-jwt-key-file FILE",
            ),
        ] {
            let e = parse_with(args, &[]).unwrap_err();
            assert!(e.0.contains(want), "{args:?}: {e}");
        }
        // An existing file, named by the environment; the value is not echoed.
        let path = std::env::temp_dir().join(format!("ssehub-key-path-{}", std::process::id()));
        std::fs::write(&path, "secret").unwrap();
        let path = path.to_str().unwrap().to_string();
        let e = parse_with(&[], &[("SSEHUB_JWT_KEY", &path)]).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(
            e.0.starts_with("SSEHUB_JWT_KEY ") && e.0.contains("--jwt-key-file"),
            "{e}"
        );
        assert!(!e.0.contains(&path), "{e}");
        // Secrets and PEM text are keys.
        for key in [
            "!ChangeThisMercureHubJWTSecretKey!",
            "/aB3+x/9=",
            "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----.pem",
        ] {
            assert!(!looks_like_a_key_path(key), "{key}");
        }
        let e = parse_with(&[], &[("SSEHUB_ANONYMOUS", "maybe")]).unwrap_err();
        assert!(e.0.contains("SSEHUB_ANONYMOUS"), "{e}");
    }

    #[test]
    fn unknown_environment_variables_are_warned_about() {
        let w = env_warnings([
            "SSEHUB_HISTROY",
            "SSEHUB_HISTORY",
            "PATH",
            "SSEHUB_NONSENSE_THING",
        ]);
        assert_eq!(
            w,
            [
                "unknown environment variable SSEHUB_HISTROY (did you mean SSEHUB_HISTORY?)",
                "unknown environment variable SSEHUB_NONSENSE_THING (see 'ssehub --help' for the flags)",
            ]
        );
        // The retired --queue is not suggested, its replacement is; its own
        // variable is no warning (parsing refuses it, naming the replacement).
        let w = env_warnings(["SSEHUB_QUEU", "SSEHUB_QUEUE"]);
        assert_eq!(
            w,
            ["unknown environment variable SSEHUB_QUEU (did you mean SSEHUB_MAX_SUBSCRIBER_BACKLOG? SSEHUB_QUEUE is retired)"]
        );
    }

    #[test]
    fn a_mistyped_switch_variable_gets_a_suggestion_too() {
        // Switches (SWITCH_FLAGS) are candidates as well as value flags.
        let w = env_warnings(["SSEHUB_ANONYMUS", "SSEHUB_ANONYMOUS"]);
        assert_eq!(
            w,
            ["unknown environment variable SSEHUB_ANONYMUS (did you mean SSEHUB_ANONYMOUS?)"]
        );
        for flag in SWITCH_FLAGS {
            let typo = format!("{}X", env_name(flag));
            let w = env_warnings([typo.as_str()]);
            assert_eq!(
                w,
                [format!(
                    "unknown environment variable {typo} (did you mean {}?)",
                    env_name(flag)
                )]
            );
        }
    }

    #[test]
    fn ui_is_on_for_loopback_by_default_and_takes_its_words() {
        assert!(parse_with(&[], &[]).unwrap().ui_enabled());
        assert!(!parse_with(&["--listen", "0.0.0.0:8080"], &[])
            .unwrap()
            .ui_enabled());
        assert!(parse_with(&["--listen", "[::1]:8080"], &[]).unwrap().ui_enabled());
        assert!(parse_with(&["--listen", "0.0.0.0:8080", "--ui", "on"], &[])
            .unwrap()
            .ui_enabled());
        assert!(!parse_with(&["--ui", "off"], &[]).unwrap().ui_enabled());
        assert!(!parse_with(&[], &[("SSEHUB_UI", "off")]).unwrap().ui_enabled());
        let e = parse_with(&["--ui", "yes"], &[]).unwrap_err();
        assert!(e.0.contains("not on, off or auto"), "{e}");
    }

    #[test]
    fn access_log_and_log_format_take_their_words() {
        let c = parse_with(&["--access-log", "off", "--log-format", "json"], &[]).unwrap();
        assert!(!c.access_log);
        assert_eq!(c.log_format, LogFormat::Json);
        let c = parse_with(&[], &[]).unwrap();
        assert!(c.access_log);
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(parse_with(&["--access-log", "yes"], &[]).is_err());
        assert!(parse_with(&["--log-format", "xml"], &[]).is_err());
    }

    #[test]
    fn tls_takes_both_files_or_neither() {
        let c = parse_with(&[], &[("SSEHUB_TLS_CERT", "c.pem"), ("SSEHUB_TLS_KEY", "k.pem")]).unwrap();
        assert_eq!(c.tls_cert.as_deref(), Some(std::path::Path::new("c.pem")));
        assert_eq!(c.tls_key.as_deref(), Some(std::path::Path::new("k.pem")));
        let e = parse_with(&["--tls-cert", "c.pem"], &[]).unwrap_err();
        assert!(e.0.contains("--tls-key"), "{e}");
        let e = parse_with(&[], &[("SSEHUB_TLS_KEY", "k.pem")]).unwrap_err();
        assert!(e.0.contains("--tls-cert"), "{e}");
    }

    #[test]
    fn help_and_version_are_commands() {
        assert!(matches!(parse(["--help"], |_| None), Ok(Command::Help)));
        assert!(matches!(parse(["-V"], |_| None), Ok(Command::Version)));
    }

    #[test]
    fn help_lists_every_flag() {
        for flag in SWITCH_FLAGS {
            assert!(
                HELP.contains(&format!("--{flag} ")),
                "--{flag} missing from --help"
            );
        }
        for flag in VALUE_FLAGS.iter().filter(|f| **f != "queue") {
            assert!(
                HELP.contains(&format!("--{flag} ")),
                "--{flag} missing from --help"
            );
        }
    }
}
