//! The event log: where the hub keeps its history and gets its ids. This is
//! the seam for a second backend (Redis Streams, so several nodes share one
//! log): the hub only calls [`EventLog`], never looks inside it.
//!
//! The trait is synchronous because the hub calls it under its lock, which
//! is what makes replay-then-live gapless. A remote backend would keep a
//! local tail of the shared log here, fed by a reader task (XREAD), and
//! publish through the remote log before fanning out.

use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::event::{self, BatchEvent};

/// Why a client's `Last-Event-ID` cannot be honoured; sent as the data of
/// the `reset` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    Malformed,
    FromAnotherRun,
    Unknown,
    OlderThanHistory,
}

impl ResetReason {
    pub fn text(self) -> &'static str {
        match self {
            ResetReason::Malformed => "malformed last event id",
            ResetReason::FromAnotherRun => "last event id is from another server run",
            ResetReason::Unknown => "unknown last event id",
            ResetReason::OlderThanHistory => "last event id is older than the history",
        }
    }
}

/// Which recorded events a replay hands out: called with an event's topic,
/// its alternate topics (a Mercure update's other topics) and whether it is
/// private.
pub type Wanted<'a> = dyn Fn(Option<&str>, &[Arc<str>], bool) -> bool + 'a;

/// An update with what only Mercure's publish gives: several topics (the
/// first canonical, the others alternates), an id of the publisher's
/// choosing, and a reconnection time.
pub struct Update<'a> {
    pub topics: &'a [Arc<str>],
    pub name: Option<&'a str>,
    pub data: &'a str,
    /// The publisher's id; the log gives one when absent.
    pub id: Option<&'a str>,
    pub retry: Option<u64>,
    pub private: bool,
}

/// Why a publisher's id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdRefused {
    /// It names an event still in the history (its own id or another's),
    /// or is digits only, the shape of the ids the log gives.
    Duplicate,
    /// This log cannot take the update's id, alternates or retry.
    Unsupported,
}

/// Storage of events and the ids they are given.
pub trait EventLog: Send + 'static {
    /// Gives the event the next id, encodes it once, and records it.
    /// Returns the id and the bytes every subscriber will share.
    /// A private event is replayed only where `replay`'s filter allows it.
    fn append(
        &mut self,
        topic: Option<&Arc<str>>,
        name: Option<&str>,
        data: &str,
        private: bool,
    ) -> (String, Bytes);

    /// Appends a batch (one topic for all): ids, and all the events encoded
    /// into one buffer, which the hub hands to each subscriber as one piece.
    fn append_batch(
        &mut self,
        topic: Option<&Arc<str>>,
        events: &[BatchEvent],
        private: bool,
    ) -> (Vec<String>, Bytes) {
        // A backend without a better way: one event at a time, then joined.
        let mut ids = Vec::with_capacity(events.len());
        let mut all = BytesMut::new();
        for e in events {
            let (id, bytes) = self.append(topic, e.name.as_deref(), &e.data, private);
            ids.push(id);
            all.extend_from_slice(&bytes);
        }
        (ids, all.freeze())
    }

    /// Appends an update of [`Update`]'s kind. A log without the means
    /// takes only what [`append`](Self::append) takes.
    fn append_update(&mut self, update: &Update) -> Result<(String, Bytes), IdRefused> {
        if update.id.is_some() || update.retry.is_some() || update.topics.len() > 1 {
            return Err(IdRefused::Unsupported);
        }
        Ok(self.append(update.topics.first(), update.name, update.data, update.private))
    }

    /// The recorded events after `last_id` that `wanted` accepts, oldest
    /// first, or why `last_id` cannot be honoured.
    fn replay(&self, last_id: &str, wanted: &Wanted) -> Result<Vec<Bytes>, ResetReason>;

    /// Every recorded event that `wanted` accepts, oldest first (Mercure's
    /// `earliest`).
    fn replay_all(&self, wanted: &Wanted) -> Vec<Bytes>;

    /// The id that means "everything so far": a client that sends it back
    /// misses nothing published after this call.
    fn newest_id(&self) -> String;

    /// Events retained now, and the most it retains (the console's
    /// history fill).
    fn fill(&self) -> (usize, usize);

    /// Whether subscribers can start yet: a tail of a shared log cannot
    /// before it has reached the log.
    fn ready(&self) -> bool {
        true
    }

    /// The tail of a shared log, which the log's reader feeds with entries
    /// that already have ids; `None` for a log that gives ids itself.
    fn as_tail(&mut self) -> Option<&mut super::tail::TailLog> {
        None
    }
}

