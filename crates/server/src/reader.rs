//! The reader role: owns connections, reads them, parses requests, writes responses.
//!
//! A reader either runs the handler itself (single, dispatch, shared, reuseport) or hands
//! each request to the worker pool and writes the answers back in order (pool). Sockets are
//! edge-triggered: a read shorter than the buffer means the kernel queue is empty, so a
//! keep-alive request costs one `read` and one `write`, with `epoll_wait` amortised. Reading
//! pauses — the bytes stay in the kernel's receive queue and TCP slows the client — when the
//! worker queue is full, when a connection has too many requests in flight, or when its
//! unsent output passes [`OUTPUT_BOUND`](crate::connection::OUTPUT_BOUND).

use crate::connection::Connection;
use crate::handler::{call_guarded, Handler};
use crate::handoff::InboxReceiver;
use crate::stats::ThreadStats;
use crate::worker::{Completion, ConnId, Job, Submitter};
use bytes::Buf;
use crossbeam_channel::Receiver;
use h1::{Decoded, EncodeContext, Limits, Method, Response};
use slab::Slab;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::SystemTime;
use sys::{Epoll, Interest};

/// Free space we want in a read buffer before each read.
const READ_SPARE: usize = 4 * 1024;
/// How much a read buffer grows by when it needs room.
const READ_GROW: usize = 16 * 1024;

/// Who runs the handler for requests this reader parsed.
pub(crate) enum Exec {
    /// The reader itself, between reads.
    Inline(Arc<dyn Handler>),
    /// The worker pool; answers come back on `completions`.
    Pool {
        submit: Submitter,
        completions: Receiver<Completion>,
        reply: usize,
    },
}

pub(crate) struct Reader {
    conns: Slab<Connection>,
    exec: Exec,
    limits: Limits,
    date: h1::DateCache,
    stats: Arc<ThreadStats>,
    inbox: Option<InboxReceiver>,
    /// Connections whose next request waits for room in the worker queue, oldest first.
    blocked: VecDeque<usize>,
    next_gen: u32,
    draining: bool,
    /// Connections touched by completions in this round, to drive once each.
    touched: Vec<usize>,
}

impl Reader {
    pub(crate) fn new(
        exec: Exec,
        limits: Limits,
        stats: Arc<ThreadStats>,
        inbox: Option<InboxReceiver>,
    ) -> Self {
        Reader {
            conns: Slab::new(),
            exec,
            limits,
            date: h1::DateCache::new(SystemTime::now()),
            stats,
            inbox,
            blocked: VecDeque::new(),
            next_gen: 0,
            draining: false,
            touched: Vec::new(),
        }
    }

    pub(crate) fn refresh_date(&mut self) {
        self.date.refresh(SystemTime::now());
    }

    /// Take ownership of an accepted connection.
    pub(crate) fn add(&mut self, epoll: &Epoll, fd: OwnedFd) {
        let Some(key) = self.insert(epoll, fd) else {
            return;
        };
        if self.draining {
            // Accepted during shutdown: answer what it already sent, or close it now.
            if let Some(conn) = self.conns.get_mut(key) {
                conn.readable = true;
            }
            self.drive(epoll, key);
        }
    }

    fn insert(&mut self, epoll: &Epoll, fd: OwnedFd) -> Option<usize> {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // Registration reports data that is already waiting (TCP_DEFER_ACCEPT, fast
        // clients): epoll checks readiness when a file is added.
        if let Err(err) = epoll.add(&fd, key as u64, Interest::Connection) {
            tracing::warn!(%err, "cannot register connection; closing it");
            return None;
        }
        entry.insert(Connection::new(fd, gen, self.limits));
        self.stats.opened();
        Some(key)
    }

    /// epoll reported readiness for connection `key`.
    pub(crate) fn on_event(&mut self, epoll: &Epoll, key: usize, readable: bool, error: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if readable {
            conn.readable = true;
        }
        if error && !readable {
            conn.broken = true;
        }
        self.drive(epoll, key);
    }

    /// The loop's eventfd fired: take handed-over connections and worker answers.
    pub(crate) fn on_wake(&mut self, epoll: &Epoll) {
        while let Some(fd) = self.inbox.as_ref().and_then(|i| i.pop()) {
            self.add(epoll, fd);
        }
        let Exec::Pool { completions, .. } = &self.exec else {
            return;
        };
        while let Ok(done) = completions.try_recv() {
            let Some(conn) = self.conns.get_mut(done.conn.key) else {
                continue;
            };
            if conn.gen != done.conn.gen {
                continue;
            }
            conn.complete(done.seq, done.bytes, done.keep_alive);
            self.stats.requests(1);
            self.touched.push(done.conn.key);
        }
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &key in &touched {
            self.drive(epoll, key);
        }
        touched.clear();
        self.touched = touched;
    }

