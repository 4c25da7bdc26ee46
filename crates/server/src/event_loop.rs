//! One thread's event loop: an epoll, a waker, and the roles this thread plays.
//!
//! Every model is built from the same loop with different roles switched on: an
//! [`Acceptor`] (listeners to accept from), a [`Reader`] (connections to serve), or both.
//! `single` is one loop with both; `dispatch` is one loop with only an acceptor and N with
//! only readers; `shared` and `reuseport` are N loops with both. Workers (`pool`) are not
//! event loops: they block on their queue.

use crate::acceptor::{Acceptor, LISTENER_TAG};
use crate::reader::Reader;
use crate::shutdown::Shutdown;
use crate::stats::ThreadStats;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sys::{Epoll, Events, Interest, Waker};

/// Token of the loop's own eventfd.
const WAKER_TOKEN: u64 = u64::MAX;
/// Events taken per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;
/// In a drain, how long an idle keep-alive connection may still send one more request
/// (at most a quarter of the drain timeout).
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

pub(crate) struct EventLoop {
    pub(crate) epoll: Epoll,
    pub(crate) waker: Arc<Waker>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) acceptor: Option<Acceptor>,
    pub(crate) reader: Option<Reader>,
    pub(crate) stats: Arc<ThreadStats>,
    pub(crate) drain_timeout: Duration,
}

impl EventLoop {
    /// Run until shutdown has been requested and every connection is answered (or the drain
    /// deadline passes).
    pub(crate) fn run(self) {
        let EventLoop {
            epoll,
            waker,
            shutdown,
            mut acceptor,
            mut reader,
            stats,
            drain_timeout,
        } = self;
        if let Err(err) = epoll.add(&*waker, WAKER_TOKEN, Interest::Readable) {
            tracing::error!(%err, "cannot poll the loop's eventfd; thread exits");
            return;
        }
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        let mut drain_deadline: Option<Instant> = None;
        let mut busy_since = Instant::now();
        loop {
            let now = Instant::now();
            let mut timeout = acceptor.as_mut().and_then(|a| a.before_wait(&epoll, now));
            if let Some(wake) = reader.as_ref().and_then(|r| r.next_wake(now)) {
                timeout = Some(timeout.map_or(wake, |t| t.min(wake)));
            }
            if let Some(deadline) = drain_deadline {
                let left = deadline.saturating_duration_since(now);
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
            stats.busy(now.duration_since(busy_since).as_nanos() as u64);
            if let Err(err) = epoll.wait(&mut events, timeout) {
                tracing::error!(%err, "epoll_wait failed; thread exits");
                return;
            }
            busy_since = Instant::now();
            if let Some(r) = reader.as_mut() {
                r.set_now(busy_since);
            }

            let mut woken = false;
            // Accept first (nginx does the same with its posted accept events): a connection
            // waiting in the accept queue holds a slot there that a burst needs, and the
            // queue overflows while the loop serves requests ahead of it.
            for (token, _) in events.iter() {
                if token != WAKER_TOKEN && token & LISTENER_TAG != 0 {
                    let Some(a) = acceptor.as_mut() else { continue };
                    let index = (token & !LISTENER_TAG) as usize;
                    match reader.as_mut() {
                        Some(r) => {
                            a.on_ready(&epoll, index, busy_since, &mut |fd| r.add(&epoll, fd))
                        }
                        None => a.on_ready(&epoll, index, busy_since, &mut drop),
                    }
                }
            }
            for (token, readiness) in events.iter() {
                if token == WAKER_TOKEN {
                    woken = true;
                } else if token & LISTENER_TAG == 0 {
                    if let Some(r) = reader.as_mut() {
                        r.on_event(token as usize, readiness);
                    }
                }
            }
            if woken {
                waker.reset();
                if let Some(r) = reader.as_mut() {
                    r.on_wake(&epoll);
                }
            }
            if let Some(r) = reader.as_mut() {
                r.after_events();
                r.on_timers();
            }
            if let Some(a) = acceptor.as_mut() {
                a.after_events();
            }

            if drain_deadline.is_none() && shutdown.requested() {
                drain_deadline = Some(Instant::now() + drain_timeout);
                // Close the listeners first, so new connections are refused from now on;
                // what was already queued is taken and answered with the rest.
                if let Some(a) = acceptor.take() {
                    match reader.as_mut() {
                        Some(r) => a.close(&epoll, &mut |fd| r.add(&epoll, fd)),
                        None => a.close(&epoll, &mut drop),
                    }
                }
                if let Some(r) = reader.as_mut() {
                    r.begin_drain((drain_timeout / 4).min(DRAIN_IDLE_GRACE));
                }
            }
            if let Some(deadline) = drain_deadline {
                let done = reader.as_ref().is_none_or(|r| r.drained());
                if done {
                    break;
                }
                if Instant::now() >= deadline {
                    let cut = reader.as_mut().map_or(0, |r| r.cut_all());
                    tracing::warn!(
                        cut,
                        "drain deadline passed; closing connections still in progress"
                    );
                    break;
                }
            }
        }
    }
}
