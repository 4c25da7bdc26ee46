//! The reader role: owns connections, reads them, parses requests, writes responses.
//!
//! The reader feeds what its driver reports ([`crate::driver`]) to each connection's I/O-free
//! state machine ([`Connection`]), which decides what to parse, run, send and close. It is
//! written once for both drivers: where readiness and completions differ (who reads, how a
//! send completes, how reading pauses) it asks the driver's [`Io`]. A reader either runs the
//! handler itself (single, dispatch, shared, reuseport) or hands each request to the worker
//! pool and writes the answers back in order (pool). Reading pauses — the bytes stay in the
//! kernel's receive queue and TCP slows the client — when the worker queue is full, when a
//! connection has too many requests in flight, or when its unsent output passes
//! [`OUTPUT_BOUND`](crate::connection::OUTPUT_BOUND).
//!
//! Every connection is under exactly one deadline at a time (header, body, idle, write or
//! linger; see [`Connection::poll_deadline`]), kept on the thread's [`TimerWheel`].

use crate::app::body::{BodyError, Pipe, RequestBody};
use crate::app::handler::call_guarded;
use crate::app::refusal::RenderRefusal;
use crate::config::{QueueTiming, Timeouts};
use crate::connection::buffers::Buffers;
use crate::connection::timer::{Entry, TimerRef, TimerWheel};
use crate::connection::{Connection, Expired, Expiry, ParseContext, Polled, Stamp, Tally, Verdict};
use crate::driver::token::{Token, GEN_MASK};
use crate::driver::{ConnEvent, Driver, Io, Read, Written};
use crate::observe::connections::{ConnInfo, ConnQuery, Held};
use crate::observe::queue_wait::ReadTiming;
use crate::observe::stats::ThreadStats;
use crate::roles::conn_limit::ConnLimit;
use crate::roles::handoff::{Balancer, Handed, InboxReceiver};
use crate::roles::inline::{Place, Route, Stopwatch};
use crate::roles::runtime::ServiceExec;
use crate::roles::runtime::Step;
use crate::roles::worker::{ConnId, Exec, HandlerExec, Job, PoolLink};
use crate::tls::session::Session;
use crate::tls::Tls;
use crossbeam_channel::Receiver;
use h1::Limits;
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};
use sys::socket::Accepted;
use tokio::task::AbortHandle;

/// A connection as this reader holds it: the socket, what its driver keeps for it, and the
/// I/O-free protocol state.
struct Socket<C> {
    fd: OwnedFd,
    /// The driver's own state for it (epoll: what the last edge said; io_uring: its receive).
    io: C,
    /// Which connection of this slab slot it is: a late event, completion, worker answer or
    /// timer entry for an earlier one carries another generation.
    gen: u32,
    /// Its entry in the thread's timer wheel, if it has one.
    timer: TimerRef,
    /// The deadlines that entry serves without being moved ([`TimerWheel::serves_after`]).
    timer_serves_after: Instant,
    conn: Connection,
}

/// A service's answers still running on the runtime, by connection and sequence number:
/// aborted if the connection closes first. Kept beside the connections rather than in each
/// (most connections never have one, and every idle connection would pay for the room).
#[derive(Default)]
struct Running(HashMap<usize, Vec<(u64, AbortHandle)>>);

impl Running {
    fn add(&mut self, key: usize, seq: u64, task: AbortHandle) {
        self.0.entry(key).or_default().push((seq, task));
    }

    fn done(&mut self, key: usize, seq: u64) {
        if let Some(list) = self.0.get_mut(&key) {
            list.retain(|(s, _)| *s != seq);
        }
    }

    /// Abort what still runs for `key`'s connection, which closed; how many were.
    fn cancel(&mut self, key: usize) -> u64 {
        // Most closes find nothing running, and an empty map still hashes the key.
        if self.0.is_empty() {
            return 0;
        }
        let Some(list) = self.0.remove(&key) else {
            return 0;
        };
        let mut cancelled = 0;
        for (_, task) in list {
            if !task.is_finished() {
                task.abort();
                cancelled += 1;
            }
        }
        cancelled
    }
}

