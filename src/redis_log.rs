//! The shared event log of several nodes, on Redis Streams (`--redis`).
//!
//! One stream per hub (`PREFIX:log`) holds every event and every close, in
//! one total order that Redis gives by appending. Each node:
//! - publishes with one Lua script call per request (a batch is one call, so
//!   one round trip), which refuses a closed topic and appends atomically,
//!   and answers `200` only once Redis has the event;
//! - reads the whole stream with `XREAD BLOCK` on a connection of its own
//!   (nothing else queued behind it, and a response timeout a little
//!   longer than the BLOCK time, so a Redis that stops answering without
//!   closing the connection is noticed) and hands what it
//!   reads to the hub, which records it in its [`TailLog`](crate::hub::TailLog)
//!   and fans it out. Its own publishes reach its subscribers the same way,
//!   so all nodes deliver in the same order.
//!
//! Beside the stream, `PREFIX:epoch` names this incarnation of the log, and
//! `PREFIX:closed` holds the closed topics (the newest `--max-closed-topics`).
//! Every entry also carries `s`, a counter without holes (`PREFIX:seq`).
//! A node that finds another epoch than the one it knew (Redis restarted
//! empty, or was flushed), or a hole in `s` (entries it never read were
//! trimmed), starts its tail over and sends its subscribers `reset`: a node never
//! replays a different event under an old id, and never hides a gap.

use log::{info, warn};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::io::tcp::socket2;
use redis::{AsyncConnectionConfig, Value};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::event::BatchEvent;
use crate::hub::{Hub, SharedEntry, StreamId};
use crate::random;

/// Appends a publish's events unless the topic is closed. KEYS: log,
/// epoch, closed, seq. ARGV: history, topic (`""` for none), `1` for
/// private events or `0`, then a name (`""` for none) and data per event.
/// Returns the epoch, then each id.
///
/// Every entry carries `s`, a counter without holes, so a reader can tell
/// that entries were trimmed before it read them. The stream keeps the
/// history plus this call's events, so a batch larger than the history
/// stays whole for the readers.
const PUBLISH: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if not epoch then return redis.error_reply('NOEPOCH the log has no epoch') end
local topic = ARGV[2]
if topic ~= '' and redis.call('ZSCORE', KEYS[3], topic) then
  return redis.error_reply('CLOSED topic is closed')
