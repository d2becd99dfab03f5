//! The per-subscriber queue between the hub and the subscriber's body.
//!
//! The queue is bounded by bytes, not by items: what matters is whether a
//! subscriber can still catch up, and how much memory it pins. A burst the
//! server itself needs time to write (thousands of small events to
//! thousands of subscribers) fits easily; a subscriber that really stopped
//! reading runs into the cap (or the socket's write deadline) and is dropped.
//! The items are reference-counted slices of bytes encoded once, so the cap
//! counts each item's length plus the slot it takes ([`SLOT_BYTES`]): the
//! memory one subscriber can pin on its own is bounded by it.
//!
//! Why not `tokio::sync::mpsc`: an idle stream should cost next to nothing,
//! and tokio's bounded channel allocates about 1.5 KiB up front (its first
//! block of 32 slots and its shared state). This queue is a `VecDeque` that
//! grows only when events wait, behind a mutex that only the hub (under its
//! own lock, so one sender at a time) and the one receiver take. It also
//! gives the hub what it needs and mpsc lacks: closing a subscriber's queue
//! from the sending side while clones of the sender exist, and draining a
//! whole batch under one lock.

use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::stall::Switch;

/// The data of one body frame.
#[derive(Debug)]
pub enum Chunk {
    One(Bytes),
    /// Several events sent together; consumed from the front.
    Many(VecDeque<Bytes>),
}

impl Buf for Chunk {
    fn remaining(&self) -> usize {
        match self {
            Chunk::One(b) => b.len(),
            Chunk::Many(parts) => parts.iter().map(Bytes::len).sum(),
        }
    }

    fn chunk(&self) -> &[u8] {
        match self {
            Chunk::One(b) => b,
            Chunk::Many(parts) => parts.front().map_or(&[], |b| &b[..]),
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        match self {
            Chunk::One(b) => b.advance(cnt),
            Chunk::Many(parts) => {
                while cnt > 0 {
                    let Some(front) = parts.front_mut() else {
                        return;
                    };
                    if cnt < front.len() {
                        front.advance(cnt);
                        return;
                    }
                    cnt -= front.len();
                    parts.pop_front();
                }
                // Keep `chunk()` non-empty while anything remains.
                while parts.front().is_some_and(Bytes::is_empty) {
                    parts.pop_front();
                }
            }
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        match self {
            Chunk::One(b) => {
                if dst.is_empty() || b.is_empty() {
                    return 0;
                }
                dst[0] = IoSlice::new(b);
                1
            }
            Chunk::Many(parts) => {
                let mut n = 0;
                for (slot, part) in dst.iter_mut().zip(parts.iter().filter(|p| !p.is_empty())) {
                    *slot = IoSlice::new(part);
                    n += 1;
                }
                n
            }
        }
    }
}

/// What one queued item costs against the cap beyond its bytes: the
/// `Bytes` handle in the queue's ring.
pub const SLOT_BYTES: usize = std::mem::size_of::<Bytes>();

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The subscriber has `capacity` bytes waiting already.
    Full,
    /// The receiver is gone, or the queue was closed.
    Closed,
    /// Items waited [`STALL_TICKS`] heartbeats with none taken: an HTTP/2
    /// stream stuck behind flow control. The queue is now closed and empty.
    Stalled,
}

/// Heartbeats in a row at which items wait untaken before a watched queue
/// counts as stalled. The first of them may come just after the items did,
/// so three means they waited at least two heartbeats (the socket's write
/// deadline) and at most three.
pub const STALL_TICKS: u8 = 3;

/// Why the sending side closed a queue, for the stream's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The subscriber fell more than its backlog cap behind.
    Slow,
    /// Every topic of the subscriber was closed.
    TopicsClosed,
    /// The server is shutting down.
    Shutdown,
    /// The stream reached `--max-stream-lifetime` (set by the stream itself).
    Lifetime,
    /// The subscriber's token expired (set by the stream itself).
    TokenExpired,
    /// The subscriber unregistered itself (its client went away).
    Unsubscribed,
    /// The shared log lost events, and the stream's protocol (Mercure)
    /// has no `reset` to say so: it ends, and the client comes back.
    LogLost,
}

struct Shared {
    state: Mutex<State>,
    /// Most bytes (with [`SLOT_BYTES`] per item) waiting at once.
    capacity: usize,
}

struct State {
    items: VecDeque<Bytes>,
    /// What `items` costs against the capacity.
    queued: usize,
    /// The receiver's task, when it waits for an item.
    waker: Option<Waker>,
    /// No more items will be accepted; the receiver ends after draining.
    closed: bool,
    /// Why the sender closed the queue, if it did.
    reason: Option<CloseReason>,
    /// For an HTTP/2 stream, what ends its task when it stalls; `None`
    /// leaves stalls to the socket's write deadline (HTTP/1.1).
    switch: Option<Arc<Switch>>,
    /// The receiver took something since the last heartbeat.
    taken: bool,
    /// Heartbeats in a row at which items waited and none had been taken.
    idle_ticks: u8,
}

