//! The response bodies: the per-subscriber event stream fed by its channel,
//! and the small fixed bodies of every other answer.
//!
//! The event stream never copies event bytes. A frame is either one shared
//! `Bytes` or, when several events are already waiting, a [`Chunk::Many`]
//! holding them all; its `chunks_vectored` hands them to the socket in one
//! `writev` (hyper's HTTP/1 writer asks for up to 64 slices at a time), and
//! HTTP/1.1 frames them as one chunk instead of one per event.

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

use crate::hub::Subscription;

/// Most events handed over in one frame. Bounds the per-frame vector and
/// keeps one subscriber's burst from monopolising its connection task.
const MAX_BATCH: usize = 64;

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

/// A subscriber's response body: what is owed first (the `retry:` field,
/// replay or `reset`), then whatever its channel delivers, until the hub
/// ends it. Dropping it (the client went away) unregisters the subscriber.
pub struct EventStream {
    initial: std::vec::IntoIter<Bytes>,
    subscription: Subscription,
    /// `--max-stream-lifetime`: when the timer fires, the farewell (a
    /// `retry:` field) is sent and the stream ends. Boxed, and absent unless
    /// configured, so it costs an idle stream one word.
    lifetime: Option<Box<(Pin<Box<Sleep>>, Bytes)>>,
}

impl EventStream {
    pub fn new(opening: Bytes, mut subscription: Subscription) -> EventStream {
        let mut initial = Vec::with_capacity(1 + subscription.initial.len());
        initial.push(opening);
        initial.append(&mut subscription.initial);
        EventStream {
            initial: initial.into_iter(),
            subscription,
            lifetime: None,
        }
    }

    /// Ends the stream after `lifetime`, sending `farewell` last.
    pub fn with_lifetime(mut self, lifetime: Duration, farewell: Bytes) -> EventStream {
        self.lifetime = Some(Box::new((Box::pin(tokio::time::sleep(lifetime)), farewell)));
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
        if this.initial.len() > 0 {
            let parts: VecDeque<Bytes> = this.initial.by_ref().take(MAX_BATCH).collect();
            return Poll::Ready(Some(Ok(Frame::data(Chunk::Many(parts)))));
        }
        let Some(rx) = this.subscription.live.as_mut() else {
            return Poll::Ready(None);
        };

        let first = match rx.poll_recv(cx) {
            Poll::Ready(Some(b)) => b,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {
                // The lifetime is checked only with the queue empty, so
                // nothing already queued is cut off.
                if let Some(lifetime) = this.lifetime.as_mut() {
                    if lifetime.0.as_mut().poll(cx).is_ready() {
                        let farewell = std::mem::take(&mut lifetime.1);
                        this.subscription.live = None;
                        return Poll::Ready(Some(Ok(Frame::data(Chunk::One(farewell)))));
                    }
                }
                return Poll::Pending;
            }
        };
        // Only allocate a batch when a second event is already waiting; the
        // common case (one event at a time) hands the shared bytes straight on.
        let Ok(second) = rx.try_recv() else {
            return Poll::Ready(Some(Ok(Frame::data(Chunk::One(first)))));
        };
        let mut parts = VecDeque::with_capacity((rx.len() + 2).min(MAX_BATCH));
        parts.push_back(first);
        parts.push_back(second);
        while parts.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(b) => parts.push_back(b),
                Err(_) => break,
            }
        }
        Poll::Ready(Some(Ok(Frame::data(Chunk::Many(parts)))))
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

#[cfg(test)]
mod tests {
    use super::*;

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
