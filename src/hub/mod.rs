//! The hub: topics, their subscribers, closed topics, and the event log.
//!
//! Everything lives behind one `std::sync::Mutex`. Publish, subscribe and
//! close each take it once and never across an `.await`: that single
//! critical section is what makes "replay, then live" gapless and
//! duplicate-free, since a subscriber is registered in the same step that
//! reads the history. Counters kept under the lock are plain integers, so
//! delivery bumps no shared atomic.
//!
//! Fan-out never waits: each subscriber has a channel bounded by bytes
//! (`--max-subscriber-backlog`), and one that falls further behind than that
//! is dropped (its stream ends after draining what it has, and the client
//! resumes from history with `Last-Event-ID`).

pub mod log;
pub mod tail;

use crate::channel::{self, CloseReason, Receiver, SendError, Sender};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::event::{self, BatchEvent};
pub use log::{EventLog, IdRefused, MemoryLog, ResetReason, Update};
pub use tail::{StreamId, TailLog};

/// An entry of a shared log, as its reader hands it to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedEntry {
    Event {
        id: StreamId,
        topic: Option<Arc<str>>,
        name: Option<String>,
        data: String,
        private: bool,
    },
    /// `/close` on some node.
    Close { id: StreamId, topic: Arc<str> },
}

/// Which topics a subscriber listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topics {
    /// Every topic, and events published without one.
    All,
    /// These topics (deduplicated, non-empty).
    Some(Vec<Arc<str>>),
}

impl Topics {
    /// Whether an event of `topic` and the alternates `also` is wanted.
    fn wants_any(&self, topic: Option<&str>, also: &[Arc<str>]) -> bool {
        self.wants(topic) || also.iter().any(|a| self.wants(Some(a)))
    }

    fn wants(&self, topic: Option<&str>) -> bool {
        match (self, topic) {
            (Topics::All, _) => true,
            (Topics::Some(list), Some(t)) => list.iter().any(|s| &**s == t),
            (Topics::Some(_), None) => false,
        }
    }
}

/// Which private events a subscriber may read, by topic (`None`: events
/// without a topic). Absent for a subscriber that reads public events only.
pub type PrivateAccess = Option<Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>>;

/// Which topics a selector subscriber (Mercure's `topic=` selectors) wants:
/// tested against each published event's topics, since a template cannot
/// be looked up in the topic map.
pub type Matcher = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// Whether `may` allows `topic` or one of the alternates `also`.
fn any_of(
    may: &(dyn Fn(Option<&str>) -> bool + Send + Sync),
    topic: Option<&str>,
    also: &[Arc<str>],
) -> bool {
    may(topic) || also.iter().any(|a| may(Some(a)))
}

/// Whether a subscriber with `private` access may read an event (private
/// or not) of `topic` and the alternates `also`: the replay filters' rule.
fn may_read(private: &PrivateAccess, is_private: bool, topic: Option<&str>, also: &[Arc<str>]) -> bool {
    !is_private || private.as_ref().is_some_and(|may| any_of(&**may, topic, also))
}

/// Where a Mercure subscriber's replay started, for its `Last-Event-ID`
/// response header: the id it sent (the event before the first one it
/// gets), or `earliest` (everything, or an id the hub does not know).
pub const EARLIEST: &str = "earliest";

/// Why a publish was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The topic was closed with `/close` (410 Gone).
    Closed,
    /// The server is shutting down (503).
    ShuttingDown,
    /// A publisher's id names an event still in the history (409).
    DuplicateId,
    /// The log cannot take a publisher's id, several topics or a retry
    /// (the shared log, for now: 400).
    Unsupported,
}

/// What a subscribe request gets.
pub enum Subscribe {
    /// A stream: replayed events (or a `reset`) first, then the live channel.
    Stream(Subscription),
    /// Every requested topic is closed and nothing is left to replay: the
    /// client should stop (204 No Content).
    AllClosed,
    /// The server is shutting down.
    ShuttingDown,
    /// `--max-connections` streams are open already: the client should come
    /// back later.
    Shed,
    /// The shared log has not been reached yet, so there is no position
    /// to start from: the client should come back shortly.
    NotReady,
}

/// The HTTP version a subscriber came in on, for the open-streams gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// A registered subscriber. Dropping it unregisters it, so a client that
/// goes away is removed from the hub as soon as hyper drops its body.
pub struct Subscription {
    /// Sent before anything from the channel: replay, `reset`, `close`.
    pub initial: Vec<Bytes>,
    /// Live events, in publish order. `None` when the stream ends after
    /// `initial` (all topics closed, only a replay was owed).
    pub live: Option<Receiver>,
    registration: Option<(Arc<Hub>, SubId)>,
}

impl Subscription {
    /// True once the hub is shutting down, so the connection should close
    /// after this stream rather than wait for another request.
    pub fn hub_shutting_down(&self) -> bool {
        self.registration
            .as_ref()
            .is_some_and(|(hub, _)| hub.lock().shutting_down)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((hub, id)) = self.registration.take() {
            hub.lock().remove_subscriber(id, CloseReason::Unsubscribed);
        }
    }
}

/// Point-in-time figures, for tests and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Subscribers registered now.
    pub subscribers: usize,
    /// Of those, how many came over HTTP/1.x and over HTTP/2.
    pub open_http1: usize,
    pub open_http2: usize,
    /// Streams refused because `--max-connections` were open.
    pub shed: u64,
    /// Topics that have at least one subscriber now.
    pub topics: usize,
    pub events_published: u64,
    pub events_replayed: u64,
    /// Deliveries into subscriber channels (one per event per subscriber).
    pub deliveries: u64,
    pub dropped_full: u64,
    pub resets_sent: u64,
    pub topics_closed: u64,
}