/// One retained event.
struct Entry {
    /// Sequence number within this run (the id minus the run's base).
    seq: u64,
    topic: Option<Arc<str>>,
    /// A Mercure update's alternate topics.
    also: Option<Box<[Arc<str>]>>,
    /// The publisher's id, while the event is retained (it names the event
    /// in `aliases`).
    alias: Option<Box<str>>,
    /// Published with `private=1`: replayed only to authorised subscribers.
    private: bool,
    bytes: Bytes,
}

impl Entry {
    fn wanted(&self, wanted: &Wanted) -> bool {
        wanted(
            self.topic.as_deref(),
            self.also.as_deref().unwrap_or(&[]),
            self.private,
        )
    }
}

/// The default log: the last `capacity` events in memory.
///
/// Ids are decimal numbers `base + seq`, where `base` is the start time in
/// milliseconds times 10^6. They are strictly increasing within a run, of
/// equal width (19 digits until the 23rd century), so they compare the same
/// as numbers and as strings, and a later run's ids start above any id an
/// earlier run could have issued unless it published a million events per
/// millisecond of uptime (or the clock went back by more than the gap).
pub struct MemoryLog {
    base: u64,
    /// The sequence number of the newest event; 0 before the first.
    last_seq: u64,
    capacity: usize,
    events: VecDeque<Entry>,
    /// Publisher-chosen ids of retained events, to their sequence numbers:
    /// such an id works as `Last-Event-ID` while its event is retained.
    aliases: HashMap<Box<str>, u64>,
}

impl MemoryLog {
    pub fn new(capacity: usize) -> MemoryLog {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        MemoryLog::with_base(capacity, millis.saturating_mul(1_000_000))
    }

    pub fn with_base(capacity: usize, base: u64) -> MemoryLog {
        MemoryLog {
            base,
            last_seq: 0,
            capacity,
            events: VecDeque::with_capacity(capacity.min(4096)),
            aliases: HashMap::new(),
        }
    }

    fn id(&self, seq: u64) -> String {
        (self.base + seq).to_string()
    }

    /// Keeps an event, forgetting the oldest when full.
    fn record(&mut self, seq: u64, topic: Option<&Arc<str>>, private: bool, bytes: Bytes) {
        self.record_entry(Entry {
            seq,
            topic: topic.cloned(),
            also: None,
            alias: None,
            private,
            bytes,
        });
    }

    fn record_entry(&mut self, entry: Entry) {
        if self.capacity == 0 {
            return;
        }
        if self.events.len() == self.capacity {
            if let Some(alias) = self.events.pop_front().and_then(|e| e.alias) {
                self.aliases.remove(&alias);
            }
        }
        if let Some(alias) = &entry.alias {
            self.aliases.insert(alias.clone(), entry.seq);
        }
        self.events.push_back(entry);
    }

    fn parse(&self, id: &str) -> Result<u64, ResetReason> {
        if let Some(seq) = self.aliases.get(id) {
            return Ok(*seq);
        }
        // Plain digits only: no sign, no spaces, no leading-zero tricks that
        // would let two spellings name one event.
        if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ResetReason::Malformed);
        }
        if id.len() > 1 && id.starts_with('0') {
            return Err(ResetReason::Malformed);
        }
        let n: u64 = id.parse().map_err(|_| ResetReason::Malformed)?;
        if n < self.base {
            return Err(ResetReason::FromAnotherRun);
        }
        let seq = n - self.base;
        if seq > self.last_seq {
            return Err(ResetReason::Unknown);
        }
        Ok(seq)
    }
}

impl EventLog for MemoryLog {
    fn fill(&self) -> (usize, usize) {
        (self.events.len(), self.capacity)
    }

    fn append(
        &mut self,
        topic: Option<&Arc<str>>,
        name: Option<&str>,
        data: &str,
        private: bool,
    ) -> (String, Bytes) {
        self.last_seq += 1;
        let id = self.id(self.last_seq);
        let bytes = event::encode(&id, name, data);
        self.record(self.last_seq, topic, private, bytes.clone());
        (id, bytes)
    }

    /// Encodes the batch into one buffer; the history keeps a slice of it
    /// per event (no copy). A partly evicted batch keeps its buffer alive
    /// until its last retained event goes, so history memory stays within
    /// what it retains plus one batch.
    fn append_batch(
        &mut self,
        topic: Option<&Arc<str>>,
        events: &[BatchEvent],
        private: bool,
    ) -> (Vec<String>, Bytes) {
        let mut ids = Vec::with_capacity(events.len());
        let mut ends = Vec::with_capacity(events.len());
        let first_seq = self.last_seq + 1;
        let hint = events
            .iter()
            .map(|e| 51 + e.data.len() + e.name.as_ref().map_or(0, String::len))
            .sum();
        let mut out = BytesMut::with_capacity(hint);
        for e in events {
            self.last_seq += 1;
            let id = self.id(self.last_seq);
            event::encode_into(&mut out, &id, e.name.as_deref(), &e.data);
            ends.push(out.len());
            ids.push(id);
        }
        let whole = out.freeze();
        // Only the newest `capacity` of the batch can stay in the history.
        let keep = ends.len().min(self.capacity);
        let skip = ends.len() - keep;
        for (i, end) in ends.iter().enumerate().skip(skip) {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            self.record(first_seq + i as u64, topic, private, whole.slice(start..*end));
        }
        (ids, whole)
    }

