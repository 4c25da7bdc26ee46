//! The connection core's tests: every transition driven with no socket, on a made-up clock.

use super::*;
use crate::app::handler::Handler;
use h1::Request;
use std::time::SystemTime;

struct Hello;
impl Handler for Hello {
    fn call(&self, _req: Request) -> Response {
        Response::text(200, "hi\n")
    }
}

pub(crate) struct World {
    pub(crate) tally: Tally,
    date: DateCache,
    pub(crate) spare: Buffers,
    pub(crate) now: Instant,
    pub(crate) timeouts: Timeouts,
}

impl World {
    pub(crate) fn new() -> World {
        World {
            tally: Tally::default(),
            date: DateCache::new(SystemTime::now()),
            spare: Buffers::default(),
            now: Instant::now(),
            timeouts: Timeouts::default(),
        }
    }

    fn cx(&self) -> ParseContext<'_> {
        ParseContext {
            body_limit: &|_req: &Request| None,
            stream_over: None,
            refusals: None,
            date: &self.date,
            draining: false,
            now: self.now,
        }
    }

    /// Feed `bytes`, answer every request inline, return the verdict.
    pub(crate) fn feed(&mut self, c: &mut Connection, bytes: &[u8]) -> Verdict {
        receive(c, bytes, None, self.now, &mut self.spare, &mut self.tally);
        self.run(c)
    }

    fn run(&mut self, c: &mut Connection) -> Verdict {
        let mut tally = std::mem::take(&mut self.tally);
        while let Some(Polled::Request(req, ctx)) = c.poll_request(&self.cx(), &mut tally) {
            let resp = Hello.call(req);
            c.respond(&resp, ctx, &self.date, &mut self.spare, self.now);
        }
        self.tally = tally;
        c.poll_verdict(self.now, self.timeouts.linger, false)
    }

    /// Everything the connection would send, as if the kernel took it all.
    pub(crate) fn drain_output(&mut self, c: &mut Connection) -> String {
        let mut all = String::new();
        while let Some(out) = c.poll_transmit() {
            all.push_str(&String::from_utf8_lossy(&out));
            let n = out.len();
            if let Some(buf) = c.sent(out, n, self.now, &mut self.tally) {
                self.spare.give(buf);
            }
        }
        all
    }
}

/// Bytes received, as a driver hands them to the core: appended to its read buffer, then
/// reported.
fn receive(
    c: &mut Connection,
    bytes: &[u8],
    stamp: Option<Stamp>,
    now: Instant,
    spare: &mut Buffers,
    tally: &mut Tally,
) {
    c.read_buffer(spare).extend_from_slice(bytes);
    c.received(bytes.len(), stamp, now, tally);
}

fn conn(w: &World) -> Connection {
    Connection::new(None, Limits::default(), w.now)
}

pub(crate) const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn a_request_is_answered_and_the_connection_kept() {
    let mut w = World::new();
    let mut c = conn(&w);
    assert_eq!(c.phase(), Phase::ReadingHead);
    assert_eq!(w.feed(&mut c, GET), Verdict::Keep);
    assert_eq!(c.phase(), Phase::Writing);
    let out = w.drain_output(&mut c);
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("hi\n"),
        "{out}"
    );
    assert_eq!(
        c.poll_verdict(w.now, w.timeouts.linger, false),
        Verdict::Keep
    );
    assert!(c.wants_read());
    assert_eq!(c.poll_deadline(&w.timeouts).unwrap().1, Expiry::Idle);
}

#[test]
fn every_split_of_pipelined_requests_gives_the_same_answers() {
    let two = [
        GET,
        b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ]
    .concat();
    let mut reference = None;
    for cut in 0..=two.len() {
        let mut w = World::new();
        let mut c = conn(&w);
        w.feed(&mut c, &two[..cut]);
        let verdict = w.feed(&mut c, &two[cut..]);
        let out = w.drain_output(&mut c);
        let verdict_after = c.poll_verdict(w.now, w.timeouts.linger, false);
        let got = (out.matches("HTTP/1.1 200").count(), verdict, verdict_after);
        assert_eq!(got.0, 2, "cut {cut}");
        assert_eq!(got.2, Verdict::Close { aborted: false }, "cut {cut}");
        reference.get_or_insert(got);
    }
}