    /// After a round of events: give stalled requests the queue room workers freed.
    pub(crate) fn after_events(&mut self, epoll: &Epoll) {
        while let Some(&key) = self.blocked.front() {
            let Some(job) = self.conns.get_mut(key).and_then(|c| c.stalled.take()) else {
                self.blocked.pop_front();
                continue;
            };
            let Exec::Pool { submit, .. } = &self.exec else {
                return;
            };
            match submit.try_submit(job) {
                Ok(()) => {
                    self.blocked.pop_front();
                    self.drive(epoll, key);
                }
                Err(job) => {
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.stalled = Some(job);
                    }
                    break;
                }
            }
        }
    }

    /// Shutdown: from now on every response says `Connection: close`; idle connections
    /// close now, busy ones once their answers are out.
    pub(crate) fn begin_drain(&mut self, epoll: &Epoll) {
        self.draining = true;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                // Read what the kernel holds: a request already sent is answered, not lost.
                conn.readable = true;
            }
            self.drive(epoll, key);
        }
    }

    /// Whether the reader has nothing left to do in a drain: no connections, and no more
    /// handed-over connections can arrive.
    pub(crate) fn drained(&self) -> bool {
        let inbox_open = self.inbox.as_ref().is_some_and(|i| !i.is_disconnected());
        self.conns.is_empty() && !inbox_open
    }

    /// Read, parse, answer and write until the connection has nothing more to do now.
    fn drive(&mut self, epoll: &Epoll, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.may_read() {
                if conn.rbuf.capacity() - conn.rbuf.len() < READ_SPARE {
                    conn.rbuf.reserve(READ_GROW);
                }
                let spare = conn.rbuf.capacity() - conn.rbuf.len();
                match sys::socket::read_into(&conn.fd, &mut conn.rbuf, 1) {
                    Ok(0) => conn.peer_closed = true,
                    Ok(n) => {
                        self.stats.bytes_in(n);
                        // A short read emptied the kernel queue; the next edge tells us
                        // when more arrives.
                        if n < spare {
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
            flush(conn, &self.stats);
            if conn.finished() || (self.draining && conn.idle()) {
                self.close(key);
                return;
            }
            if !conn.may_read() {
                let _ = epoll;
                return;
            }
        }
    }

    fn parse_and_answer(&mut self, key: usize) {
        let Reader {
            conns,
            exec,
            date,
            stats,
            blocked,
            draining,
            ..
        } = self;
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        conn.wants_bytes = false;
        while conn.may_parse() {
            match conn.decoder.decode(&mut conn.rbuf) {
                Ok(Decoded::Partial) => {
                    conn.wants_bytes = true;
                    break;
                }
                Ok(Decoded::Continue) => conn.push_ready(h1::response::CONTINUE, true),
                Err(err) => {
                    let mut out = bytes::BytesMut::new();
                    let ctx = EncodeContext {
                        head: false,
                        keep_alive: false,
                        version: h1::Version::Http11,
                    };
                    Response::for_error(err).encode(ctx, date, &mut out);
                    conn.push_ready(&out, false);
                    conn.refused = true;
                    conn.closing = true;
                    stats.requests(1);
                    break;
                }
                Ok(Decoded::Request(req)) => {
                    let ctx = EncodeContext {
                        head: *req.method() == Method::Head,
                        keep_alive: req.keep_alive() && !*draining,
                        version: req.version(),
                    };
                    if !ctx.keep_alive {
                        conn.closing = true;
                    }
                    match exec {
                        Exec::Inline(handler) => {
                            let (resp, panicked) = call_guarded(&**handler, req);
                            if panicked {
                                stats.panicked();
                            }
                            if conn.slots.is_empty() && !conn.discard {
                                if !resp.encode(ctx, date, &mut conn.wbuf) {
                                    conn.closing = true;
                                    conn.discard = true;
                                }
                            } else {
                                let mut out = bytes::BytesMut::new();
                                let keep = resp.encode(ctx, date, &mut out);
                                conn.push_ready(&out, keep);
                            }
                            stats.requests(1);
                        }
                        Exec::Pool { submit, reply, .. } => {
                            let seq = conn.push_pending();
                            let job = Job {
                                reply: *reply,
                                conn: ConnId { key, gen: conn.gen },
                                seq,
                                ctx,
                                req,
                            };
                            if let Err(job) = submit.try_submit(job) {
                                conn.stalled = Some(job);
                                blocked.push_back(key);
                            }
                        }
                    }
                }
            }
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(conn) = self.conns.try_remove(key) {
            if conn.refused {
                // Half-close and drop what the client already sent, so the close sends FIN
                // rather than RST and the client reads our error response.
                let _ = sys::socket::shutdown_write(&conn.fd);
                let mut sink = bytes::BytesMut::with_capacity(READ_GROW);
                for _ in 0..4 {
                    match sys::socket::read_into(&conn.fd, &mut sink, 1) {
                        Ok(n) if n > 0 => sink.clear(),
                        _ => break,
                    }
                }
            }
            self.stats.closed();
        }
    }

    /// How many connections a drain deadline cut.
    pub(crate) fn cut_all(&mut self) -> usize {
        let n = self.conns.len();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key);
        }
        n
    }
}

/// Write what is ready; whatever the kernel does not take waits for the next writable edge.
fn flush(conn: &mut Connection, stats: &ThreadStats) {
    while !conn.wbuf.is_empty() && !conn.broken {
        match sys::socket::write(&conn.fd, &conn.wbuf) {
            Ok(n) => {
                stats.bytes_out(n);
                conn.wbuf.advance(n);
            }
            Err(err) if sys::would_block(&err) => break,
            Err(err) if sys::interrupted(&err) => continue,
            Err(_) => conn.broken = true,
        }
    }
}
