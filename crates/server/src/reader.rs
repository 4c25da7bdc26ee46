//! The reader role: owns connections, reads them, parses requests, writes responses.
//!
//! The reader is the driver: it makes the syscalls and feeds what they return to each
//! connection's I/O-free state machine ([`Connection`]), which decides what to parse, run,
//! send and close. A reader either runs the handler itself (single, dispatch, shared, reuseport) or hands
//! each request to the worker pool and writes the answers back in order (pool). Sockets are
//! edge-triggered: a read shorter than the buffer means the kernel queue is empty, so a
//! keep-alive request costs one `read` and one `write`, with `epoll_wait` amortised. Reading
//! pauses — the bytes stay in the kernel's receive queue and TCP slows the client — when the
//! worker queue is full, when a connection has too many requests in flight, or when its
//! unsent output passes [`OUTPUT_BOUND`](crate::connection::OUTPUT_BOUND).
//!
//! Every connection is under exactly one deadline at a time (header, body, idle, write or
//! linger; see [`Connection::deadline`]), kept on the thread's [`TimerWheel`].

use crate::buffers::Buffers;
use crate::config::{QueueTiming, Timeouts};
use crate::conn_limit::ConnLimit;
use crate::connection::{Connection, Expired, Expiry, ParseContext, Stamp, Tally, Verdict};
use crate::handler::{call_guarded, Handler};
use crate::handoff::InboxReceiver;
use crate::introspect::{tcp_state_name, ConnInfo, ConnQuery};
use crate::queue_wait::{SAMPLE_EVERY, TIME_EVERY_READ_AFTER};
use crate::refusal::RenderRefusal;
use crate::stats::ThreadStats;
use crate::timer::{Entry, TimerRef, TimerWheel};
use crate::token::{Token, GEN_MASK};
use crate::worker::{Completion, ConnId, Job, Submitter};
use crossbeam_channel::Receiver;
use h1::Limits;
use slab::Slab;
use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use sys::socket::Accepted;
use sys::uring::Submit;
use sys::{Epoll, Interest, Readiness};

/// The loop's I/O interface, lent to the reader for one call.
pub(crate) enum Driver<'a, 'r> {
    /// Readiness: connections are registered with this epoll; the reader reads and writes.
    Epoll(&'a Epoll),
    /// Completions: the reader queues receives, sends and closes on the loop's ring.
    Uring(&'a mut Submit<'r>),
}

/// A connection as this reader holds it: the socket, what the driver last said about it,
/// and the I/O-free protocol state.
struct Socket {
    fd: OwnedFd,
    /// epoll, edge-triggered: the kernel may hold bytes we have not read yet.
    readable: bool,
    /// epoll reported the client's FIN: read until a read returns 0, since a short read
    /// before it is followed by no further edge.
    fin_seen: bool,
    /// io_uring: where its multishot receive is.
    recv: Armed,
    /// Which connection of this slab slot it is: a late event, completion, worker answer or
    /// timer entry for an earlier one carries another generation.
    gen: u32,
    /// Its entry in the thread's timer wheel, if it has one.
    timer: TimerRef,
    conn: Connection,
}

/// An io_uring multishot receive's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    Off,
    On,
    /// Cancelled; its last completion has not come yet (re-arming now would make two).
    Stopping,
}

/// A connection's token (see [`crate::token`]).
fn conn_token(key: usize, gen: u32) -> u64 {
    Token::conn(key, gen).to_u64()
}

/// The connection an event or a completion is for, unless it has closed since (its slot may
/// hold another connection now: the generation tells).
fn socket_of(conns: &mut Slab<Socket>, token: u64) -> Option<(usize, &mut Socket)> {
    let Token::Conn { key, gen } = Token::from_u64(token) else {
        return None;
    };
    let key = key as usize;
    conns
        .get_mut(key)
        .filter(|s| s.gen & GEN_MASK == gen)
        .map(|s| (key, s))
}

/// A reader's link to a pool of handler threads: where it submits requests and where the
/// answers come back.
pub(crate) struct PoolLink {
    pub(crate) submit: Submitter,
    pub(crate) completions: Receiver<Completion>,
    pub(crate) reply: usize,
}