/// The connection an event or a completion is for, unless it has closed since (its slot may
/// hold another connection now: the generation tells).
fn socket_of<C>(conns: &mut Slab<Socket<C>>, token: Token) -> Option<(usize, &mut Socket<C>)> {
    let Token::Conn { key, gen } = token else {
        return None;
    };
    let key = key as usize;
    conns
        .get_mut(key)
        .filter(|s| s.gen & GEN_MASK == gen)
        .map(|s| (key, s))
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
    /// Bodies past this many bytes, or chunked, are handed to the application as they
    /// arrive (a service); `None`: every body is read whole first (a native handler).
    pub(crate) stream_over: Option<u64>,
    /// Which reads go through `recvmsg` to count queue waits from the kernel's receive
    /// timestamps.
    pub(crate) queue_timing: QueueTiming,
    /// The certificates, when connections speak TLS.
    pub(crate) tls: Option<Arc<Tls>>,
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
            stream_over: self.stream_over,
            refusals: self.refusals.as_ref(),
            date,
            draining,
            now,
        }
    }
}

/// What a reader is made of, put together by the wiring before its thread (and driver)
/// exists.
pub(crate) struct ReaderParts {
    pub(crate) exec: Exec,
    pub(crate) cfg: ReaderConfig,
    pub(crate) stats: Arc<ThreadStats>,
    pub(crate) inbox: Option<InboxReceiver>,
    /// Its thread's name, and where the admin thread's questions arrive.
    pub(crate) name: String,
    pub(crate) queries: Receiver<ConnQuery>,
    /// An acceptor's handshakes: where each connection goes once its TLS session is
    /// established (its exec is then [`Exec::Nothing`]).
    pub(crate) hand_over: Option<Balancer>,
}

pub(crate) struct Reader<D: Driver> {
    name: String,
    queries: Receiver<ConnQuery>,
    conns: Slab<Socket<D::Conn>>,
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
    /// Which of the reads the reader makes itself are timed.
    timing: ReadTiming,
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
    running: Running,
    /// A service's answers admitted this round, spawned together when it ends.
    deferred: Vec<(ConnId, u64, crate::roles::runtime::Answering)>,
    /// Streaming request bodies, by connection: where the reader pushes what arrives.
    bodies: HashMap<usize, Arc<Pipe>>,
    /// Connections whose body's consumer was full, to resume when it has room.
    paused: Vec<usize>,
    /// Handshakes only: where established connections go.
    hand_over: Option<Balancer>,
}

/// How often, and after how long without bytes, an io_uring reader asks the kernel whether a
/// connection waiting mid-request was reset.
const RESET_SWEEP: Duration = Duration::from_secs(1);

impl<D: Driver> Reader<D> {
    /// The runtime a service's answers are called and first polled in, if this reader runs
    /// a service: its loop enters it once for the thread's life.
    pub(crate) fn runtime(&self) -> Option<tokio::runtime::Handle> {
        match &self.exec {
            Exec::Service(exec) => Some(exec.tasks.handle().clone()),
            _ => None,
        }
    }