/// A queue of at most `capacity` bytes: the sending half (cloneable).
#[derive(Clone)]
pub struct Sender(Arc<Shared>);

/// The receiving half; dropping it closes the queue.
pub struct Receiver(Arc<Shared>);

pub fn channel(capacity: usize) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            queued: 0,
            waker: None,
            closed: false,
            reason: None,
            switch: None,
            taken: false,
            idle_ticks: 0,
        }),
        capacity,
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; recover rather than spread a poison.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sender {
    /// Queues `item` unless the queue is closed, or the bytes waiting would
    /// go over the capacity. An empty queue takes any item, so one batch
    /// larger than the cap still reaches a subscriber that keeps up. Never
    /// waits.
    pub fn try_send(&self, item: Bytes) -> Result<(), SendError> {
        let mut state = self.0.lock();
        if state.closed {
            return Err(SendError::Closed);
        }
        let cost = item.len() + SLOT_BYTES;
        if !state.items.is_empty() && state.queued + cost > self.0.capacity {
            return Err(SendError::Full);
        }
        state.queued += cost;
        state.items.push_back(item);
        let waker = state.waker.take();
        drop(state);
        // Wake outside the lock, so the woken task never finds it held.
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// The heartbeat's send: first, for a watched (HTTP/2) queue, the stall
    /// check; a stalled queue is closed, emptied (its bytes freed now) and
    /// its stream's task ended. Then as [`try_send`](Self::try_send).
    pub fn heartbeat(&self, item: Bytes) -> Result<(), SendError> {
        let mut state = self.0.lock();
        if state.switch.is_some() && !state.closed {
            if !state.items.is_empty() && !state.taken {
                state.idle_ticks += 1;
            } else {
                state.idle_ticks = 0;
            }
            state.taken = false;
            if state.idle_ticks >= STALL_TICKS {
                state.closed = true;
                state.reason = Some(CloseReason::Slow);
                state.items = VecDeque::new();
                state.queued = 0;
                let switch = state.switch.take();
                let waker = state.waker.take();
                drop(state);
                if let Some(s) = switch {
                    s.fire();
                }
                if let Some(w) = waker {
                    w.wake();
                }
                return Err(SendError::Stalled);
            }
        }
        drop(state);
        self.try_send(item)
    }

    /// Closes the queue: the receiver gets what is queued, then the end.
    pub fn close(&self, reason: CloseReason) {
        let mut state = self.0.lock();
        if !state.closed {
            state.reason = Some(reason);
        }
        state.closed = true;
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Receiver {
    /// Takes what waits, up to `max` items, under one lock: a single item
    /// as it is (the common case, no allocation), several as a batch.
    /// `Ready(None)` is the end: closed and drained.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Option<Chunk>> {
        let mut state = self.0.lock();
        match state.items.len() {
            0 if state.closed => Poll::Ready(None),
            0 => {
                match &mut state.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            1 => {
                state.taken = true;
                let item = state.items.pop_front();
                state.queued = 0;
                if state.items.capacity() > 16 {
                    state.items = VecDeque::new();
                }
                Poll::Ready(item.map(Chunk::One))
            }
            len => {
                state.taken = true;
                let n = len.min(max);
                let batch: VecDeque<Bytes> = state.items.drain(..n).collect();
                let taken: usize = batch.iter().map(|b| b.len() + SLOT_BYTES).sum();
                state.queued -= taken;
                if state.items.is_empty() && state.items.capacity() > 16 {
                    state.items = VecDeque::new();
                }
                Poll::Ready(Some(Chunk::Many(batch)))
            }
        }
    }

    /// Ends `switch`'s task if this queue stalls (see [`Sender::heartbeat`]).
    pub fn watch_stall(&mut self, switch: Arc<Switch>) {
        self.0.lock().switch = Some(switch);
    }

    /// Why the sending side closed the queue, if it did (the receiver
    /// dropping it is not a reason: the client went away).
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.0.lock().reason
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        // Release the queued bytes now, not when the last sender goes.
        state.items = VecDeque::new();
        state.queued = 0;
        state.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn a_watched_queue_untaken_for_three_heartbeats_is_stalled_emptied_and_its_switch_fired() {
        let (tx, mut rx) = channel(1 << 20);
        let switch = Switch::detached();
        rx.watch_stall(switch.clone());
        assert_eq!(tx.try_send(b("event")), Ok(()));
        assert_eq!(tx.heartbeat(b(":\n")), Ok(()));
        assert_eq!(tx.heartbeat(b(":\n")), Ok(()));
        assert!(!switch.is_fired());
        assert_eq!(tx.heartbeat(b(":\n")), Err(SendError::Stalled));
        assert!(switch.is_fired());
        assert_eq!(rx.close_reason(), Some(CloseReason::Slow));
        // Emptied at once: the receiver finds the end, not the backlog.
        assert!(matches!(rx.poll_recv(&mut cx(), 64), Poll::Ready(None)));
    }

    #[test]
    fn a_watched_queue_that_is_read_between_heartbeats_never_stalls() {
        let (tx, mut rx) = channel(1 << 20);
        let switch = Switch::detached();
        rx.watch_stall(switch.clone());
        for _ in 0..10 {
            assert_eq!(tx.heartbeat(b(":\n")), Ok(()));
            assert!(rx.poll_recv(&mut cx(), 64).is_ready());
        }
        // An unwatched (HTTP/1.1) queue is left to the write deadline.
        let (tx, _rx) = channel(1 << 20);
        for _ in 0..10 {
            assert_eq!(tx.heartbeat(b(":\n")), Ok(()));
        }
        assert!(!switch.is_fired());
    }

    #[test]
    fn refuses_past_capacity_in_bytes_and_after_close() {
        let (tx, rx) = channel(2 * (SLOT_BYTES + 1));
        assert_eq!(tx.try_send(b("a")), Ok(()));
        assert_eq!(tx.try_send(b("b")), Ok(()));
        assert_eq!(tx.try_send(b("c")), Err(SendError::Full));
        tx.close(CloseReason::Slow);
        assert_eq!(tx.try_send(b("d")), Err(SendError::Closed));
        assert_eq!(rx.close_reason(), Some(CloseReason::Slow));
    }

    #[test]
    fn an_empty_queue_takes_an_item_larger_than_the_cap() {
        let (tx, mut rx) = channel(8);
        assert_eq!(tx.try_send(b("a whole batch, larger than the cap")), Ok(()));
        assert_eq!(tx.try_send(b("x")), Err(SendError::Full));
        assert!(rx.poll_recv(&mut cx(), 64).is_ready());
        assert_eq!(tx.try_send(b("the next one")), Ok(()));
    }

    #[test]
    fn draining_frees_capacity() {
        let (tx, mut rx) = channel(3 * (SLOT_BYTES + 1));
        for s in ["a", "b", "c"] {
            tx.try_send(b(s)).unwrap();
        }
        assert_eq!(tx.try_send(b("d")), Err(SendError::Full));
        assert!(matches!(
            rx.poll_recv(&mut cx(), 2),
            Poll::Ready(Some(Chunk::Many(_)))
        ));
        tx.try_send(b("d")).unwrap();
        tx.try_send(b("e")).unwrap();
        assert_eq!(tx.try_send(b("f")), Err(SendError::Full));
    }

    #[test]
    fn one_item_is_handed_on_alone_and_several_as_a_batch() {
        let (tx, mut rx) = channel(1000);
        assert!(rx.poll_recv(&mut cx(), 64).is_pending());
        tx.try_send(b("a")).unwrap();
        assert!(matches!(
            rx.poll_recv(&mut cx(), 64),
            Poll::Ready(Some(Chunk::One(_)))
        ));
        for s in ["b", "c", "d"] {
            tx.try_send(b(s)).unwrap();
        }
        match rx.poll_recv(&mut cx(), 2) {
            Poll::Ready(Some(Chunk::Many(batch))) => assert_eq!(batch, [b("b"), b("c")]),
            _ => panic!("expected a batch"),
        }
        assert!(matches!(
            rx.poll_recv(&mut cx(), 2),
            Poll::Ready(Some(Chunk::One(_)))
        ));
    }

    #[test]
    fn closing_delivers_what_is_queued_then_ends() {
        let (tx, mut rx) = channel(1000);
        tx.try_send(b("a")).unwrap();
        tx.close(CloseReason::Shutdown);
        assert!(matches!(
            rx.poll_recv(&mut cx(), 64),
            Poll::Ready(Some(Chunk::One(_)))
        ));
        assert!(matches!(rx.poll_recv(&mut cx(), 64), Poll::Ready(None)));
    }

    #[test]
    fn dropping_the_receiver_closes_the_queue() {
        let (tx, rx) = channel(1000);
        drop(rx);
        assert_eq!(tx.try_send(b("a")), Err(SendError::Closed));
    }

    #[test]
    fn many_hands_every_part_to_writev_and_advances_across_parts() {
        let mut c = Chunk::Many(VecDeque::from([
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cde"),
            Bytes::from_static(b"f"),
        ]));
        assert_eq!(c.remaining(), 6);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(c.chunks_vectored(&mut slices), 3);
        c.advance(3);
        assert_eq!(c.chunk(), b"de");
        c.advance(2);
        assert_eq!(c.chunk(), b"f");
        c.advance(1);
        assert_eq!(c.remaining(), 0);
    }

    #[test]
    fn advancing_a_whole_part_leaves_the_next_one_in_front() {
        let mut c = Chunk::Many(VecDeque::from([
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cd"),
        ]));
        c.advance(2);
        assert_eq!(c.chunk(), b"cd");
        assert_eq!(c.copy_to_bytes(2), Bytes::from_static(b"cd"));
    }
}