/// The hub as the console shows it ([`Hub::overview`]).
#[derive(Debug, Clone)]
pub struct Overview {
    pub stats: Stats,
    /// The topics with the most subscribers, most first, and their counts.
    pub topics: Vec<(Arc<str>, usize)>,
    /// Topics with at least one subscriber.
    pub all_topics: usize,
    /// Subscribers of every topic (no `topic` parameter).
    pub all_topic_subscribers: usize,
    /// Subscribers by selector (Mercure templates and `*`).
    pub selector_subscribers: usize,
    /// Events in the history now, and the most it keeps.
    pub history: usize,
    pub history_capacity: usize,
}

type SubId = u64;

/// Tuning the hub needs from the configuration.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Bytes each subscriber may have waiting (`--max-subscriber-backlog`).
    pub max_backlog: usize,
    pub max_closed_topics: usize,
    /// Most subscribers registered at once.
    pub max_subscribers: usize,
}

pub struct Hub {
    state: Mutex<State>,
    options: HubOptions,
}

struct State {
    log: Box<dyn EventLog>,
    /// Subscribers of each topic with at least one subscriber.
    topics: HashMap<Arc<str>, Slots>,
    /// Subscribers of every topic.
    all: Slots,
    /// Selector subscribers: each is tested against every event's topics.
    /// Kept apart so publishing to exact-topic subscribers costs no more
    /// while there are none.
    selective: Slots,
    /// Where each subscriber is registered, to remove it in one step.
    subscribers: HashMap<SubId, SubEntry>,
    closed: ClosedTopics,
    next_sub_id: SubId,
    shutting_down: bool,
    /// Subscribers registered over HTTP/2 (the rest are HTTP/1.x).
    open_http2: usize,
    /// Subscribers waiting for the shared log's tail to reach their id.
    held: Vec<Held>,
    stats: Stats,
}

/// How long a subscriber whose `Last-Event-ID` is ahead of this node's
/// tail waits for the tail to get there before it is sent `reset` (its id
/// may be made up, or this node may not reach Redis for a while).
pub const HOLD_LIMIT: Duration = Duration::from_secs(10);

/// A subscriber whose `Last-Event-ID` names a place in the shared log that
/// this node has not read yet (another node had read further: this one is
/// behind, or has just reconnected). It is registered, so it gets
/// heartbeats and counts against the limit, but sits in no slot until the
/// tail reaches its id; then, in one step under the lock, it is given what
/// followed its id and joins the slots, so it misses nothing and gets
/// nothing twice.
struct Held {
    sub: SubId,
    after: StreamId,
    /// What it listens to: every topic, or those of its topics that were
    /// open when it subscribed.
    topics: Topics,
    until: Instant,
}

struct SubEntry {
    /// One sender kept per subscriber, for messages sent to each subscriber
    /// once (heartbeat, shutdown) however many topics it has.
    tx: Sender,
    /// (topic or `None` for "all", slot index) of each registration.
    slots: Vec<(Option<Arc<str>>, usize)>,
    protocol: Protocol,
    /// Read permission for private events; checked only when one is published.
    private: PrivateAccess,
    /// A selector subscriber's matcher and its slot in `selective`.
    selective: Option<(Matcher, usize)>,
}

impl SubEntry {
    fn reads_private(&self, topic: Option<&str>) -> bool {
        self.private.as_ref().is_some_and(|may| may(topic))
    }

    fn reads_private_any(&self, topic: Option<&str>, also: &[Arc<str>]) -> bool {
        self.private
            .as_ref()
            .is_some_and(|may| any_of(&**may, topic, also))
    }
}

impl Hub {
    pub fn new(options: HubOptions, log: Box<dyn EventLog>) -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(State {
                log,
                topics: HashMap::new(),
                all: Slots::default(),
                selective: Slots::default(),
                subscribers: HashMap::new(),
                closed: ClosedTopics::new(options.max_closed_topics),
                next_sub_id: 1,
                shutting_down: false,
                open_http2: 0,
                held: Vec::new(),
                stats: Stats::default(),
            }),
            options,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would poison it; the state is kept
        // consistent step by step, so carry on rather than take the server down.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes one event and returns its id.
    pub fn publish(
        &self,
        topic: Option<&str>,
        name: Option<&str>,
        data: &str,
    ) -> Result<String, PublishError> {
        self.publish_as(topic, name, data, false)
    }

    /// [`publish`](Self::publish), private or not: a private event reaches
    /// (live and on replay) only subscribers whose access allows it.
    pub fn publish_as(
        &self,
        topic: Option<&str>,
        name: Option<&str>,
        data: &str,
        private: bool,
    ) -> Result<String, PublishError> {
        let mut state = self.lock();
        let topic = state.check_publish(topic)?;
        Ok(state.publish(topic.as_ref(), name, data, private))
    }

    /// Publishes every event of a batch in order, all or nothing.
    pub fn publish_batch(
        &self,
        topic: Option<&str>,
        events: &[BatchEvent],
    ) -> Result<Vec<String>, PublishError> {
        self.publish_batch_as(topic, events, false)
    }

    /// [`publish_batch`](Self::publish_batch), every event private or not.
    pub fn publish_batch_as(
        &self,
        topic: Option<&str>,
        events: &[BatchEvent],
        private: bool,
    ) -> Result<Vec<String>, PublishError> {
        let mut state = self.lock();
        let topic = state.check_publish(topic)?;
        // Every subscriber of the topic gets every event of the batch, so it
        // is handed over as one piece: one queue slot and one write each,
        // not one per event.
        let (ids, bytes) = state.log.append_batch(topic.as_ref(), events, private);
        state.fan_out(topic.as_ref(), bytes, ids.len() as u64, private);
        Ok(ids)
    }

