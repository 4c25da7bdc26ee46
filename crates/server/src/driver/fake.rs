//! A simulated driver, for testing the reader and the acceptor without sockets (quinn's
//! simulated pair is the model).
//!
//! A connection is a descriptor of `/dev/null` standing in for its socket; the "kernel" is a
//! map of what each client sent that the server has not taken, what the server sent, and
//! how much more the client's receive window takes. The test plays the driver's part itself,
//! with either driver's semantics: readiness (an edge, then the reader reads through
//! [`Io::read`]) or completions (bytes handed over as [`ConnEvent::Received`] while a
//! receive is armed, sends completed later as [`ConnEvent::Sent`]).

use super::{ConnEvent, Driver, Event, Io, Listen, ListenSocket, Read, Written};
use crate::driver::token::Token;
use bytes::BytesMut;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;
use sys::Waker;

/// Which driver the fake behaves like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Semantics {
    /// epoll's: edges, and the reader reads and writes.
    Readiness,
    /// io_uring's: armed receives deliver bytes; sends complete later.
    Completion,
}

/// One client, as the simulated kernel sees it.
#[derive(Debug, Default)]
pub(crate) struct Peer {
    pub(crate) token: Option<Token>,
    /// Bytes the client sent that the server has not taken.
    pub(crate) inbound: Vec<u8>,
    /// The client sent its FIN (after `inbound`).
    pub(crate) fin: bool,
    /// What the server sent, in order.
    pub(crate) outbound: Vec<u8>,
    /// How many more bytes the client's receive window takes (`None`: any number).
    pub(crate) window: Option<usize>,
    /// Completion semantics: a receive is armed.
    pub(crate) receiving: bool,
    /// Readiness semantics: something happened that epoll would report (bytes or a FIN
    /// arrived, the window opened) and the reader has not been told.
    pub(crate) edge: bool,
    pub(crate) shut_write: bool,
    pub(crate) closed: bool,
}

impl Peer {
    /// What the window lets through of `n` bytes now.
    fn take(&mut self, n: usize) -> usize {
        let n = self.window.map_or(n, |w| w.min(n));
        if let Some(w) = self.window.as_mut() {
            *w -= n;
        }
        n
    }
}

/// The simulated kernel, and what the roles asked of it.
pub(crate) struct Fake {
    pub(crate) semantics: Semantics,
    pub(crate) peers: HashMap<RawFd, Peer>,
    /// What the acceptor last asked for its listeners.
    pub(crate) listen: Option<Listen>,
    /// How often the acceptor went to the back of a shared socket's waiters.
    pub(crate) requeued: u32,
    /// Completion semantics: sends in flight, for the test to complete.
    pub(crate) in_flight: Vec<(RawFd, Token, BytesMut)>,
}

impl Fake {
    pub(crate) fn new(semantics: Semantics) -> Self {
        Fake {
            semantics,
            peers: HashMap::new(),
            listen: None,
            requeued: 0,
            in_flight: Vec::new(),
        }
    }

    pub(crate) fn peer(&mut self, fd: RawFd) -> &mut Peer {
        self.peers.entry(fd).or_default()
    }
}

/// The per-connection state: what the last edge said, whether a receive is armed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FakeConn {
    readable: bool,
}

/// What an event tells the per-connection state.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Note {
    /// An edge: bytes or a FIN may be read.
    Edge,
    /// A completion: nothing to note (the fake keeps the receive's state per peer).
    Completion,
}

/// The fake as a [`Driver`]: it has no events of its own (the test plays them).
pub(crate) struct FakeDriver(pub(crate) Fake);

impl Driver for FakeDriver {
    type Conn = FakeConn;
    type Note = Note;
    type Io<'s, 'r>
        = Fake
    where
        Self: 'r,
        'r: 's;
    const NONBLOCKING: bool = true;
    const MAY_MISS_RESETS: bool = false;

    fn new(_: &Arc<Waker>) -> io::Result<Self> {
        Ok(FakeDriver(Fake::new(Semantics::Readiness)))
    }

