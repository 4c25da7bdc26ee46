//! What counting queue waits costs a request on the receive path. A loopback TCP pair: the
//! client writes an 80-byte request, the server end takes it. Timing off: `read`. Timing
//! on: the socket has `SO_TIMESTAMPNS`, the request is taken with `recvmsg` and its
//! `SCM_TIMESTAMPNS`, and the clock is read to make the wait. Each figure includes the
//! client's write, which is where the kernel processes (and stamps) the segment.
//!
//! The machines are shared and noisy (±30% between runs), so the two are never measured at
//! different moments:
//! - per socket (recvmsg, the control message, the clock): two pairs open at once, one of
//!   each kind, and every iteration sends one request through each, in alternating order;
//! - host-wide (the kernel stamps every received packet while any socket on the host asks,
//!   a deferred switch): rounds of `read` on a plain pair with and without a stamping socket
//!   open elsewhere, alternated, medians compared (unless another socket on the host keeps
//!   stamping on the whole time, in which case both rounds pay it).
//!
//! Run with `cargo bench -p backlog-sys --bench receive_timing`.

use bytes::BytesMut;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime};

const REQUEST: &[u8] =
    b"GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: receive-timing/1\r\nAccept: */*\r\n\r\n";

fn pair(timestamps: bool) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    sys::socket::set_receive_timestamps(&listener, timestamps).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_nodelay(true).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// One request through a pair, timing off: ns.
fn plain(client: &mut TcpStream, server: &TcpStream, buf: &mut BytesMut) -> u64 {
    let start = Instant::now();
    client.write_all(REQUEST).unwrap();
    buf.clear();
    let n = sys::socket::read_into(server, buf, 1024).unwrap();
    let ns = start.elapsed().as_nanos() as u64;
    assert_eq!(n, REQUEST.len());
    ns
}

/// One request through a pair, timing on: ns, and the wait it measured.
fn timed(client: &mut TcpStream, server: &TcpStream, buf: &mut BytesMut) -> (u64, Duration) {
    let start = Instant::now();
    client.write_all(REQUEST).unwrap();
    buf.clear();
    let (n, at) = sys::socket::recv_into(server, buf, 1024).unwrap();
    let wait = at.map_or(Duration::ZERO, |at| {
        SystemTime::now().duration_since(at).unwrap_or_default()
    });
    let ns = start.elapsed().as_nanos() as u64;
    assert_eq!(n, REQUEST.len());
    (ns, wait)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once, briefly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (iterations, rounds, per_round) = if quick {
        (1_000, 1, 1_000)
    } else {
        (300_000, 15, 20_000)
    };
    let mut buf = BytesMut::with_capacity(4096);

    // Per socket: interleaved request by request.
    let (mut off_client, off_server) = pair(false);
    let (mut on_client, on_server) = pair(true);
    let (mut off_ns, mut on_ns, mut waited) = (0u64, 0u64, Duration::ZERO);
    for i in 0..iterations {
        let (t, w) = if i % 2 == 0 {
            let a = plain(&mut off_client, &off_server, &mut buf);
            let (b, w) = timed(&mut on_client, &on_server, &mut buf);
            off_ns += a;
            (b, w)
        } else {
            let (b, w) = timed(&mut on_client, &on_server, &mut buf);
            off_ns += plain(&mut off_client, &off_server, &mut buf);
            (b, w)
        };
        on_ns += t;
        waited += w;
    }
    drop((on_client, on_server));
    let n = iterations as f64;
    println!("per socket, {iterations} requests through each pair, interleaved:");
    println!("  read                        {:7.0} ns", off_ns as f64 / n);
    println!("  recvmsg + timestamp + clock {:7.0} ns", on_ns as f64 / n);
    println!(
        "  difference                  {:7.0} ns (mean wait measured {:.1} µs)",
        (on_ns as f64 - off_ns as f64) / n,
        waited.as_secs_f64() * 1e6 / n
    );

    // Host-wide: the same plain pair, with and without a stamping socket somewhere.
    let (mut client, server) = pair(false);
    let (mut with, mut without, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let stamping = pair(true);
        std::thread::sleep(Duration::from_millis(20));
        let on: u64 = (0..per_round)
            .map(|_| plain(&mut client, &server, &mut buf))
            .sum();
        drop(stamping);
        std::thread::sleep(Duration::from_millis(20));
        let off: u64 = (0..per_round)
            .map(|_| plain(&mut client, &server, &mut buf))
            .sum();
        let (on, off) = (on as f64 / per_round as f64, off as f64 / per_round as f64);
        with.push(on);
        without.push(off);
        ratios.push(on / off);
    }
    println!("host-wide packet stamping, {rounds} alternating rounds of {per_round} reads:");
    println!("  stamping off                {:7.0} ns", median(without));
    println!("  stamping on                 {:7.0} ns", median(with));
    println!("  ratio, median of the rounds {:7.3}", median(ratios));
}