    /// Registers a subscriber. With `last_id`, the subscription starts with
    /// every retained event after it, or with a `reset` event if it cannot be
    /// honoured; either way nothing published after this call is missed.
    pub fn subscribe(
        self: &Arc<Self>,
        topics: Topics,
        last_id: Option<&str>,
        protocol: Protocol,
    ) -> Subscribe {
        self.subscribe_as(topics, last_id, protocol, None)
    }

    /// [`subscribe`](Self::subscribe) for a subscriber that may read the
    /// private events `private` allows, live and on replay.
    pub fn subscribe_as(
        self: &Arc<Self>,
        topics: Topics,
        last_id: Option<&str>,
        protocol: Protocol,
        private: PrivateAccess,
    ) -> Subscribe {
        let mut state = self.lock();
        if state.shutting_down {
            return Subscribe::ShuttingDown;
        }
        // A tail that has not reached its shared log yet has no position to
        // start a subscriber from: whatever it read first would be either
        // replayed wrongly or missed. The client comes back shortly.
        if !state.log.ready() {
            return Subscribe::NotReady;
        }
        let open: Vec<Arc<str>> = match &topics {
            Topics::All => Vec::new(),
            Topics::Some(list) => list
                .iter()
                .filter(|t| !state.closed.contains(t))
                .cloned()
                .collect(),
        };
        let all_closed = matches!(topics, Topics::Some(_)) && open.is_empty();
        // A stream that would only be told its topics are closed is not
        // shed: 204 (or the replay it is owed) is cheaper than a comeback.
        if !all_closed && state.subscribers.len() >= self.options.max_subscribers {
            state.stats.shed += 1;
            return Subscribe::Shed;
        }

        let mut initial = Vec::new();
        let mut replayed = 0;
        // An id of this shared log that this node has not read yet: held
        // until it has (see `Held`), rather than reset.
        let ahead = match last_id {
            Some(last_id) if !all_closed => state.log.as_tail().and_then(|t| t.ahead(last_id)),
            _ => None,
        };
        if let (Some(last_id), None) = (last_id, ahead) {
            let wanted = |t: Option<&str>, also: &[Arc<str>], is_private: bool| {
                topics.wants_any(t, also) && may_read(&private, is_private, t, also)
            };
            match state.log.replay(last_id, &wanted) {
                Ok(events) => {
                    replayed = events.len();
                    state.stats.events_replayed += replayed as u64;
                    initial = events;
                }
                Err(reason) => {
                    state.stats.resets_sent += 1;
                    let newest = state.log.newest_id();
                    initial.push(event::control("reset", Some(&newest), reason.text()));
                }
            }
        }
        if let Topics::Some(list) = &topics {
            for t in list.iter().filter(|t| state.closed.contains(t)) {
                initial.push(event::control("close", None, t));
            }
        }

        if all_closed {
            // Events published before the close are still owed to a client
            // that comes back for them; after that, 204 tells it to stop.
            if replayed == 0 {
                return Subscribe::AllClosed;
            }
            return Subscribe::Stream(Subscription {
                initial,
                live: None,
                registration: None,
            });
        }

        let (tx, rx) = channel::channel(self.options.max_backlog);
        let id = state.next_sub_id;
        state.next_sub_id += 1;
        let slots = match ahead {
            None => state.register(id, &open, &tx),
            Some(after) => {
                let topics = match topics {
                    Topics::All => Topics::All,
                    Topics::Some(_) => Topics::Some(open),
                };
                state.held.push(Held {
                    sub: id,
                    after,
                    topics,
                    until: Instant::now() + HOLD_LIMIT,
                });
                Vec::new()
            }
        };
        if protocol == Protocol::Http2 {
            state.open_http2 += 1;
        }
        state.subscribers.insert(
            id,
            SubEntry {
                tx,
                slots,
                protocol,
                private,
                selective: None,
            },
        );
        drop(state);
        Subscribe::Stream(Subscription {
            initial,
            live: Some(rx),
            registration: Some((self.clone(), id)),
        })
    }

    /// Publishes a Mercure update (several topics, a publisher's id, a
    /// retry) and returns its id. Every subscriber of any of its topics
    /// gets it once.
    pub fn publish_update(&self, update: &Update) -> Result<String, PublishError> {
        let mut state = self.lock();
        for t in update.topics {
            state.check_publish(Some(t))?;
        }
        let (id, bytes) = state.log.append_update(update).map_err(|e| match e {
            IdRefused::Duplicate => PublishError::DuplicateId,
            IdRefused::Unsupported => PublishError::Unsupported,
        })?;
        state.fan_out_update(update.topics, bytes, update.private);
        Ok(id)
    }

