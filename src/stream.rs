//! The response bodies: the per-subscriber event stream fed by its channel,
//! and the small fixed bodies of every other answer.
//!
//! The event stream never copies event bytes. A frame is either one shared
//! `Bytes` or, when several events are already waiting, a [`Chunk::Many`]
//! holding them all; its `chunks_vectored` hands them to the socket in one
//! `writev` (hyper's HTTP/1 writer asks for up to 64 slices at a time), and
//! HTTP/1.1 frames them as one chunk instead of one per event.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

use crate::access_log::StreamLog;
pub use crate::channel::{Chunk, CloseReason};
use crate::hub::Subscription;
use crate::stall::{self, Attached};

/// Most events handed over in one frame. Bounds the per-frame vector and
/// keeps one subscriber's burst from monopolising its connection task.
const MAX_BATCH: usize = 64;

/// When a stream ends by itself: the timer, the farewell sent last (taken
/// when the timer fires), and the reason the access log gives.
type Lifetime = (Pin<Box<Sleep>>, Bytes, CloseReason);

/// A subscriber's response body: what is owed first (the `retry:` field,
/// replay or `reset`), then whatever its channel delivers, until the hub
/// ends it. Dropping it (the client went away) unregisters the subscriber.
pub struct EventStream {
    /// `subscription.initial` holds what is owed first (the `retry:` field,
    /// then replay or `reset`); it goes out as one frame and is then left
    /// empty and unallocated for the rest of the stream's life.
    subscription: Subscription,
    /// `--max-stream-lifetime`: when the timer fires, the farewell (a
    /// `retry:` field) is sent and the stream ends. Boxed, and absent unless
    /// configured, so it costs an idle stream one word.
    lifetime: Option<Box<Lifetime>>,
    /// The access log's entry and counts, written when the stream is
    /// dropped; absent (one word) with the access log off.
    log: Option<Box<StreamLog>>,
    /// Over HTTP/2, counts the stream on its connection, so a connection
    /// whose streams all ended stalled is closed (see [`crate::stall`]).
    _stall: Option<Attached>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.finish(self.close_reason());
        }
    }
}

impl EventStream {
    pub fn new(opening: Bytes, mut subscription: Subscription) -> EventStream {
        subscription.initial.insert(0, opening);
        // Over HTTP/2 the hub's heartbeat ends the stream's task if it
        // stalls behind flow control, which this body could not see
        // (hyper stops polling it).
        let stall = match (stall::for_new_stream(), subscription.live.as_mut()) {
            (Some(switch), Some(rx)) => {
                let attached = switch.attach();
                rx.watch_stall(switch);
                Some(attached)
            }
            _ => None,
        };
        EventStream {
            subscription,
            lifetime: None,
            log: None,
            _stall: stall,
        }
    }

    /// Records, for the access log, that the peer was found dead.
    pub fn peer_died(&mut self) {
        if let Some(log) = self.log.as_mut() {
            log.dead = true;
        }
    }

    /// Logs the stream's access line when it ends.
    pub fn set_log(&mut self, log: StreamLog) {
        self.log = Some(Box::new(log));
    }

    /// Counts a frame for the access log: a few additions, no atomics.
    fn counted(&mut self, chunk: Chunk) -> Poll<Option<Result<Frame<Chunk>, Infallible>>> {
        if let Some(log) = self.log.as_mut() {
            match &chunk {
                Chunk::One(b) => log.count(b),
                Chunk::Many(parts) => parts.iter().for_each(|b| log.count(b)),
            }
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    /// Why the server ended the stream, if it did: the hub's reason, or the
    /// lifetime. `None` while it runs, or when the client went away.
    pub fn close_reason(&self) -> Option<CloseReason> {
        // The farewell is taken when the lifetime fires.
        if let Some(l) = self.lifetime.as_ref().filter(|l| l.1.is_empty()) {
            return Some(l.2);
        }
        self.subscription.live.as_ref().and_then(|rx| rx.close_reason())
    }

    /// True if the stream ended because the server is shutting down.
    pub fn ended_by_shutdown(&self) -> bool {
        self.subscription.hub_shutting_down()
    }

    /// Ends the stream after `lifetime`, sending `farewell` last.
    pub fn with_lifetime(mut self, lifetime: Duration, farewell: Bytes) -> EventStream {
        self.lifetime = Some(Box::new((
            Box::pin(tokio::time::sleep(lifetime)),
            farewell,
            CloseReason::Lifetime,
        )));
        self
    }

    /// Ends the stream when its token expires (or at `lifetime`, if that
    /// is sooner), sending `farewell` last.
    pub fn with_expiry(mut self, left: Duration, lifetime: Option<Duration>, farewell: Bytes) -> EventStream {
        let (after, reason) = match lifetime {
            Some(l) if l < left => (l, CloseReason::Lifetime),
            _ => (left, CloseReason::TokenExpired),
        };
        self.lifetime = Some(Box::new((Box::pin(tokio::time::sleep(after)), farewell, reason)));
        self
    }
}

impl Body for EventStream {
    type Data = Chunk;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunk>, Infallible>>> {
        let this = &mut *self;
        if !this.subscription.initial.is_empty() {
            // Reuses the vector's buffer; the writers take 64 slices at a time.
            let parts = VecDeque::from(std::mem::take(&mut this.subscription.initial));
            return this.counted(Chunk::Many(parts));
        }
        let Some(rx) = this.subscription.live.as_mut() else {
            return Poll::Ready(None);
        };

        match rx.poll_recv(cx, MAX_BATCH) {
            Poll::Ready(Some(chunk)) => this.counted(chunk),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                // The lifetime is checked only with the queue empty, so
                // nothing already queued is cut off.
                if let Some(lifetime) = this.lifetime.as_mut() {
                    if lifetime.0.as_mut().poll(cx).is_ready() {
                        let farewell = std::mem::take(&mut lifetime.1);
                        this.subscription.live = None;
                        return this.counted(Chunk::One(farewell));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }
}

/// Every response body ssehub sends.
pub enum ResponseBody {
    /// A fixed answer (possibly empty).
    Full(Option<Bytes>),
    Events(Box<EventStream>),
}

impl ResponseBody {
    pub fn empty() -> Self {
        ResponseBody::Full(None)
    }

    pub fn text(text: impl Into<Bytes>) -> Self {
        ResponseBody::Full(Some(text.into()))
    }
}

impl Body for ResponseBody {
    type Data = Chunk;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Chunk>, Infallible>>> {
        match self.get_mut() {
            ResponseBody::Full(data) => Poll::Ready(data.take().map(|b| Ok(Frame::data(Chunk::One(b))))),
            ResponseBody::Events(stream) => Pin::new(&mut **stream).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(data) => data.is_none(),
            ResponseBody::Events(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Events(_) => SizeHint::default(),
        }
    }
}
