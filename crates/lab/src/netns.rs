//! Network namespaces the lab makes for storms and floods, removed when dropped (also after
//! Ctrl-C, which ends the run loop rather than the process). Either one host (server and
//! clients on its loopback) or two joined by a veth pair, with addresses from TEST-NET-1
//! (192.0.2.0/24) that exist only inside them: the server at .1, clients at .2, and a
//! flooding client at .3 whose SYN-ACKs go to a MAC nobody has (a wrong permanent neighbour
//! entry on the server's side), so each of its SYNs leaves a handshake that is never
//! completed — a SYN flood without raw sockets. Inside them the lab may set sysctls and
//! overflow queues without touching the host. Creating them needs root and iproute2.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The server's address on a pair of hosts.
pub const SERVER: [u8; 4] = [192, 0, 2, 1];
/// The flooding client's address on a pair of hosts: its handshakes never complete.
pub const FLOOD: [u8; 4] = [192, 0, 2, 3];

/// One host, or a server host and a client host.
pub struct Hosts {
    /// Where the server runs.
    pub server: String,
    /// Where the clients run (the same namespace for one host).
    pub client: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Set `setting` (`name=value`) inside namespace `ns`.
pub fn sysctl(ns: &str, setting: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-q", "-w", setting])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A suffix no other set of hosts made by this process has.
fn unique() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Hosts {
    /// One host with its loopback up.
    pub fn create() -> Option<Hosts> {
        let name = format!("bl-lab-{}", unique());
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Hosts {
            server: name.clone(),
            client: name,
        };
        if !ip(&["-n", &ns.server, "link", "set", "lo", "up"]) {
            return None;
        }
        // A churn of thousands of short connections needs the whole port range.
        sysctl(&ns.client, "net.ipv4.ip_local_port_range=1024 65535");
        Some(ns)
    }

    /// Two hosts joined by a veth pair (addresses above).
    pub fn pair() -> Option<Hosts> {
        let id = unique();
        let (s, c) = (format!("bl-lab-srv-{id}"), format!("bl-lab-cli-{id}"));
        if !ip(&["netns", "add", &s]) {
            return None;
        }
        let ns = Hosts {
            server: s.clone(),
            client: c.clone(),
        };
        if !ip(&["netns", "add", &c]) {
            return None;
        }
        let (vs, vc) = (format!("bls{id}"), format!("blc{id}"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["link", "add", &vs, "type", "veth", "peer", "name", &vc],
            vec!["link", "set", &vs, "netns", &s],
            vec!["link", "set", &vc, "netns", &c],
            vec!["-n", &s, "addr", "add", "192.0.2.1/24", "dev", &vs],
            vec!["-n", &c, "addr", "add", "192.0.2.2/24", "dev", &vc],
            vec!["-n", &c, "addr", "add", "192.0.2.3/24", "dev", &vc],
            vec!["-n", &s, "link", "set", "lo", "up"],
            vec!["-n", &c, "link", "set", "lo", "up"],
            vec!["-n", &s, "link", "set", &vs, "up"],
            vec!["-n", &c, "link", "set", &vc, "up"],
            vec![
                "-n",
                &s,
                "neigh",
                "replace",
                "192.0.2.3",
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                &vs,
                "nud",
                "permanent",
            ],
        ];
        if !steps.iter().all(|step| ip(step)) {
            return None;
        }
        sysctl(&c, "net.ipv4.ip_local_port_range=1024 65535");
        Some(ns)
    }

    /// Two hosts, not one.
    pub fn is_pair(&self) -> bool {
        self.server != self.client
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.server]);
        if self.is_pair() {
            ip(&["netns", "del", &self.client]);
        }
    }
}

/// `n` nonblocking connects to `to` from the flooding address, each sending a SYN whose
/// SYN-ACK never arrives; the handshakes stay half-open while the sockets are held. Call
/// from a thread inside the client host of a pair (`sys::netns::enter`).
pub fn half_open(to: SocketAddr, n: usize) -> Vec<Socket> {
    let from = SockAddr::from(SocketAddr::from((FLOOD, 0)));
    let to = SockAddr::from(to);
    (0..n)
        .filter_map(|_| {
            let sock = Socket::new(
                Domain::IPV4,
                Type::STREAM.nonblocking(),
                Some(Protocol::TCP),
            )
            .ok()?;
            sock.bind(&from).ok()?;
            let _ = sock.connect(&to);
            Some(sock)
        })
        .collect()
}
