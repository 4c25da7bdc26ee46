//! The io_uring ring against real loopback sockets: multishot accept and receive, owned
//! sends, FIN, timestamps, the eventfd poll, cancel and close.

use bytes::BytesMut;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};
use sys::uring::{Event, Ring};

const LISTENER: u64 = 1;
const CONN: u64 = 2;
const WAKER: u64 = 3;

/// Run the ring until `done` says so (bounded: 5 s).
fn pump(ring: &mut Ring, mut on: impl FnMut(&mut Vec<Action>, Event<'_>) -> bool) -> Vec<Action> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut actions = Vec::new();
    loop {
        ring.submit_and_wait(1, Some(Duration::from_millis(50)))
            .unwrap();
        let mut done = false;
        ring.complete(|_, ev| done |= on(&mut actions, ev));
        if done {
            return actions;
        }
        assert!(Instant::now() < deadline, "no completion in time");
    }
}

#[derive(Debug)]
enum Action {
    Conn(OwnedFd),
    Bytes(Vec<u8>, Option<SystemTime>),
    Sent(usize, BytesMut),
    Fin,
    Woken,
}

#[test]
#[ignore = "needs io_uring (scripts/test runs it)"]
fn uring_accepts_receives_and_sends() {
    let mut ring = Ring::new().expect("io_uring");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    ring.submit().accept_multi(listener.as_fd(), LISTENER);
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let mut got = pump(&mut ring, |acts, ev| match ev {
        Event::Accepted { token, fd, more } => {
            assert_eq!(token, LISTENER);
            assert!(more, "multishot accept stays armed");
            acts.push(Action::Conn(fd.unwrap()));
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    let Some(Action::Conn(conn)) = got.pop() else {
        panic!("no connection")
    };
    ring.submit().recv_multi(conn.as_fd(), CONN, false);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let got = pump(&mut ring, |acts, ev| match ev {
        Event::Received {
            token, data, more, ..
        } => {
            assert_eq!(token, CONN);
            assert!(more);
            acts.push(Action::Bytes(data.unwrap().to_vec(), None));
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    assert!(matches!(&got[..], [Action::Bytes(b, _)] if b == b"GET / HTTP/1.1\r\n\r\n"));

    // A second message on the same armed receive; the buffer went back to the pool.
    for i in 0..600 {
        // More messages than the pool has buffers: each is recycled after its completion.
        client.write_all(format!("m{i:04}").as_bytes()).unwrap();
        let mut seen = 0;
        pump(&mut ring, |_, ev| match ev {
            Event::Received { data, .. } => {
                seen += data.unwrap().len();
                seen >= 5
            }
            other => panic!("unexpected {other:?}"),
        });
    }

    let mut out = BytesMut::new();
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    ring.submit().send(conn.as_fd(), CONN, out);
    let got = pump(&mut ring, |acts, ev| match ev {
        Event::Sent { token, result, buf } => {
            assert_eq!(token, CONN);
            acts.push(Action::Sent(result.unwrap(), buf));
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    let [Action::Sent(n, buf)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(*n, buf.len(), "the buffer comes back whole");
    let mut answer = vec![0u8; *n];
    client.read_exact(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200 OK"));

    // The client's FIN ends the receive: an empty read, not armed any more.
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let got = pump(&mut ring, |acts, ev| match ev {
        Event::Received { data, more, .. } => {
            assert!(data.unwrap().is_empty());
            assert!(!more);
            acts.push(Action::Fin);
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    assert!(matches!(&got[..], [Action::Fin]));
    ring.submit().close(conn);
    ring.submit().cancel_accept(LISTENER);
    pump(&mut ring, |_, ev| {
        matches!(ev, Event::Accepted { more: false, .. })
    });
    // The close went with the last submission: the client sees EOF.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert_eq!(ring.in_flight(), 0, "{ring:?}");
}

#[test]
#[ignore = "needs io_uring (scripts/test runs it)"]
fn uring_receives_carry_the_kernel_timestamp_when_asked() {
    let mut ring = Ring::new().expect("io_uring");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    sys::socket::set_receive_timestamps(&listener, true).unwrap();
    // Stamping starts host-wide a moment after the first socket asks: warm up until a
    // packet comes back stamped.
    let warm = Instant::now();
    loop {
        let mut c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        c.write_all(b"w").unwrap();
        let (s, _) = listener.accept().unwrap();
        let mut b = BytesMut::new();
        if sys::socket::recv_into(&s, &mut b, 8).unwrap().1.is_some() {
            break;
        }
        assert!(warm.elapsed() < Duration::from_secs(5), "never stamped");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.write_all(b"hello").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    ring.submit().recv_multi(server.as_fd(), CONN, true);
    let got = pump(&mut ring, |acts, ev| match ev {
        Event::Received { data, arrived, .. } => {
            acts.push(Action::Bytes(data.unwrap().to_vec(), arrived));
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    let [Action::Bytes(b, Some(at))] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(b, b"hello", "the payload, without the recvmsg header");
    let waited = SystemTime::now().duration_since(*at).unwrap();
    assert!(waited >= Duration::from_millis(90), "waited {waited:?}");
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    ring.submit().cancel_recv(CONN);
    pump(&mut ring, |_, ev| {
        matches!(ev, Event::Received { more: false, .. })
    });
    drop(ring);
}

#[test]
#[ignore = "needs io_uring (scripts/test runs it)"]
fn uring_another_thread_wakes_the_ring_through_an_eventfd() {
    let mut ring = Ring::new().expect("io_uring");
    let waker = std::sync::Arc::new(sys::Waker::new().unwrap());
    ring.submit().poll_multi(waker.as_fd(), WAKER);
    let w = waker.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        w.wake();
    });
    let got = pump(&mut ring, |acts, ev| match ev {
        Event::Ready { token, more } => {
            assert_eq!(token, WAKER);
            assert!(more);
            acts.push(Action::Woken);
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    assert!(matches!(&got[..], [Action::Woken]));
    waker.reset();
    t.join().unwrap();
    // Dropping a ring with requests still armed cancels them first.
    drop(ring);
}

#[test]
#[ignore = "needs io_uring (scripts/test runs it)"]
fn uring_a_send_to_a_client_that_never_reads_is_cancelled_with_its_fd() {
    let mut ring = Ring::new().expect("io_uring");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    // Far more than the socket buffers hold: the send waits for a reader that never comes.
    let mut big = BytesMut::new();
    big.resize(64 << 20, b'x');
    ring.submit().send(server.as_fd(), CONN, big);
    ring.submit_and_wait(0, Some(Duration::from_millis(200)))
        .unwrap();
    let mut pending = true;
    ring.complete(|_, ev| {
        if matches!(ev, Event::Sent { .. }) {
            pending = false;
        }
    });
    assert!(pending, "64 MiB cannot have been taken by the kernel");
    ring.submit().cancel_fd(server.as_fd());
    let got = pump(&mut ring, |acts, ev| match ev {
        Event::Sent { result, buf, .. } => {
            // Cancelled, or cut short: either way it ends, and the buffer comes back.
            assert!(
                result
                    .as_ref()
                    .map_or_else(sys::cancelled, |&n| n < buf.len()),
                "{result:?}"
            );
            acts.push(Action::Sent(0, buf));
            true
        }
        _ => false,
    });
    assert!(matches!(&got[..], [Action::Sent(_, b)] if b.len() == 64 << 20));
    ring.submit().close(OwnedFd::from(server));
    ring.submit_and_wait(1, Some(Duration::from_millis(200)))
        .unwrap();
    ring.complete(|_, _| {});
    assert_eq!(ring.in_flight(), 0, "{ring:?}");
    drop(client);
}