    fn wait(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn dispatch(&mut self, _: impl FnMut(&mut Fake, Event<'_, Note>)) {}

    fn with_io<R>(&mut self, f: impl FnOnce(&mut Fake) -> R) -> R {
        f(&mut self.0)
    }
}

impl Io for Fake {
    type Conn = FakeConn;
    type Note = Note;

    fn listen<L: ListenSocket>(&mut self, _: &[Arc<L>], how: Listen) {
        self.listen = Some(how);
    }

    fn requeue<L: ListenSocket>(&mut self, _: &[Arc<L>]) {
        self.requeued += 1;
    }

    fn listening(&self) -> bool {
        matches!(self.listen, Some(Listen::On { .. }))
    }

    fn open(&mut self, fd: &OwnedFd, token: Token, c: &mut FakeConn, _: bool) -> io::Result<()> {
        let completion = self.semantics == Semantics::Completion;
        let peer = self.peer(fd.as_raw_fd());
        peer.token = Some(token);
        peer.receiving = completion;
        // epoll reports what is already waiting when a socket is added.
        c.readable = !completion;
        Ok(())
    }

    fn note(c: &mut FakeConn, note: Note) {
        if let Note::Edge = note {
            c.readable = true;
        }
    }

    fn input_waiting(c: &FakeConn) -> bool {
        c.readable
    }

    fn read_all(c: &mut FakeConn) {
        c.readable = true;
    }

    fn read(&mut self, fd: &OwnedFd, c: &mut FakeConn, buf: &mut BytesMut, _: bool) -> Read {
        if self.semantics == Semantics::Completion {
            // Bytes come as completions; a drain's "read what is there" finds none here.
            c.readable = false;
            return Read::Again;
        }
        let peer = self.peer(fd.as_raw_fd());
        let room = buf.capacity() - buf.len();
        let n = room.min(peer.inbound.len());
        if n == 0 {
            if peer.fin {
                return Read::Closed;
            }
            c.readable = false;
            return Read::Again;
        }
        buf.extend_from_slice(&peer.inbound[..n]);
        peer.inbound.drain(..n);
        if peer.inbound.is_empty() && !peer.fin {
            c.readable = false;
        }
        Read::Bytes(n, None)
    }

    fn write(&mut self, fd: &OwnedFd, token: Token, w: Written<'_>) {
        let fd = fd.as_raw_fd();
        if self.semantics == Semantics::Completion {
            if let Some(out) = w.conn.poll_transmit() {
                self.in_flight.push((fd, token, out));
            }
            return;
        }
        while let Some(out) = w.conn.poll_transmit() {
            let peer = self.peer(fd);
            let n = peer.take(out.len());
            peer.outbound.extend_from_slice(&out[..n]);
            let whole = n == out.len();
            if let Some(buf) = w.conn.sent(out, n, w.now, w.tally) {
                w.spare.give(buf);
            }
            if !whole {
                break;
            }
        }
    }

    fn shutdown_write(&mut self, fd: &OwnedFd, c: &mut FakeConn) {
        self.peer(fd.as_raw_fd()).shut_write = true;
        c.readable = true;
    }

    fn want_input(&mut self, fd: &OwnedFd, _: Token, _: &mut FakeConn, wants: bool, _: bool) {
        if self.semantics == Semantics::Completion {
            self.peer(fd.as_raw_fd()).receiving = wants;
        }
    }

    fn close(&mut self, fd: OwnedFd, _: FakeConn, _: bool) {
        self.peer(fd.as_raw_fd()).closed = true;
    }

    fn may_miss_reset(_: &FakeConn) -> bool {
        false
    }

    fn quiet(_: &FakeConn) -> bool {
        true
    }

    fn detach(&mut self, _: &OwnedFd, _: FakeConn) {}
}

/// Tests of the reader and the acceptor, each under both drivers' semantics.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::handler::Handler;
    use crate::config::{QueueTiming, Timeouts};
    use crate::observe::stats::{Role, ThreadStats};
    use crate::roles::acceptor::{AcceptMutex, Acceptor, Turn, MUTEX_DELAY};
    use crate::roles::conn_limit::ConnLimit;
    use crate::roles::handoff::{inbox, Balancer};
    use crate::roles::reader::{Reader, ReaderConfig, ReaderParts};
    use crate::roles::worker::{Exec, HandlerExec};
    use crate::{Balance, Request, Response};
    use std::time::Instant;
    use sys::socket::Accepted;

    const BOTH: [Semantics; 2] = [Semantics::Readiness, Semantics::Completion];
    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

    /// A reader on the fake, with a clock the test moves.
    struct Sim {
        reader: Reader<FakeDriver>,
        fake: Fake,
        stats: Arc<ThreadStats>,
        limit: Arc<ConnLimit>,
        now: Instant,
        timeouts: Timeouts,
    }

    fn parts(
        handler: Arc<dyn Handler>,
        stats: &Arc<ThreadStats>,
        limit: &Arc<ConnLimit>,
    ) -> ReaderParts {
        let app = handler.clone();
        ReaderParts {
            exec: Exec::Handler(HandlerExec {
                handler,
                workers: None,
                blocking: None,
            }),
            cfg: ReaderConfig {
                limits: h1::Limits::default(),
                timeouts: Timeouts::default(),
                conn_limit: limit.clone(),
                body_limit: Box::new(move |req: &Request| app.body_limit(req)),
                refusals: None,
                stream_over: None,
                queue_timing: QueueTiming::Off,
                tls: None,
            },
            stats: stats.clone(),
            inbox: None,
            name: "loop-0".into(),
            queries: crossbeam_channel::never(),
            hand_over: None,
        }
    }

    impl Sim {
        fn new(semantics: Semantics, handler: impl Handler + 'static) -> Sim {
            let stats = Arc::new(ThreadStats::new("loop-0", Role::Loop));
            let limit = Arc::new(ConnLimit::new(64));
            let reader = Reader::new(parts(Arc::new(handler), &stats, &limit));
            let mut sim = Sim {
                reader,
                fake: Fake::new(semantics),
                stats,
                limit,
                now: Instant::now(),
                timeouts: Timeouts::default(),
            };
            sim.reader.set_now(sim.now, Duration::ZERO);
            sim
        }

        fn hello(semantics: Semantics) -> Sim {
            Sim::new(semantics, |_req: Request| Response::text(200, "hi\n"))
        }

        /// A client connects (and is accepted).
        fn connect(&mut self) -> RawFd {
            let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
            let raw = fd.as_raw_fd();
            assert!(self.limit.try_acquire());
            self.fake.peer(raw);
            let accepted = Accepted {
                fd,
                peer: None,
                at: self.now,
            };
            self.reader.add(&mut self.fake, accepted);
            self.pump();
            raw
        }

        /// The client sends `bytes`.
        fn send(&mut self, fd: RawFd, bytes: &[u8]) {
            let peer = self.fake.peer(fd);
            peer.inbound.extend_from_slice(bytes);
            peer.edge = true;
            self.pump();
        }

        /// The client sends its FIN.
        fn fin(&mut self, fd: RawFd) {
            let peer = self.fake.peer(fd);
            peer.fin = true;
            peer.edge = true;
            self.pump();
        }

        /// The client's receive window takes `n` more bytes (`None`: any number).
        fn window(&mut self, fd: RawFd, n: Option<usize>) {
            let peer = self.fake.peer(fd);
            peer.window = n;
            peer.edge = true;
            self.pump();
        }

        /// Play the driver until nothing more happens: edges for what clients sent,
        /// completions for armed receives and for sends the windows allow.
        fn pump(&mut self) {
            for _ in 0..10_000 {
                if !self.step() {
                    self.reader.end_round();
                    return;
                }
            }
            panic!("the reader never settled");
        }

        fn step(&mut self) -> bool {
            let fds: Vec<RawFd> = self.fake.peers.keys().copied().collect();
            let semantics = self.fake.semantics;
            let mut moved = false;
            for fd in fds {
                let peer = self.fake.peer(fd);
                let Some(token) = peer.token.filter(|_| !peer.closed) else {
                    continue;
                };
                match semantics {
                    Semantics::Readiness if peer.edge => {
                        peer.edge = false;
                        self.event(token, ConnEvent::Ready { broken: false }, Note::Edge);
                        moved = true;
                    }
                    Semantics::Completion if peer.receiving && !peer.inbound.is_empty() => {
                        // A receive takes at most one provided buffer's worth.
                        let n = peer.inbound.len().min(4096);
                        let data: Vec<u8> = peer.inbound.drain(..n).collect();
                        let ev = ConnEvent::Received {
                            data: Ok(&data),
                            arrived: None,
                        };
                        self.event(token, ev, Note::Completion);
                        moved = true;
                    }
                    Semantics::Completion if peer.receiving && peer.fin => {
                        peer.fin = false;
                        peer.receiving = false;
                        let ev = ConnEvent::Received {
                            data: Ok(&[]),
                            arrived: None,
                        };
                        self.event(token, ev, Note::Completion);
                        moved = true;
                    }
                    _ => {}
                }
            }
            // Complete the sends the windows take (the rest stays in flight).
            let mut waiting = Vec::new();
            for (fd, token, buf) in std::mem::take(&mut self.fake.in_flight) {
                let peer = self.fake.peer(fd);
                let n = peer.take(buf.len());
                if n == 0 && !buf.is_empty() {
                    waiting.push((fd, token, buf));
                    continue;
                }
                peer.outbound.extend_from_slice(&buf[..n]);
                let ev = ConnEvent::Sent { result: Ok(n), buf };
                self.event(token, ev, Note::Completion);
                moved = true;
            }
            self.fake.in_flight.extend(waiting);
            moved
        }

        fn event(&mut self, token: Token, ev: ConnEvent<'_>, note: Note) {
            self.reader.on_conn(&mut self.fake, token, ev, note);
        }

        /// Move the clock by `by` and fire what is due.
        fn tick(&mut self, by: Duration) {
            self.now += by;
            self.reader.set_now(self.now, by);
            self.reader.on_timers(&mut self.fake);
            self.pump();
        }

        fn output(&mut self, fd: RawFd) -> String {
            String::from_utf8_lossy(&self.fake.peer(fd).outbound).into_owned()
        }

        fn closed(&mut self, fd: RawFd) -> bool {
            self.fake.peer(fd).closed
        }

        fn open(&self) -> u64 {
            self.stats.snapshot().open
        }
    }

    fn answers(out: &str) -> usize {
        out.matches("HTTP/1.1 ").count()
    }

    #[test]
    fn a_request_is_answered_and_the_clients_fin_closes_after_it() {
        for semantics in BOTH {
            let mut sim = Sim::hello(semantics);
            let c = sim.connect();
            sim.send(c, GET);
            assert_eq!(answers(&sim.output(c)), 1, "{semantics:?}");
            assert!(sim.output(c).ends_with("hi\n"), "{semantics:?}");
            assert!(!sim.closed(c));
            sim.fin(c);
            assert!(
                sim.closed(c),
                "{semantics:?}: the FIN closes an idle connection"
            );
            assert_eq!(sim.open(), 0);
            assert_eq!(
                sim.limit.room(),
                64,
                "{semantics:?}: its slot is given back"
            );
        }
    }

    #[test]
    fn a_request_split_at_every_byte_is_answered_once() {
        for semantics in BOTH {
            let mut sim = Sim::hello(semantics);
            let c = sim.connect();
            for (i, b) in GET.iter().enumerate() {
                assert_eq!(
                    answers(&sim.output(c)),
                    0,
                    "{semantics:?}: answered at byte {i}"
                );
                sim.send(c, &[*b]);
            }
            assert_eq!(answers(&sim.output(c)), 1, "{semantics:?}");
        }
    }

    #[test]
    fn a_client_that_stops_reading_stops_being_read_until_it_reads_again() {
        for semantics in BOTH {
            // 16 KiB answers: sixteen fill the output bound.
            let mut sim = Sim::new(semantics, |_req: Request| {
                Response::text(200, "x".repeat(16 * 1024))
            });
            let c = sim.connect();
            sim.window(c, Some(0));
            sim.send(c, &GET.repeat(1000));
            // The reader stopped taking bytes: the rest wait in the (simulated) kernel.
            let left = sim.fake.peer(c).inbound.len();
            assert!(left > 0, "{semantics:?}: every request was read");
            if semantics == Semantics::Completion {
                assert!(!sim.fake.peer(c).receiving, "the receive is cancelled");
            }
            assert!(!sim.closed(c));
            sim.window(c, None);
            assert_eq!(sim.fake.peer(c).inbound.len(), 0, "{semantics:?}");
            assert_eq!(answers(&sim.output(c)), 1000, "{semantics:?}");
        }
    }

    #[test]
    fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
        for semantics in BOTH {
            let mut sim = Sim::hello(semantics);
            let c = sim.connect();
            sim.send(c, GET);
            let idle = sim.timeouts.idle;
            sim.tick(idle - Duration::from_secs(1));
            assert!(
                !sim.closed(c),
                "{semantics:?}: closed before its idle timeout"
            );
            sim.tick(Duration::from_secs(2));
            assert!(
                sim.closed(c),
                "{semantics:?}: still open after its idle timeout"
            );
        }
    }

    #[test]
    fn a_silent_connection_is_closed_at_the_header_timeout_and_a_partial_head_gets_408() {
        for semantics in BOTH {
            let mut sim = Sim::hello(semantics);
            let silent = sim.connect();
            let partial = sim.connect();
            sim.send(partial, b"GET / HTTP/1.1\r\nHo");
            // A deadline fires at most one timer tick late.
            sim.tick(sim.timeouts.header + crate::connection::timer::TICK * 2);
            assert!(sim.closed(silent), "{semantics:?}");
            assert_eq!(sim.output(silent), "");
            assert!(
                sim.output(partial).starts_with("HTTP/1.1 408"),
                "{semantics:?}"
            );
        }
    }

    #[test]
    fn a_drain_answers_what_was_sent_and_closes_idle_connections_after_the_grace() {
        for semantics in BOTH {
            let mut sim = Sim::hello(semantics);
            let idle = sim.connect();
            sim.send(idle, GET);
            let busy = sim.connect();
            sim.fake.peer(busy).inbound.extend_from_slice(GET);
            sim.reader
                .begin_drain(&mut sim.fake, Duration::from_secs(1));
            sim.pump();
            let out = sim.output(busy);
            assert_eq!(
                answers(&out),
                1,
                "{semantics:?}: the request sent was answered"
            );
            assert!(out.contains("Connection: close"), "{semantics:?}: {out}");
            assert!(sim.closed(busy), "{semantics:?}");
            assert!(
                !sim.closed(idle),
                "{semantics:?}: an idle client gets its grace"
            );
            sim.tick(Duration::from_millis(1100));
            assert!(sim.closed(idle), "{semantics:?}");
            assert!(sim.reader.drained(), "{semantics:?}");
        }
    }

    #[test]
    fn a_handed_over_connection_is_served_and_the_drain_ends_when_its_acceptors_are_gone() {
        for semantics in BOTH {
            let stats = Arc::new(ThreadStats::new("reader-0", Role::Reader));
            let limit = Arc::new(ConnLimit::new(8));
            let waker = Arc::new(Waker::new().unwrap());
            let (tx, rx) = inbox(waker, stats.clone(), limit.clone());
            let mut p = parts(
                Arc::new(|_req: Request| Response::text(200, "hi\n")),
                &stats,
                &limit,
            );
            p.inbox = Some(rx);
            let mut reader: Reader<FakeDriver> = Reader::new(p);
            let mut fake = Fake::new(semantics);
            let mut balancer = Balancer::new(Balance::RoundRobin, vec![tx]);
            let fd: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
            let raw = fd.as_raw_fd();
            assert!(limit.try_acquire());
            balancer.dispatch(Accepted {
                fd,
                peer: None,
                at: Instant::now(),
            });
            reader.on_wake(&mut fake);
            assert!(
                fake.peer(raw).token.is_some(),
                "{semantics:?}: not taken from the inbox"
            );
            reader.begin_drain(&mut fake, Duration::ZERO);
            reader.set_now(Instant::now() + Duration::from_millis(1), Duration::ZERO);
            reader.on_timers(&mut fake);
            assert!(fake.peer(raw).closed, "{semantics:?}");
            assert!(
                !reader.drained(),
                "{semantics:?}: an acceptor may still hand one over"
            );
            drop(balancer);
            assert!(reader.drained(), "{semantics:?}");
        }
    }

    /// An acceptor with no listener of its own: what it asks the driver is the test.
    fn acceptor(turn: Turn, limit: &Arc<ConnLimit>) -> Acceptor {
        let stats = Arc::new(ThreadStats::new("loop-0", Role::Loop));
        Acceptor::new(Vec::new(), turn, stats, limit.clone())
    }

    #[test]
    fn the_accept_mutex_holder_polls_and_the_others_wait_their_turn() {
        let lock = Arc::new(AcceptMutex::default());
        let limit = Arc::new(ConnLimit::new(8));
        let mut a = acceptor(Turn::Mutex(lock.clone()), &limit);
        let mut b = acceptor(Turn::Mutex(lock), &limit);
        let (mut fa, mut fb) = (
            Fake::new(Semantics::Readiness),
            Fake::new(Semantics::Readiness),
        );
        let now = Instant::now();
        assert_eq!(a.before_wait(&mut fa, now), None);
        assert!(fa.listening(), "the holder polls");
        assert_eq!(b.before_wait(&mut fb, now), Some(MUTEX_DELAY));
        assert_eq!(fb.listen, Some(Listen::Off), "the other waits");
        a.after_events();
        assert_eq!(
            b.before_wait(&mut fb, now),
            None,
            "released after the round"
        );
        assert!(fb.listening());
    }

    /// A thread holding more than its share of the connections does not take the mutex,
    /// and wakes the others (once) so that one of them takes the next connections now.
    #[test]
    fn a_thread_over_its_share_passes_the_accept_mutex_on() {
        use std::os::fd::AsFd;
        let lock = Arc::new(AcceptMutex::default());
        let limit = Arc::new(ConnLimit::new(64));
        let seat = |name: &str| {
            let stats = Arc::new(ThreadStats::new(name, Role::Loop));
            let mut a = Acceptor::new(
                Vec::new(),
                Turn::Mutex(lock.clone()),
                stats.clone(),
                limit.clone(),
            );
            let waker = Arc::new(sys::Waker::new().unwrap());
            a.join_mutex(waker.clone());
            (a, stats, waker)
        };
        let (mut a, a_stats, _) = seat("loop-0");
        let (mut b, _, b_waker) = seat("loop-1");
        // The eventfd is non-blocking: a read succeeds only if it was written. Then reset,
        // as the loop does, so that a later wake writes again.
        let woken = |w: &sys::Waker| {
            let mut fd = std::fs::File::from(w.as_fd().try_clone_to_owned().unwrap());
            let written = std::io::Read::read(&mut fd, &mut [0u8; 8]).is_ok();
            w.reset();
            written
        };
        let (mut fa, mut fb) = (
            Fake::new(Semantics::Readiness),
            Fake::new(Semantics::Readiness),
        );
        let now = Instant::now();
        // Two connections, both a's: within its share (2 / 2 + 1).
        for _ in 0..2 {
            limit.force_acquire();
            a_stats.opened();
        }
        assert_eq!(
            a.before_wait(&mut fa, now),
            None,
            "within its share: it holds"
        );
        a.after_events();
        // A third: a holds all three, over its share.
        limit.force_acquire();
        a_stats.opened();
        assert_eq!(a.before_wait(&mut fa, now), Some(MUTEX_DELAY));
        assert_eq!(
            fa.listen,
            Some(Listen::Off),
            "over its share it does not poll"
        );
        assert!(
            woken(&b_waker),
            "the other thread is woken to take its turn"
        );
        assert_eq!(a.before_wait(&mut fa, now), Some(MUTEX_DELAY));
        assert!(!woken(&b_waker), "once, not every round");
        assert_eq!(
            b.before_wait(&mut fb, now),
            None,
            "the other takes the mutex"
        );
        assert!(fb.listening());
    }

    #[test]
    fn out_of_descriptors_pauses_polling_and_a_stop_cancels_it() {
        let limit = Arc::new(ConnLimit::new(8));
        let mut a = acceptor(Turn::Own, &limit);
        let mut fake = Fake::new(Semantics::Completion);
        let now = Instant::now();
        a.before_wait(&mut fake, now);
        assert_eq!(
            fake.listen,
            Some(Listen::On {
                exclusive: false,
                own: true,
                room: 8
            })
        );
        a.on_accepted(
            Err(io::Error::from_raw_os_error(libc::EMFILE)),
            now,
            &mut |_| panic!("nothing was accepted"),
        );
        a.settle(&mut fake);
        assert_eq!(fake.listen, Some(Listen::Off));
        let wait = a.before_wait(&mut fake, now).expect("a pause");
        assert!(wait <= crate::tuning::EXHAUSTED_PAUSE);
        assert_eq!(fake.listen, Some(Listen::Off), "still paused");
        a.before_wait(&mut fake, now + crate::tuning::EXHAUSTED_PAUSE);
        assert!(fake.listening(), "polling again after the pause");
        a.stop(&mut fake);
        assert_eq!(fake.listen, Some(Listen::Stop));
        assert!(!fake.listening());
        assert_eq!(a.before_wait(&mut fake, now), None);
        assert_eq!(
            fake.listen,
            Some(Listen::Stop),
            "nothing armed again after a stop"
        );
        a.close(true, &mut |_| panic!("nothing was queued"));
    }
}
