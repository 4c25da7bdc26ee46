//! The acceptor role: takes connections out of the kernel's accept queue.
//!
//! An acceptor owns some listeners and a way to take turns on them with other threads
//! ([`Turn`]), and sends each connection either to its own thread's reader or, through a
//! [`Balancer`](crate::roles::handoff::Balancer), to another thread's (memcached's dispatch). Listeners are level-triggered,
//! so an acceptor may stop after a batch and leave the rest queued in the kernel, where they
//! wait for the next round instead of piling up in our memory.
//!
//! `accept` errors are sorted in one place ([`sys::socket::classify_accept_error`]): a
//! per-connection error means "accept the next"; running out of descriptors means "pause on
//! a timer", or the level-triggered listener would spin a core (actix-server does the same).

use crate::driver::{Io, Listen};
use crate::observe::stats::ThreadStats;
use crate::roles::conn_limit::ConnLimit;
use crate::roles::listener::Listener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sys::socket::AcceptError;
use sys::socket::Accepted;

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

/// nginx's accept_mutex: a lock word shared by the threads of one listening socket, and
/// their loops' wakers for a load-based release.
///
/// Left to itself the mutex goes to whoever asks first after each round, which under
/// keep-alive is the thread already busy with connections (its loop turns over most
/// often): it ends up holding every connection while the others idle. nginx's answer is
/// `accept_disabled` (a worker past 7/8 of its connection slots skips the mutex); ours
/// compares with the other threads instead: a thread holding more than its share of the
/// open connections (`total / threads + 1`) does not take the mutex, and wakes the others
/// once, so that one of them takes the next connections at once rather than after its
/// [`MUTEX_DELAY`].
///
/// # Atomic Ordering
/// Acquire on lock and Release on unlock, like any lock, although the only thing it guards
/// is the kernel-side registration.
#[derive(Debug, Default)]
pub(crate) struct AcceptMutex {
    locked: AtomicBool,
    loops: std::sync::Mutex<Vec<Arc<sys::Waker>>>,
    /// How many threads joined (the length of `loops`, read without its lock).
    threads: std::sync::atomic::AtomicU64,
}

impl AcceptMutex {
    /// A thread that takes turns on this mutex: its loop's waker. Returns its seat.
    pub(crate) fn join(&self, waker: Arc<sys::Waker>) -> usize {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        loops.push(waker);
        self.threads.store(loops.len() as u64, Ordering::Relaxed);
        loops.len() - 1
    }

    /// Whether a thread with `mine` of the process's `open` connections holds more than
    /// its share.
    fn over_share(&self, mine: u64, open: u64) -> bool {
        let threads = self.threads.load(Ordering::Relaxed);
        threads > 1 && mine > open / threads + 1
    }

    /// Wake every other thread's loop to take its turn.
    fn pass(&self, seat: usize) {
        let loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        for (i, waker) in loops.iter().enumerate() {
            if i != seat {
                waker.wake();
            }
        }
    }

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
    /// Holding the accept mutex this round.
    holding: bool,
    /// Its seat at the accept mutex ([`AcceptMutex::join`]).
    seat: usize,
    /// Over its share of connections: not taking the mutex (the others were woken once).
    declining: bool,
    since_rotate: u32,
    /// An accept batch asked for a change the driver has not been told yet (see
    /// [`Acceptor::settle`]).
    pending: Option<Pending>,
    /// Listeners whose last batch this round took connections: the queue may be refilling
    /// as fast as we take from it (a burst), so the loop tries them between its events.
    busy: Vec<bool>,
    paused_until: Option<Instant>,
    last_warning: Option<Instant>,
    /// Shutting down: what was cancelled is not armed again.
    stopping: bool,
}