/// Who runs the handler for requests this reader parsed: requests the handler says may
/// block ([`Handler::blocking`]) go to the blocking pool when there is one; the others to the
/// worker pool when the shape has workers (`pool`), else to the reader itself, between
/// reads. Blocking calls thus never hold up fast requests, even behind a worker pool.
pub(crate) struct Exec {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) workers: Option<PoolLink>,
    pub(crate) blocking: Option<PoolLink>,
}

impl Exec {
    /// The pool `req` goes to, or `None` to run it here.
    fn pool_for(&self, req: &h1::Request) -> Option<&PoolLink> {
        match &self.blocking {
            Some(link) if self.handler.blocking().blocks(req) => Some(link),
            _ => self.workers.as_ref(),
        }
    }

    fn links(&self) -> impl Iterator<Item = &PoolLink> {
        self.workers.iter().chain(self.blocking.iter())
    }
}

/// What a reader needs besides its executor: limits, deadlines, the connection ceiling.
pub(crate) struct ReaderConfig {
    pub(crate) limits: Limits,
    pub(crate) timeouts: Timeouts,
    pub(crate) conn_limit: Arc<ConnLimit>,
    /// The application's body limit for a request whose head is read (in `pool` too, where
    /// another thread will run it), handed to the connection core to ask.
    pub(crate) body_limit: BodyLimitFn,
    /// How the application renders the server's refusals.
    pub(crate) refusals: Option<RenderRefusal>,
    /// Which reads go through `recvmsg` to count queue waits from the kernel's receive
    /// timestamps.
    pub(crate) queue_timing: QueueTiming,
}

/// The application's answer to "how large a body for this request?" (see
/// [`Handler::body_limit`]).
pub(crate) type BodyLimitFn = Box<dyn Fn(&h1::Request) -> Option<u64> + Send + Sync>;

impl ReaderConfig {
    /// What a connection parses and refuses with, this round.
    fn parse_context<'a>(
        &'a self,
        date: &'a h1::DateCache,
        draining: bool,
        now: Instant,
    ) -> ParseContext<'a> {
        ParseContext {
            body_limit: &*self.body_limit,
            refusals: self.refusals.as_ref(),
            date,
            draining,
            now,
        }
    }
}

pub(crate) struct Reader {
    name: String,
    queries: Receiver<ConnQuery>,
    conns: Slab<Socket>,
    exec: Exec,
    cfg: ReaderConfig,
    date: h1::DateCache,
    now: Instant,
    wheel: TimerWheel,
    due: Vec<Entry>,
    stats: Arc<ThreadStats>,
    inbox: Option<InboxReceiver>,
    /// Connections whose next request waits for room in the worker queue, oldest first.
    blocked: VecDeque<usize>,
    next_gen: u32,
    /// `--queue-timing sampled`: requests begun by this thread's reads, to time one in
    /// [`SAMPLE_EVERY`].
    sampled: u32,
    /// When the loop's previous round began (see [`TIME_EVERY_READ_AFTER`]).
    previous_round: Instant,
    draining: bool,
    /// In a drain, when idle keep-alive connections stop being given a last chance.
    idle_close_at: Option<Instant>,
    /// Connections touched by completions in this round, to drive once each.
    touched: Vec<usize>,
    /// Buffers lent to connections while they have bytes in flight.
    spare: Buffers,
    /// io_uring: when to look next for connections reset under an armed receive
    /// ([`Reader::sweep_reset`]).
    next_sweep: Instant,
    /// What the connections counted since it was last added to `stats`.
    tally: Tally,
}

/// How often, and after how long without bytes, an io_uring reader asks the kernel whether a
/// connection waiting mid-request was reset.
const RESET_SWEEP: Duration = Duration::from_secs(1);

