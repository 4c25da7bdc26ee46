//! The SYN queue made visible: handshakes that are never completed show as SYN_RECV.
//!
//! The test builds its own two hosts in network namespaces joined by a veth pair (addresses
//! from TEST-NET-1, 192.0.2.0/24, which exist only inside them). The server's host has a
//! wrong permanent neighbour entry for the client, so its SYN-ACKs go to a MAC nobody has:
//! each client SYN leaves a SYN_RECV entry that is never ACKed — what a SYN flood does —
//! without raw sockets. Needs root; skipped with a message otherwise.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod util;

use util::{Served, BIN};

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Two namespaces and a veth pair; removed on drop, whatever happened.
struct Hosts {
    server_ns: String,
    client_ns: String,
}

impl Hosts {
    fn create() -> Option<Hosts> {
        let id = std::process::id();
        let hosts = Hosts {
            server_ns: format!("bl-srv-{id}"),
            client_ns: format!("bl-cli-{id}"),
        };
        let (s, c) = (hosts.server_ns.as_str(), hosts.client_ns.as_str());
        let (vs, vc) = (format!("bls{id}"), format!("blc{id}"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", s],
            vec!["netns", "add", c],
            vec!["link", "add", &vs, "type", "veth", "peer", "name", &vc],
            vec!["link", "set", &vs, "netns", s],
            vec!["link", "set", &vc, "netns", c],
            vec!["-n", s, "addr", "add", "192.0.2.1/24", "dev", &vs],
            vec!["-n", c, "addr", "add", "192.0.2.2/24", "dev", &vc],
            vec!["-n", s, "link", "set", "lo", "up"],
            vec!["-n", s, "link", "set", &vs, "up"],
            vec!["-n", c, "link", "set", &vc, "up"],
            // The server's replies to the client go to a MAC that does not exist.
            vec![
                "-n",
                s,
                "neigh",
                "replace",
                "192.0.2.2",
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                &vs,
                "nud",
                "permanent",
            ],
        ];
        for step in steps {
            if !ip(&step) {
                eprintln!(
                    "skipped: `ip {}` failed (needs root and iproute2)",
                    step.join(" ")
                );
                return None;
            }
        }
        Some(hosts)
    }

    fn exec(&self, ns: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]);
        cmd
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.server_ns]);
        ip(&["netns", "del", &self.client_ns]);
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn syn_recv_metric(hosts: &Hosts, admin: &str) -> Option<u64> {
    let out = hosts
        .exec(&hosts.server_ns)
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
fn handshakes_never_completed_show_as_syn_recv() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed (scripts/test installs it)");
        return;
    }
    let Some(hosts) = Hosts::create() else { return };
    let mut cmd = hosts.exec(&hosts.server_ns);
    cmd.args([BIN, "serve", "--listen", "192.0.2.1:8080"])
        .args(["--admin", "127.0.0.1:9901", "--model", "single"]);
    let mut server = Served::spawn(cmd);
    server.admin_addr();
    assert_eq!(syn_recv_metric(&hosts, "127.0.0.1:9901"), Some(0));

    // 20 clients whose handshakes never complete; each gives up by itself after 8 s.
    const SYNS: u64 = 20;
    let clients = Killed(
        hosts
            .exec(&hosts.client_ns)
            .args(["bash", "-c"])
            .arg(format!(
                "for i in $(seq {SYNS}); do timeout 8 bash -c 'exec 3<>/dev/tcp/192.0.2.1/8080' 2>/dev/null & done; wait"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut seen = 0;
    while Instant::now() < deadline {
        seen = syn_recv_metric(&hosts, "127.0.0.1:9901").unwrap_or(0);
        if seen == SYNS {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(clients);
    drop(server);
    assert_eq!(seen, SYNS, "SYN_RECV entries seen by the admin endpoint");
}
