//! HTTP/2 streams stuck behind flow control, and how they are ended.
//!
//! hyper's h2 writer polls a body only while the stream has send capacity:
//! a client that never opens its window (or lets h2's send buffer fill)
//! leaves our body unpolled, so the body cannot notice and end itself, and
//! the socket's write deadline never fires because the socket still
//! drains. The hub's heartbeat is the clock instead: a channel whose items
//! have waited two to three heartbeats (the write deadline is two) with
//! none taken is closed and emptied, and its [`Switch`] fired. Every h2
//! stream runs as its own task spawned through [`StreamExecutor`], which
//! races an event stream's task against its switch: a fired switch makes
//! the task finish, dropping hyper's stream future, so h2 resets the stream
//! (RST_STREAM CANCEL) and frees the bytes it buffered for it. A connection
//! left without event streams once one of them ended this way
//! ([`ConnSwitch`]) is closed too: when its window is shut, all stall.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

tokio::task_local! {
    /// The switch of the h2 connection whose task is running.
    static CONN: Arc<ConnSwitch>;
}

/// Ends one h2 stream's task from outside it.
pub struct Switch {
    fired: AtomicBool,
    /// The task to wake when fired; set on each poll of the stream's task.
    waker: Mutex<Option<Waker>>,
    /// The connection the stream belongs to, when known.
    conn: Option<Arc<ConnSwitch>>,
}

impl Switch {
    /// Ends the stream's task at its next poll, and wakes it for that.
    pub fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        if let Some(conn) = &self.conn {
            conn.stalled.store(true, Ordering::Release);
        }
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// A switch of no connection, for the channel's unit tests.
    #[cfg(test)]
    pub(crate) fn detached() -> Arc<Switch> {
        Arc::new(Switch {
            fired: AtomicBool::new(false),
            waker: Mutex::new(None),
            conn: None,
        })
    }

    /// True once fired.
    pub fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Counts an event stream on the connection until the returned value drops.
    pub fn attach(&self) -> Attached {
        if let Some(conn) = &self.conn {
            conn.live.fetch_add(1, Ordering::AcqRel);
        }
        Attached(self.conn.clone())
    }
}

/// An event stream counted on its connection (see [`Switch::attach`]).
pub struct Attached(Option<Arc<ConnSwitch>>);

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(conn) = &self.0 {
            let left = conn.live.fetch_sub(1, Ordering::AcqRel) - 1;
            // The last event stream went, and streams of this connection
            // were stalled: nothing on it is being read.
            if left == 0 && conn.stalled.load(Ordering::Acquire) {
                conn.fired.store(true, Ordering::Release);
                conn.notify.notify_one();
            }
        }
    }
}

/// Closes one h2 connection whose event streams all ended stalled.
#[derive(Default)]
pub struct ConnSwitch {
    /// Event streams open on the connection.
    live: AtomicUsize,
    /// A stream of the connection was ended as stalled.
    stalled: AtomicBool,
    fired: AtomicBool,
    notify: Notify,
    /// The switch of the event stream whose request hyper is handing to
    /// the service right now, for the executor to pick up: hyper calls the
    /// service and spawns the stream's task one after the other, on the
    /// connection's task, with nothing in between.
    next: Mutex<Option<Arc<Switch>>>,
}

/// A switch for an event stream being created on an h2 connection's task
/// (`None` elsewhere: HTTP/1.1); the stream's task, spawned next, races it.
pub fn for_new_stream() -> Option<Arc<Switch>> {
    let conn = CONN.try_with(Arc::clone).ok()?;
    let switch = Arc::new(Switch {
        fired: AtomicBool::new(false),
        waker: Mutex::new(None),
        conn: Some(conn.clone()),
    });
    *conn.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(switch.clone());
    Some(switch)
}

/// Runs an h2 connection (`h2`; anything else is only awaited) so that its
/// streams know it, and so that it ends (`None`) when all of its event
/// streams ended stalled.
pub async fn connection<F: Future>(conn: F, h2: bool) -> Option<F::Output> {
    if !h2 {
        return Some(conn.await);
    }
    let switch = Arc::new(ConnSwitch::default());
    let served = CONN.scope(switch.clone(), conn);
    tokio::pin!(served);
    loop {
        tokio::select! {
            out = &mut served => return Some(out),
            () = switch.notify.notified() => {
                if switch.fired.load(Ordering::Acquire) {
                    return None;
                }
            }
        }
    }
}

/// hyper's executor for h2 streams: each a tokio task, with a [`Switch`].
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        // hyper spawns a stream's task right after calling the service for
        // it, on the connection's task: an event stream just left its switch.
        let switch = CONN
            .try_with(|c| c.next.lock().unwrap_or_else(|e| e.into_inner()).take())
            .ok()
            .flatten();
        let Some(switch) = switch else {
            // Not an event stream: nothing to end early.
            tokio::spawn(fut);
            return;
        };
        // Biased: a fired switch wins over whatever the stream would do.
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = Fired(&switch) => {}
                _ = fut => {}
            }
        });
    }
}

/// Completes once the switch fires.
struct Fired<'a>(&'a Switch);

impl Future for Fired<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // The waker first, then the flag: a fire in between still wakes us.
        {
            let mut slot = self.0.waker.lock().unwrap_or_else(|e| e.into_inner());
            match &mut *slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
        }
        if self.0.fired.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