impl Reader {
    pub(crate) fn new(
        exec: Exec,
        cfg: ReaderConfig,
        stats: Arc<ThreadStats>,
        inbox: Option<InboxReceiver>,
        (name, queries): (String, Receiver<ConnQuery>),
    ) -> Self {
        let now = Instant::now();
        Reader {
            name,
            queries,
            // Room for every connection this reader may hold, reserved now: growing the table
            // during a burst (a realloc that copies and faults in every entry) stalled the
            // loop long enough for the accept queue to overflow. Untouched pages cost no RSS.
            conns: Slab::with_capacity(cfg.conn_limit.max().min(1 << 16)),
            exec,
            cfg,
            date: h1::DateCache::new(SystemTime::now()),
            now,
            wheel: TimerWheel::new(now),
            due: Vec::new(),
            stats,
            inbox,
            blocked: VecDeque::new(),
            next_gen: 0,
            sampled: 0,
            previous_round: Instant::now(),
            draining: false,
            idle_close_at: None,
            next_sweep: now + RESET_SWEEP,
            tally: Tally::default(),
            touched: Vec::new(),
            spare: Buffers::default(),
        }
    }

    /// The loop woke at `now`: one clock read per round serves every connection.
    pub(crate) fn set_now(&mut self, now: Instant) {
        self.previous_round = self.now;
        self.now = now;
        self.date.refresh(SystemTime::now());
    }

    /// How long the loop may sleep before a deadline could be due.
    pub(crate) fn next_wake(&self, now: Instant) -> Option<Duration> {
        let wheel = self.wheel.next_wake(now);
        match self.idle_close_at {
            Some(at) => {
                let left = at.saturating_duration_since(now);
                Some(wheel.map_or(left, |w| w.min(left)))
            }
            None => wheel,
        }
    }

    /// Take ownership of an accepted connection (its slot in the connection limit is
    /// already claimed).
    pub(crate) fn add(&mut self, io: &mut Driver<'_, '_>, accepted: Accepted) {
        let Accepted { fd, peer, at } = accepted;
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut recv = Armed::Off;
        match io {
            Driver::Epoll(epoll) => {
                // Registration reports data that is already waiting (TCP_DEFER_ACCEPT, fast
                // clients): epoll checks readiness when a file is added.
                if let Err(err) = epoll.add(&fd, conn_token(key, gen), Interest::Connection) {
                    tracing::warn!(%err, "cannot register connection; closing it");
                    self.cfg.conn_limit.release();
                    return;
                }
            }
            Driver::Uring(sub) => {
                sub.recv_multi(
                    fd.as_fd(),
                    conn_token(key, gen),
                    self.cfg.queue_timing.stamps(),
                );
                recv = Armed::On;
            }
        }
        entry.insert(Socket {
            fd,
            readable: false,
            fin_seen: false,
            recv,
            gen,
            timer: TimerRef::NONE,
            conn: Connection::new(peer, self.cfg.limits, at),
        });
        self.stats.opened();
        if self.draining {
            // Accepted during shutdown: answer what it already sent, or close it now.
            if let Some(s) = self.conns.get_mut(key) {
                s.readable = true;
            }
            self.drive(io, key);
        } else {
            self.schedule(key);
        }
    }

    /// io_uring: bytes (or the FIN, or an error) from a connection's multishot receive.
    pub(crate) fn on_received(
        &mut self,
        io: &mut Driver<'_, '_>,
        token: u64,
        data: std::io::Result<&[u8]>,
        arrived: Option<SystemTime>,
        more: bool,
    ) {
        let Some((key, s)) = socket_of(&mut self.conns, token) else {
            return;
        };
        if !more {
            s.recv = Armed::Off;
        }
        let lingering = s.conn.lingering();
        let mut ended = false;
        match data {
            Ok([]) => {
                s.conn.peer_closed();
                ended = true;
            }
            Ok(bytes) if lingering => ended = !s.conn.discard_input(bytes.len()),
            Ok(bytes) => s.conn.receive(
                bytes,
                arrived.map(|at| stamp(at, 1)),
                self.now,
                &mut self.spare,
                &mut self.tally,
            ),
            // The pool ran dry, or we cancelled it: armed again when wanted.
            Err(err) if sys::out_of_buffers(&err) || sys::cancelled(&err) => {}
            Err(_) => {
                s.conn.broke();
                ended = true;
            }
        }
        if lingering {
            // Discarding until the FIN, an error, the cap or the linger deadline.
            if ended {
                self.close(io, key);
            } else {
                if let (Driver::Uring(sub), Armed::Off) = (&mut *io, s.recv) {
                    sub.recv_multi(s.fd.as_fd(), token, false);
                    s.recv = Armed::On;
                }
                self.schedule(key);
            }
            return;
        }
        self.drive(io, key);
    }

