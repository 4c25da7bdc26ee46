//! The reader role: owns connections, reads them, parses requests, writes responses.
//!
//! A reader either runs the handler itself (single, dispatch, shared, reuseport) or hands
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
use crate::config::Timeouts;
use crate::conn_limit::ConnLimit;
use crate::connection::{Connection, Expiry, NO_TICK, NO_WAIT};
use crate::handler::{call_guarded, Handler};
use crate::handoff::InboxReceiver;
use crate::introspect::{tcp_state_name, ConnInfo, ConnQuery};
use crate::refusal::{self, RenderRefusal};
use crate::stats::ThreadStats;
use crate::timer::{Entry, TimerWheel};
use crate::worker::{Completion, ConnId, Job, Submitter};
use bytes::{Buf, BytesMut};
use crossbeam_channel::Receiver;
use h1::{Decoded, EncodeContext, Limits};
use slab::Slab;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use sys::socket::Accepted;
use sys::{Epoll, Interest, Readiness};

/// Free space we want in a read buffer before each read.
const READ_SPARE: usize = 4 * 1024;
/// How much a read buffer grows by when it needs room.
const READ_GROW: usize = 16 * 1024;
/// The most a lingering close discards before it gives up and closes.
const LINGER_MAX_BYTES: usize = 1024 * 1024;

/// A reader's link to a pool of handler threads: where it submits requests and where the
/// answers come back.
pub(crate) struct PoolLink {
    pub(crate) submit: Submitter,
    pub(crate) completions: Receiver<Completion>,
    pub(crate) reply: usize,
}

/// Who runs the handler for requests this reader parsed: requests the handler says may
/// block ([`Handler::blocks`]) go to the blocking pool when there is one; the others to the
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
            Some(link) if self.handler.blocks(req) => Some(link),
            _ => self.workers.as_ref(),
        }
    }

    fn links(&self) -> impl Iterator<Item = &PoolLink> {
        self.workers.iter().chain(self.blocking.iter())
    }
}

/// Count what a read's kernel timestamp says (see [`crate::queue_wait`]): the connection's
/// accept-queue wait at its first timestamped read, and, when the read begins a request, how
/// long its bytes waited in the receive queue (kept for each request they begin).
fn queue_waits(conn: &mut Connection, stats: &ThreadStats, arrived: SystemTime, starts: bool) {
    if !starts && !conn.accept_wait_pending {
        // The rest of a request already counted: no clock to read.
        return;
    }
    let waited = SystemTime::now()
        .duration_since(arrived)
        .unwrap_or(Duration::ZERO);
    if starts {
        conn.receive_wait_us = u32::try_from(waited.as_micros()).unwrap_or(NO_WAIT - 1);
    }
    if conn.accept_wait_pending {
        conn.accept_wait_pending = false;
        // The bytes arrived `waited` ago; the accept came `since_accept` ago. Bytes that came
        // after the accept mean the connection was out of the queue before it spoke: 0.
        let since_accept = Instant::now().saturating_duration_since(conn.accepted_at);
        stats.accept_waited(waited.saturating_sub(since_accept));
    }
}

/// What a reader needs besides its executor: limits, deadlines, the connection ceiling.
pub(crate) struct ReaderConfig {
    pub(crate) limits: Limits,
    pub(crate) timeouts: Timeouts,
    pub(crate) conn_limit: Arc<ConnLimit>,
    /// The application, asked for each request's body limit once its head is read (in
    /// `pool` too, where another thread will run it).
    pub(crate) app: Arc<dyn Handler>,
    /// How the application renders the server's refusals.
    pub(crate) refusals: Option<RenderRefusal>,
    /// Read with `recvmsg` and count queue waits from the kernel's receive timestamps.
    pub(crate) queue_timing: bool,
}