    fn append_update(&mut self, update: &Update) -> Result<(String, Bytes), IdRefused> {
        if let Some(id) = update.id {
            // Unique within the history: an id that already names a
            // retained event (its publisher's or the hub's) would make
            // `Last-Event-ID` ambiguous. Digits only are the shape of this
            // log's own ids, so such an alias could shadow one it mints
            // later: taken by definition (mercure::check_id refuses them
            // first, with its own reason).
            if id.bytes().all(|b| b.is_ascii_digit()) || self.parse(id).is_ok() {
                return Err(IdRefused::Duplicate);
            }
        }
        self.last_seq += 1;
        let seq = self.last_seq;
        let id = update.id.map_or_else(|| self.id(seq), str::to_string);
        let bytes = event::encode_with_retry(&id, update.name, update.retry, update.data);
        let also = (update.topics.len() > 1).then(|| update.topics[1..].into());
        self.record_entry(Entry {
            seq,
            topic: update.topics.first().cloned(),
            also,
            alias: update.id.map(Box::from),
            private: update.private,
            bytes: bytes.clone(),
        });
        Ok((id, bytes))
    }

    fn replay_all(&self, wanted: &Wanted) -> Vec<Bytes> {
        self.events
            .iter()
            .filter(|e| e.wanted(wanted))
            .map(|e| e.bytes.clone())
            .collect()
    }

    fn replay(&self, last_id: &str, wanted: &Wanted) -> Result<Vec<Bytes>, ResetReason> {
        let seq = self.parse(last_id)?;
        // Every event after `seq` must still be here, or the client has a gap.
        let oldest = self.events.front().map_or(self.last_seq + 1, |e| e.seq);
        if seq + 1 < oldest {
            return Err(ResetReason::OlderThanHistory);
        }
        let skip = (seq + 1 - oldest) as usize;
        Ok(self
            .events
            .iter()
            .skip(skip)
            .filter(|e| e.wanted(wanted))
            .map(|e| e.bytes.clone())
            .collect())
    }

