//! The SYN queue made visible: handshakes that are never completed show as SYN_RECV.
//!
//! The test builds its own two hosts with the lab's `Hosts::pair` — network namespaces
//! joined by a veth pair, addresses from TEST-NET-1 (192.0.2.0/24) that exist only inside
//! them, removed on drop whatever happens. The server's host has a wrong permanent
//! neighbour entry for the client's flooding address, so its SYN-ACKs go to a MAC nobody
//! has: each SYN from there leaves a SYN_RECV entry that is never ACKed — what a SYN flood
//! does — without raw sockets. Needs root: ignored unless asked for (scripts/test runs it).

use lab::netns::{self, Hosts};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

mod util;

use util::{Served, BIN};

fn exec(ns: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]);
    cmd
}

fn syn_recv_metric(hosts: &Hosts, admin: &str) -> Option<u64> {
    let out = exec(&hosts.server)
        .args(["curl", "-s", &format!("http://{admin}/metrics")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("backlog_syn_recv{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
#[ignore = "needs root, iproute2 and curl (scripts/test runs it)"]
fn handshakes_never_completed_show_as_syn_recv() {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "curl is not installed (scripts/test installs it)"
    );
    let hosts = Hosts::pair().expect("creating network namespaces needs root and iproute2");
    let mut cmd = exec(&hosts.server);
    cmd.args([BIN, "serve", "--listen", "192.0.2.1:8080"])
        .args(["--admin", "127.0.0.1:9901", "--model", "single"]);
    let mut server = Served::spawn(cmd);
    server.admin_addr();
    assert_eq!(syn_recv_metric(&hosts, "127.0.0.1:9901"), Some(0));

    // 20 handshakes that never complete, held open (from inside the client host) while
    // the metric is read.
    const SYNS: u64 = 20;
    let to = SocketAddr::from((netns::SERVER, 8080));
    let client_ns = hosts.client.clone();
    let half_open = std::thread::spawn(move || {
        sys::netns::enter(&client_ns).expect("entering the client host");
        netns::half_open(to, SYNS as usize)
    })
    .join()
    .unwrap();
    assert_eq!(half_open.len() as u64, SYNS);
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut seen = 0;
    while Instant::now() < deadline {
        seen = syn_recv_metric(&hosts, "127.0.0.1:9901").unwrap_or(0);
        if seen == SYNS {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(half_open);
    drop(server);
    assert_eq!(seen, SYNS, "SYN_RECV entries seen by the admin endpoint");
}