    /// Registers a selector subscriber (Mercure's subscribe): it gets every
    /// event one of whose topics `matcher` accepts, and the private ones
    /// `private` allows. `last_id` as Mercure means it: `earliest` replays
    /// the whole history, and an id the hub cannot honour starts the stream
    /// live without a `reset` (Mercure's clients expect no extra events).
    /// Returns, beside the subscription, the `Last-Event-ID` to answer with
    /// when `last_id` was given.
    pub fn subscribe_selectors(
        self: &Arc<Self>,
        matcher: Matcher,
        last_id: Option<&str>,
        protocol: Protocol,
        private: PrivateAccess,
    ) -> (Subscribe, Option<String>) {
        let mut state = self.lock();
        if state.shutting_down {
            return (Subscribe::ShuttingDown, None);
        }
        if !state.log.ready() {
            return (Subscribe::NotReady, None);
        }
        if state.subscribers.len() >= self.options.max_subscribers {
            state.stats.shed += 1;
            return (Subscribe::Shed, None);
        }
        let wanted = |t: Option<&str>, also: &[Arc<str>], is_private: bool| {
            any_of(&*matcher, t, also) && may_read(&private, is_private, t, also)
        };
        let (initial, resumed) = match last_id {
            None => (Vec::new(), None),
            Some(EARLIEST) => (state.log.replay_all(&wanted), Some(EARLIEST.to_string())),
            Some(id) => match state.log.replay(id, &wanted) {
                Ok(events) => (events, Some(id.to_string())),
                Err(_) => (Vec::new(), Some(EARLIEST.to_string())),
            },
        };
        state.stats.events_replayed += initial.len() as u64;
        let (tx, rx) = channel::channel(self.options.max_backlog);
        let id = state.next_sub_id;
        state.next_sub_id += 1;
        let slot = state.selective.insert(id, tx.clone());
        if protocol == Protocol::Http2 {
            state.open_http2 += 1;
        }
        state.subscribers.insert(
            id,
            SubEntry {
                tx,
                slots: Vec::new(),
                protocol,
                private,
                selective: Some((matcher, slot)),
            },
        );
        drop(state);
        let subscription = Subscription {
            initial,
            live: Some(rx),
            registration: Some((self.clone(), id)),
        };
        (Subscribe::Stream(subscription), resumed)
    }

    /// Closes a topic: its subscribers get a `close` event, streams left
    /// with no open topic end, later subscribers get 204 and publishers 410.
    /// Returns false if it was already closed.
    pub fn close_topic(&self, topic: &str) -> bool {
        self.lock().close(Arc::from(topic))
    }

    /// Refuses a publish that this node can already tell will fail (the
    /// server is stopping, or the topic is known to be closed), before it
    /// goes to a shared log; the log itself has the last word.
    pub fn check_publish(&self, topic: Option<&str>) -> Result<(), PublishError> {
        self.lock().check_publish(topic).map(|_| ())
    }

    /// Takes entries read from the shared log, in its order: events are
    /// recorded in the tail and fanned out (a run of one topic's events as
    /// one piece, as a batch is); closes close. Entries already seen are
    /// ignored, so a reader that reads one twice does no harm.
    pub fn deliver(&self, entries: Vec<SharedEntry>) {
        let mut state = self.lock();
        // A run of events of one topic (and one privacy) goes out as one piece.
        let mut run: Option<(Option<Arc<str>>, bool, bytes::BytesMut, u64)> = None;
        for entry in entries {
            match entry {
                SharedEntry::Event {
                    id,
                    topic,
                    name,
                    data,
                    private,
                } => {
                    // Share the subscribers' Arc for the topic, as publish does.
                    let topic = topic.map(|t| state.topics.get_key_value(&t).map_or(t, |(k, _)| k.clone()));
                    let Some(tail) = state.log.as_tail() else { return };
                    let Some(bytes) = tail.record(id, topic.as_ref(), name.as_deref(), &data, private) else {
                        continue;
                    };
                    match &mut run {
                        Some((t, p, buf, n)) if *t == topic && *p == private => {
                            buf.extend_from_slice(&bytes);
                            *n += 1;
                        }
                        _ => {
                            if let Some((t, p, buf, n)) = run.take() {
                                state.fan_out(t.as_ref(), buf.freeze(), n, p);
                            }
                            run = Some((topic, private, bytes::BytesMut::from(&bytes[..]), 1));
                        }
                    }
                }
                SharedEntry::Close { id, topic } => {
                    if let Some((t, p, buf, n)) = run.take() {
                        state.fan_out(t.as_ref(), buf.freeze(), n, p);
                    }
                    if state.log.as_tail().is_some_and(|tail| tail.note(id)) {
                        state.close(topic);
                    }
                }
            }
        }
        if let Some((t, p, buf, n)) = run.take() {
            state.fan_out(t.as_ref(), buf.freeze(), n, p);
        }
        state.release_caught_up();
    }

    /// Sends `reset` to the held subscribers that waited [`HOLD_LIMIT`]
    /// for the tail to reach their id, and makes them live. Called by the
    /// heartbeat and by the shared log's reader.
    pub fn expire_held(&self) {
        self.lock().expire_held(Instant::now());
    }