    /// io_uring: a send finished; its buffer comes back.
    pub(crate) fn on_sent(
        &mut self,
        io: &mut Driver<'_, '_>,
        token: u64,
        result: std::io::Result<usize>,
        buf: bytes::BytesMut,
    ) {
        let Some((key, s)) = socket_of(&mut self.conns, token) else {
            return;
        };
        let done = match result {
            Ok(n) => s.conn.sent_back(buf, n, self.now, &mut self.tally),
            Err(_) => {
                s.conn.broke();
                s.conn.sent_back(buf, 0, self.now, &mut self.tally)
            }
        };
        if let Some(buf) = done {
            self.spare.give(buf);
        }
        self.drive(io, key);
    }

    /// epoll reported readiness for connection `key`.
    pub(crate) fn on_event(&mut self, epoll: &Epoll, token: u64, readiness: Readiness) {
        // An event of the same round may be for a connection closed (and its key reused)
        // since epoll reported it: the generation in the token tells.
        let Some((key, s)) = socket_of(&mut self.conns, token) else {
            return;
        };
        if readiness.broken() {
            // Reset (or both sides shut): nothing can be answered. Close now rather than
            // at the next timeout, which is what a short read before the RST would cost.
            s.conn.broke();
        } else if readiness.peer_closed() {
            s.fin_seen = true;
        }
        if readiness.readable() {
            s.readable = true;
        }
        self.drive(&mut Driver::Epoll(epoll), key);
    }

    /// The loop's eventfd fired: take handed-over connections, worker answers and
    /// questions from the admin thread.
    pub(crate) fn on_wake(&mut self, io: &mut Driver<'_, '_>) {
        while let Ok(query) = self.queries.try_recv() {
            let _ = query
                .reply
                .send((self.conns.len(), self.describe(query.limit)));
        }
        while let Some(fd) = self.inbox.as_ref().and_then(|i| i.pop()) {
            self.add(io, fd);
        }
        let Reader {
            exec,
            conns,
            now,
            spare,
            stats,
            touched,
            ..
        } = self;
        for done in exec.links().flat_map(|l| l.completions.try_iter()) {
            let Some(Socket { conn, gen, .. }) = conns.get_mut(done.conn.key) else {
                continue;
            };
            if *gen != done.conn.gen {
                continue;
            }
            conn.complete(done.seq, done.bytes, done.keep_alive, spare, *now);
            stats.requests(1);
            touched.push(done.conn.key);
        }
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &key in &touched {
            self.drive(io, key);
        }
        touched.clear();
        self.touched = touched;
    }

    /// After a round of events: give stalled requests the queue room workers freed.
    pub(crate) fn after_events(&mut self, io: &mut Driver<'_, '_>) {
        while let Some(&key) = self.blocked.front() {
            let Some(job) = self.conns.get_mut(key).and_then(|s| s.conn.take_stalled()) else {
                self.blocked.pop_front();
                continue;
            };
            let Some(PoolLink { submit, .. }) = self.exec.pool_for(&job.req) else {
                return;
            };
            match submit.try_submit(job) {
                Ok(()) => {
                    self.blocked.pop_front();
                    self.drive(io, key);
                }
                Err(job) => {
                    if let Some(s) = self.conns.get_mut(key) {
                        s.conn.stall(job);
                    }
                    break;
                }
            }
        }
    }