/// What the driver must be told after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Stop polling (at the ceiling, or out of descriptors).
    Off,
    /// Go to the back of the shared socket's waiters ([`EXCLUSIVE_ROTATE`]).
    Requeue,
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
            holding: false,
            seat: 0,
            declining: false,
            since_rotate: 0,
            pending: None,
            paused_until: None,
            last_warning: None,
            stopping: false,
        }
    }

    /// Take a seat at the accept mutex this acceptor shares (if it shares one): `waker`
    /// wakes its loop when a thread over its share passes its turn.
    pub(crate) fn join_mutex(&mut self, waker: Arc<sys::Waker>) {
        if let Turn::Mutex(lock) = &self.turn {
            self.seat = lock.join(waker);
        }
    }

    /// Called at the top of each loop round: tell the driver how to poll the listeners.
    /// Returns how long the loop may sleep at most.
    pub(crate) fn before_wait(&mut self, io: &mut impl Io, now: Instant) -> Option<Duration> {
        if self.stopping {
            return None;
        }
        if let Some(until) = self.paused_until {
            if now < until {
                return Some(until - now);
            }
            self.paused_until = None;
        }
        let room = self.limit.room();
        if self.full {
            if room == 0 {
                // ConnLimit::release wakes this loop when a connection closes.
                io.listen(&self.listeners, Listen::Off);
                return None;
            }
            self.full = false;
        }
        let on = Listen::On {
            exclusive: matches!(self.turn, Turn::Exclusive),
            own: matches!(self.turn, Turn::Own),
            room,
        };
        if self.over_share() {
            io.listen(&self.listeners, Listen::Off);
            return Some(MUTEX_DELAY);
        }
        match &self.turn {
            Turn::Mutex(lock) => {
                if lock.try_lock() {
                    self.holding = true;
                    io.listen(&self.listeners, on);
                    None
                } else {
                    io.listen(&self.listeners, Listen::Off);
                    Some(MUTEX_DELAY)
                }
            }
            _ => {
                io.listen(&self.listeners, on);
                None
            }
        }
    }

    /// Whether this thread, sharing an accept mutex, holds more than its share of the open
    /// connections. The first time it does (since it last did not), it lets go of the
    /// mutex if it holds it, then wakes the others to take their turn.
    fn over_share(&mut self) -> bool {
        let Turn::Mutex(lock) = &self.turn else {
            return false;
        };
        let open = (self.limit.max() - self.limit.room()) as u64;
        let over = lock.over_share(self.stats.open(), open);
        if over && !self.declining {
            if std::mem::take(&mut self.holding) {
                lock.unlock();
            }
            lock.pass(self.seat);
        }
        self.declining = over;
        over
    }

    /// After an accept batch: tell the driver what the batch decided.
    pub(crate) fn settle(&mut self, io: &mut impl Io) {
        match self.pending.take() {
            Some(Pending::Off) => io.listen(&self.listeners, Listen::Off),
            Some(Pending::Requeue) => io.requeue(&self.listeners),
            None => {}
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

    /// Listener `index` has connections queued: accept a batch (`nonblocking`: the
    /// driver's sockets are non-blocking), then [`Acceptor::settle`].
    pub(crate) fn on_ready(
        &mut self,
        index: usize,
        nonblocking: bool,
        now: Instant,
        deliver: &mut dyn FnMut(Accepted),
    ) {
        match self.accept_batch(index, nonblocking, now, deliver) {
            Batch::Full => {
                self.pending = Some(Pending::Off);
                tracing::debug!(
                    max = self.limit.max(),
                    "connection limit reached; accepting paused"
                );
            }
            Batch::Paused => self.pending = Some(Pending::Off),
            Batch::Drained(accepted) => {
                if let Some(busy) = self.busy.get_mut(index) {
                    *busy = accepted > 0;
                }
                if let Turn::Exclusive = self.turn {
                    self.since_rotate += accepted;
                    if self.since_rotate >= EXCLUSIVE_ROTATE {
                        self.since_rotate = 0;
                        self.pending.get_or_insert(Pending::Requeue);
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
        nonblocking: bool,
        now: Instant,
        deliver: &mut dyn FnMut(Accepted),
    ) {
        for index in 0..self.busy.len() {
            if self.busy[index] && !self.full && self.paused_until.is_none() {
                self.on_ready(index, nonblocking, now, deliver);
            }
        }
    }

    /// Accept up to [`ACCEPT_BATCH`] from listener `index` with `accept4`, each with its
    /// slot under the ceiling claimed first.
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
            if self.over_share() {
                // A burst need not all go to the mutex's holder: the rest wait for the
                // thread it woke, and this one stops polling.
                self.pending = Some(Pending::Off);
                break;
            }
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
    /// reader, or a balancer over other threads' readers: the loop's
    /// [`Roles`](crate::event_loop::Roles) decide).
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

    /// Shutdown, first step: cancel what is armed on the listeners and arm nothing again.
    /// A connection the driver took before the cancel still comes; once nothing is armed
    /// ([`Io::listening`]), [`Acceptor::close`].
    pub(crate) fn stop(&mut self, io: &mut impl Io) {
        self.stopping = true;
        io.listen(&self.listeners, Listen::Stop);
        if let (Turn::Mutex(lock), true) = (&self.turn, self.holding) {
            lock.unlock();
            self.holding = false;
        }
    }

    /// Shutdown, last step: take what is already queued (those clients completed their
    /// handshake and would otherwise be reset) and drop the listeners. The socket closes
    /// when its last thread lets go, and from then on the kernel refuses new connections.
    pub(crate) fn close(mut self, nonblocking: bool, deliver: &mut dyn FnMut(Accepted)) {
        self.take_queued(nonblocking, deliver);
    }

    /// Accept what is already in the accept queues, then drop the listeners.
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

impl Acceptor {
    /// The driver accepted a connection itself (a multishot accept), or its accept failed.
    pub(crate) fn on_accepted(
        &mut self,
        fd: std::io::Result<std::os::fd::OwnedFd>,
        now: Instant,
        deliver: &mut dyn FnMut(Accepted),
    ) {
        if let Some(err) = deliver_accepted(fd, &self.limit, &self.stats, deliver) {
            let exhausted = matches!(
                sys::socket::classify_accept_error(&err),
                AcceptError::Exhausted | AcceptError::Fatal
            );
            if exhausted && !sys::cancelled(&err) {
                self.pause_for(now, &err);
                self.pending = Some(Pending::Off);
            }
        }
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