    /// Starts the shared log's tail over on `epoch` (first contact, or the
    /// log this node knew is gone or has a hole), with `history` (the
    /// newest entries of the log, oldest first, after `floor`) recorded
    /// without being delivered: they are history, not news. With `lost`,
    /// every live subscriber may have missed events: each `/events`
    /// subscriber gets `reset` with the newest id of that history, as a
    /// client with an unknown id would, so a client that comes back with
    /// it is replayed nothing it was not sent. A Mercure subscriber's
    /// stream ends instead (Mercure's clients expect no events but
    /// updates): its client comes back after the `retry:` its stream
    /// opened with, and is told by the `Last-Event-ID: earliest` answer
    /// that its id was not honoured.
    pub fn rebase(&self, epoch: &str, floor: StreamId, history: Vec<SharedEntry>, lost: bool) {
        let mut state = self.lock();
        let Some(tail) = state.log.as_tail() else { return };
        tail.rebase(epoch, floor);
        for entry in history {
            let Some(tail) = state.log.as_tail() else { return };
            match entry {
                SharedEntry::Event {
                    id,
                    topic,
                    name,
                    data,
                    private,
                } => {
                    tail.record(id, topic.as_ref(), name.as_deref(), &data, private);
                }
                SharedEntry::Close { id, topic } => {
                    if tail.note(id) {
                        state.closed.insert(topic);
                    }
                }
            }
        }
        let newest = state.log.newest_id();
        // Held subscribers waited for a place in the log that is gone.
        let held = std::mem::take(&mut state.held);
        let mut resets = 0;
        if lost {
            let reset = event::control("reset", Some(&newest), "events were lost from the shared log");
            let mut failed = Vec::new();
            let mut ended = Vec::new();
            for (id, e) in &state.subscribers {
                if e.selective.is_some() {
                    ended.push(*id);
                } else if e.tx.try_send(reset.clone()).is_ok() {
                    resets += 1;
                } else {
                    failed.push(*id);
                }
            }
            for id in failed {
                state.remove_subscriber(id, CloseReason::Slow);
            }
            for id in ended {
                state.remove_subscriber(id, CloseReason::LogLost);
            }
        }
        let reset = event::control("reset", Some(&newest), ResetReason::FromAnotherRun.text());
        for h in held {
            // With `lost`, its reset went out above.
            let first = if lost { Bytes::new() } else { reset.clone() };
            resets += u64::from(!lost && state.subscribers.contains_key(&h.sub));
            state.release(h, Some(first));
        }
        state.stats.resets_sent += resets;
    }

    /// The shared log's tail position: its epoch and the newest id read.
    pub fn tail_position(&self) -> Option<(String, StreamId)> {
        let mut state = self.lock();
        let tail = state.log.as_tail()?;
        Some((tail.epoch()?.to_string(), tail.newest()))
    }

    /// Marks topics closed without telling anyone (loaded from a shared
    /// log at start, before any subscriber could be registered for them).
    pub fn remember_closed(&self, topics: impl IntoIterator<Item = String>) {
        let mut state = self.lock();
        for t in topics {
            state.closed.insert(Arc::from(t));
        }
    }

    /// Sends the heartbeat comment to every subscriber. A subscriber whose
    /// queue is full is dropped, like any other slow subscriber.
    pub fn heartbeat(&self) {
        let mut state = self.lock();
        state.expire_held(Instant::now());
        let mut full = 0;
        let failed: Vec<SubId> = state
            .subscribers
            .iter()
            .filter_map(|(id, e)| match e.tx.heartbeat(event::HEARTBEAT) {
                Ok(()) => None,
                Err(err) => {
                    // Stalled behind HTTP/2 flow control counts as slow.
                    full += u64::from(err != SendError::Closed);
                    Some(*id)
                }
            })
            .collect();
        state.stats.dropped_full += full;
        for id in failed {
            state.remove_subscriber(id, CloseReason::Slow);
        }
    }

    /// Ends every stream: each gets `farewell()` (a `retry:` field, so the
    /// clients come back spread out) and then its end. New subscribers and
    /// publishes are refused from now on.
    pub fn shutdown(&self, mut farewell: impl FnMut() -> Bytes) {
        let mut state = self.lock();
        state.shutting_down = true;
        for entry in state.subscribers.values() {
            let _ = entry.tx.try_send(farewell());
            entry.tx.close(CloseReason::Shutdown);
        }
        state.subscribers.clear();
        state.held.clear();
        state.topics.clear();
        state.all = Slots::default();
        state.selective = Slots::default();
        state.open_http2 = 0;
    }

    /// What the console shows (`GET /stats`): the counters, the `limit`
    /// topics with the most subscribers and how many topics have any, and
    /// the history's fill. One pass over the topics under the lock, paid
    /// only when someone asks.
    pub fn overview(&self, limit: usize) -> Overview {
        let stats = self.stats();
        let state = self.lock();
        let mut topics: Vec<(Arc<str>, usize)> =
            state.topics.iter().map(|(t, s)| (t.clone(), s.len)).collect();
        let all_topics = topics.len();
        topics.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        topics.truncate(limit);
        let (history, history_capacity) = state.log.fill();
        Overview {
            stats,
            topics,
            all_topics,
            all_topic_subscribers: state.all.len,
            selector_subscribers: state.selective.len,
            history,
            history_capacity,
        }
    }

    pub fn stats(&self) -> Stats {
        let state = self.lock();
        let mut stats = state.stats.clone();
        stats.subscribers = state.subscribers.len();
        stats.open_http2 = state.open_http2;
        stats.open_http1 = stats.subscribers - state.open_http2;
        stats.topics = state.topics.len();
        stats
    }
}

impl State {
    /// Adds subscriber `id` to the slots of `open` (or of every topic when
    /// empty); returns its registrations.
    fn register(&mut self, id: SubId, open: &[Arc<str>], tx: &Sender) -> Vec<(Option<Arc<str>>, usize)> {
        // Sized exactly: most subscribers have one registration, and this
        // lives as long as the stream.
        let mut slots = Vec::with_capacity(open.len().max(1));
        if open.is_empty() {
            slots.push((None, self.all.insert(id, tx.clone())));
        } else {
            for topic in open {
                let slot = self
                    .topics
                    .entry(topic.clone())
                    .or_default()
                    .insert(id, tx.clone());
                slots.push((Some(topic.clone()), slot));
            }
        }
        slots
    }

