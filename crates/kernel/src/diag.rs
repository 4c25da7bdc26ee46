//! Counting sockets by TCP state with netlink `sock_diag` (what `ss` uses).
//!
//! A connection in SYN_RECV has answered a SYN and waits for the client's ACK: it sits in
//! the listener's SYN queue, which no socket option reports. An inet_diag dump filtered to
//! that state, per address family, lists them; we count those on our port.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr};

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

/// Sockets on local `port` (any address, IPv4 and IPv6) in SYN_RECV: the SYN queue.
pub fn syn_recv_count(port: u16) -> Result<u32, DiagError> {
    let mut n = 0;
    for family in [AF_INET, AF_INET6] {
        n += count(family, StateFlags::SYN_RECV, port)?;
    }
    Ok(n)
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
    socket.connect(&SocketAddr::new(0, 0))?;
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
        let port = listener.local_addr().unwrap().port();
        assert_eq!(syn_recv_count(port).unwrap(), 0);
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
