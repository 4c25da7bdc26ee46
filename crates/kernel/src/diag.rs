//! Counting sockets by TCP state with netlink `sock_diag` (what `ss` uses).
//!
//! A connection in SYN_RECV has answered a SYN and waits for the client's ACK: it sits in
//! the listener's SYN queue, which no socket option reports. An inet_diag dump filtered to
//! that state lists them; we count those on our port.
//!
//! That dump is not cheap: SYN_RECV sockets live in the established hash, so the kernel walks
//! all of it — every connection and TIME_WAIT socket on the host, in every namespace, taking
//! each bucket's lock with bottom halves off — to find the few that match. Measured here
//! during the lab's accept storm (~30,000 sockets, most in TIME_WAIT): 20–40 ms per walk, on
//! the same cores the server serves from. [`SynRecvGauge`] bounds what asking often costs.
//! Listening sockets have a hash of their own, so [`listen_queues`] stays cheap.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::Socket;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A sock_diag query failed.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    /// The netlink socket could not be opened, or send/recv failed.
    #[error("netlink sock_diag: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel's answer did not parse, or was an error message.
    #[error("netlink sock_diag: {0}")]
    Protocol(String),
}

/// Sockets in SYN_RECV on the port of listening address `addr`: its SYN queue. An IPv4
/// listener's handshakes are all IPv4, so only that family's sockets are walked; an IPv6
/// one (dual-stack) may have both.
pub fn syn_recv_count(addr: SocketAddr) -> Result<u32, DiagError> {
    let families: &[u8] = if addr.is_ipv4() {
        &[AF_INET]
    } else {
        &[AF_INET, AF_INET6]
    };
    let mut n = 0;
    for &family in families {
        n += count(family, StateFlags::SYN_RECV, addr.port())?;
    }
    Ok(n)
}

/// A SYN queue count that spends at most a set share of one core on the walks behind it.
///
/// A walk's cost grows with the host's socket count, and a scraper may ask at any rate
/// (`backlog top` every second, the lab every 100 ms, Prometheus at its interval): asked
/// every time, a 30 ms walk every 100 ms would take 30% of a core from the server being
/// watched, during the very storm being watched. So after a walk that took `t`, the gauge
/// answers with that walk's count until `t × divisor` has passed: never more than
/// `1/divisor` of a core, and a fresh count at every ask while walks are cheap (a 50 µs
/// walk with divisor 100 is good for 5 ms).
#[derive(Debug)]
pub struct SynRecvGauge {
    divisor: u32,
    /// Per listening address: when it was last walked, how long that took, what it found.
    last: Vec<(SocketAddr, Instant, Duration, u32)>,
}

impl SynRecvGauge {
    /// A gauge that spends at most `1/divisor` of a core walking.
    pub fn new(divisor: u32) -> Self {
        SynRecvGauge {
            divisor: divisor.max(1),
            last: Vec::new(),
        }
    }

    /// The SYN queue of listening address `addr` (see [`syn_recv_count`]): counted now, or
    /// the last count while the last walk's cost has not yet been paid off.
    pub fn count(&mut self, addr: SocketAddr) -> Result<u32, DiagError> {
        let now = Instant::now();
        if let Some(&(_, at, took, n)) = self.last.iter().find(|l| l.0 == addr) {
            if now.duration_since(at) < took * self.divisor {
                return Ok(n);
            }
        }
        let n = syn_recv_count(addr)?;
        let entry = (addr, now, now.elapsed(), n);
        match self.last.iter_mut().find(|l| l.0 == addr) {
            Some(slot) => *slot = entry,
            None => self.last.push(entry),
        }
        Ok(n)
    }
}

/// The accept queues of every listener on local `port`, summed over listeners (several with
/// SO_REUSEPORT) and address families. Works for any process's sockets in this network
/// namespace, so the lab reads nginx's queues the same way as ours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenQueues {
    /// Listening sockets found.
    pub listeners: u32,
    /// Connections waiting to be accepted, over all of them.
    pub queued: u32,
    /// The sum of their backlogs.
    pub limit: u32,
}

/// Accept queues on `port`, from the LISTEN sockets' `idiag_rqueue` / `idiag_wqueue`.
pub fn listen_queues(port: u16) -> Result<ListenQueues, DiagError> {
    let mut q = ListenQueues::default();
    for family in [AF_INET, AF_INET6] {
        dump(family, StateFlags::LISTEN, port, |h| {
            q.listeners += 1;
            q.queued += h.recv_queue;
            q.limit += h.send_queue;
        })?;
    }
    Ok(q)
}

fn count(family: u8, states: StateFlags, port: u16) -> Result<u32, DiagError> {
    let mut n = 0;
    dump(family, states, port, |_| n += 1)?;
    Ok(n)
}

/// Dump sockets of `family` in `states` and call `each` for those on local `port`.
fn dump(
    family: u8,
    states: StateFlags,
    port: u16,
    mut each: impl FnMut(&InetResponseHeader),
) -> Result<(), DiagError> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states,
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    let mut out = vec![0; packet.buffer_len()];
    packet.serialize(&mut out);
    socket.send(&out, 0)?;

    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let size = socket.recv(&mut &mut buf[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&buf[offset..size])
                .map_err(|e| DiagError::Protocol(e.to_string()))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(resp))
                    if resp.header.socket_id.source_port == port =>
                {
                    each(&resp.header);
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(err) => {
                    return Err(DiagError::Protocol(format!("{err:?}")));
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_with_no_handshakes_has_an_empty_syn_queue() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(syn_recv_count(listener.local_addr().unwrap()).unwrap(), 0);
    }

    #[test]
    fn a_gauge_counts_again_once_its_last_walk_is_paid_off() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A divisor of 1: a walk is good for as long as it took, so a second ask after
        // sleeping well past it walks again (and still finds nothing).
        let mut gauge = SynRecvGauge::new(1);
        assert_eq!(gauge.count(addr).unwrap(), 0);
        let (_, first, took, _) = gauge.last[0];
        std::thread::sleep(took + Duration::from_millis(5));
        assert_eq!(gauge.count(addr).unwrap(), 0);
        assert!(gauge.last[0].1 > first, "walked again");
        assert_eq!(gauge.last.len(), 1);
    }

    #[test]
    fn a_gauge_answers_from_its_last_walk_until_the_walk_is_paid_off() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut gauge = SynRecvGauge::new(1);
        // As if the last walk had found 7 and taken an hour: the count stands.
        gauge
            .last
            .push((addr, Instant::now(), Duration::from_secs(3600), 7));
        assert_eq!(gauge.count(addr).unwrap(), 7);
        // Another address has its own walk.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(gauge.count(other.local_addr().unwrap()).unwrap(), 0);
        assert_eq!(gauge.last.len(), 2);
    }

    #[test]
    fn listeners_are_found_by_state_and_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(count(AF_INET, StateFlags::LISTEN, port).unwrap(), 1);
    }

    #[test]
    fn a_listeners_queue_counts_connections_not_yet_accepted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _waiting: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let q = listen_queues(addr.port()).unwrap();
        assert_eq!(q.listeners, 1);
        assert_eq!(q.queued, 3);
        // std's listen(2) backlog, capped by somaxconn.
        assert!(q.limit > 0 && q.limit <= 128, "{q:?}");
    }
}