    /// Releases the held subscribers whose id the tail has reached.
    fn release_caught_up(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let Some(newest) = self.log.as_tail().map(|t| t.newest()) else {
            return;
        };
        let (ready, waiting) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h: &Held| h.after <= newest);
        self.held = waiting;
        for h in ready {
            self.release(h, None);
        }
    }

    /// Releases the held subscribers that waited past their time, each
    /// with a `reset`, as an id the node cannot honour gets.
    fn expire_held(&mut self, now: Instant) {
        if self.held.iter().all(|h| h.until > now) {
            return;
        }
        let (late, waiting) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h: &Held| h.until <= now);
        self.held = waiting;
        let reset = event::control("reset", Some(&self.log.newest_id()), ResetReason::Unknown.text());
        for h in late {
            self.stats.resets_sent += 1;
            self.release(h, Some(reset.clone()));
        }
    }

    /// Makes a held subscriber live: first sends it `first`, or (`None`)
    /// the tail's events after its id, then `close` for each of its topics
    /// closed meanwhile, and registers it for the rest of its topics.
    fn release(&mut self, held: Held, first: Option<Bytes>) {
        let Some(entry) = self.subscribers.get(&held.sub) else {
            return;
        };
        let tx = entry.tx.clone();
        let mut out = BytesMut::new();
        match first {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => {
                let private = &entry.private;
                let topics = &held.topics;
                let wanted = |t: Option<&str>, also: &[Arc<str>], is_private: bool| {
                    topics.wants_any(t, also) && may_read(private, is_private, t, also)
                };
                let events = match self.log.as_tail() {
                    Some(tail) => tail.replay_after(held.after, &wanted),
                    None => Vec::new(),
                };
                self.stats.events_replayed += events.len() as u64;
                for e in events {
                    out.extend_from_slice(&e);
                }
            }
        }
        let mut open = Vec::new();
        if let Topics::Some(list) = held.topics {
            for t in list {
                if self.closed.contains(&t) {
                    out.extend_from_slice(&event::control("close", None, &t));
                } else {
                    open.push(t);
                }
            }
            if open.is_empty() {
                // Every topic closed while it waited: what it was owed,
                // the closes, and the end.
                if tx.try_send(out.freeze()).is_err() {
                    self.remove_subscriber(held.sub, CloseReason::Slow);
                } else {
                    self.remove_subscriber(held.sub, CloseReason::TopicsClosed);
                }
                return;
            }
        }
        if !out.is_empty() && tx.try_send(out.freeze()).is_err() {
            self.remove_subscriber(held.sub, CloseReason::Slow);
            return;
        }
        let slots = self.register(held.sub, &open, &tx);
        if let Some(entry) = self.subscribers.get_mut(&held.sub) {
            entry.slots = slots;
        }
    }

    fn check_publish(&self, topic: Option<&str>) -> Result<Option<Arc<str>>, PublishError> {
        if self.shutting_down {
            return Err(PublishError::ShuttingDown);
        }
        match topic {
            Some(t) if self.closed.contains(t) => Err(PublishError::Closed),
            // Reuse the subscribers' Arc when there is one, so the history
            // entry shares it instead of allocating a copy of the name.
            Some(t) => Ok(Some(
                self.topics
                    .get_key_value(t)
                    .map_or_else(|| Arc::from(t), |(k, _)| k.clone()),
            )),
            None => Ok(None),
        }
    }

    /// Closes a topic (see [`Hub::close_topic`]).
    fn close(&mut self, topic: Arc<str>) -> bool {
        let state = self;
        if !state.closed.insert(topic.clone()) {
            return false;
        }
        state.stats.topics_closed += 1;
        let close = event::control("close", None, &topic);
        let mut ended = Vec::new();
        let mut failed = Vec::new();
        if let Some(slots) = state.topics.remove(&topic) {
            for (id, tx) in slots.iter() {
                match tx.try_send(close.clone()) {
                    Ok(()) => ended.push(*id),
                    Err(_) => failed.push(*id),
                }
            }
        }
        for id in ended {
            // Forget this topic's slot (its map entry is gone already); a
            // subscriber with no registration left is removed, which
            // closes its queue: its stream ends after the `close` event.
            let Some(entry) = state.subscribers.get_mut(&id) else {
                continue;
            };
            entry.slots.retain(|(t, _)| t.as_deref() != Some(&*topic));
            if entry.slots.is_empty() {
                state.remove_subscriber(id, CloseReason::TopicsClosed);
            }
        }
        for (id, tx) in state.all.iter() {
            if tx.try_send(close.clone()).is_err() {
                failed.push(*id);
            }
        }
        for id in failed {
            state.remove_subscriber(id, CloseReason::Slow);
        }
        true
    }

    /// Appends to the log and hands the encoded bytes to every subscriber.
    fn publish(&mut self, topic: Option<&Arc<str>>, name: Option<&str>, data: &str, private: bool) -> String {
        let (id, bytes) = self.log.append(topic, name, data, private);
        self.fan_out(topic, bytes, 1, private);
        id
    }

    /// Hands `bytes` (holding `events` events) to every subscriber of
    /// `topic` and of every topic; drops those whose queue is full. A
    /// private event skips subscribers that may not read it.
    fn fan_out(&mut self, topic: Option<&Arc<str>>, bytes: Bytes, events: u64, private: bool) {
        self.stats.events_published += events;
        // Allocated only when some subscriber has to go.
        let mut failed: Vec<SubId> = Vec::new();
        let mut delivered = 0u64;
        let mut full = 0u64;
        let subscribers = &self.subscribers;
        let topic_name = topic.map(|t| &**t);
        let mut deliver = |slots: &Slots| {
            for (sub, tx) in slots.iter() {
                if private && !subscribers.get(sub).is_some_and(|e| e.reads_private(topic_name)) {
                    continue;
                }
                match tx.try_send(bytes.clone()) {
                    Ok(()) => delivered += 1,
                    Err(e) => {
                        full += u64::from(e == SendError::Full);
                        failed.push(*sub);
                    }
                }
            }
        };
        if let Some(slots) = topic.and_then(|t| self.topics.get(t)) {
            deliver(slots);
        }
        deliver(&self.all);
        if self.selective.len > 0 {
            self.deliver_selective(
                topic_name,
                &[],
                &bytes,
                private,
                &mut delivered,
                &mut full,
                &mut failed,
            );
        }
        self.stats.deliveries += delivered * events;
        self.stats.dropped_full += full;
        for sub in failed {
            self.remove_subscriber(sub, CloseReason::Slow);
        }
    }

    /// Hands a Mercure update to every subscriber of any of its topics,
    /// once each (a subscriber of two of them is still one subscriber).
    fn fan_out_update(&mut self, topics: &[Arc<str>], bytes: Bytes, private: bool) {
        self.stats.events_published += 1;
        let (topic, also) = match topics.split_first() {
            Some((first, rest)) => (Some(&**first), rest),
            None => (None, &[][..]),
        };
        let mut failed: Vec<SubId> = Vec::new();
        let mut delivered = 0u64;
        let mut full = 0u64;
        let mut seen: HashSet<SubId> = HashSet::new();
        let subscribers = &self.subscribers;
        let lists = topics
            .iter()
            .filter_map(|t| self.topics.get(t))
            .chain(std::iter::once(&self.all));
        for slots in lists {
            for (sub, tx) in slots.iter() {
                if topics.len() > 1 && !seen.insert(*sub) {
                    continue;
                }
                if private
                    && !subscribers
                        .get(sub)
                        .is_some_and(|e| e.reads_private_any(topic, also))
                {
                    continue;
                }
                match tx.try_send(bytes.clone()) {
                    Ok(()) => delivered += 1,
                    Err(e) => {
                        full += u64::from(e == SendError::Full);
                        failed.push(*sub);
                    }
                }
            }
        }
        if self.selective.len > 0 {
            self.deliver_selective(
                topic,
                also,
                &bytes,
                private,
                &mut delivered,
                &mut full,
                &mut failed,
            );
        }
        self.stats.deliveries += delivered;
        self.stats.dropped_full += full;
        for sub in failed {
            self.remove_subscriber(sub, CloseReason::Slow);
        }
    }

    /// The selector subscribers' share of a fan-out: each whose matcher
    /// accepts one of the event's topics gets it once.
    #[allow(clippy::too_many_arguments)]
    fn deliver_selective(
        &self,
        topic: Option<&str>,
        also: &[Arc<str>],
        bytes: &Bytes,
        private: bool,
        delivered: &mut u64,
        full: &mut u64,
        failed: &mut Vec<SubId>,
    ) {
        for (sub, tx) in self.selective.iter() {
            let Some(entry) = self.subscribers.get(sub) else {
                continue;
            };
            let Some((matcher, _)) = &entry.selective else {
                continue;
            };
            if !any_of(&**matcher, topic, also) || (private && !entry.reads_private_any(topic, also)) {
                continue;
            }
            match tx.try_send(bytes.clone()) {
                Ok(()) => *delivered += 1,
                Err(e) => {
                    *full += u64::from(e == SendError::Full);
                    failed.push(*sub);
                }
            }
        }
    }

    fn remove_subscriber(&mut self, id: SubId, reason: CloseReason) {
        let Some(entry) = self.subscribers.remove(&id) else {
            return;
        };
        if !self.held.is_empty() {
            self.held.retain(|h| h.sub != id);
        }
        // Its stream ends once it has written what is already queued.
        entry.tx.close(reason);
        if entry.protocol == Protocol::Http2 {
            self.open_http2 -= 1;
        }
        if let Some((_, slot)) = entry.selective {
            self.selective.remove(slot);
        }
        for (topic, slot) in entry.slots {
            match topic {
                None => self.all.remove(slot),
                Some(topic) => {
                    if let Some(slots) = self.topics.get_mut(&topic) {
                        slots.remove(slot);
                        if slots.len == 0 {
                            self.topics.remove(&topic);
                        }
                    }
                }
            }
        }
    }
}

