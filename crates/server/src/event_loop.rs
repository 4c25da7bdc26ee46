//! One thread's event loop: an epoll, a waker, and the roles this thread plays.
//!
//! Every topology is built from the same loop with different [`Roles`]: accept and hand
//! connections to other threads' readers, read connections handed over, or both accept and
//! read. `single` is one loop with both; `dispatch` is one accept-only loop and N read-only;
//! `shared` and `reuseport` are N loops with both. Workers are not event loops: they block on
//! their queue.

use crate::acceptor::{Acceptor, ACCEPT_INTERLEAVE};
use crate::handoff::Balancer;
use crate::reader::{Driver, Reader};
use crate::shutdown::Shutdown;
use crate::stats::ThreadStats;
use crate::token::Token;
use crate::Io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sys::socket::Accepted;
use sys::{Epoll, Events, Interest, Waker};

/// Events taken per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;
/// In a drain, how long an idle keep-alive connection may still send one more request
/// (at most a quarter of the drain timeout).
pub(crate) const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// What a loop does. An accept-only loop always has somewhere to send what it accepts: the
/// type leaves no way to build one that would drop connections.
pub(crate) enum Roles {
    /// Accepts, and hands every connection to a reader on another thread.
    Accept(Acceptor, Balancer),
    /// Reads the connections other threads hand it.
    Read(Reader),
    /// Accepts, and reads what it accepted.
    AcceptAndRead(Acceptor, Reader),
}

pub(crate) struct EventLoop {
    pub(crate) epoll: Epoll,
    pub(crate) waker: Arc<Waker>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) roles: Roles,
    pub(crate) stats: Arc<ThreadStats>,
    pub(crate) drain_timeout: Duration,
    /// The I/O interface (resolved: epoll or io_uring).
    pub(crate) io: Io,
}

impl Roles {
    /// The roles as the loop holds them.
    pub(crate) fn split(self) -> (Option<Acceptor>, Option<Balancer>, Option<Reader>) {
        match self {
            Roles::Accept(a, b) => (Some(a), Some(b), None),
            Roles::Read(r) => (None, None, Some(r)),
            Roles::AcceptAndRead(a, r) => (Some(a), None, Some(r)),
        }
    }
}

impl EventLoop {
    /// Run until shutdown has been requested and every connection is answered (or the drain
    /// deadline passes).
    pub(crate) fn run(self) {
        if self.io == Io::Uring {
            crate::uring_loop::run(self);
        } else {
            self.run_epoll();
        }
    }

