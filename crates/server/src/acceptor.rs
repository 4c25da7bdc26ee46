//! The acceptor role: takes connections out of the kernel's accept queue.
//!
//! An acceptor owns some listeners and a way to take turns on them with other threads
//! ([`Turn`]), and sends each connection either to its own thread's reader or, through a
//! [`Balancer`](crate::handoff::Balancer), to another thread's (memcached's dispatch). Listeners are level-triggered,
//! so an acceptor may stop after a batch and leave the rest queued in the kernel, where they
//! wait for the next round instead of piling up in our memory.
//!
//! `accept` errors are sorted in one place ([`sys::socket::classify_accept_error`]): a
//! per-connection error means "accept the next"; running out of descriptors means "pause on
//! a timer", or the level-triggered listener would spin a core (actix-server does the same).

use crate::conn_limit::ConnLimit;
use crate::listener::Listener;
use crate::stats::ThreadStats;
use crate::token::Token;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sys::socket::AcceptError;
use sys::socket::Accepted;
use sys::{Epoll, Interest};

/// Accepts per readiness event before the thread goes back to its connections.
pub const ACCEPT_BATCH: usize = 64;
/// While a listener keeps yielding connections, the loop tries it again after this many of
/// its connections' events, instead of only at the next `epoll_wait`: in a burst the accept
/// queue (64 deep) fills in about a millisecond, less than one round of serving takes.
pub const ACCEPT_INTERLEAVE: usize = 16;
/// `exclusive`: accepts between re-registrations of the shared listener. The kernel queues
/// EPOLLEXCLUSIVE waiters so that the thread that waited last is woken first; moving our
/// registration to the back now and then spreads the connections (nginx, since 2021).
pub const EXCLUSIVE_ROTATE: u32 = 16;
/// `mutex`: how long a thread without the lock waits before trying again (nginx's
/// accept_mutex_delay).
pub const MUTEX_DELAY: Duration = Duration::from_millis(500);
/// How long accepting pauses after EMFILE / ENFILE / ENOBUFS / ENOMEM.
pub const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);

/// A listener's token: its index among the acceptor's listeners. On an io_uring its multishot
/// accept and its readiness poll (near the ceiling) share it.
fn listener_token(index: usize) -> u64 {
    Token::Listener(index as u16).to_u64()
}
/// io_uring: room under `--max-conns` below which the listener is polled and accepted
/// from as under epoll (readiness, then `accept4` for each slot there is room for). A
/// multishot accept takes whatever arrives, so it is stopped while this much room is left:
/// at the ceiling, connections wait in the kernel's accept queue exactly as under epoll.
const MULTISHOT_ROOM: usize = 1024;

/// A listener's accepts on an io_uring.
#[derive(Debug, Clone, Copy, Default)]
struct UringAccepts {
    /// A multishot accept is armed.
    multishot: bool,
    /// It was cancelled and its last completion has not come yet.
    stopping: bool,
    /// A one-shot readiness poll is armed (shared sockets, near the ceiling).
    polling: bool,
}

/// nginx's accept_mutex: a lock word shared by the threads of one listening socket.
///
/// # Atomic Ordering
/// Acquire on lock and Release on unlock, like any lock, although the only thing it guards
/// is the kernel-side registration.
#[derive(Debug, Default)]
pub(crate) struct AcceptMutex {
    locked: AtomicBool,
}

impl AcceptMutex {
    fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// How an accept batch ended.
enum Batch {
    /// The queue is empty (or the batch is done): this many were accepted.
    Drained(u32),
    /// At `--max-conns`.
    Full,
    /// Out of descriptors (or a fatal error): pausing.
    Paused,
}

/// How this acceptor shares its listeners with other threads.
pub(crate) enum Turn {
    /// The listeners are this thread's alone.
    Own,
    /// Shared, registered with EPOLLEXCLUSIVE.
    Exclusive,
    /// Shared; polled only while holding the mutex.
    Mutex(Arc<AcceptMutex>),
    /// Shared; every thread polls and wakes.
    Herd,
}

pub(crate) struct Acceptor {
    listeners: Vec<Arc<Listener>>,
    turn: Turn,
    stats: Arc<ThreadStats>,
    limit: Arc<ConnLimit>,
    /// At `--max-conns`: not polling, until a connection closes somewhere.
    full: bool,
    registered: bool,
    holding: bool,
    since_rotate: u32,
    /// Listeners whose last batch this round took connections: the queue may be refilling
    /// as fast as we take from it (a burst), so the loop tries them between its events.
    busy: Vec<bool>,
    paused_until: Option<Instant>,
    last_warning: Option<Instant>,
    /// io_uring only: each listener's accepts.
    uring: Vec<UringAccepts>,
    /// io_uring only: shutting down, waiting for cancelled accepts to finish.
    closing: bool,
}

impl Acceptor {
    pub(crate) fn new(
        listeners: Vec<Arc<Listener>>,
        turn: Turn,
        stats: Arc<ThreadStats>,
        limit: Arc<ConnLimit>,
    ) -> Self {
        Acceptor {
            busy: vec![false; listeners.len()],
            listeners,
            turn,
            stats,
            limit,
            full: false,
            registered: false,
            holding: false,
            since_rotate: 0,
            paused_until: None,
            last_warning: None,
            uring: Vec::new(),
            closing: false,
        }
    }

