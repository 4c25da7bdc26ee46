//! One thread's event loop, written once over a [`Driver`]: a waker, the roles this thread
//! plays, and the drain.
//!
//! Every topology is built from the same loop with different [`Roles`]: accept and hand
//! connections to other threads' readers, read connections handed over, or both accept and
//! read. `single` is one loop with both; `dispatch` is one accept-only loop and N read-only;
//! `shared` and `reuseport` are N loops with both. Workers are not event loops: they block on
//! their queue. The loop never asks which driver it runs on (`--io`): it is chosen once, when
//! the thread starts ([`EventLoop::run`]).

use crate::driver::epoll::EpollDriver;
use crate::driver::uring::UringDriver;
use crate::driver::{Driver, Event, Io};
use crate::observe::stats::ThreadStats;
use crate::priority::Priority;
use crate::roles::acceptor::{Acceptor, ACCEPT_INTERLEAVE};
use crate::roles::handoff::Balancer;
use crate::roles::reader::{Reader, ReaderParts};
use crate::shutdown::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sys::socket::Accepted;
use sys::Waker;

/// In a drain, how long an idle keep-alive connection may still send one more request
/// (at most a quarter of the drain timeout).
pub(crate) const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// What a loop does. An accept-only loop always has somewhere to send what it accepts: the
/// type leaves no way to build one that would drop connections.
pub(crate) enum Roles {
    /// Accepts, and hands every connection to a reader on another thread.
    Accept(Acceptor, Balancer),
    /// Reads the connections other threads hand it.
    Read(ReaderParts),
    /// Accepts, and reads what it accepted.
    AcceptAndRead(Acceptor, ReaderParts),
    /// Accepts, runs each connection's TLS handshake, and hands the established
    /// connection to a reader on another thread (the reader parts' `hand_over`).
    AcceptAndHandshake(Acceptor, ReaderParts),
}

pub(crate) struct EventLoop {
    pub(crate) waker: Arc<Waker>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) roles: Roles,
    pub(crate) stats: Arc<ThreadStats>,
    pub(crate) drain_timeout: Duration,
    /// The I/O interface (resolved: epoll or io_uring).
    pub(crate) io: crate::Io,
    pub(crate) priority: Priority,
}

/// A loop's roles as it holds them while it runs.
struct Parts<D: Driver> {
    acceptor: Option<Acceptor>,
    balancer: Option<Balancer>,
    reader: Option<Reader<D>>,
}

impl<D: Driver> Parts<D> {
    fn new(roles: Roles) -> Self {
        let (acceptor, balancer, reader) = match roles {
            Roles::Accept(a, b) => (Some(a), Some(b), None),
            Roles::Read(r) => (None, None, Some(r)),
            Roles::AcceptAndRead(a, r) | Roles::AcceptAndHandshake(a, r) => {
                (Some(a), None, Some(r))
            }
        };
        Parts {
            acceptor,
            balancer,
            reader: reader.map(Reader::new),
        }
    }

    /// Once a stopped acceptor has nothing armed: take what is queued, drop the listeners,
    /// and the balancer's inboxes with them (each reader then sees every acceptor feeding
    /// it gone, and may finish its drain).
    fn close_acceptor(&mut self, io: &mut impl Io<Conn = D::Conn>) {
        if self.acceptor.as_ref().is_none() || io.listening() {
            return;
        }
        if let Some(a) = self.acceptor.take() {
            a.close(D::NONBLOCKING, &mut |c| {
                deliver(io, &mut self.reader, &mut self.balancer, c)
            });
        }
        self.balancer = None;
    }
}

impl EventLoop {
    /// Run until shutdown has been requested and every connection is answered (or the drain
    /// deadline passes).
    pub(crate) fn run(self) {
        match self.io {
            crate::Io::Uring => self.run_on::<UringDriver>(),
            crate::Io::Epoll | crate::Io::Auto => self.run_on::<EpollDriver>(),
        }
    }