    fn run_epoll(self) {
        let EventLoop {
            epoll,
            waker,
            shutdown,
            roles,
            stats,
            drain_timeout,
            ..
        } = self;
        let (mut acceptor, mut balancer, mut reader) = roles.split();
        if let Err(err) = epoll.add(&*waker, Token::Waker.to_u64(), Interest::Readable) {
            tracing::error!(%err, "cannot poll the loop's eventfd; thread exits");
            return;
        }
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        let mut drain_deadline: Option<Instant> = None;
        let mut busy_since = Instant::now();
        loop {
            let now = Instant::now();
            let accept_wait = acceptor.as_mut().and_then(|a| a.before_wait(&epoll, now));
            let timeout = sleep_limit(accept_wait, reader.as_ref(), drain_deadline, now);
            stats.busy(now.duration_since(busy_since).as_nanos() as u64);
            if let Err(err) = epoll.wait(&mut events, timeout) {
                tracing::error!(%err, "epoll_wait failed; thread exits");
                return;
            }
            busy_since = Instant::now();
            if let Some(r) = reader.as_mut() {
                r.set_now(busy_since);
            }

            // A stop asked for is taken up before this round's events: a request that arrives
            // in the same round as the signal is answered `Connection: close`, not kept alive
            // only to be closed idle a moment later.
            if drain_deadline.is_none() && shutdown.requested() {
                drain_deadline = Some(Instant::now() + drain_timeout);
                // Close the listeners first, so new connections are refused from now on;
                // what was already queued is taken and answered with the rest.
                if let Some(a) = acceptor.take() {
                    a.close(&epoll, &mut |c| {
                        deliver(&mut Driver::Epoll(&epoll), &mut reader, &mut balancer, c)
                    });
                }
                // The balancer's inboxes go with it: each reader sees when every acceptor
                // feeding it has gone, and may finish its drain.
                balancer = None;
                if let Some(r) = reader.as_mut() {
                    r.begin_drain(
                        &mut Driver::Epoll(&epoll),
                        (drain_timeout / 4).min(DRAIN_IDLE_GRACE),
                    );
                }
            }
            let mut woken = false;
            // Accept first (nginx does the same with its posted accept events): a connection
            // waiting in the accept queue holds a slot there that a burst needs, and the
            // queue overflows while the loop serves requests ahead of it.
            for (token, _) in events.iter() {
                if let Token::Listener(index) = Token::from_u64(token) {
                    let Some(a) = acceptor.as_mut() else { continue };
                    a.on_ready(&epoll, usize::from(index), busy_since, &mut |c| {
                        deliver(&mut Driver::Epoll(&epoll), &mut reader, &mut balancer, c)
                    });
                }
            }
            let mut since_accept = 0;
            for (token, readiness) in events.iter() {
                let kind = Token::from_u64(token);
                if kind == Token::Waker {
                    woken = true;
                } else if let Token::Conn { .. } = kind {
                    if let Some(r) = reader.as_mut() {
                        r.on_event(&epoll, token, readiness);
                    }
                    since_accept += 1;
                    if since_accept == ACCEPT_INTERLEAVE {
                        since_accept = 0;
                        if let Some(a) = acceptor.as_mut().filter(|a| a.busy()) {
                            a.accept_more(&epoll, busy_since, &mut |c| {
                                deliver(&mut Driver::Epoll(&epoll), &mut reader, &mut balancer, c)
                            });
                        }
                    }
                }
            }
            if woken {
                waker.reset();
                if let Some(r) = reader.as_mut() {
                    r.on_wake(&mut Driver::Epoll(&epoll));
                }
            }
            if let Some(r) = reader.as_mut() {
                r.after_events(&mut Driver::Epoll(&epoll));
                r.on_timers(&mut Driver::Epoll(&epoll));
            }
            if let Some(a) = acceptor.as_mut() {
                a.after_events();
            }

            if let Some(deadline) = drain_deadline {
                let done = reader.as_ref().is_none_or(|r| r.drained());
                if done {
                    break;
                }
                if Instant::now() >= deadline {
                    let cut = reader
                        .as_mut()
                        .map_or(0, |r| r.cut_all(&mut Driver::Epoll(&epoll)));
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

/// The longest a loop may sleep: until the nearest of the acceptor's pause, the reader's
/// next deadline and the drain's end (`None`: until an event).
pub(crate) fn sleep_limit(
    accept_wait: Option<Duration>,
    reader: Option<&Reader>,
    drain_deadline: Option<Instant>,
    now: Instant,
) -> Option<Duration> {
    [
        accept_wait,
        reader.and_then(|r| r.next_wake(now)),
        drain_deadline.map(|d| d.saturating_duration_since(now)),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// Send an accepted connection where this loop's connections go: its own reader, or the
/// balancer. [`Roles`] guarantees one of the two exists (until a drain drops the balancer:
/// an acceptor is closed before that).
pub(crate) fn deliver(
    io: &mut Driver<'_, '_>,
    reader: &mut Option<Reader>,
    balancer: &mut Option<Balancer>,
    conn: Accepted,
) {
    match (reader.as_mut(), balancer.as_mut()) {
        (Some(r), _) => r.add(io, conn),
        (None, Some(b)) => b.dispatch(conn),
        // Only after a drain dropped the balancer: the connection closes.
        (None, None) => drop(conn),
    }
}
