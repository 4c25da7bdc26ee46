//! The floor answers like a server, under both I/O interfaces: every complete head gets
//! one answer whatever the split, pipelined heads get theirs in one go, and a client's FIN
//! or `Connection: close` ends the connection.

use backlog_server::Io;
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
    let floor = Floor::bind("127.0.0.1:0".parse().unwrap(), 1, 128, io).unwrap();
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

#[test]
fn the_epoll_floor_answers_every_head() {
    check(Io::Epoll);
}

#[test]
#[ignore = "needs io_uring (scripts/test runs it)"]
fn the_io_uring_floor_answers_every_head() {
    check(Io::Uring);
}