    fn run_on<D: Driver>(self) {
        let EventLoop {
            waker,
            shutdown,
            roles,
            stats,
            drain_timeout,
            io,
            priority,
        } = self;
        priority.take();
        let mut driver = match D::new(&waker) {
            Ok(d) => d,
            Err(err) => {
                tracing::error!(%err, ?io, "cannot set up the loop's I/O; thread exits");
                return;
            }
        };
        let mut parts = Parts::<D>::new(roles);
        // A service's calls and first polls run on this thread in its runtime's context (a
        // handler's tokio timers and I/O register with that runtime): entered once for the
        // loop's life rather than around every request.
        let runtime = parts.reader.as_ref().and_then(|r| r.runtime());
        let _in_runtime = runtime.as_ref().map(|handle| handle.enter());
        let mut drain_deadline: Option<Instant> = None;
        let mut busy_since = Instant::now();
        loop {
            let now = Instant::now();
            let accept_wait = match parts.acceptor.as_mut() {
                Some(a) => driver.with_io(|io| a.before_wait(io, now)),
                None => None,
            };
            let reader_wait = parts.reader.as_ref().and_then(|r| r.next_wake(now));
            // A stop asked for since this round's check must not wait for another wake: its
            // eventfd write may have been consumed by the `reset` of a wake that came in the
            // same round (a freed `--max-conns` slot, a handed-over connection) — seen as a
            // test that hung, with the loop asleep in epoll_wait and the flag set.
            let stop_pending = drain_deadline.is_none() && shutdown.requested();
            let timeout = [
                accept_wait,
                reader_wait,
                drain_deadline.map(|d| d.saturating_duration_since(now)),
                stop_pending.then_some(Duration::ZERO),
            ]
            .into_iter()
            .flatten()
            .min();
            stats.busy(now.duration_since(busy_since).as_nanos() as u64);
            if let Err(err) = driver.wait(timeout) {
                tracing::error!(%err, "waiting for I/O failed; thread exits");
                return;
            }
            busy_since = Instant::now();
            if let Some(r) = parts.reader.as_mut() {
                r.set_now(busy_since, busy_since.saturating_duration_since(now));
            }

            // A stop asked for is taken up before this round's events: a request that arrives
            // in the same round as the signal is answered `Connection: close`, not kept alive
            // only to be closed idle a moment later.
            if drain_deadline.is_none() && shutdown.requested() {
                drain_deadline = Some(Instant::now() + drain_timeout);
                driver.with_io(|io| {
                    // Stop accepting first, so new connections are refused from now on;
                    // what was already queued is taken and answered with the rest.
                    if let Some(a) = parts.acceptor.as_mut() {
                        a.stop(io);
                    }
                    parts.close_acceptor(io);
                    if let Some(r) = parts.reader.as_mut() {
                        r.begin_drain(io, (drain_timeout / 4).min(DRAIN_IDLE_GRACE));
                    }
                });
            }

            let mut woken = false;
            let mut since_accept = 0;
            let Parts {
                acceptor,
                balancer,
                reader,
            } = &mut parts;
            driver.dispatch(|io, event| match event {
                Event::Woken => woken = true,
                Event::ListenerReady(index) => {
                    if let Some(a) = acceptor.as_mut() {
                        a.on_ready(index, D::NONBLOCKING, busy_since, &mut |c| {
                            deliver(io, reader, balancer, c)
                        });
                        a.settle(io);
                    }
                }
                Event::Accepted(fd) => {
                    if let Some(a) = acceptor.as_mut() {
                        a.on_accepted(fd, busy_since, &mut |c| deliver(io, reader, balancer, c));
                        a.settle(io);
                    }
                }
                Event::Conn(token, what, note) => {
                    if let Some(r) = reader.as_mut() {
                        r.on_conn(io, token, what, note);
                    }
                    // While a listener keeps yielding connections, take more between the
                    // round's connection events (see ACCEPT_INTERLEAVE).
                    since_accept += 1;
                    if since_accept == ACCEPT_INTERLEAVE {
                        since_accept = 0;
                        if let Some(a) = acceptor.as_mut().filter(|a| a.busy()) {
                            a.accept_more(D::NONBLOCKING, busy_since, &mut |c| {
                                deliver(io, reader, balancer, c)
                            });
                            a.settle(io);
                        }
                    }
                }
            });
            if woken {
                waker.reset();
            }
            let done = driver.with_io(|io| {
                if let Some(r) = parts.reader.as_mut() {
                    if woken {
                        r.on_wake(io);
                    }
                    r.after_events(io);
                    r.on_timers(io);
                    r.end_round();
                }
                if let Some(a) = parts.acceptor.as_mut() {
                    a.after_events();
                }
                let Some(deadline) = drain_deadline else {
                    return false;
                };
                parts.close_acceptor(io);
                if parts.acceptor.is_none() && parts.reader.as_ref().is_none_or(|r| r.drained()) {
                    return true;
                }
                if Instant::now() >= deadline {
                    let cut = parts.reader.as_mut().map_or(0, |r| r.cut_all(io));
                    tracing::warn!(
                        cut,
                        "drain deadline passed; closing connections still in progress"
                    );
                    return true;
                }
                false
            });
            if done {
                break;
            }
        }
        // Dropping the driver closes what is left: an io_uring submits what is queued (the
        // last closes), cancels the rest and waits.
    }
}

/// Send an accepted connection where this loop's connections go: its own reader, or the
/// balancer. [`Roles`] guarantees one of the two exists (until a drain drops the balancer:
/// an acceptor is closed before that).
fn deliver<D: Driver>(
    io: &mut impl Io<Conn = D::Conn>,
    reader: &mut Option<Reader<D>>,
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