    fn interest(&self) -> Interest {
        match self.turn {
            Turn::Exclusive => Interest::ReadableExclusive,
            _ => Interest::Readable,
        }
    }

    fn register(&mut self, epoll: &Epoll) {
        if self.registered {
            return;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if let Err(err) = epoll.add(&**l, listener_token(i), self.interest()) {
                tracing::error!(%err, "cannot poll listener");
            }
        }
        self.registered = true;
    }

    fn deregister(&mut self, epoll: &Epoll) {
        if !self.registered {
            return;
        }
        for l in &self.listeners {
            let _ = epoll.delete(&**l);
        }
        self.registered = false;
    }

    /// Called at the top of each loop round. Returns how long the loop may sleep at most.
    pub(crate) fn before_wait(&mut self, epoll: &Epoll, now: Instant) -> Option<Duration> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Some(until - now);
            }
            self.paused_until = None;
        }
        if self.full {
            if !self.limit.has_room() {
                // ConnLimit::release wakes this loop when a connection closes.
                self.deregister(epoll);
                return None;
            }
            self.full = false;
        }
        match &self.turn {
            Turn::Mutex(lock) => {
                if lock.try_lock() {
                    self.holding = true;
                    self.register(epoll);
                    None
                } else {
                    self.deregister(epoll);
                    Some(MUTEX_DELAY)
                }
            }
            _ => {
                self.register(epoll);
                None
            }
        }
    }

    /// After the round's events: the mutex holder lets go, so another thread can take a turn.
    pub(crate) fn after_events(&mut self) {
        self.busy.fill(false);
        if let (Turn::Mutex(lock), true) = (&self.turn, self.holding) {
            lock.unlock();
            self.holding = false;
        }
    }

    /// Listener `index` is readable: accept a batch.
    pub(crate) fn on_ready(
        &mut self,
        epoll: &Epoll,
        index: usize,
        now: Instant,
        deliver: &mut dyn FnMut(Accepted),
    ) {
        match self.accept_batch(index, true, now, deliver) {
            Batch::Full => {
                self.deregister(epoll);
                tracing::debug!(
                    max = self.limit.max(),
                    "connection limit reached; accepting paused"
                );
            }
            Batch::Paused => self.deregister(epoll),
            Batch::Drained(accepted) => {
                if let Some(busy) = self.busy.get_mut(index) {
                    *busy = accepted > 0;
                }
                if let Turn::Exclusive = self.turn {
                    self.since_rotate += accepted;
                    if self.since_rotate >= EXCLUSIVE_ROTATE {
                        self.since_rotate = 0;
                        self.deregister(epoll);
                        self.register(epoll);
                    }
                }
            }
        }
    }

    /// Whether a listener took connections at its last batch this round (see
    /// [`ACCEPT_INTERLEAVE`]).
    pub(crate) fn busy(&self) -> bool {
        self.busy.contains(&true)
    }

    /// Between a round's connection events: another batch from each listener that was still
    /// yielding connections. One that comes back empty is left until the next round, so
    /// outside a burst this costs at most one `accept4` per listener and round.
    pub(crate) fn accept_more(
        &mut self,
        epoll: &Epoll,
        now: Instant,
        deliver: &mut dyn FnMut(Accepted),
    ) {
        for index in 0..self.busy.len() {
            if self.busy[index] && !self.full && self.paused_until.is_none() {
                self.on_ready(epoll, index, now, deliver);
            }
        }
    }

    /// Accept up to [`ACCEPT_BATCH`] from listener `index` with `accept4`, each with its
    /// slot under the ceiling claimed first, non-blocking (epoll) or blocking (io_uring).
    fn accept_batch(
        &mut self,
        index: usize,
        nonblocking: bool,
        now: Instant,
        deliver: &mut dyn FnMut(Accepted),
    ) -> Batch {
        let Some(listener) = self.listeners.get(index).cloned() else {
            return Batch::Drained(0);
        };
        let mut accepted = 0u32;
        for _ in 0..ACCEPT_BATCH {
            if !self.limit.try_acquire() {
                // At the ceiling: leave connections in the kernel's accept queue.
                self.full = true;
                return Batch::Full;
            }
            match listener.accept_as(nonblocking) {
                Ok(conn) => {
                    // TCP_NODELAY came with it from the listener (`prepare_accepted`).
                    accepted += 1;
                    self.hand_over(conn, deliver);
                }
                Err(err) => {
                    self.limit.release();
                    if sys::fd::descriptors_dropped(&err) {
                        // Never silent: the client's connection is gone (counted, logged
                        // with the pause below).
                        self.stats.lost();
                    }
                    match sys::socket::classify_accept_error(&err) {
                        AcceptError::Drained => break,
                        AcceptError::Skip => continue,
                        AcceptError::Exhausted | AcceptError::Fatal => {
                            self.pause_for(now, &err);
                            return Batch::Paused;
                        }
                    }
                }
            }
        }
        Batch::Drained(accepted)
    }

    /// Count an accepted connection and send it where this loop's connections go (its own
    /// reader, or a balancer over other threads' readers: the loop's [`Roles`] decide).
    ///
    /// [`Roles`]: crate::event_loop::Roles
    fn hand_over(&mut self, conn: Accepted, deliver: &mut dyn FnMut(Accepted)) {
        self.stats.accepted();
        deliver(conn);
    }

    /// Stop accepting for [`EXHAUSTED_PAUSE`], saying why (at most once a second).
    fn pause_for(&mut self, now: Instant, err: &std::io::Error) {
        self.paused_until = Some(now + EXHAUSTED_PAUSE);
        let quiet = self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1));
        if !quiet {
            tracing::warn!(%err, pause_ms = EXHAUSTED_PAUSE.as_millis() as u64, "accept failed; pausing accepts");
            self.last_warning = Some(now);
        }
    }

    /// Shutdown: take what is already queued (those clients completed their handshake and
    /// would otherwise be reset), then stop polling and drop the listeners. The socket closes
    /// when its last thread lets go, and from then on the kernel refuses new connections.
    pub(crate) fn close(mut self, epoll: &Epoll, deliver: &mut dyn FnMut(Accepted)) {
        self.deregister(epoll);
        if let Turn::Mutex(lock) = &self.turn {
            if self.holding {
                lock.unlock();
            }
        }
        self.take_queued(true, deliver);
    }

    /// Accept what is already in the accept queues (non-blocking for epoll, blocking for an
    /// io_uring), then drop the listeners.
    fn take_queued(&mut self, nonblocking: bool, deliver: &mut dyn FnMut(Accepted)) {
        for listener in std::mem::take(&mut self.listeners) {
            for _ in 0..4096 {
                if !self.limit.try_acquire() {
                    break;
                }
                match listener.accept_as(nonblocking) {
                    Ok(conn) => self.hand_over(conn, deliver),
                    Err(err) => {
                        self.limit.release();
                        if sys::fd::descriptors_dropped(&err) {
                            self.stats.lost();
                            tracing::warn!(%err, "a passed connection was lost at shutdown");
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// The acceptor on an io_uring. A socket of its own gets a multishot accept. A shared socket
/// is polled for readiness by every loop, and the loops that wake take batches with
/// `accept4`, as under epoll: io_uring's accept waits exclusively and wakes waiters in the
/// order they armed, handing every connection to the first loop's ring even while that
/// loop is busy (the connection then waits until it next enters the kernel) and the others
/// sleep. A 9-run accept storm put that at 1.55–1.95× nginx's overflows on one socket. So on a
/// shared socket `exclusive`, `mutex` and `herd` all become a herd of readiness polls.
impl Acceptor {
    /// Arm what the room under the ceiling allows: a multishot accept on an own socket with
    /// room to spare; a readiness poll on a shared socket, near the ceiling, and for
    /// connections passed by a supervisor; nothing at it. Returns how long the loop may
    /// sleep at most (a pause after EMFILE).
    pub(crate) fn before_wait_uring(
        &mut self,
        sub: &mut sys::uring::Submit<'_>,
        now: Instant,
    ) -> Option<Duration> {
        if self.closing {
            // Shutting down: what was cancelled is not armed again.
            return None;
        }
        if let Some(until) = self.paused_until {
            if now < until {
                return Some(until - now);
            }
            self.paused_until = None;
        }
        self.uring
            .resize(self.listeners.len(), UringAccepts::default());
        let room = self.limit.room();
        let own = matches!(self.turn, Turn::Own);
        for (i, (listener, arm)) in self.listeners.iter().zip(&mut self.uring).enumerate() {
            let token = listener_token(i);
            // Connections a supervisor passes over a Unix socket are not accepted but
            // received: that socket is polled, then read as under epoll.
            if own && room > MULTISHOT_ROOM && !listener.is_passed() {
                if !arm.multishot {
                    sub.accept_multi(listener.as_fd(), token);
                    arm.multishot = true;
                }
                continue;
            }
            if arm.multishot {
                if !arm.stopping {
                    sub.cancel_accept(token);
                    arm.stopping = true;
                }
                continue;
            }
            if room > 0 && !arm.polling {
                sub.poll_once(listener.as_fd(), token);
                arm.polling = true;
            }
        }
        None
    }

    /// A multishot accept completed.
    pub(crate) fn on_accepted_uring(
        &mut self,
        index: usize,
        fd: std::io::Result<std::os::fd::OwnedFd>,
        more: bool,
        now: Instant,
        deliver: &mut dyn FnMut(Accepted),
    ) {
        if let Some(arm) = self.uring.get_mut(index) {
            if !more {
                arm.multishot = false;
                arm.stopping = false;
            }
        }
        if let Some(err) = deliver_accepted(fd, &self.limit, &self.stats, deliver) {
            let exhausted = matches!(
                sys::socket::classify_accept_error(&err),
                AcceptError::Exhausted | AcceptError::Fatal
            );
            if exhausted && !sys::cancelled(&err) {
                self.pause_for(now, &err);
            }
        }
    }

    /// A polled listener (shared, near the ceiling, or passed) is readable: accept a batch,
    /// as far as there is room.
    pub(crate) fn on_listener_ready_uring(
        &mut self,
        index: usize,
        now: Instant,
        deliver: &mut dyn FnMut(Accepted),
    ) {
        if let Some(arm) = self.uring.get_mut(index) {
            arm.polling = false;
        }
        self.accept_batch(index, false, now, deliver);
    }

    /// Shutdown on an io_uring, first step: cancel the accepts and polls and arm no more.
    /// Connections a multishot accept took before the cancel still come; once its last
    /// completion has ([`Acceptor::armed_uring`] is false), [`Acceptor::close_uring`].
    pub(crate) fn cancel_uring(&mut self, sub: &mut sys::uring::Submit<'_>) {
        self.closing = true;
        for i in 0..self.listeners.len() {
            sub.cancel_accept(listener_token(i));
            sub.cancel_poll(listener_token(i));
        }
    }

    /// Whether an accept or a poll is still armed on the ring.
    pub(crate) fn armed_uring(&self) -> bool {
        self.uring.iter().any(|a| a.multishot || a.polling)
    }

    /// Shutdown on an io_uring, last step: take what is queued, drop the listeners.
    pub(crate) fn close_uring(mut self, deliver: &mut dyn FnMut(Accepted)) {
        self.take_queued(false, deliver);
    }
}

/// Hand a multishot accept's connection on, counted under the ceiling (or past it: it is
/// already ours; the accept is stopped well before the ceiling). Returns the error, if
/// the accept failed.
fn deliver_accepted(
    fd: std::io::Result<std::os::fd::OwnedFd>,
    limit: &ConnLimit,
    stats: &ThreadStats,
    deliver: &mut dyn FnMut(Accepted),
) -> Option<std::io::Error> {
    match fd {
        Ok(fd) => {
            if !limit.try_acquire() {
                limit.force_acquire();
            }
            // A multishot accept does not report the peer: one getpeername.
            let peer = sys::socket::peer_addr(&fd).ok();
            stats.accepted();
            deliver(Accepted {
                fd,
                peer,
                at: Instant::now(),
            });
            None
        }
        Err(err) => Some(err),
    }
}
