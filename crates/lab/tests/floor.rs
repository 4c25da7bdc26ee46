//! The floor answers like a server, under both I/O interfaces: every complete head gets
//! one answer whatever the split, pipelined heads get theirs in one go, and a client's FIN
//! or `Connection: close` ends the connection. The arena engine on the same loops answers
//! HttpArena's mix, whatever the split, in order.

use backlog_server::Io;
use lab::engine::Endpoints;
use lab::floor::Floor;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

fn answers(stream: &mut TcpStream, n: usize) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(14).filter(|w| w == b"Hello, World!\n").count() < n {
        let k = stream.read(&mut buf).expect("answer in time");
        assert!(k > 0, "closed after {got:?}");
        got.extend_from_slice(&buf[..k]);
    }
    assert_eq!(
        got.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count(),
        n
    );
}

fn check(io: Io) {
    let floor = Floor::bind("127.0.0.1:0".parse().unwrap(), 1, 128, io, Endpoints::Demo).unwrap();
    let addr = floor.addr;
    // The thread serves until the test process ends.
    std::thread::spawn(move || floor.serve());
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.set_nodelay(true).unwrap();
    for cut in 1..HEAD.len() {
        c.write_all(&HEAD[..cut]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        c.write_all(&HEAD[cut..]).unwrap();
        answers(&mut c, 1);
    }
    c.write_all(&HEAD.repeat(16)).unwrap();
    answers(&mut c, 16);
    c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(
        rest.starts_with(b"HTTP/1.1 200 OK"),
        "answered, then closed"
    );
    // The client's FIN: the floor closes too.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(HEAD).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(
        rest.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count(),
        1
    );
}

/// HttpArena's three request shapes, each split in two at every byte, on one keep-alive
/// connection, then 16 pipelined `/pipeline`s.
fn check_arena(io: Io) {
    let floor = Floor::bind("127.0.0.1:0".parse().unwrap(), 1, 128, io, Endpoints::Arena).unwrap();
    let addr = floor.addr;
    std::thread::spawn(move || floor.serve());
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.set_nodelay(true).unwrap();
    let mix: [(&[u8], &str); 3] = [
        (b"GET /baseline11?a=13&b=42 HTTP/1.1\r\nHost: t\r\n\r\n", "55"),
        (
            b"POST /baseline11?a=13&b=42 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n20",
            "75",
        ),
        (
            b"POST /baseline11?a=1&b=2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n20\r\n0\r\n\r\n",
            "23",
        ),
    ];
    let mut buf = [0u8; 4096];
    for (req, sum) in mix {
        for cut in 1..req.len() {
            c.write_all(&req[..cut]).unwrap();
            std::thread::sleep(Duration::from_millis(1));
            c.write_all(&req[cut..]).unwrap();
            let k = c.read(&mut buf).expect("an answer in time");
            let text = std::str::from_utf8(&buf[..k]).unwrap();
            assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
            assert!(
                text.ends_with(&format!("\r\n\r\n{sum}")),
                "cut {cut}: {text}"
            );
        }
    }
    c.write_all(&b"GET /pipeline HTTP/1.1\r\nHost: t\r\n\r\n".repeat(16))
        .unwrap();
    let mut got = Vec::new();
    while got.windows(6).filter(|w| w == b"\r\n\r\nok").count() < 16 {
        let k = c.read(&mut buf).expect("answers in time");
        assert!(k > 0);
        got.extend_from_slice(&buf[..k]);
    }
}

#[test]
fn the_epoll_floor_answers_every_head() {
    check(Io::Epoll);
}

#[test]
#[ignore = "needs io_uring (scripts/test runs it)"]
fn the_io_uring_floor_answers_every_head() {
    check(Io::Uring);
}

#[test]
fn the_epoll_arena_engine_answers_the_mix_whatever_the_split() {
    check_arena(Io::Epoll);
}

#[test]
#[ignore = "needs io_uring (scripts/test runs it)"]
fn the_io_uring_arena_engine_answers_the_mix_whatever_the_split() {
    check_arena(Io::Uring);
}