#[test]
fn a_malformed_request_is_refused_then_half_closed_and_lingers() {
    let mut w = World::new();
    let mut c = conn(&w);
    assert_eq!(
        w.feed(&mut c, b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n"),
        Verdict::Keep
    );
    let out = w.drain_output(&mut c);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(!c.may_parse(), "no request after a refusal");
    assert_eq!(
        c.poll_verdict(w.now, w.timeouts.linger, false),
        Verdict::HalfClose
    );
    assert_eq!(c.phase(), Phase::Lingering);
    assert!(c.wants_read(), "lingering reads and discards");
    let (until, kind) = c.poll_deadline(&w.timeouts).unwrap();
    assert_eq!((until, kind), (w.now + w.timeouts.linger, Expiry::Linger));
    assert!(c.discard_input(1000));
    assert!(!c.discard_input(LINGER_MAX_BYTES), "gives up past the cap");
}

#[test]
fn a_fin_mid_request_aborts_and_a_fin_between_requests_closes() {
    let mut w = World::new();
    let mut c = conn(&w);
    w.feed(&mut c, b"GET / HTTP/1.1\r\nHo");
    c.peer_closed();
    assert_eq!(w.run(&mut c), Verdict::Close { aborted: true });

    let mut c = conn(&w);
    w.feed(&mut c, GET);
    c.peer_closed();
    // The answer is still owed: keep until it is out.
    assert_eq!(w.run(&mut c), Verdict::Keep);
    w.drain_output(&mut c);
    assert_eq!(
        c.poll_verdict(w.now, w.timeouts.linger, false),
        Verdict::Close { aborted: false }
    );
}

#[test]
fn a_broken_connection_closes_at_once() {
    let mut w = World::new();
    let mut c = conn(&w);
    w.feed(&mut c, GET);
    c.broke();
    assert_eq!(c.phase(), Phase::Closed);
    assert_eq!(
        c.poll_verdict(w.now, w.timeouts.linger, false),
        Verdict::Close { aborted: true }
    );
}

#[test]
fn deadlines_follow_the_phase_and_expire_as_they_should() {
    let mut w = World::new();
    let mut c = conn(&w);
    // A silent new connection: header deadline from accept, closed without a word.
    assert_eq!(
        c.poll_deadline(&w.timeouts),
        Some((w.now + w.timeouts.header, Expiry::Header))
    );
    assert_eq!(
        c.expire(Expiry::Header, &w.cx(), &mut Tally::default()),
        Expired::Close
    );
    // Half a head: 408, then half-close.
    let mut c = conn(&w);
    w.now += Duration::from_millis(5);
    w.feed(&mut c, b"GET / HT");
    assert_eq!(
        c.poll_deadline(&w.timeouts),
        Some((w.now + w.timeouts.header, Expiry::Header))
    );
    assert_eq!(
        c.expire(Expiry::Header, &w.cx(), &mut Tally::default()),
        Expired::Answered
    );
    assert!(w.drain_output(&mut c).starts_with("HTTP/1.1 408"));
    assert_eq!(
        c.poll_verdict(w.now, w.timeouts.linger, false),
        Verdict::HalfClose
    );
    // In a body: the body deadline, from the last read.
    let mut c = conn(&w);
    w.feed(
        &mut c,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
    );
    assert_eq!(c.phase(), Phase::ReadingBody);
    assert_eq!(c.poll_deadline(&w.timeouts).unwrap().1, Expiry::Body);
    assert_eq!(
        c.expire(Expiry::Body, &w.cx(), &mut Tally::default()),
        Expired::Answered
    );
    // Output waiting: the write deadline.
    let mut c = conn(&w);
    w.feed(&mut c, GET);
    assert_eq!(c.poll_deadline(&w.timeouts).unwrap().1, Expiry::Write);
    assert_eq!(
        c.expire(Expiry::Write, &w.cx(), &mut Tally::default()),
        Expired::Close
    );
}

#[test]
fn a_drain_closes_idle_connections_and_answers_busy_ones() {
    let mut w = World::new();
    let mut c = conn(&w);
    assert_eq!(
        c.poll_verdict(w.now, w.timeouts.linger, true),
        Verdict::Close { aborted: false }
    );
    let mut c = conn(&w);
    w.feed(&mut c, b"GET / HT");
    assert_eq!(
        c.poll_verdict(w.now, w.timeouts.linger, true),
        Verdict::Keep
    );
}

#[test]
fn out_of_order_completions_are_written_in_request_order() {
    let mut w = World::new();
    let mut c = conn(&w);
    let a = c.push_pending();
    let b = c.push_pending();
    c.push_ready(b"C", true, w.now);
    c.complete(b, Bytes::from_static(b"B"), Some(true), &mut w.spare, w.now);
    assert!(c.wbuf.is_empty(), "B must wait for A");
    assert_eq!(c.phase(), Phase::Handling);
    assert_eq!(
        c.poll_deadline(&w.timeouts),
        None,
        "the server owes the next step"
    );
    c.complete(a, Bytes::from_static(b"A"), Some(true), &mut w.spare, w.now);
    assert_eq!(&c.wbuf[..], b"ABC");
    assert!(c.slots.is_empty());
}

#[test]
fn a_closing_response_drops_the_ones_after_it() {
    let mut w = World::new();
    let mut c = conn(&w);
    let a = c.push_pending();
    let b = c.push_pending();
    c.complete(b, Bytes::from_static(b"B"), Some(true), &mut w.spare, w.now);
    c.complete(
        a,
        Bytes::from_static(b"A"),
        Some(false),
        &mut w.spare,
        w.now,
    );
    assert_eq!(&c.wbuf[..], b"A");
    assert!(!c.may_parse());
}

/// A streamed answer arrives in parts: they go out in order behind earlier answers, wait in
/// their slot while the output is past its bound (so the producer, paused by what it has
/// outstanding, waits for the client), and a later answer follows only the last part.
#[test]
fn a_streamed_answer_leaves_in_parts_held_while_the_output_is_full() {
    let mut w = World::new();
    let mut c = conn(&w);
    let a = c.push_pending();
    let b = c.push_pending();
    c.complete(b, Bytes::from_static(b"B"), Some(true), &mut w.spare, w.now);
    c.complete(a, Bytes::from_static(b"head"), None, &mut w.spare, w.now);
    assert_eq!(&c.wbuf[..], b"head", "B waits for the end of A");
    let big = Bytes::from(vec![b'x'; OUTPUT_BOUND]);
    c.complete(a, big.clone(), None, &mut w.spare, w.now);
    c.complete(a, big.clone(), None, &mut w.spare, w.now);
    c.complete(
        a,
        Bytes::from_static(b"end"),
        Some(true),
        &mut w.spare,
        w.now,
    );
    assert_eq!(
        c.wbuf.len(),
        4 + OUTPUT_BOUND,
        "the second part waits for room"
    );
    assert_eq!(c.buffered_out() as usize, 4 + 2 * OUTPUT_BOUND + 3 + 1);
    assert_eq!(c.phase(), Phase::Writing);
    let mut seen = Vec::new();
    while let Some(out) = c.poll_transmit() {
        seen.extend_from_slice(&out);
        let n = out.len();
        c.sent(out, n, w.now, &mut w.tally);
    }
    assert_eq!(seen.len(), 4 + 2 * OUTPUT_BOUND + 3 + 1);
    assert!(seen.ends_with(b"endB"));
    assert!(c.slots.is_empty() && c.buffered_out() == 0);
}

/// The core reads no clock: fed a made-up monotonic and wall clock, it counts the
/// accept-queue and receive-queue waits those clocks mean, to the microsecond.
#[test]
fn queue_waits_come_exactly_from_the_clocks_given() {
    let t0 = Instant::now();
    let wall0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let ms = Duration::from_millis;
    let mut c = Connection::new(None, Limits::default(), t0);
    let (mut tally, mut spare, date) =
        (Tally::default(), Buffers::default(), DateCache::new(wall0));
    // The request reached the kernel 3 ms before the accept (at t0) and is read 2 ms
    // after it: it waited 5 ms in all, 3 of them in the accept queue.
    let stamp = |arrived, read: Duration| Stamp {
        arrived,
        weight: 1,
        read_at: (t0 + read, wall0 + read),
    };
    receive(
        &mut c,
        GET,
        Some(stamp(wall0 - ms(3), ms(2))),
        t0 + ms(2),
        &mut spare,
        &mut tally,
    );
    assert_eq!(tally.accept_waits, vec![ms(3)]);
    assert_eq!(tally.bytes_in, GET.len() as u64);
    let cx = |now| ParseContext {
        body_limit: &|_req: &Request| None,
        stream_over: None,
        refusals: None,
        date: &date,
        draining: false,
        now,
    };
    assert!(c.poll_request(&cx(t0 + ms(2)), &mut tally).is_some());
    assert_eq!(tally.receive_waits, vec![(ms(5), 1)]);
    // The next request, stamped 1.5 ms before its read 10 ms later: its own wait, and no
    // second accept-queue wait for the connection.
    let arrived = wall0 + ms(12) - Duration::from_micros(1_500);
    receive(
        &mut c,
        GET,
        Some(stamp(arrived, ms(12))),
        t0 + ms(12),
        &mut spare,
        &mut tally,
    );
    assert!(c.poll_request(&cx(t0 + ms(12)), &mut tally).is_some());
    assert_eq!(tally.accept_waits, vec![ms(3)]);
    assert_eq!(
        tally.receive_waits,
        vec![(ms(5), 1), (Duration::from_micros(1_500), 1)]
    );
    // Bytes that arrived after the accept: the connection did not wait in the queue.
    let mut late = Connection::new(None, Limits::default(), t0);
    let mut t = Tally::default();
    receive(
        &mut late,
        GET,
        Some(stamp(wall0 + ms(1), ms(4))),
        t0 + ms(4),
        &mut spare,
        &mut t,
    );
    assert_eq!(t.accept_waits, vec![Duration::ZERO]);
}

#[test]
fn a_partial_owned_send_goes_back_in_front_of_later_answers() {
    let mut w = World::new();
    let mut c = conn(&w);
    w.feed(&mut c, GET);
    let out = c.poll_transmit().expect("output");
    let first = out.len();
    assert!(c.poll_transmit().is_none(), "one send at a time");
    assert_eq!(c.phase(), Phase::Writing, "a send in flight is output owed");
    w.feed(&mut c, GET);
    c.sent(out, 10, w.now, &mut w.tally);
    let rest = c.poll_transmit().unwrap();
    assert_eq!(
        rest.len(),
        2 * first - 10,
        "the unsent tail, then the second answer"
    );
    assert!(rest.starts_with(b"OK\r\n") || rest[..].windows(2).any(|x| x == b"\r\n"));
    c.sent(rest, 2 * first - 10, w.now, &mut w.tally);
    assert_eq!(c.phase(), Phase::ReadingHead);
    assert_eq!(
        c.poll_verdict(w.now, w.timeouts.linger, false),
        Verdict::Keep
    );
}

#[test]
fn output_backpressure_stops_parsing_until_the_output_drains() {
    let mut w = World::new();
    let mut c = conn(&w);
    // Enough pipelined requests to pass the output bound with their answers.
    let many = GET.repeat(OUTPUT_BOUND / 100 + 10);
    w.feed(&mut c, &many);
    assert!(c.buffered_out() >= OUTPUT_BOUND as u64);
    assert!(!c.wants_read() && !c.unblocked(), "parsing paused");
    w.drain_output(&mut c);
    assert!(c.unblocked(), "requests still wait in the buffer");
    w.run(&mut c);
    assert!(c.buffered_out() > 0);
}

mod properties {
    use super::*;
    use super::{World, GET};
    use proptest::prelude::*;

    /// A mix of requests: keep-alive GETs, a body, a chunked body, a bad one at the end.
    fn stream() -> Vec<u8> {
        [
            GET,
            b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            GET,
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]
        .concat()
    }

    /// Feed `stream` in pieces cut at `cuts`; what would be sent, and how it ends.
    fn run(cuts: &[usize]) -> (String, Verdict) {
        let bytes = stream();
        let mut w = World::new();
        let mut c = Connection::new(None, Limits::default(), w.now);
        let mut out = String::new();
        let mut at = 0;
        let mut verdict = Verdict::Keep;
        let mut points: Vec<usize> = cuts.iter().map(|&c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        points.push(bytes.len());
        for p in points {
            if c.lingering() || matches!(verdict, Verdict::Close { .. }) {
                break;
            }
            verdict = w.feed(&mut c, &bytes[at..p]);
            out.push_str(&w.drain_output(&mut c));
            verdict = match verdict {
                Verdict::Keep => c.poll_verdict(w.now, w.timeouts.linger, false),
                v => v,
            };
            at = p;
        }
        // Dates are the same within a test's second; strip them anyway.
        let out = out
            .lines()
            .filter(|l| !l.starts_with("Date:"))
            .collect::<Vec<_>>()
            .join("\n");
        (out, verdict)
    }

    proptest! {
        #[test]
        fn any_split_of_the_stream_gives_the_same_answers(cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let whole = run(&[]);
            prop_assert_eq!(whole.0.matches("HTTP/1.1 200").count(), 4);
            prop_assert!(whole.0.contains("HTTP/1.1 400"));
            prop_assert_eq!(whole.1, Verdict::HalfClose);
            prop_assert_eq!(run(&cuts), whole);
        }

        #[test]
        fn answers_leave_in_request_order_whatever_order_workers_finish(order in Just((0u64..8).collect::<Vec<_>>()).prop_shuffle()) {
            let mut w = World::new();
            let mut c = Connection::new(None, Limits::default(), w.now);
            let seqs: Vec<u64> = (0..8).map(|_| c.push_pending()).collect();
            for i in order {
                let body = format!("{i};");
                c.complete(seqs[i as usize], Bytes::from(body), Some(true), &mut w.spare, w.now);
            }
            prop_assert_eq!(w.drain_output(&mut c), "0;1;2;3;4;5;6;7;");
        }
    }
}

mod size {
    /// Every open connection carries one of these even while idle (with its driver's few
    /// bytes: see the reader's own test); buffers are lent only while bytes are in flight.
    #[test]
    fn an_idle_connection_stays_small() {
        let size = std::mem::size_of::<crate::connection::Connection>();
        assert!(size <= 384, "Connection is {size} bytes");
    }
}

/// A connection that read `raw` with every body streamed and handed over the request at
/// its head: the connection, the slot its answer holds, and the tally it counted into.
fn streaming_handed_over(w: &mut World, raw: &[u8]) -> (Connection, u64, Tally) {
    let mut c = conn(w);
    receive(&mut c, raw, None, w.now, &mut w.spare, &mut w.tally);
    let mut tally = Tally::default();
    let polled = c.poll_request(&streaming(w), &mut tally);
    assert!(matches!(polled, Some(Polled::Streaming(..))));
    let seq = c.push_pending();
    (c, seq, tally)
}

fn streaming(w: &World) -> ParseContext<'_> {
    ParseContext {
        stream_over: Some(0),
        ..w.cx()
    }
}

/// Nothing of the connection's own went out; the request's answer `status_line` is the one
/// sent, and the connection half-closes after it.
fn its_answer_alone(w: &mut World, c: &mut Connection, seq: u64, status_line: &str) {
    assert_eq!(w.drain_output(c), "", "nothing of the connection's own");
    let answer = format!("{status_line}\r\nContent-Length: 0\r\n\r\n");
    c.complete(seq, Bytes::from(answer), Some(false), &mut w.spare, w.now);
    assert!(w.drain_output(c).starts_with(status_line));
    assert_eq!(
        c.poll_verdict(w.now, w.timeouts.linger, false),
        Verdict::HalfClose
    );
}

#[test]
fn a_streamed_body_that_breaks_its_framing_fails_its_consumer_with_no_second_answer() {
    let mut w = World::new();
    let raw = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
3\r\nabc\r\n3\r\nabcd\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let (mut c, seq, mut tally) = streaming_handed_over(&mut w, raw);
    let cx = streaming(&w);
    // The good chunk's bytes (however the decoder hands them over), then the failure.
    let mut got = Vec::new();
    let failed = loop {
        match c.poll_request(&cx, &mut tally) {
            Some(Polled::Body(bytes, false)) => got.extend_from_slice(&bytes),
            Some(Polled::BodyFailed(err)) => break err,
            _ => panic!("neither a piece of the body nor its failure"),
        }
    };
    assert!(b"abc".starts_with(&got), "{got:?}");
    assert!(matches!(failed, h1::Error::Chunked(_)), "{failed:?}");
    // Nothing more is parsed: not the GET after the broken framing.
    assert!(c.poll_request(&cx, &mut tally).is_none());
    assert!(!c.wants_read());
    its_answer_alone(&mut w, &mut c, seq, "HTTP/1.1 400 Bad Request");
}

#[test]
fn a_streamed_body_that_stops_arriving_is_its_consumers_to_answer_not_a_second_408() {
    let mut w = World::new();
    let raw = b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab";
    let (mut c, seq, mut tally) = streaming_handed_over(&mut w, raw);
    let cx = streaming(&w);
    while c.poll_request(&cx, &mut tally).is_some() {}
    assert_eq!(c.poll_deadline(&w.timeouts).unwrap().1, Expiry::Body);
    assert_eq!(
        c.expire(Expiry::Body, &cx, &mut tally),
        Expired::BodyTimedOut
    );
    its_answer_alone(&mut w, &mut c, seq, "HTTP/1.1 408 Request Timeout");
}
