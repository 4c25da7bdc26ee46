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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sys::socket::AcceptError;
use sys::socket::Accepted;
use sys::{Epoll, Interest};

/// Accepts per readiness event before the thread goes back to its connections.
pub const ACCEPT_BATCH: usize = 64;
/// `exclusive`: accepts between re-registrations of the shared listener. The kernel queues
/// EPOLLEXCLUSIVE waiters so that the thread that waited last is woken first; moving our
/// registration to the back now and then spreads the connections (nginx, since 2021).
pub const EXCLUSIVE_ROTATE: u32 = 16;
/// `mutex`: how long a thread without the lock waits before trying again (nginx's
/// accept_mutex_delay).
pub const MUTEX_DELAY: Duration = Duration::from_millis(500);
/// How long accepting pauses after EMFILE / ENFILE / ENOBUFS / ENOMEM.
pub const EXHAUSTED_PAUSE: Duration = Duration::from_millis(100);

/// Token bit marking a listener (the low bits are its index); connections use plain keys.
pub(crate) const LISTENER_TAG: u64 = 1 << 62;

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
    paused_until: Option<Instant>,
    last_warning: Option<Instant>,
}

impl Acceptor {
    pub(crate) fn new(
        listeners: Vec<Arc<Listener>>,
        turn: Turn,
        stats: Arc<ThreadStats>,
        limit: Arc<ConnLimit>,
    ) -> Self {
        Acceptor {
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
            if let Err(err) = epoll.add(&**l, LISTENER_TAG | i as u64, self.interest()) {
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
        let Some(listener) = self.listeners.get(index).cloned() else {
            return;
        };
        let mut accepted = 0u32;
        for _ in 0..ACCEPT_BATCH {
            if !self.limit.try_acquire() {
                // At the ceiling: leave connections in the kernel's accept queue.
                self.full = true;
                self.deregister(epoll);
                tracing::debug!(
                    max = self.limit.max(),
                    "connection limit reached; accepting paused"
                );
                break;
            }
            match listener.accept() {
                Ok(conn) => {
                    // TCP_NODELAY came with it from the listener (`prepare_accepted`).
                    accepted += 1;
                    self.hand_over(conn, deliver);
                }
                Err(err) => {
                    self.limit.release();
                    match sys::socket::classify_accept_error(&err) {
                        AcceptError::Drained => break,
                        AcceptError::Skip => continue,
                        AcceptError::Exhausted | AcceptError::Fatal => {
                            self.pause(epoll, now, &err);
                            break;
                        }
                    }
                }
            }
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

    /// Count an accepted connection and send it where this loop's connections go (its own
    /// reader, or a balancer over other threads' readers: the loop's [`Roles`] decide).
    ///
    /// [`Roles`]: crate::event_loop::Roles
    fn hand_over(&mut self, conn: Accepted, deliver: &mut dyn FnMut(Accepted)) {
        self.stats.accepted();
        deliver(conn);
    }

    fn pause(&mut self, epoll: &Epoll, now: Instant, err: &std::io::Error) {
        self.deregister(epoll);
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
        for listener in std::mem::take(&mut self.listeners) {
            for _ in 0..4096 {
                if !self.limit.try_acquire() {
                    break;
                }
                match listener.accept() {
                    Ok(conn) => self.hand_over(conn, deliver),
                    Err(_) => {
                        self.limit.release();
                        break;
                    }
                }
            }
        }
    }
}