/// A slab of subscriber senders: O(1) insert and remove, and iteration over
/// a dense vector on the publish path.
#[derive(Default)]
struct Slots {
    entries: Vec<Option<(SubId, Sender)>>,
    free: Vec<usize>,
    len: usize,
}

impl Slots {
    fn insert(&mut self, id: SubId, tx: Sender) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some((id, tx));
                i
            }
            None => {
                self.entries.push(Some((id, tx)));
                self.entries.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        if let Some(entry) = self.entries.get_mut(slot) {
            if entry.take().is_some() {
                self.len -= 1;
                self.free.push(slot);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&SubId, &Sender)> {
        self.entries.iter().flatten().map(|(id, tx)| (id, tx))
    }
}

/// Closed topics, remembered up to a bound; the oldest is forgotten first
/// (and then counts as open again).
struct ClosedTopics {
    set: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl ClosedTopics {
    fn new(capacity: usize) -> Self {
        ClosedTopics {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn contains(&self, topic: &str) -> bool {
        self.set.contains(topic)
    }

    /// Returns false if already closed.
    fn insert(&mut self, topic: Arc<str>) -> bool {
        if self.set.contains(&topic) {
            return false;
        }
        if self.capacity == 0 {
            return true;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(topic.clone());
        self.order.push_back(topic);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use std::task::{Context, Poll, Waker};

    fn hub() -> Arc<Hub> {
        let options = HubOptions {
            max_backlog: 1 << 20,
            max_closed_topics: 16,
            max_subscribers: 100,
        };
        let hub = Hub::new(options, Box::new(TailLog::new(100)));
        hub.rebase("ep", StreamId::default(), Vec::new(), false);
        hub
    }

    fn id(seq: u64) -> StreamId {
        StreamId { ms: 1, seq }
    }

    fn event(seq: u64, data: &str) -> SharedEntry {
        SharedEntry::Event {
            id: id(seq),
            topic: Some(Arc::from("t")),
            name: None,
            data: data.to_string(),
            private: false,
        }
    }

    fn stream(subscribed: Subscribe) -> Subscription {
        match subscribed {
            Subscribe::Stream(s) => s,
            _ => panic!("not a stream"),
        }
    }

    fn subscribe(hub: &Arc<Hub>, last_id: Option<&str>) -> Subscription {
        stream(hub.subscribe(Topics::Some(vec![Arc::from("t")]), last_id, Protocol::Http1))
    }

    /// Everything a subscriber has been given so far, as text, and
    /// whether its stream has ended.
    fn drain(sub: &mut Subscription) -> (String, bool) {
        let mut out: String = sub
            .initial
            .drain(..)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        let Some(rx) = sub.live.as_mut() else {
            return (out, true);
        };
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            match rx.poll_recv(&mut cx, 64) {
                Poll::Ready(Some(mut chunk)) => {
                    while chunk.has_remaining() {
                        let part = chunk.chunk();
                        let n = part.len();
                        out.push_str(&String::from_utf8_lossy(part));
                        chunk.advance(n);
                    }
                }
                Poll::Ready(None) => return (out, true),
                Poll::Pending => return (out, false),
            }
        }
    }

    #[test]
    fn a_subscriber_ahead_of_the_tail_is_held_then_given_exactly_what_followed_its_id() {
        let hub = hub();
        hub.deliver(vec![event(1, "one"), event(2, "two")]);
        // Another node had read up to 4 when the client left it.
        let mut sub = subscribe(&hub, Some("ep-1-4"));
        assert_eq!(
            drain(&mut sub),
            (String::new(), false),
            "held: no reset, nothing yet"
        );
        hub.deliver(vec![event(3, "three")]);
        assert_eq!(drain(&mut sub).0, "", "3 is one the client has");
        hub.deliver(vec![event(4, "four"), event(5, "five")]);
        assert_eq!(drain(&mut sub).0, "id: ep-1-5\ndata: five\n\n");
        hub.deliver(vec![event(6, "six")]);
        assert_eq!(
            drain(&mut sub).0,
            "id: ep-1-6\ndata: six\n\n",
            "live once released"
        );
        let stats = hub.stats();
        assert_eq!((stats.resets_sent, stats.events_replayed), (0, 1));
    }

    #[test]
    fn a_held_subscriber_that_waits_too_long_is_reset_and_goes_live() {
        let hub = hub();
        hub.deliver(vec![event(1, "one")]);
        let mut sub = subscribe(&hub, Some("ep-1-9"));
        hub.lock().expire_held(Instant::now() + HOLD_LIMIT / 2);
        assert_eq!(drain(&mut sub).0, "", "not yet");
        hub.lock().expire_held(Instant::now() + HOLD_LIMIT);
        let (text, ended) = drain(&mut sub);
        assert!(text.starts_with("id: ep-1-1\nevent: reset\n"), "{text}");
        assert!(!ended);
        hub.deliver(vec![event(2, "two")]);
        assert_eq!(drain(&mut sub).0, "id: ep-1-2\ndata: two\n\n");
    }

    #[test]
    fn a_topic_closed_while_its_subscriber_is_held_ends_its_stream_after_what_it_was_owed() {
        let hub = hub();
        let mut sub = subscribe(&hub, Some("ep-1-1"));
        hub.deliver(vec![
            event(1, "one"),
            event(2, "two"),
            SharedEntry::Close {
                id: id(3),
                topic: Arc::from("t"),
            },
        ]);
        assert_eq!(
            drain(&mut sub),
            (
                "id: ep-1-2\ndata: two\n\nevent: close\ndata: t\n\n".to_string(),
                true
            )
        );
        assert_eq!(hub.stats().subscribers, 0);
    }

    #[test]
    fn a_lost_log_resets_events_subscribers_once_and_ends_mercure_streams_without_an_event() {
        let hub = hub();
        hub.deliver(vec![event(1, "one")]);
        let mut live = subscribe(&hub, None);
        let mut held = subscribe(&hub, Some("ep-1-5"));
        let matcher: Matcher = Arc::new(|_| true);
        let mut mercure = stream(hub.subscribe_selectors(matcher, None, Protocol::Http1, None).0);
        hub.rebase("ep2", StreamId::default(), Vec::new(), true);
        for sub in [&mut live, &mut held] {
            let (text, ended) = drain(sub);
            assert_eq!(text.matches("event: reset").count(), 1, "{text}");
            assert!(text.starts_with("id: ep2-0-0\n"), "{text}");
            assert!(!ended);
        }
        assert_eq!(
            drain(&mut mercure),
            (String::new(), true),
            "no reset, just the end"
        );
        assert_eq!(
            mercure.live.as_ref().and_then(|rx| rx.close_reason()),
            Some(CloseReason::LogLost)
        );
        // Both /events subscribers are live on the new log.
        hub.deliver(vec![SharedEntry::Event {
            id: StreamId { ms: 2, seq: 0 },
            topic: Some(Arc::from("t")),
            name: None,
            data: "new".to_string(),
            private: false,
        }]);
        for sub in [&mut live, &mut held] {
            assert_eq!(drain(sub).0, "id: ep2-2-0\ndata: new\n\n");
        }
        assert_eq!(hub.stats().resets_sent, 2);
    }
}