    fn newest_id(&self) -> String {
        self.id(self.last_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 1_000_000_000_000_000_000;

    fn log_with(capacity: usize, n: usize) -> MemoryLog {
        let mut log = MemoryLog::with_base(capacity, BASE);
        let topic: Arc<str> = Arc::from("t");
        for i in 0..n {
            log.append(Some(&topic), None, &i.to_string(), false);
        }
        log
    }

    fn all(_: Option<&str>, _: &[Arc<str>], _: bool) -> bool {
        true
    }

    #[test]
    fn ids_increase_as_numbers_and_as_strings() {
        let mut log = MemoryLog::new(4);
        let a = log.append(None, None, "a", false).0;
        let b = log.append(None, None, "b", false).0;
        assert!(b.parse::<u64>().unwrap() > a.parse::<u64>().unwrap());
        assert!(b > a && a.len() == b.len());
    }

    #[test]
    fn replay_returns_exactly_what_follows_the_id() {
        let log = log_with(10, 5);
        let got = log.replay(&(BASE + 3).to_string(), &all).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with(format!("id: {}\n", BASE + 4).as_bytes()));
        assert!(log.replay(&log.newest_id(), &all).unwrap().is_empty());
    }

    #[test]
    fn the_start_of_the_run_is_a_valid_id() {
        let log = log_with(10, 3);
        assert_eq!(log.replay(&BASE.to_string(), &all).unwrap().len(), 3);
    }

    #[test]
    fn ids_that_cannot_be_honoured_say_why() {
        let log = log_with(3, 10);
        let r = |id: &str| log.replay(id, &all).unwrap_err();
        assert_eq!(r("abc"), ResetReason::Malformed);
        assert_eq!(r(""), ResetReason::Malformed);
        assert_eq!(r("+5"), ResetReason::Malformed);
        assert_eq!(r(&format!("0{}", BASE + 9)), ResetReason::Malformed);
        assert_eq!(r("99999999999999999999999"), ResetReason::Malformed);
        assert_eq!(r(&(BASE - 1).to_string()), ResetReason::FromAnotherRun);
        assert_eq!(r(&(BASE + 11).to_string()), ResetReason::Unknown);
        // Retained: seqs 8, 9, 10. An id of 7 is fine (nothing lost), 6 is not.
        assert_eq!(log.replay(&(BASE + 7).to_string(), &all).unwrap().len(), 3);
        assert_eq!(r(&(BASE + 6).to_string()), ResetReason::OlderThanHistory);
    }

    #[test]
    fn a_batch_is_one_buffer_and_its_events_replay_one_by_one() {
        let mut log = MemoryLog::with_base(3, BASE);
        let batch: Vec<BatchEvent> = (0..5)
            .map(|i| BatchEvent {
                name: None,
                data: format!("e{i}"),
            })
            .collect();
        let (ids, whole) = log.append_batch(None, &batch, false);
        assert_eq!(ids.len(), 5);
        assert_eq!(ids[4], (BASE + 5).to_string());
        let expected: Vec<u8> = (1..=5u64)
            .flat_map(|i| event::encode(&(BASE + i).to_string(), None, &format!("e{}", i - 1)).to_vec())
            .collect();
        assert_eq!(&whole[..], &expected[..]);
        // History capacity 3: the last three, each its own event.
        let replay = log.replay(&(BASE + 2).to_string(), &all).unwrap();
        assert_eq!(replay.len(), 3);
        assert_eq!(replay[0], event::encode(&(BASE + 3).to_string(), None, "e2"));
        assert_eq!(
            log.replay(&(BASE + 1).to_string(), &all).unwrap_err(),
            ResetReason::OlderThanHistory
        );
    }

    #[test]
    fn replay_filters_by_topic() {
        let mut log = MemoryLog::with_base(10, BASE);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        log.append(Some(&a), None, "1", false);
        log.append(Some(&b), None, "2", false);
        log.append(None, None, "3", false);
        let only_a = log.replay(&BASE.to_string(), &|t, _, _| t == Some("a")).unwrap();
        assert_eq!(only_a.len(), 1);
    }

    #[test]
    fn replay_tells_the_filter_which_events_are_private() {
        let mut log = MemoryLog::with_base(10, BASE);
        let a: Arc<str> = Arc::from("a");
        log.append(Some(&a), None, "public", false);
        log.append(Some(&a), None, "private", true);
        let batch = [BatchEvent {
            name: None,
            data: "p2".into(),
        }];
        log.append_batch(Some(&a), &batch, true);
        let public = log.replay(&BASE.to_string(), &|_, _, private| !private).unwrap();
        assert_eq!(public.len(), 1);
        assert_eq!(log.replay(&BASE.to_string(), &all).unwrap().len(), 3);
    }

    fn update<'a>(topics: &'a [Arc<str>], id: Option<&'a str>, data: &'a str) -> Update<'a> {
        Update {
            topics,
            name: None,
            data,
            id,
            retry: None,
            private: false,
        }
    }

    #[test]
    fn a_publishers_id_names_its_event_until_it_leaves_the_history() {
        let mut log = MemoryLog::with_base(2, BASE);
        let t: [Arc<str>; 2] = [Arc::from("a"), Arc::from("b")];
        assert_eq!(log.append_update(&update(&t, Some("x"), "1")).unwrap().0, "x");
        assert_eq!(
            log.append_update(&update(&t, Some("x"), "dup")).unwrap_err(),
            IdRefused::Duplicate
        );
        let hub_id = log.append_update(&update(&t, None, "2")).unwrap().0;
        assert_eq!(
            log.append_update(&update(&t, Some(&hub_id), "3")).unwrap_err(),
            IdRefused::Duplicate
        );
        // An id the log has yet to give is taken too.
        let future = (BASE + 100).to_string();
        assert_eq!(
            log.append_update(&update(&t, Some(&future), "4")).unwrap_err(),
            IdRefused::Duplicate
        );
        // Replay from the alias; the alternate topic is handed to the filter.
        let got = log.replay("x", &|_, also, _| also.len() == 1).unwrap();
        assert_eq!(got.len(), 1);
        // Two more events push "x" out: it is unknown, and free again.
        log.append(None, None, "3", false);
        log.append(None, None, "4", false);
        assert_eq!(log.replay("x", &all).unwrap_err(), ResetReason::Malformed);
        assert!(log.append_update(&update(&t, Some("x"), "again")).is_ok());
    }

    #[test]
    fn zero_history_keeps_nothing_but_still_knows_the_newest_id() {
        let log = log_with(0, 4);
        assert!(log.replay(&log.newest_id(), &all).unwrap().is_empty());
        assert_eq!(
            log.replay(&(BASE + 3).to_string(), &all).unwrap_err(),
            ResetReason::OlderThanHistory
        );
    }
}