pub(crate) struct Reader {
    name: String,
    queries: Receiver<ConnQuery>,
    conns: Slab<Connection>,
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
    draining: bool,
    /// In a drain, when idle keep-alive connections stop being given a last chance.
    idle_close_at: Option<Instant>,
    /// Connections touched by completions in this round, to drive once each.
    touched: Vec<usize>,
    /// Buffers lent to connections while they have bytes in flight.
    spare: Buffers,
}

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
            draining: false,
            idle_close_at: None,
            touched: Vec::new(),
            spare: Buffers::default(),
        }
    }

    /// The loop woke at `now`: one clock read per round serves every connection.
    pub(crate) fn set_now(&mut self, now: Instant) {
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
    pub(crate) fn add(&mut self, epoll: &Epoll, accepted: Accepted) {
        let Accepted { fd, peer, at } = accepted;
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Registration reports data that is already waiting (TCP_DEFER_ACCEPT, fast
        // clients): epoll checks readiness when a file is added.
        if let Err(err) = epoll.add(&fd, key as u64, Interest::Connection) {
            tracing::warn!(%err, "cannot register connection; closing it");
            self.cfg.conn_limit.release();
            return;
        }
        entry.insert(Connection::new(fd, peer, gen, self.cfg.limits, at));
        self.stats.opened();
        if self.draining {
            // Accepted during shutdown: answer what it already sent, or close it now.
            if let Some(conn) = self.conns.get_mut(key) {
                conn.readable = true;
            }
            self.drive(key);
        } else {
            self.schedule(key);
        }
    }

    /// epoll reported readiness for connection `key`.
    pub(crate) fn on_event(&mut self, key: usize, readiness: Readiness) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if readiness.broken() {
            // Reset (or both sides shut): nothing can be answered. Close now rather than
            // at the next timeout, which is what a short read before the RST would cost.
            conn.broken = true;
        } else if readiness.peer_closed() {
            conn.fin_seen = true;
        }
        if readiness.readable() {
            conn.readable = true;
        }
        self.drive(key);
    }

    /// The loop's eventfd fired: take handed-over connections, worker answers and
    /// questions from the admin thread.
    pub(crate) fn on_wake(&mut self, epoll: &Epoll) {
        while let Ok(query) = self.queries.try_recv() {
            let _ = query
                .reply
                .send((self.conns.len(), self.describe(query.limit)));
        }
        while let Some(fd) = self.inbox.as_ref().and_then(|i| i.pop()) {
            self.add(epoll, fd);
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
            let Some(conn) = conns.get_mut(done.conn.key) else {
                continue;
            };
            if conn.gen != done.conn.gen {
                continue;
            }
            if conn.wbuf.is_empty() {
                conn.last_write = *now;
                spare.lend(&mut conn.wbuf);
            }
            conn.complete(done.seq, done.bytes, done.keep_alive);
            stats.requests(1);
            touched.push(done.conn.key);
        }
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &key in &touched {
            self.drive(key);
        }
        touched.clear();
        self.touched = touched;
    }

    /// After a round of events: give stalled requests the queue room workers freed.
    pub(crate) fn after_events(&mut self) {
        while let Some(&key) = self.blocked.front() {
            let Some(job) = self.conns.get_mut(key).and_then(|c| c.stalled.take()) else {
                self.blocked.pop_front();
                continue;
            };
            let Some(PoolLink { submit, .. }) = self.exec.pool_for(&job.req) else {
                return;
            };
            match submit.try_submit(*job) {
                Ok(()) => {
                    self.blocked.pop_front();
                    self.drive(key);
                }
                Err(job) => {
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.stalled = Some(Box::new(job));
                    }
                    break;
                }
            }
        }
    }

    /// Fire the deadlines that are due.
    pub(crate) fn on_timers(&mut self) {
        if self.idle_close_at.is_some_and(|at| self.now >= at) {
            self.idle_close_at = None;
            let idle: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| c.idle())
                .map(|(k, _)| k)
                .collect();
            for key in idle {
                self.drive(key);
            }
        }
        if self.wheel.len() == 0 {
            return;
        }
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(self.now, &mut due);
        for e in due.drain(..) {
            let Some(conn) = self.conns.get_mut(e.key) else {
                continue;
            };
            if conn.gen != e.gen || conn.timer_tick != e.tick {
                continue; // stale: the connection was re-filed earlier, or the slot reused
            }
            conn.timer_tick = NO_TICK;
            match conn.deadline(&self.cfg.timeouts) {
                None => {}
                Some((when, kind)) if when <= self.now => self.expire(e.key, kind),
                Some((when, _)) => {
                    conn.timer_tick = self.wheel.insert(e.key, e.gen, when);
                }
            }
        }
        self.due = due;
    }

    fn expire(&mut self, key: usize, kind: Expiry) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match kind {
            Expiry::Header if conn.rbuf.is_empty() && !conn.decoder.in_body() => {
                // Connected and never sent a byte: nothing to answer.
                self.close(key);
            }
            Expiry::Header | Expiry::Body => {
                let ctx = error_context();
                let mut out = BytesMut::new();
                refusal::respond(self.cfg.refusals.as_ref(), 408, "request timed out")
                    .encode(ctx, &self.date, &mut out);
                if conn.wbuf.is_empty() {
                    conn.last_write = self.now;
                }
                conn.push_ready(&out, false);
                conn.refused = true;
                conn.closing = true;
                conn.rbuf.clear();
                self.stats.requests(1);
                self.drive(key);
            }
            Expiry::Idle | Expiry::Write | Expiry::Linger => self.close(key),
        }
    }

    /// File the connection's current deadline, if it is not already filed for that time or
    /// earlier (a later deadline is found when the earlier entry fires).
    fn schedule(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some((when, _)) = conn.deadline(&self.cfg.timeouts) else {
            return;
        };
        let tick = self.wheel.tick_of(when);
        if conn.timer_tick == NO_TICK || conn.timer_tick > tick {
            conn.timer_tick = self.wheel.insert(key, conn.gen, when);
        }
    }

    /// Shutdown: stop keeping connections alive. Each connection's next answer says
    /// `Connection: close`; idle keep-alive connections get `idle_grace` to send one more
    /// request before they are closed, because closing one just as its client sends (the
    /// client cannot know) loses that request — the race that makes restarts reset
    /// connections. A busy client's next request comes within microseconds and is answered;
    /// an idle one is closed when the grace ends.
    pub(crate) fn begin_drain(&mut self, idle_grace: Duration) {
        self.draining = true;
        self.idle_close_at = Some(self.now + idle_grace);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                // Read what the kernel holds: a request already sent is answered, not lost.
                conn.readable = true;
            }
            self.drive(key);
        }
    }

    /// Whether the reader has nothing left to do in a drain: no connections, and no more
    /// handed-over connections can arrive.
    pub(crate) fn drained(&self) -> bool {
        let inbox_open = self.inbox.as_ref().is_some_and(|i| !i.is_disconnected());
        self.conns.is_empty() && !inbox_open
    }

    /// Read, parse, answer and write until the connection has nothing more to do now.
    fn drive(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.lingering.is_some() {
                self.linger(key);
                return;
            }
            if conn.may_read() {
                self.spare.lend(&mut conn.rbuf);
                if conn.rbuf.capacity() - conn.rbuf.len() < READ_SPARE {
                    conn.rbuf.reserve(READ_GROW);
                }
                let spare = conn.rbuf.capacity() - conn.rbuf.len();
                let starts_request = conn.rbuf.is_empty() && !conn.decoder.in_body();
                let read = if self.cfg.queue_timing {
                    sys::socket::recv_into(&conn.fd, &mut conn.rbuf, 1)
                } else {
                    sys::socket::read_into(&conn.fd, &mut conn.rbuf, 1).map(|n| (n, None))
                };
                match read {
                    Ok((0, _)) => conn.peer_closed = true,
                    Ok((n, arrived)) => {
                        if let Some(arrived) = arrived {
                            queue_waits(conn, &self.stats, arrived, starts_request);
                        }
                        self.stats.bytes_in(n);
                        conn.last_read = self.now;
                        // A short read emptied the kernel queue; the next edge tells us
                        // when more arrives — unless the client's FIN came with these
                        // bytes: then no edge will come, and the read that returns 0 must
                        // be made now.
                        if n < spare && !conn.fin_seen {
                            conn.readable = false;
                        }
                    }
                    Err(err) if sys::would_block(&err) => conn.readable = false,
                    Err(err) if sys::interrupted(&err) => continue,
                    Err(_) => conn.broken = true,
                }
            }
            self.parse_and_answer(key);
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            flush(conn, &self.stats, self.now);
            let idle_over = self.draining && self.idle_close_at.is_none();
            if conn.finished() || (idle_over && conn.idle()) {
                if conn.broken || (conn.peer_closed && conn.mid_request()) {
                    // The client went away mid-request (or reset): nobody to answer.
                    self.stats.aborted();
                    self.close(key);
                    return;
                }
                if conn.refused && !conn.broken && conn.wbuf.is_empty() {
                    // Half-close and discard what the client still sends, so the close
                    // sends FIN rather than RST and the client reads our refusal.
                    let _ = sys::socket::shutdown_write(&conn.fd);
                    conn.lingering = Some(self.now + self.cfg.timeouts.linger);
                    conn.readable = true;
                    continue;
                }
                self.close(key);
                return;
            }
            // Go round again if there are bytes to read, or if parsing stopped for output
            // backpressure that the write above has since relieved (requests still wait in
            // `rbuf`, and no epoll event will come for them).
            let unblocked = conn.may_parse() && !conn.wants_bytes;
            if !conn.may_read() && !unblocked {
                break;
            }
        }
        self.park_buffers(key);
        self.schedule(key);
    }

    /// Between requests a connection holds no buffers: they go back to the thread's free
    /// list and the next connection to read takes them. An idle keep-alive connection then
    /// costs its slab entry, not 16 KiB; a busy one reuses warm buffers without allocating.
    fn park_buffers(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.rbuf.is_empty() && conn.rbuf.capacity() > 0 && !conn.decoder.in_body() {
            self.spare.give(std::mem::take(&mut conn.rbuf));
        }
        if conn.wbuf.is_empty() && conn.wbuf.capacity() > 0 {
            self.spare.give(std::mem::take(&mut conn.wbuf));
        }
        if conn.slots.is_empty() && conn.slots.capacity() > 0 {
            conn.slots = std::collections::VecDeque::new();
        }
    }

    fn linger(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        loop {
            conn.rbuf.clear();
            if conn.rbuf.capacity() < READ_SPARE {
                conn.rbuf.reserve(READ_GROW);
            }
            let spare = conn.rbuf.capacity();
            match sys::socket::read_into(&conn.fd, &mut conn.rbuf, 1) {
                Ok(0) => break,
                Ok(n) => {
                    conn.discarded = conn.discarded.saturating_add(n as u32);
                    if conn.discarded as usize > LINGER_MAX_BYTES {
                        break;
                    }
                    if n < spare && !conn.fin_seen {
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
        self.close(key);
    }

    fn parse_and_answer(&mut self, key: usize) {
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
            ..
        } = self;
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let had_output = !conn.wbuf.is_empty();
        conn.wants_bytes = false;
        while conn.may_parse() {
            match conn
                .decoder
                .decode_with(&mut conn.rbuf, |req| cfg.app.body_limit(req))
            {
                Ok(Decoded::Partial) => {
                    conn.wants_bytes = true;
                    break;
                }
                Ok(Decoded::Continue) => conn.push_ready(h1::response::CONTINUE, true),
                Err(err) => {
                    let mut out = BytesMut::new();
                    refusal::respond(cfg.refusals.as_ref(), err.status(), &err.to_string()).encode(
                        error_context(),
                        date,
                        &mut out,
                    );
                    conn.push_ready(&out, false);
                    conn.refused = true;
                    conn.closing = true;
                    stats.requests(1);
                    break;
                }
                Ok(Decoded::Request(mut req)) => {
                    conn.requests = conn.requests.saturating_add(1);
                    if conn.receive_wait_us != NO_WAIT {
                        stats.receive_waited(Duration::from_micros(conn.receive_wait_us.into()));
                    }
                    req.set_peer_addr(conn.peer);
                    let ctx = EncodeContext::for_request(&req, !*draining);
                    if !ctx.keep_alive {
                        conn.closing = true;
                    }
                    match exec.pool_for(&req) {
                        None => {
                            let (resp, panicked) = call_guarded(&*exec.handler, req);
                            if panicked {
                                stats.panicked();
                            }
                            if conn.slots.is_empty() && !conn.discard {
                                spare.lend(&mut conn.wbuf);
                                if !resp.encode(ctx, date, &mut conn.wbuf) {
                                    conn.closing = true;
                                    conn.discard = true;
                                }
                            } else {
                                let mut out = BytesMut::new();
                                let keep = resp.encode(ctx, date, &mut out);
                                conn.push_ready(&out, keep);
                            }
                            stats.requests(1);
                        }
                        Some(PoolLink { submit, reply, .. }) => {
                            let seq = conn.push_pending();
                            let job = Job {
                                reply: *reply,
                                conn: ConnId { key, gen: conn.gen },
                                seq,
                                ctx,
                                req,
                            };
                            if let Err(job) = submit.try_submit(job) {
                                // Boxed: a stalled request is rare, and the slot is in
                                // every connection.
                                conn.stalled = Some(Box::new(job));
                                blocked.push_back(key);
                            }
                        }
                    }
                }
            }
        }
        // The write deadline runs from when output starts waiting.
        if !had_output && !conn.wbuf.is_empty() {
            conn.last_write = *now;
        }
        // The header deadline runs from the first byte of a request head.
        if conn.rbuf.is_empty() || conn.decoder.in_body() {
            conn.head_started = None;
        } else if conn.head_started.is_none() {
            conn.head_started = Some(*now);
        }
    }

    fn close(&mut self, key: usize) {
        if self.conns.try_remove(key).is_some() {
            self.stats.closed();
            self.cfg.conn_limit.release();
        }
    }

    /// The `limit` oldest connections as this thread and the kernel see them (asked on
    /// demand). Choosing them costs no syscall; only those shown are asked of the kernel
    /// (four calls each), so a large listing cannot stall this thread's connections.
    fn describe(&self, limit: usize) -> Vec<ConnInfo> {
        let mut oldest: Vec<&Connection> = self.conns.iter().map(|(_, c)| c).collect();
        if oldest.len() > limit {
            oldest.select_nth_unstable_by_key(limit, |c| c.accepted_at);
            oldest.truncate(limit);
        }
        oldest
            .into_iter()
            .map(|c| ConnInfo {
                thread: self.name.clone(),
                peer: sys::socket::peer_addr(&c.fd).ok(),
                state: sys::socket::tcp_info(&c.fd)
                    .map(|i| tcp_state_name(i.state))
                    .unwrap_or("UNKNOWN")
                    .to_string(),
                age_ms: self
                    .now
                    .saturating_duration_since(c.accepted_at)
                    .as_millis() as u64,
                requests: u64::from(c.requests),
                recv_queue: sys::socket::inq(&c.fd).unwrap_or(0),
                send_queue: sys::socket::outq(&c.fd).unwrap_or(0),
                buffered_in: c.rbuf.len() as u64,
                buffered_out: (c.wbuf.len() + c.held) as u64,
            })
            .collect()
    }

    /// The drain deadline passed: close everything. Returns how many were cut.
    pub(crate) fn cut_all(&mut self) -> usize {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let n = keys.len();
        for key in keys {
            self.close(key);
        }
        n
    }
}

/// Refusals are answered as HTTP/1.1 and close the connection.
fn error_context() -> EncodeContext {
    EncodeContext {
        head: false,
        keep_alive: false,
        version: h1::Version::Http11,
        connect: false,
    }
}

/// Write what is ready; whatever the kernel does not take waits for the next writable edge.
fn flush(conn: &mut Connection, stats: &ThreadStats, now: Instant) {
    while !conn.wbuf.is_empty() && !conn.broken {
        match sys::socket::write(&conn.fd, &conn.wbuf) {
            Ok(n) => {
                stats.bytes_out(n);
                conn.wbuf.advance(n);
                conn.last_write = now;
            }
            Err(err) if sys::would_block(&err) => break,
            Err(err) if sys::interrupted(&err) => continue,
            Err(_) => conn.broken = true,
        }
    }
}