end
local private = ARGV[3] == '1'
local n = (#ARGV - 3) / 2
local seq = redis.call('INCRBY', KEYS[4], n) - n
local keep = tonumber(ARGV[1]) + n
local out = {epoch}
for i = 4, #ARGV, 2 do
  seq = seq + 1
  local f = {'XADD', KEYS[1], 'MAXLEN', '~', keep, '*', 'ep', epoch, 's', seq}
  if topic ~= '' then f[#f+1] = 't'; f[#f+1] = topic end
  if ARGV[i] ~= '' then f[#f+1] = 'n'; f[#f+1] = ARGV[i] end
  if private then f[#f+1] = 'p'; f[#f+1] = '1' end
  f[#f+1] = 'd'; f[#f+1] = ARGV[i+1]
  out[#out+1] = redis.call(unpack(f))
end
return out
"#;

/// Closes a topic everywhere: remembers it and appends a close entry.
/// KEYS: log, epoch, closed, seq. ARGV: history, topic, closed topics
/// kept. Returns 1, or 0 if it was closed already.
const CLOSE: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if not epoch then return redis.error_reply('NOEPOCH the log has no epoch') end
if redis.call('ZSCORE', KEYS[3], ARGV[2]) then return 0 end
local seq = redis.call('INCR', KEYS[4])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'ep', epoch, 's', seq, 'c', ARGV[2])
local keep = tonumber(ARGV[3])
if keep > 0 then
  redis.call('ZADD', KEYS[3], tonumber(string.match(id, '^(%d+)')), ARGV[2])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(keep + 1))
end
return 1
"#;

/// How long one `XREAD` waits for new entries before Redis answers with
/// none.
const BLOCK: Duration = Duration::from_millis(2000);

/// The reader's wait for any answer on its connection. A blocked `XREAD`
/// answers within [`BLOCK`]; one that has not after this much longer is
/// talking to a Redis that stopped answering without closing the
/// connection (its host vanished, or the process hangs): the reader drops
/// that connection, marks the log down and reconnects.
const READ_TIMEOUT: Duration = Duration::from_millis(2000 + 2000);

/// Why a publish or close through Redis did not happen.
#[derive(Debug)]
pub enum SharedError {
    /// The topic is closed (410).
    Closed,
    /// Redis could not be reached or refused; the reason is for the client
    /// (503 with `Retry-After`).
    Unavailable(String),
}

/// Counters of the Redis connection, for `/metrics` and `/readyz`.
#[derive(Default)]
struct Health {
    /// The reader is connected and the tail is current.
    up: AtomicBool,
    errors: AtomicU64,
    reconnects: AtomicU64,
    /// Milliseconds between an entry's id (Redis's clock when appended)
    /// and its delivery here, for the newest entry read.
    lag_ms: AtomicU64,
}

/// A node's handle on the shared log.
pub struct RedisLog {
    client: redis::Client,
    /// Commands (publish, close): reconnects by itself and pipelines
    /// concurrent requests on one connection.
    commands: ConnectionManager,
    publish: redis::Script,
    close: redis::Script,
    log_key: String,
    epoch_key: String,
    closed_key: String,
    seq_key: String,
    history: usize,
    max_closed: usize,
    health: Health,
}

impl RedisLog {
    /// Checks the URL and prepares the connections; nothing is connected
    /// yet, so a node starts while Redis is down.
    pub fn new(url: &str, prefix: &str, history: usize, max_closed: usize) -> Result<RedisLog, String> {
        // The URL may hold a password: the error never repeats it.
        let not_url = |e: redis::RedisError| {
            format!(
                "--redis: not a Redis URL ({}); use redis://[user:pass@]host:port[/db] or unix:///path",
                reason(&e)
            )
        };
        let client = redis::Client::open(url).map_err(not_url)?;
        // Over TCP, the kernel also finds a Redis host that vanished:
        // keepalive probes on an idle connection, and a bound on unacknowledged
        // writes. Either ends the connection with an error, which makes the
        // command connection below reconnect (a response timeout alone
        // would leave it on the dead one).
        let info = client.get_connection_info().clone();
        let tcp = info
            .tcp_settings()
            .clone()
            .set_keepalive(
                socket2::TcpKeepalive::new()
                    .with_time(Duration::from_secs(5))
                    .with_interval(Duration::from_secs(2))
                    .with_retries(3),
            )
            .set_user_timeout(Duration::from_secs(10));
        let client = redis::Client::open(info.set_tcp_settings(tcp)).map_err(not_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("--redis: {}", reason(&e)))?;
        Ok(RedisLog {
            client,
            commands,
            publish: redis::Script::new(PUBLISH),
            close: redis::Script::new(CLOSE),
            log_key: format!("{prefix}:log"),
            epoch_key: format!("{prefix}:epoch"),
            closed_key: format!("{prefix}:closed"),
            seq_key: format!("{prefix}:seq"),
            history: history.max(1),
            max_closed,
            health: Health::default(),
        })
    }

    /// Where Redis is, for the start-up line: never the password.
    pub fn describe(&self) -> String {
        match &self.client.get_connection_info().addr() {
            redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            redis::ConnectionAddr::Unix(path) => path.display().to_string(),
            _ => "redis".to_string(),
        }
    }

    /// True while the reader is connected and its tail is current.
    pub fn is_up(&self) -> bool {
        self.health.up.load(Ordering::Relaxed)
    }

    /// Publishes a batch (one event is a batch of one) in one round trip.
    /// Returns the ids clients see, once Redis has appended every event.
    pub async fn publish(
        &self,
        topic: Option<&str>,
        events: &[BatchEvent],
        private: bool,
    ) -> Result<Vec<String>, SharedError> {
        let mut invocation = self.prepare(&self.publish);
        invocation
            .arg(topic.unwrap_or(""))
            .arg(if private { "1" } else { "0" });
        for e in events {
            invocation.arg(e.name.as_deref().unwrap_or("")).arg(&e.data);
        }
        let reply: Vec<String> = self.invoke(&invocation).await?;
        let Some((epoch, ids)) = reply.split_first() else {
            return Err(self.failed("Redis gave no ids"));
        };
        Ok(ids.iter().map(|id| format!("{epoch}-{id}")).collect())
    }

    /// Closes a topic on every node. Returns false if it was closed already.
    pub async fn close(&self, topic: &str) -> Result<bool, SharedError> {
        let mut invocation = self.prepare(&self.close);
        invocation.arg(topic).arg(self.max_closed);
        let closed: i64 = self.invoke(&invocation).await?;
        Ok(closed == 1)
    }

    /// A call of one of the scripts, with the keys and the history length
    /// that both take first.
    fn prepare<'a>(&'a self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(&self.log_key)
            .key(&self.epoch_key)
            .key(&self.closed_key)
            .key(&self.seq_key)
            .arg(self.history);
        invocation
    }

    /// Runs a script; a log without an epoch (flushed, or never reached)
    /// gets one and the call is tried once more.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, SharedError> {
        let mut conn = self.commands.clone();
        for attempt in 0..2 {
            match invocation.invoke_async::<T>(&mut conn).await {
                Ok(v) => return Ok(v),
                Err(e) if e.code() == Some("CLOSED") => return Err(SharedError::Closed),
                Err(e) if e.code() == Some("NOEPOCH") && attempt == 0 => {
                    if let Err(e) = self.ensure_epoch(&mut conn).await {
                        return Err(self.failed(&format!("Redis: {}", reason(&e))));
                    }
                }
                Err(e) => return Err(self.failed(&format!("Redis: {}", reason(&e)))),
            }
        }
        Err(self.failed("Redis: the log lost its epoch twice"))
    }

    fn failed(&self, reason: &str) -> SharedError {
        self.health.errors.fetch_add(1, Ordering::Relaxed);
        SharedError::Unavailable(format!(
            "the shared log is unavailable ({reason}); try again shortly"
        ))
    }

    /// Gives the log an epoch if it has none; returns the epoch.
    async fn ensure_epoch<C: redis::aio::ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> redis::RedisResult<String> {
        let _: Value = redis::cmd("SET")
            .arg(&self.epoch_key)
            .arg(random::word(10))
            .arg("NX")
            .query_async(conn)
            .await?;
        redis::cmd("GET").arg(&self.epoch_key).query_async(conn).await
    }

    /// Reads the shared log into `hub` for as long as the node runs:
    /// connects (with backoff while Redis is away), brings the tail up to
    /// date, then follows the stream. Never returns; abort it to stop.
    pub async fn follow(self: Arc<Self>, hub: Arc<Hub>) {
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        // The `s` of the newest entry read: the next must be one more.
        let mut seq = 0;
        loop {
            match self.follow_once(&hub, &mut first, &mut seq).await {
                Ok(()) => {}
                Err(e) => {
                    if self.health.up.swap(false, Ordering::Relaxed) {
                        warn!("lost the shared log ({}); reconnecting", reason(&e));
                    }
                    self.health.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Jittered, so nodes do not come back to Redis in step.
            tokio::time::sleep(backoff + random::up_to(backoff / 2)).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            if self.is_up() {
                backoff = Duration::from_millis(100);
            }
        }
    }

    /// One connection's life: catch up, then read until something fails
    /// (`Ok` when the log changed under us and must be caught up again).
    async fn follow_once(&self, hub: &Hub, first: &mut bool, seq: &mut u64) -> redis::RedisResult<()> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            // Longer than a blocked XREAD takes (it answers when there is
            // something, or after BLOCK): a connection that stays silent
            // past that is dead, whatever TCP says.
            .set_response_timeout(Some(READ_TIMEOUT));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        if !*first {
            self.health.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let epoch = self.ensure_epoch(&mut conn).await?;
        let closed: Vec<String> = redis::cmd("ZRANGE")
            .arg(&self.closed_key)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        hub.remember_closed(closed);

        let mut from = match hub.tail_position() {
            // Resume right after the last entry read; a hole is found below.
            Some((known, newest)) if known == epoch => newest,
            // First contact, or the log this node knew is gone.
            known => {
                let lost = known.is_some();
                if lost {
                    warn!("the shared log was replaced (new epoch); this node's subscribers get reset");
                }
                self.prime(&mut conn, hub, &epoch, lost, seq).await?
            }
        };
        if *first {
            info!("reading the shared log at {} (epoch {epoch})", self.describe());
        } else {
            info!("back on the shared log at {}", self.describe());
        }
        self.check_commands().await?;
        *first = false;
        self.health.up.store(true, Ordering::Relaxed);

        loop {
            let reply: Value = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1000)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.log_key)
                .arg(from.to_string())
                .query_async(&mut conn)
                .await?;
            let entries = entries_of(stream_of(&reply));
            // Clients waiting for an id this node never reaches get `reset`.
            hub.expire_held();
            let Some(last) = entries.last() else {
                // Nothing new for a while. A flushed log shows no entry
                // until someone publishes, so the epoch is checked here:
                // its subscribers learn of the loss within BLOCK.
                let now: Option<String> = redis::cmd("GET")
                    .arg(&self.epoch_key)
                    .query_async(&mut conn)
                    .await?;
                if now.as_deref() != Some(&*epoch) {
                    return Ok(());
                }
                continue;
            };
            if last.epoch.as_deref() != Some(&*epoch) {
                // Another node gave a flushed log a new epoch: catch up anew.
                return Ok(());
            }
            if entries
                .iter()
                .enumerate()
                .any(|(i, e)| e.seq.is_some_and(|s| s != *seq + 1 + i as u64))
            {
                // Entries were trimmed before this node read them (it was
                // away, or far behind): what its subscribers missed cannot
                // be given to them, so they are told.
                warn!("the shared log was trimmed past what this node had read; its subscribers get reset");
                self.prime(&mut conn, hub, &epoch, true, seq).await?;
                return Ok(());
            }
            *seq = last.seq.unwrap_or(*seq + entries.len() as u64);
            from = last.id;
            self.note_lag(last.id);
            hub.deliver(entries.into_iter().filter_map(RawEntry::into_shared).collect());
        }
    }

    /// Makes sure the command connection (publishes, closes) works before
    /// the node says it is ready: one that died while Redis was away is
    /// only found by using it, and the publish that found it would get
    /// `503`. PING finds it (the connection manager then reconnects), and a
    /// second PING checks the new connection.
    async fn check_commands(&self) -> redis::RedisResult<()> {
        let mut conn = self.commands.clone();
        if redis::cmd("PING").query_async::<()>(&mut conn).await.is_ok() {
            return Ok(());
        }
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }

    /// Reads the newest `history` entries into a fresh tail (without
    /// delivering them: they are history, not news). Returns where to
    /// follow from.
    async fn prime(
        &self,
        conn: &mut MultiplexedConnection,
        hub: &Hub,
        epoch: &str,
        lost: bool,
        seq: &mut u64,
    ) -> redis::RedisResult<StreamId> {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(&self.log_key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(self.history)
            .query_async(conn)
            .await?;
        let mut entries = entries_of(Some(&reply));
        entries.reverse();
        // A full read may have older entries before it; a short one is the
        // whole stream (Redis trims only beyond `history`).
        let floor = match entries.first() {
            Some(e) if entries.len() >= self.history => e.id,
            _ => StreamId::default(),
        };
        let newest = entries.last().map_or(floor, |e| e.id);
        *seq = match entries.last().and_then(|e| e.seq) {
            Some(s) => s,
            None => redis::cmd("GET")
                .arg(&self.seq_key)
                .query_async::<Option<u64>>(conn)
                .await?
                .unwrap_or(0),
        };
        let history = entries.into_iter().filter_map(RawEntry::into_shared).collect();
        hub.rebase(epoch, floor, history, lost);
        Ok(newest)
    }

    fn note_lag(&self, id: StreamId) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.health
            .lag_ms
            .store(now.saturating_sub(id.ms), Ordering::Relaxed);
    }

    /// The Redis families of `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        let h = &self.health;
        let families: [(&str, &str, &str, String); 4] = [
            (
                "ssehub_redis_up",
                "gauge",
                "1 while the shared log is being read.",
                u8::from(self.is_up()).to_string(),
            ),
            (
                "ssehub_redis_errors_total",
                "counter",
                "Redis commands or connections that failed.",
                h.errors.load(Ordering::Relaxed).to_string(),
            ),
            (
                "ssehub_redis_reconnects_total",
                "counter",
                "Times the reader connected to Redis again.",
                h.reconnects.load(Ordering::Relaxed).to_string(),
            ),
            (
                "ssehub_redis_lag_seconds",
                "gauge",
                "Time from Redis appending the newest entry read to its delivery here.",
                format!("{:.3}", h.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    }
}

/// One stream entry as read, before it is checked.
struct RawEntry {
    id: StreamId,
    /// The entry's place in the hole-free count (`s`).
    seq: Option<u64>,
    epoch: Option<String>,
    topic: Option<String>,
    name: Option<String>,
    data: Option<String>,
    private: bool,
    close: Option<String>,
}

impl RawEntry {
    fn into_shared(self) -> Option<SharedEntry> {
        if let Some(topic) = self.close {
            return Some(SharedEntry::Close {
                id: self.id,
                topic: Arc::from(topic),
            });
        }
        Some(SharedEntry::Event {
            id: self.id,
            topic: self.topic.map(Arc::from),
            name: self.name,
            data: self.data?,
            private: self.private,
        })
    }
}

/// The entries of the one stream in an `XREAD` reply (`Nil` on timeout).
fn stream_of(reply: &Value) -> Option<&Value> {
    match reply {
        // RESP2: [[key, entries]]; RESP3: {key: entries}.
        Value::Array(streams) => match streams.first()? {
            Value::Array(pair) => pair.get(1),
            _ => None,
        },
        Value::Map(pairs) => pairs.first().map(|(_, v)| v),
        _ => None,
    }
}

/// Parses `[[id, [field, value, …]], …]`, skipping whatever does not fit.
fn entries_of(entries: Option<&Value>) -> Vec<RawEntry> {
    let Some(Value::Array(list)) = entries else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else { return None };
            let id = StreamId::parse(&text(parts.first()?)?)?;
            let Value::Array(fields) = parts.get(1)? else {
                return None;
            };
            let mut raw = RawEntry {
                id,
                seq: None,
                epoch: None,
                topic: None,
                name: None,
                data: None,
                private: false,
                close: None,
            };
            for pair in fields.chunks(2) {
                let [k, v] = pair else { continue };
                let v = text(v);
                match text(k).as_deref() {
                    Some("ep") => raw.epoch = v,
                    Some("s") => raw.seq = v.and_then(|v| v.parse().ok()),
                    Some("t") => raw.topic = v,
                    Some("n") => raw.name = v,
                    Some("d") => raw.data = v,
                    Some("p") => raw.private = v.as_deref() == Some("1"),
                    Some("c") => raw.close = v,
                    _ => {}
                }
            }
            Some(raw)
        })
        .collect()
}

/// A Redis error in a few words, with nothing of the URL (which may hold
/// a password) in it.
fn reason(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connection_refusal() {
        "connection refused".to_string()
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection lost".to_string()
    } else if let Some(code) = e.code() {
        code.to_string()
    } else {
        format!("{:?}", e.kind()).to_lowercase()
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
