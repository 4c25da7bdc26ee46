//! `serve_until_signal`: SIGTERM drains and returns. Its own test binary: the signal is sent
//! to this whole process, and no other test may be running in it.

mod util;

use std::io::{BufReader, Write};
use std::time::Duration;
use util::*;

#[test]
fn sigterm_drains_and_serve_until_signal_returns() {
    let addr = free_addr();
    let serving = std::thread::spawn(move || {
        backlog_server::Server::builder()
            .io(backlog_server::Io::from_env())
            .listen(addr)
            .threads(1)
            .serve_until_signal(app())
    });
    wait_until("serving", Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    // A request in flight when the signal comes is answered.
    let c = connect(addr);
    (&c).write_all(b"GET /work?spin_us=200000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    sys::process::signal(std::process::id(), signal_hook::consts::SIGTERM).unwrap();
    let mut r = BufReader::new(&c);
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.text(), "worked\n");
    // Then the connection is closed (after the drain's grace for idle connections).
    assert!(next_response(&mut r).is_none());
    let stats = serving.join().unwrap().expect("served");
    let answered: u64 = stats.snapshot().iter().map(|t| t.requests).sum();
    assert!(answered >= 1);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "stopped listening"
    );
}
