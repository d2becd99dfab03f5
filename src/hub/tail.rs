//! The local tail of a shared log: what a node keeps of the event log that
//! several nodes share (Redis Streams, see [`crate::redis_log`]), so replay
//! and "replay, then live" stay one step under the hub's lock, exactly as
//! with the in-memory log.
//!
//! The shared log gives every entry its id (`MS-SEQ`, Redis's stream id) in
//! one total order that all nodes read; this tail records them in that order
//! and never invents one. A client sees `EPOCH-MS-SEQ`: the epoch names one
//! incarnation of the shared log (it changes when Redis comes back without
//! its data), so an id from a log that is gone is told apart from an id that
//! is merely old, and no node ever replays a different event under an old id.

use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use super::log::{EventLog, ResetReason, Wanted};
use crate::event;

/// A shared log's id: Redis's `MS-SEQ`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// Parses `MS-SEQ` strictly: digits only, no leading zeros (so no two
    /// spellings name one entry).
    pub fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        Some(StreamId {
            ms: digits(ms)?,
            seq: digits(seq)?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

fn digits(s: &str) -> Option<u64> {
    let canonical = !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !canonical || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// One retained event.
struct Entry {
    id: StreamId,
    topic: Option<Arc<str>>,
    /// Published with `private=1`: replayed only to authorised subscribers.
    private: bool,
    bytes: Bytes,
}

/// The last `capacity` events of the shared log, as this node read them.
pub struct TailLog {
    /// The shared log's incarnation; `None` until the node has reached it
    /// (until then no `Last-Event-ID` can be judged).
    epoch: Option<Arc<str>>,
    capacity: usize,
    events: VecDeque<Entry>,
    /// Every event after this id is retained here: a client whose id is
    /// older may have missed some.
    floor: StreamId,
    /// The newest id read (an event's or a control entry's).
    newest: StreamId,
}

impl TailLog {
    pub fn new(capacity: usize) -> TailLog {
        TailLog {
            epoch: None,
            capacity,
            events: VecDeque::new(),
            floor: StreamId::default(),
            newest: StreamId::default(),
        }
    }

    /// The epoch this tail mirrors, once known.
    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// The newest id read, to resume reading right after it.
    pub fn newest(&self) -> StreamId {
        self.newest
    }

    /// Starts over on `epoch`: nothing retained, and every event after
    /// `floor` will be recorded. Called when the node first reaches the
    /// shared log, and when the log it knew is gone or has a hole.
    pub fn rebase(&mut self, epoch: &str, floor: StreamId) {
        self.epoch = Some(Arc::from(epoch));
        self.events.clear();
        self.floor = floor;
        self.newest = floor;
    }

    /// Records an event read from the shared log (ids only grow; an older
    /// one is a duplicate read and is ignored). Returns its encoding.
    pub fn record(
        &mut self,
        id: StreamId,
        topic: Option<&Arc<str>>,
        name: Option<&str>,
        data: &str,
        private: bool,
    ) -> Option<Bytes> {
        if id <= self.newest {
            return None;
        }
        let bytes = event::encode(&self.client_id(id), name, data);
        self.newest = id;
        if self.capacity == 0 {
            self.floor = id;
            return Some(bytes);
        }
        if self.events.len() == self.capacity {
            if let Some(old) = self.events.pop_front() {
                self.floor = old.id;
            }
        }
        self.events.push_back(Entry {
            id,
            topic: topic.cloned(),
            private,
            bytes: bytes.clone(),
        });
        Some(bytes)
    }

    /// Notes a control entry (a topic closed): not replayed, but its id is
    /// the newest read.
    pub fn note(&mut self, id: StreamId) -> bool {
        if id <= self.newest {
            return false;
        }
        self.newest = id;
        true
    }

    /// The id a client sent, if it names a place in this log that this
    /// tail has not read yet: another node has read further (this one is
    /// behind, or just reconnected). Such a client is owed what follows
    /// it once this tail gets there, not a `reset`.
    pub fn ahead(&self, last_id: &str) -> Option<StreamId> {
        self.parse(last_id).ok().filter(|id| *id > self.newest)
    }

    /// The retained events after `id` that `wanted` accepts, for a client
    /// whose id is within the tail (not older than its floor).
    pub fn replay_after(&self, id: StreamId, wanted: &Wanted) -> Vec<Bytes> {
        let start = self.events.partition_point(|e| e.id <= id);
        self.events
            .iter()
            .skip(start)
            .filter(|e| wanted(e.topic.as_deref(), &[], e.private))
            .map(|e| e.bytes.clone())
            .collect()
    }

    /// What clients see: `EPOCH-MS-SEQ`.
    pub fn client_id(&self, id: StreamId) -> String {
        format!("{}-{id}", self.epoch.as_deref().unwrap_or("0"))
    }

    fn parse(&self, id: &str) -> Result<StreamId, ResetReason> {
        let (epoch, rest) = id.split_once('-').ok_or(ResetReason::Malformed)?;
        let stream_id = StreamId::parse(rest).ok_or(ResetReason::Malformed)?;
        if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ResetReason::Malformed);
        }
        if self.epoch.as_deref() != Some(epoch) {
            return Err(ResetReason::FromAnotherRun);
        }
        Ok(stream_id)
    }
}

impl EventLog for TailLog {
    fn fill(&self) -> (usize, usize) {
        (self.events.len(), self.capacity)
    }

    /// Only a tail that no shared log feeds (tests, or a hub used on its
    /// own) takes events this way: the next id after the newest.
    fn append(
        &mut self,
        topic: Option<&Arc<str>>,
        name: Option<&str>,
        data: &str,
        private: bool,
    ) -> (String, Bytes) {
        let id = StreamId {
            ms: self.newest.ms,
            seq: self.newest.seq + 1,
        };
        let bytes = self.record(id, topic, name, data, private).unwrap_or_default();
        (self.client_id(id), bytes)
    }

    fn replay_all(&self, wanted: &Wanted) -> Vec<Bytes> {
        self.events
            .iter()
            .filter(|e| wanted(e.topic.as_deref(), &[], e.private))
            .map(|e| e.bytes.clone())
            .collect()
    }

    fn replay(&self, last_id: &str, wanted: &Wanted) -> Result<Vec<Bytes>, ResetReason> {
        let id = self.parse(last_id)?;
        if id > self.newest {
            return Err(ResetReason::Unknown);
        }
        if id < self.floor {
            return Err(ResetReason::OlderThanHistory);
        }
        Ok(self.replay_after(id, wanted))
    }

    fn newest_id(&self) -> String {
        self.client_id(self.newest)
    }

    fn ready(&self) -> bool {
        self.epoch.is_some()
    }

    fn as_tail(&mut self) -> Option<&mut TailLog> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    fn all(_: Option<&str>, _: &[Arc<str>], _: bool) -> bool {
        true
    }

    fn tail_with(capacity: usize, n: u64) -> TailLog {
        let mut tail = TailLog::new(capacity);
        tail.rebase("ep1", StreamId::default());
        for i in 1..=n {
            tail.record(id(100, i), None, None, &i.to_string(), false);
        }
        tail
    }

    #[test]
    fn stream_ids_parse_strictly_and_order_as_redis_does() {
        assert_eq!(StreamId::parse("5-0"), Some(id(5, 0)));
        for bad in ["5", "-1", "5-", "05-1", "5-01", "a-1", "5-1-2", " 5-1"] {
            assert_eq!(StreamId::parse(bad), None, "{bad}");
        }
        assert!(id(5, 9) < id(6, 0));
    }

    #[test]
    fn replay_returns_what_follows_the_id_in_the_same_epoch() {
        let tail = tail_with(10, 5);
        let got = tail.replay("ep1-100-3", &all).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with(b"id: ep1-100-4\n"));
        assert!(tail.replay(&tail.newest_id(), &all).unwrap().is_empty());
    }

    #[test]
    fn ids_that_cannot_be_honoured_say_why() {
        let tail = tail_with(3, 10);
        let r = |i: &str| tail.replay(i, &all).unwrap_err();
        assert_eq!(r("ep2-100-9"), ResetReason::FromAnotherRun);
        assert_eq!(r("ep1-100-11"), ResetReason::Unknown);
        assert_eq!(r("ep1-100-6"), ResetReason::OlderThanHistory);
        assert_eq!(r("ep1-100"), ResetReason::Malformed);
        assert_eq!(r("1234"), ResetReason::Malformed);
        // Retained: 8, 9, 10; 7 was the last one evicted, so from 7 nothing is missed.
        assert_eq!(tail.replay("ep1-100-7", &all).unwrap().len(), 3);
    }

    #[test]
    fn an_id_of_this_log_past_the_tail_is_ahead_not_unknown_elsewhere() {
        let tail = tail_with(10, 5);
        assert_eq!(tail.ahead("ep1-100-7"), Some(id(100, 7)));
        assert_eq!(tail.ahead("ep1-100-5"), None, "the newest is not ahead");
        assert_eq!(tail.ahead("ep2-100-7"), None, "another epoch is not ahead");
        assert_eq!(tail.ahead("ep1-100"), None);
        assert_eq!(tail.replay_after(id(100, 3), &all).len(), 2);
    }

    #[test]
    fn duplicates_and_older_entries_are_ignored() {
        let mut tail = tail_with(10, 3);
        assert!(tail.record(id(100, 2), None, None, "again", false).is_none());
        assert!(!tail.note(id(100, 3)));
        assert_eq!(tail.replay("ep1-100-0", &all).unwrap().len(), 3);
    }

    #[test]
    fn a_rebase_forgets_the_old_log() {
        let mut tail = tail_with(10, 3);
        tail.rebase("ep2", id(200, 0));
        assert_eq!(
            tail.replay("ep1-100-3", &all).unwrap_err(),
            ResetReason::FromAnotherRun
        );
        assert!(tail.replay("ep2-200-0", &all).unwrap().is_empty());
    }

    #[test]
    fn private_events_are_replayed_only_where_the_filter_allows() {
        let mut tail = tail_with(10, 0);
        tail.record(id(100, 1), None, None, "public", false);
        tail.record(id(100, 2), None, None, "secret", true);
        assert_eq!(
            tail.replay("ep1-0-0", &|_, _, private| !private).unwrap().len(),
            1
        );
        assert_eq!(tail.replay("ep1-0-0", &all).unwrap().len(), 2);
    }

    #[test]
    fn not_ready_until_an_epoch_is_known() {
        let tail = TailLog::new(4);
        assert!(!tail.ready());
        assert!(tail_with(4, 1).ready());
    }
}