    /// io_uring: close the connections whose peer reset them while their multishot receive
    /// stayed armed without completing. Seen on Linux 6.18 under load (1 run in ~20 of 50
    /// clients echoing 1 MiB bodies, a quarter resetting before reading): the socket was in
    /// TCP_CLOSE with nothing queued, the receive armed, and no completion came — so the
    /// connection waited for its body timeout (30 s) and held a SIGTERM drain that long.
    /// Only connections mid-request with no bytes for [`RESET_SWEEP`] are asked (one
    /// `getsockopt` each), at most once per [`RESET_SWEEP`]; when a drain begins, every one
    /// mid-request at once.
    fn sweep_reset(&mut self, io: &mut Driver<'_, '_>) {
        if !matches!(io, Driver::Uring(_)) || self.now < self.next_sweep {
            return;
        }
        self.next_sweep = self.now + RESET_SWEEP;
        let quiet_since = self.now.checked_sub(RESET_SWEEP);
        let reset: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, s)| {
                s.recv == Armed::On
                    && s.conn
                        .waiting_mid_request_since()
                        .is_some_and(|since| self.draining || Some(since) <= quiet_since)
            })
            .filter(|(_, s)| sys::socket::peer_reset(&s.fd).unwrap_or(false))
            .map(|(key, _)| key)
            .collect();
        for key in reset {
            if let Some(s) = self.conns.get_mut(key) {
                s.conn.broke();
            }
            self.stats.aborted();
            self.close(io, key);
        }
    }

    /// Fire the deadlines that are due.
    pub(crate) fn on_timers(&mut self, io: &mut Driver<'_, '_>) {
        self.sweep_reset(io);
        if self.idle_close_at.is_some_and(|at| self.now >= at) {
            self.idle_close_at = None;
            let idle: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, s)| s.conn.idle())
                .map(|(k, _)| k)
                .collect();
            for key in idle {
                self.drive(io, key);
            }
        }
        if self.wheel.len() == 0 {
            return;
        }
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(self.now, &mut due);
        for e in due.drain(..) {
            let Some(Socket {
                conn, gen, timer, ..
            }) = self.conns.get_mut(e.key)
            else {
                continue;
            };
            if *gen != e.gen || timer.tick != e.tick {
                continue; // the key's connection closed and the key was reused
            }
            *timer = TimerRef::NONE;
            match conn.deadline(&self.cfg.timeouts) {
                None => {}
                Some((when, kind)) if when <= self.now => self.expire(io, e.key, kind),
                Some((when, _)) => {
                    *timer = self.wheel.insert(e.key, e.gen, when);
                }
            }
        }
        self.due = due;
    }

    fn expire(&mut self, io: &mut Driver<'_, '_>, key: usize, kind: Expiry) {
        let Reader {
            conns,
            cfg,
            date,
            now,
            draining,
            tally,
            ..
        } = self;
        let Some(s) = conns.get_mut(key) else {
            return;
        };
        let cx = cfg.parse_context(date, *draining, *now);
        match s.conn.expire(kind, &cx, tally) {
            Expired::Close => self.close(io, key),
            Expired::Answered => self.drive(io, key),
        }
    }

    /// File the connection's current deadline, if it is not already filed for that time or
    /// earlier (a later deadline is found when the earlier entry fires).
    fn schedule(&mut self, key: usize) {
        let Some(Socket {
            conn, gen, timer, ..
        }) = self.conns.get_mut(key)
        else {
            return;
        };
        let Some((when, _)) = conn.deadline(&self.cfg.timeouts) else {
            return;
        };
        let tick = self.wheel.tick_of(when);
        if timer.is_none() || timer.tick > tick {
            // Earlier than its entry: file it anew and take the old one out.
            self.wheel.remove(key, *timer);
            *timer = self.wheel.insert(key, *gen, when);
        }
    }

    /// Shutdown: stop keeping connections alive. Each connection's next answer says
    /// `Connection: close`; idle keep-alive connections get `idle_grace` to send one more
    /// request before they are closed, because closing one just as its client sends (the
    /// client cannot know) loses that request — the race that makes restarts reset
    /// connections. A busy client's next request comes within microseconds and is answered;
    /// an idle one is closed when the grace ends.
    pub(crate) fn begin_drain(&mut self, io: &mut Driver<'_, '_>, idle_grace: Duration) {
        self.draining = true;
        self.idle_close_at = Some(self.now + idle_grace);
        self.next_sweep = self.now;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(s) = self.conns.get_mut(key) {
                // Read what the kernel holds: a request already sent is answered, not lost.
                s.readable = true;
            }
            self.drive(io, key);
        }
    }

    /// Whether the reader has nothing left to do in a drain: no connections, and no more
    /// handed-over connections can arrive.
    pub(crate) fn drained(&self) -> bool {
        let inbox_open = self.inbox.as_ref().is_some_and(|i| !i.is_disconnected());
        self.conns.is_empty() && !inbox_open
    }

    /// Take the connection as far as it can go now, through the loop's driver.
    fn drive(&mut self, io: &mut Driver<'_, '_>, key: usize) {
        match io {
            Driver::Epoll(_) => self.drive_epoll(key),
            Driver::Uring(sub) => self.drive_uring(sub, key),
        }
        // The rest of what the core counted (bytes sent) goes to the thread's counters once
        // the connection has gone as far as it can.
        self.stats.add(&mut self.tally);
    }

    /// epoll: read, parse, answer and write until the connection has nothing more to do.
    fn drive_epoll(&mut self, key: usize) {
        loop {
            let Some(s) = self.conns.get_mut(key) else {
                return;
            };
            if s.conn.lingering() {
                self.linger(key);
                return;
            }
            if s.readable && s.conn.wants_read() {
                let starts = s.conn.starts_request();
                // The weight a timed read's wait counts for; `None`: a plain read.
                let timed: Option<u8> = match self.cfg.queue_timing {
                    QueueTiming::On => Some(1),
                    QueueTiming::Off => None,
                    QueueTiming::Sampled if s.conn.first_stamp_pending() => Some(1),
                    // The rest of a request already counted (or not sampled): nothing to time.
                    QueueTiming::Sampled if !starts => None,
                    QueueTiming::Sampled
                        if Instant::now().duration_since(self.previous_round)
                            >= TIME_EVERY_READ_AFTER =>
                    {
                        Some(1)
                    }
                    QueueTiming::Sampled => {
                        self.sampled = self.sampled.wrapping_add(1);
                        self.sampled
                            .is_multiple_of(SAMPLE_EVERY)
                            .then_some(SAMPLE_EVERY as u8)
                    }
                };
                let buf = s.conn.read_buffer(&mut self.spare);
                let spare = buf.capacity() - buf.len();
                let read = match timed {
                    Some(weight) => sys::socket::recv_into(&s.fd, buf, 1)
                        .map(|(n, at)| (n, at.map(|at| (at, weight)))),
                    None => sys::socket::read_into(&s.fd, buf, 1).map(|n| (n, None)),
                };
                match read {
                    Ok((0, _)) => s.conn.peer_closed(),
                    Ok((n, arrived)) => {
                        let stamp = arrived.map(|(at, weight)| stamp(at, weight));
                        s.conn.received(n, stamp, starts, self.now, &mut self.tally);
                        // A short read emptied the kernel queue; the next edge tells us
                        // when more arrives — unless the client's FIN came with these
                        // bytes: then no edge will come, and the read that returns 0 must
                        // be made now.
                        if n < spare && !s.fin_seen {
                            s.readable = false;
                        }
                    }
                    Err(err) if sys::would_block(&err) => s.readable = false,
                    Err(err) if sys::interrupted(&err) => continue,
                    Err(_) => s.conn.broke(),
                }
            }
            self.answer(key);
            // Counted before the answers leave: a client that has its answer finds its
            // request (and its waits) in the counters.
            self.stats.add(&mut self.tally);
            let Some(s) = self.conns.get_mut(key) else {
                return;
            };
            flush(s, &mut self.tally, self.now);
            let idle_over = self.draining && self.idle_close_at.is_none();
            match s.conn.settle(self.now, self.cfg.timeouts.linger, idle_over) {
                Verdict::Keep => {}
                Verdict::HalfClose => {
                    let _ = sys::socket::shutdown_write(&s.fd);
                    s.readable = true;
                    continue;
                }
                Verdict::Close { aborted } => {
                    if aborted {
                        self.stats.aborted();
                    }
                    self.remove(key);
                    return;
                }
            }
            // Go round again if there are bytes to read, or if parsing stopped for output
            // backpressure that the write above has since relieved.
            let more_to_read = s.readable && s.conn.wants_read();
            if !more_to_read && !s.conn.unblocked() {
                break;
            }
        }
        if let Some(s) = self.conns.get_mut(key) {
            s.conn.park_buffers(&mut self.spare);
        }
        self.schedule(key);
    }

    fn linger(&mut self, key: usize) {
        let Some(s) = self.conns.get_mut(key) else {
            return;
        };
        loop {
            let buf = s.conn.read_buffer(&mut self.spare);
            buf.clear();
            let room = buf.capacity();
            match sys::socket::read_into(&s.fd, buf, 1) {
                Ok(0) => break,
                Ok(n) => {
                    if !s.conn.discard_input(n) {
                        break;
                    }
                    if n < room && !s.fin_seen {
                        self.schedule(key);
                        return;
                    }
                }
                Err(err) if sys::would_block(&err) => {
                    self.schedule(key);
                    return;
                }
                Err(err) if sys::interrupted(&err) => {}
                Err(_) => break,
            }
        }
        self.remove(key);
    }

    /// io_uring: answer what has arrived, send what is ready (one send in flight per
    /// connection), and keep the receive armed exactly while the connection wants bytes.
    fn drive_uring(&mut self, sub: &mut Submit<'_>, key: usize) {
        self.answer(key);
        // Counted before the answers leave (see `drive_epoll`).
        self.stats.add(&mut self.tally);
        let Some(s) = self.conns.get_mut(key) else {
            return;
        };
        let token = conn_token(key, s.gen);
        if let Some(out) = s.conn.take_output() {
            sub.send(s.fd.as_fd(), token, out);
        }
        let idle_over = self.draining && self.idle_close_at.is_none();
        match s.conn.settle(self.now, self.cfg.timeouts.linger, idle_over) {
            Verdict::Keep => {}
            Verdict::HalfClose => {
                let _ = sys::socket::shutdown_write(&s.fd);
            }
            Verdict::Close { aborted } => {
                if aborted {
                    self.stats.aborted();
                }
                self.close(&mut Driver::Uring(sub), key);
                return;
            }
        }
        let wants = s.conn.wants_read();
        match s.recv {
            Armed::Off if wants => {
                sub.recv_multi(s.fd.as_fd(), token, self.cfg.queue_timing.stamps());
                s.recv = Armed::On;
            }
            // Backpressure: stop taking bytes; they wait in the kernel and slow the client.
            Armed::On if !wants => {
                sub.cancel_recv(token);
                s.recv = Armed::Stopping;
            }
            _ => {}
        }
        s.conn.park_buffers(&mut self.spare);
        self.schedule(key);
    }

    /// Run or dispatch every request the connection has ready.
    fn answer(&mut self, key: usize) {
        let Reader {
            conns,
            exec,
            date,
            stats,
            blocked,
            draining,
            now,
            spare,
            cfg,
            tally,
            ..
        } = self;
        let Some(Socket { conn, gen, .. }) = conns.get_mut(key) else {
            return;
        };
        let gen = *gen;
        let cx = cfg.parse_context(date, *draining, *now);
        while let Some((req, ctx)) = conn.poll_request(&cx, tally) {
            match exec.pool_for(&req) {
                None => {
                    let (resp, panicked) = call_guarded(&*exec.handler, req);
                    if panicked {
                        stats.panicked();
                    }
                    conn.respond(&resp, ctx, date, spare, *now);
                    stats.requests(1);
                }
                Some(PoolLink { submit, reply, .. }) => {
                    let seq = conn.push_pending();
                    let job = Job {
                        reply: *reply,
                        conn: ConnId { key, gen },
                        seq,
                        ctx,
                        req,
                    };
                    if let Err(job) = submit.try_submit(job) {
                        // Boxed inside: a stalled request is rare, and the slot is in
                        // every connection.
                        conn.stall(job);
                        blocked.push_back(key);
                    }
                }
            }
        }
    }

    /// Close the connection through the driver: under io_uring, its receive is cancelled
    /// and the close goes with the next submission.
    fn close(&mut self, io: &mut Driver<'_, '_>, key: usize) {
        match io {
            Driver::Epoll(_) => self.remove(key),
            Driver::Uring(sub) => {
                let Some(s) = self.conns.try_remove(key) else {
                    return;
                };
                self.wheel.remove(key, s.timer);
                // Its receive, and a send to a client that stopped reading, would hold the
                // socket open (and the send's buffer) until they complete.
                if s.recv != Armed::Off || s.conn.sending() {
                    sub.cancel_fd(s.fd.as_fd());
                }
                sub.close(s.fd);
                self.closed();
            }
        }
    }

    /// Drop the connection (closing its socket at once).
    fn remove(&mut self, key: usize) {
        if let Some(s) = self.conns.try_remove(key) {
            self.wheel.remove(key, s.timer);
            self.closed();
        }
    }

    fn closed(&self) {
        self.stats.closed();
        self.cfg.conn_limit.release();
    }

    /// The `limit` oldest connections as this thread and the kernel see them (asked on
    /// demand). Choosing them costs no syscall; only those shown are asked of the kernel
    /// (four calls each), so a large listing cannot stall this thread's connections.
    fn describe(&self, limit: usize) -> Vec<ConnInfo> {
        let mut oldest: Vec<&Socket> = self.conns.iter().map(|(_, s)| s).collect();
        if oldest.len() > limit {
            oldest.select_nth_unstable_by_key(limit, |s| s.conn.accepted_at);
            oldest.truncate(limit);
        }
        oldest
            .into_iter()
            .map(|Socket { fd, conn: c, .. }| ConnInfo {
                thread: self.name.clone(),
                peer: sys::socket::peer_addr(fd).ok(),
                state: sys::socket::tcp_info(fd)
                    .map(|i| tcp_state_name(i.state))
                    .unwrap_or("UNKNOWN")
                    .to_string(),
                age_ms: self
                    .now
                    .saturating_duration_since(c.accepted_at)
                    .as_millis() as u64,
                requests: u64::from(c.requests),
                recv_queue: sys::socket::inq(fd).unwrap_or(0),
                send_queue: sys::socket::outq(fd).unwrap_or(0),
                buffered_in: c.rbuf.len() as u64,
                buffered_out: c.buffered_out(),
            })
            .collect()
    }

    /// The drain deadline passed: close everything. Returns how many were cut.
    pub(crate) fn cut_all(&mut self, io: &mut Driver<'_, '_>) -> usize {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let n = keys.len();
        for key in keys {
            self.close(io, key);
        }
        n
    }
}

/// A read the kernel stamped `arrived`, standing for `weight` requests, with both clocks read
/// now, at the read (the connection core reads none).
fn stamp(arrived: SystemTime, weight: u8) -> Stamp {
    Stamp {
        arrived,
        weight,
        read_at: (Instant::now(), SystemTime::now()),
    }
}

/// Write what is ready; whatever the kernel does not take waits for the next writable edge.
fn flush(s: &mut Socket, tally: &mut Tally, now: Instant) {
    while !s.conn.output().is_empty() && s.conn.phase() != crate::connection::Phase::Closed {
        match sys::socket::write(&s.fd, s.conn.output()) {
            Ok(n) => s.conn.sent(n, now, tally),
            Err(err) if sys::would_block(&err) => break,
            Err(err) if sys::interrupted(&err) => continue,
            Err(_) => s.conn.broke(),
        }
    }
}

#[cfg(test)]
mod size {
    /// Every open connection carries one of these even while idle; buffers are lent only
    /// while bytes are in flight. Keep it small (nginx spends ~560 B per idle connection).
    #[test]
    fn an_idle_connection_stays_small() {
        let size = std::mem::size_of::<super::Socket>();
        assert!(size <= 400, "a connection is {size} bytes");
    }
}