    pub(crate) fn new(parts: ReaderParts) -> Self {
        let ReaderParts {
            exec,
            cfg,
            stats,
            inbox,
            name,
            queries,
            hand_over,
        } = parts;
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
            timing: ReadTiming::new(now),
            draining: false,
            idle_close_at: None,
            next_sweep: now + RESET_SWEEP,
            tally: Tally::default(),
            running: Running::default(),
            deferred: Vec::new(),
            bodies: HashMap::new(),
            paused: Vec::new(),
            touched: Vec::new(),
            spare: Buffers::default(),
            hand_over,
        }
    }

    /// The loop woke at `now` after waiting `waited` for events: one clock read per round
    /// serves every connection.
    pub(crate) fn set_now(&mut self, now: Instant, waited: Duration) {
        self.timing.round_began(self.now, waited);
        self.now = now;
        self.date.refresh_by(now);
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
    pub(crate) fn add(&mut self, io: &mut impl Io<Conn = D::Conn>, accepted: Accepted) {
        let Accepted { fd, peer, at } = accepted;
        let mut conn = Connection::new(peer, self.cfg.limits, at);
        if let Some(tls) = &self.cfg.tls {
            match Session::new(tls.config(), &mut self.tally.tls) {
                Some(session) => conn = conn.with_tls(session),
                None => {
                    tracing::warn!("cannot start a TLS session; closing the connection");
                    self.cfg.conn_limit.release();
                    return;
                }
            }
        }
        self.adopt(io, fd, conn);
    }

    /// Take a connection handed over: a fresh socket, or one an acceptor shook hands on,
    /// with its established session and what came with it.
    pub(crate) fn add_handed(&mut self, io: &mut impl Io<Conn = D::Conn>, handed: Handed) {
        match handed {
            Handed::Accepted(accepted) => self.add(io, accepted),
            Handed::Established(fd, conn) => {
                let key = self.adopt(io, fd, *conn);
                // Request bytes may have come with the handshake's last flight, and the
                // session's tickets may still be unsent: take them up now.
                if let Some(key) = key.filter(|_| !self.draining) {
                    self.drive(io, key);
                }
            }
        }
    }

    /// Serve `conn` on `fd` from this thread; its key, unless the driver refused it.
    fn adopt(
        &mut self,
        io: &mut impl Io<Conn = D::Conn>,
        fd: OwnedFd,
        conn: Connection,
    ) -> Option<usize> {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut state = D::Conn::default();
        let stamps = self.cfg.queue_timing.stamps();
        if let Err(err) = io.open(&fd, Token::conn(key, gen), &mut state, stamps) {
            tracing::warn!(%err, "cannot register connection; closing it");
            self.cfg.conn_limit.release();
            return None;
        }
        entry.insert(Socket {
            fd,
            io: state,
            gen,
            timer: TimerRef::NONE,
            timer_serves_after: self.now,
            conn,
        });
        self.stats.opened();
        if self.draining {
            // Accepted during shutdown: answer what it already sent, or close it now.
            if let Some(s) = self.conns.get_mut(key) {
                D::Io::read_all(&mut s.io);
            }
            self.drive(io, key);
        } else {
            self.schedule(key);
        }
        Some(key)
    }

    /// Something happened on a connection: take it in, and drive the connection.
    pub(crate) fn on_conn<I: Io<Conn = D::Conn, Note = D::Note>>(
        &mut self,
        io: &mut I,
        token: Token,
        event: ConnEvent<'_>,
        note: D::Note,
    ) {
        // An event of the same round may be for a connection closed (and its key reused)
        // since the driver reported it: the generation in the token tells.
        let Some((key, s)) = socket_of(&mut self.conns, token) else {
            return;
        };
        I::note(&mut s.io, note);
        match event {
            // Reset (or both sides shut): nothing can be answered. Close now rather than at
            // the next timeout, which is what a short read before the RST would cost.
            ConnEvent::Ready { broken: true } => s.conn.broke(),
            ConnEvent::Ready { broken: false } => {}
            ConnEvent::Received { data, arrived } => match data {
                Ok([]) if s.conn.lingering() => return self.close(io, key),
                Ok([]) => s.conn.peer_closed(),
                // Discarding until the FIN, an error, the cap or the linger deadline.
                Ok(bytes) if s.conn.lingering() => {
                    if !s.conn.discard_input(bytes.len()) {
                        return self.close(io, key);
                    }
                }
                Ok(bytes) => {
                    s.conn.read_buffer(&mut self.spare).extend_from_slice(bytes);
                    let stamp = arrived.map(|at| stamp(at, 1));
                    s.conn
                        .received(bytes.len(), stamp, self.now, &mut self.tally);
                }
                // The pool ran dry, or we cancelled it: armed again when wanted.
                Err(err) if sys::out_of_buffers(&err) || sys::cancelled(&err) => {}
                Err(_) => s.conn.broke(),
            },
            ConnEvent::Sent { result, buf } => {
                let n = result.unwrap_or_else(|_| {
                    s.conn.broke();
                    0
                });
                if let Some(buf) = s.conn.sent(buf, n, self.now, &mut self.tally) {
                    self.spare.give(buf);
                }
            }
        }
        self.drive(io, key);
    }

    /// The loop's eventfd fired: take handed-over connections, worker answers and
    /// questions from the admin thread.
    pub(crate) fn on_wake(&mut self, io: &mut impl Io<Conn = D::Conn>) {
        while let Ok(query) = self.queries.try_recv() {
            let _ = query
                .reply
                .send((self.conns.len(), self.describe(query.limit)));
        }
        while let Some(handed) = self.inbox.as_ref().and_then(|i| i.pop()) {
            self.add_handed(io, handed);
        }
        let Reader {
            exec,
            conns,
            now,
            spare,
            stats,
            touched,
            running,
            ..
        } = self;
        for done in exec.completions().flat_map(|rx| rx.try_iter()) {
            let Some(Socket { conn, gen, .. }) = conns.get_mut(done.conn.key) else {
                continue;
            };
            if *gen != done.conn.gen {
                continue;
            }
            if done.end.is_some() {
                stats.requests(1);
                running.done(done.conn.key, done.seq);
            }
            conn.complete(done.seq, done.bytes, done.end, spare, *now);
            touched.push(done.conn.key);
        }
        // Streaming bodies whose consumer made room: read on.
        let mut i = 0;
        while i < self.paused.len() {
            let key = self.paused[i];
            if self.bodies.get(&key).is_some_and(|pipe| !pipe.has_room()) {
                i += 1;
                continue;
            }
            self.paused.swap_remove(i);
            if let Some(s) = self.conns.get_mut(key) {
                s.conn.resume_body();
                self.touched.push(key);
            }
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
    pub(crate) fn after_events(&mut self, io: &mut impl Io<Conn = D::Conn>) {
        self.spawn_deferred();
        self.rescue_workers();
        while let Some(&key) = self.blocked.front() {
            let Some(job) = self.conns.get_mut(key).and_then(|s| s.conn.take_stalled()) else {
                self.blocked.pop_front();
                continue;
            };
            let seq = job.seq;
            let submitted = match &self.exec {
                Exec::Handler(exec) => match exec.pool_for(&job.req) {
                    Some(PoolLink { submit, .. }) => submit.try_submit(job).map(|()| None),
                    None => return,
                },
                Exec::Service(exec) => exec.tasks.try_submit(job).map(Some),
                Exec::Nothing => return,
            };
            match submitted {
                Ok(task) => {
                    self.blocked.pop_front();
                    if let Some(task) = task {
                        self.running.add(key, seq, task);
                    }
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

    /// Workers in the background that work piles up for: back to the normal class, even in
    /// the middle of a piece ([`crate::priority::Crew::rescue`]).
    fn rescue_workers(&self) {
        match &self.exec {
            Exec::Service(
                exec @ ServiceExec {
                    crew: Some(crew), ..
                },
            ) => crew.rescue(exec.waiting()),
            Exec::Handler(HandlerExec {
                workers:
                    Some(PoolLink {
                        crew: Some(crew),
                        submit,
                        ..
                    }),
                ..
            }) => crew.rescue(submit.waiting()),
            _ => {}
        }
    }

    /// Spawn the answers this round admitted, together (see `Tasks::admit`); those of a
    /// connection that closed meanwhile are dropped.
    fn spawn_deferred(&mut self) {
        let Exec::Service(exec) = &self.exec else {
            return;
        };
        for (id, seq, answering) in self.deferred.drain(..) {
            let alive = self.conns.get(id.key).is_some_and(|s| s.gen == id.gen);
            if alive {
                self.running
                    .add(id.key, seq, exec.tasks.spawn(answering, id, seq));
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
    fn sweep_reset(&mut self, io: &mut impl Io<Conn = D::Conn>) {
        if !D::MAY_MISS_RESETS || self.now < self.next_sweep {
            return;
        }
        self.next_sweep = self.now + RESET_SWEEP;
        let quiet_since = self.now.checked_sub(RESET_SWEEP);
        let reset: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, s)| {
                D::Io::may_miss_reset(&s.io)
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

    /// The round's last step, before the loop may sleep: what the connections' cores
    /// counted since the last flush (bytes sent after their answers' counting) goes to the
    /// thread's counters, so nothing counted waits for the next wake.
    pub(crate) fn end_round(&mut self) {
        self.stats.add(&mut self.tally);
    }

    /// Fire the deadlines that are due.
    pub(crate) fn on_timers(&mut self, io: &mut impl Io<Conn = D::Conn>) {
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
                conn,
                gen,
                timer,
                timer_serves_after,
                ..
            }) = self.conns.get_mut(e.key)
            else {
                continue;
            };
            if *gen != e.gen || timer.tick != e.tick {
                continue; // the key's connection closed and the key was reused
            }
            *timer = TimerRef::NONE;
            match conn.poll_deadline(&self.cfg.timeouts) {
                None => {}
                Some((when, kind)) if when <= self.now => self.expire(io, e.key, kind),
                Some((when, _)) => {
                    *timer = self.wheel.insert(e.key, e.gen, when);
                    *timer_serves_after = self.wheel.serves_after(*timer);
                }
            }
        }
        self.due = due;
    }

    fn expire(&mut self, io: &mut impl Io<Conn = D::Conn>, key: usize, kind: Expiry) {
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
        let expired = s.conn.expire(kind, &cx, tally);
        let why = match expired {
            Expired::BodyTimedOut => BodyError::TimedOut,
            Expired::Close | Expired::Answered => BodyError::Incomplete,
        };
        cut_body(&mut self.bodies, key, why);
        match expired {
            Expired::Close => self.close(io, key),
            Expired::Answered | Expired::BodyTimedOut => self.drive(io, key),
        }
    }

    /// File the connection's current deadline, if it is not already filed for that time or
    /// earlier (a later deadline is found when the earlier entry fires).
    fn schedule(&mut self, key: usize) {
        let Some(Socket {
            conn,
            gen,
            timer,
            timer_serves_after,
            ..
        }) = self.conns.get_mut(key)
        else {
            return;
        };
        let Some((when, _)) = conn.poll_deadline(&self.cfg.timeouts) else {
            return;
        };
        if !timer.is_none() && when > *timer_serves_after {
            return;
        }
        let tick = self.wheel.tick_of(when);
        if timer.is_none() || timer.tick > tick {
            // Earlier than its entry: file it anew and take the old one out.
            self.wheel.remove(key, *timer);
            *timer = self.wheel.insert(key, *gen, when);
            *timer_serves_after = self.wheel.serves_after(*timer);
        }
    }

    /// Shutdown: stop keeping connections alive. Each connection's next answer says
    /// `Connection: close`; idle keep-alive connections get `idle_grace` to send one more
    /// request before they are closed, because closing one just as its client sends (the
    /// client cannot know) loses that request — the race that makes restarts reset
    /// connections. A busy client's next request comes within microseconds and is answered;
    /// an idle one is closed when the grace ends.
    pub(crate) fn begin_drain(&mut self, io: &mut impl Io<Conn = D::Conn>, idle_grace: Duration) {
        self.draining = true;
        self.idle_close_at = Some(self.now + idle_grace);
        self.next_sweep = self.now;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(s) = self.conns.get_mut(key) {
                // Read what the kernel holds: a request already sent is answered, not lost.
                D::Io::read_all(&mut s.io);
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

    /// Take the connection as far as it can go now: read what the driver reads itself,
    /// answer, send, settle, and go round while there is more to read or parsing was
    /// held up by output the send has since relieved.
    fn drive(&mut self, io: &mut impl Io<Conn = D::Conn>, key: usize) {
        loop {
            let Some(s) = self.conns.get_mut(key) else {
                return;
            };
            if s.conn.lingering() {
                return self.linger(io, key);
            }
            if D::Io::input_waiting(&s.io) && s.conn.wants_read() {
                let starts = s.conn.starts_request();
                let weight =
                    self.timing
                        .weight(self.cfg.queue_timing, s.conn.first_stamp_pending(), starts);
                let buf = s.conn.read_buffer(&mut self.spare);
                match io.read(&s.fd, &mut s.io, buf, weight.is_some()) {
                    Read::Closed => {
                        s.conn.peer_closed();
                        cut_body(&mut self.bodies, key, BodyError::Incomplete);
                    }
                    Read::Bytes(n, arrived) => {
                        let stamp = arrived.zip(weight).map(|(at, w)| stamp(at, w));
                        s.conn.received(n, stamp, self.now, &mut self.tally);
                    }
                    Read::Again => {}
                    Read::Failed => s.conn.broke(),
                }
            }
            self.answer(key);
            // Counted before the answers leave: a client that has its answer finds its
            // request (and its waits) in the counters.
            self.stats.add(&mut self.tally);
            let Some(s) = self.conns.get_mut(key) else {
                return;
            };
            let token = Token::conn(key, s.gen);
            let written = Written {
                conn: &mut s.conn,
                tally: &mut self.tally,
                spare: &mut self.spare,
                now: self.now,
            };
            io.write(&s.fd, token, written);
            let idle_over = self.draining && self.idle_close_at.is_none();
            match s
                .conn
                .poll_verdict(self.now, self.cfg.timeouts.linger, idle_over)
            {
                Verdict::Keep => {}
                Verdict::HalfClose => {
                    io.shutdown_write(&s.fd, &mut s.io);
                    continue;
                }
                Verdict::Close { aborted } => {
                    if aborted {
                        self.stats.aborted();
                    }
                    return self.close(io, key);
                }
            }
            if self.hand_over.is_some() && s.conn.tls_established() {
                // Its handshake is done: nothing more is read here, and once nothing is in
                // flight on this loop's driver the connection moves to a reader.
                let stamps = self.cfg.queue_timing.stamps();
                io.want_input(&s.fd, token, &mut s.io, false, stamps);
                if !s.conn.sending() && D::Io::quiet(&s.io) {
                    return self.hand_off(io, key);
                }
                break;
            }
            let more_to_read = D::Io::input_waiting(&s.io) && s.conn.wants_read();
            if !more_to_read && !s.conn.unblocked() {
                let wants = s.conn.wants_read();
                let stamps = self.cfg.queue_timing.stamps();
                io.want_input(&s.fd, token, &mut s.io, wants, stamps);
                s.conn.park_buffers(&mut self.spare);
                break;
            }
        }
        self.schedule(key);
        // The rest of what the core counted (bytes sent) goes to the thread's counters when
        // the round ends ([`Reader::end_round`]): once per round, not once per connection.
    }

    /// A refused connection, half-closed: discard what the client still sends until its
    /// FIN, the cap or the linger deadline, so that the close sends FIN, not RST.
    fn linger(&mut self, io: &mut impl Io<Conn = D::Conn>, key: usize) {
        let Some(s) = self.conns.get_mut(key) else {
            return;
        };
        while D::Io::input_waiting(&s.io) {
            let buf = s.conn.read_buffer(&mut self.spare);
            buf.clear();
            match io.read(&s.fd, &mut s.io, buf, false) {
                Read::Bytes(n, _) if s.conn.discard_input(n) => {}
                Read::Again => {}
                Read::Bytes(..) | Read::Closed | Read::Failed => return self.close(io, key),
            }
        }
        io.want_input(&s.fd, Token::conn(key, s.gen), &mut s.io, true, false);
        self.schedule(key);
    }

    /// Run or dispatch every request the connection has ready.
    fn answer(&mut self, key: usize) {
        match self.exec {
            Exec::Handler(_) => self.answer_native(key),
            Exec::Service(_) => self.answer_service(key),
            // Handshakes only: requests are for the reader the connection goes to.
            Exec::Nothing => {}
        }
    }

    /// A native handler's requests: run here, or queued to a pool (every body whole).
    fn answer_native(&mut self, key: usize) {
        let Reader {
            conns,
            exec: Exec::Handler(exec),
            date,
            stats,
            blocked,
            draining,
            now,
            spare,
            cfg,
            tally,
            ..
        } = self
        else {
            return;
        };
        let Some(Socket { conn, gen, .. }) = conns.get_mut(key) else {
            return;
        };
        let gen = *gen;
        let cx = cfg.parse_context(date, *draining, *now);
        while let Some(polled) = conn.poll_request(&cx, tally) {
            // A native handler is never offered a body as it arrives (`stream_over`).
            let Polled::Request(req, ctx) = polled else {
                continue;
            };
            let pool = exec.pool_for(&req);
            // A route that proved cheap on the workers is called here, as without a pool.
            let (mut route, mut here) = (None, None);
            if let Some(PoolLink {
                submit,
                cheap: Some(cheap),
                ..
            }) = pool
            {
                let r = Route::of(&req);
                match cheap.place(r, submit.waiting()) {
                    Place::Workers => route = Some(r),
                    place => here = Some((cheap, r, Stopwatch::start(place))),
                }
            }
            match pool {
                Some(PoolLink { submit, reply, .. }) if here.is_none() => {
                    let seq = conn.push_pending();
                    let job = Job {
                        reply: *reply,
                        conn: ConnId { key, gen },
                        seq,
                        ctx,
                        req,
                        route,
                    };
                    if let Err(job) = submit.try_submit(job) {
                        // Boxed inside: a stalled request is rare, and the slot is in
                        // every connection.
                        conn.stall(job);
                        blocked.push_back(key);
                    }
                }
                _ => {
                    let (resp, panicked) = call_guarded(&*exec.handler, req);
                    if let Some((cheap, r, stopwatch)) = here {
                        if cheap.answered_here(r, stopwatch.stop(), !panicked) {
                            stats.sent_back();
                        }
                    }
                    if panicked {
                        stats.panicked();
                    }
                    conn.respond(&resp, ctx, date, spare, *now);
                    stats.requests(1);
                }
            }
        }
    }

    /// A service's requests: polled here first or handed to its runtime, their bodies
    /// whole or fed as they arrive. Not inlined: it is called once per event, and inlined
    /// into the loop it changed the native path's code around it (measured: +22
    /// instructions per native keep-alive request from an unrelated edit here).
    #[inline(never)]
    fn answer_service(&mut self, key: usize) {
        let Reader {
            conns,
            exec: Exec::Service(exec),
            date,
            stats,
            blocked,
            draining,
            now,
            spare,
            cfg,
            tally,
            running,
            bodies,
            paused,
            deferred,
            ..
        } = self
        else {
            return;
        };
        let Some(Socket { conn, gen, .. }) = conns.get_mut(key) else {
            return;
        };
        let id = ConnId { key, gen: *gen };
        let cx = cfg.parse_context(date, *draining, *now);
        while let Some(polled) = conn.poll_request(&cx, tally) {
            let (req, ctx, body) = match polled {
                Polled::Request(req, ctx) => (req, ctx, None),
                Polled::Streaming(req, ctx, length) => {
                    let pipe = Arc::new(Pipe::new(exec.waker.clone()));
                    bodies.insert(key, pipe.clone());
                    (req, ctx, Some(RequestBody::streamed(pipe, length)))
                }
                Polled::BodyFailed(err) => {
                    cut_body(bodies, key, BodyError::Refused(err));
                    continue;
                }
                Polled::Body(bytes, last) => {
                    let Some(pipe) = bodies.get(&key) else {
                        continue;
                    };
                    let room = pipe.push(bytes, last);
                    if last {
                        bodies.remove(&key);
                    } else if !room {
                        conn.pause_body();
                        paused.push(key);
                    }
                    continue;
                }
            };
            // Polled here first in a shape without workers; where workers run the business,
            // only a route that proved cheap on them (see `roles::inline`).
            let mut learned = None;
            let here = exec.inline
                || match (exec.tasks.cheap(), &body) {
                    (Some(cheap), None) => {
                        let route = Route::of(&req);
                        let place = cheap.place(route, exec.waiting());
                        learned = Some((route, place));
                        place != Place::Workers
                    }
                    _ => false,
                };
            if here {
                let stopwatch = learned.map(|(_, place)| Stopwatch::start(place));
                let (answering, poll) = exec.tasks.start_here(req, body, ctx, date);
                if let (Some(cheap), Some((route, _)), Some(stopwatch)) =
                    (exec.tasks.cheap(), learned, stopwatch)
                {
                    let took = stopwatch.stop();
                    if cheap.answered_here(route, took, poll.is_ready()) {
                        stats.sent_back();
                    }
                }
                let (seq, task) = match poll {
                    Poll::Ready(Step::Whole(whole)) => {
                        if whole.panicked() {
                            stats.panicked();
                        }
                        conn.respond_with(
                            |out| whole.encode(date, cfg.refusals.as_ref(), out),
                            spare,
                            *now,
                        );
                        stats.requests(1);
                        continue;
                    }
                    Poll::Ready(Step::Stream(stream)) => {
                        let seq = conn.push_pending();
                        (seq, exec.tasks.spawn_stream(stream, id, seq))
                    }
                    Poll::Pending => {
                        let seq = conn.push_pending();
                        (seq, exec.tasks.spawn(answering, id, seq))
                    }
                };
                running.add(key, seq, task);
                continue;
            }
            let seq = conn.push_pending();
            if let Some(body) = body {
                // Its body is being read: it starts now, room or not.
                let answering = exec.tasks.begin(req, Some(body), ctx);
                running.add(key, seq, exec.tasks.spawn(answering, id, seq));
                continue;
            }
            let job = Job {
                reply: 0,
                conn: id,
                seq,
                ctx,
                req,
                // A service's route goes with its answer (`Answering::learning`).
                route: None,
            };
            match exec.tasks.admit(job) {
                Ok(answering) => {
                    deferred.push((id, seq, answering.learning(learned.map(|(r, _)| r))))
                }
                Err(job) => {
                    // The runtime is full: the request waits here, and the connection
                    // parses no more until there is room.
                    conn.stall(job);
                    blocked.push_back(key);
                }
            }
        }
    }

    /// Close the connection through the driver. A service's answers still running for it
    /// are dropped: nobody is left to read them.
    fn close(&mut self, io: &mut impl Io<Conn = D::Conn>, key: usize) {
        let Some(mut s) = self.conns.try_remove(key) else {
            return;
        };
        s.conn.closing(&mut self.tally);
        self.stats.add(&mut self.tally);
        // Its buffers serve the next connection: freed here, each new connection of a
        // churning load allocated a read buffer again (~700 instructions of ~5,400 a
        // connection cost on the reader under a 10-requests-per-connection load).
        s.conn.park_buffers(&mut self.spare);
        let cancelled = self.running.cancel(key);
        if cancelled > 0 {
            self.stats.cancelled(cancelled);
        }
        cut_body(&mut self.bodies, key, BodyError::Incomplete);
        self.wheel.remove(key, s.timer);
        io.close(s.fd, s.io, s.conn.sending());
        self.closed();
    }

    /// An acceptor's handshake is done: the connection, its session and whatever came with
    /// the handshake go to the reader the balancer picks. Its slot under `--max-conns`
    /// stays claimed: the connection lives on.
    fn hand_off(&mut self, io: &mut impl Io<Conn = D::Conn>, key: usize) {
        let Some(mut s) = self.conns.try_remove(key) else {
            return;
        };
        self.stats.add(&mut self.tally);
        self.wheel.remove(key, s.timer);
        io.detach(&s.fd, s.io);
        self.stats.closed();
        s.conn.park_buffers(&mut self.spare);
        match self.hand_over.as_mut() {
            Some(balancer) => balancer.hand(Handed::Established(s.fd, Box::new(s.conn))),
            // Not a handshaking acceptor (never asked to hand off): the connection closes.
            None => self.cfg.conn_limit.release(),
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
        let mut oldest: Vec<&Socket<D::Conn>> = self.conns.iter().map(|(_, s)| s).collect();
        if oldest.len() > limit {
            oldest.select_nth_unstable_by_key(limit, |s| s.conn.accepted_at());
            oldest.truncate(limit);
        }
        oldest
            .into_iter()
            .map(|Socket { fd, conn: c, .. }| {
                let held = Held {
                    age: self.now.saturating_duration_since(c.accepted_at()),
                    requests: c.requests(),
                    buffered_in: c.buffered_in(),
                    buffered_out: c.buffered_out(),
                };
                held.describe(&self.name, fd)
            })
            .collect()
    }

    /// The drain deadline passed: close everything. Returns how many were cut.
    pub(crate) fn cut_all(&mut self, io: &mut impl Io<Conn = D::Conn>) -> usize {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let n = keys.len();
        for key in keys {
            self.close(io, key);
        }
        n
    }
}

/// The streaming body of `key`'s connection will not be completed (`why`: the client went
/// away, the body timed out, its framing broke): its reader gets the error rather than
/// waiting forever.
fn cut_body(bodies: &mut HashMap<usize, Arc<Pipe>>, key: usize, why: BodyError) {
    // Most connections close with no body streaming, and an empty map still hashes the key.
    if bodies.is_empty() {
        return;
    }
    if let Some(pipe) = bodies.remove(&key) {
        pipe.fail(why);
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

#[cfg(test)]
mod size {
    /// Every open connection carries one of these even while idle; buffers are lent only
    /// while bytes are in flight. Keep it small (nginx spends ~560 B per idle connection);
    /// TLS adds a pointer (its session is boxed: a plain connection pays 8 bytes for it).
    #[test]
    fn an_idle_connection_stays_small() {
        let epoll = std::mem::size_of::<super::Socket<crate::driver::epoll::EdgeState>>();
        let uring = std::mem::size_of::<super::Socket<crate::driver::uring::RecvState>>();
        let size = epoll.max(uring);
        assert!(size <= 424, "a connection is {size} bytes");
    }
}
