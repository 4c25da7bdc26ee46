//! The questions the admin side asks a reader about its connections, and the answers: a
//! reader answers between events, from the connections it owns, so the serving threads pay
//! nothing until someone asks (see [`crate::introspect`]).

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use sys::Waker;

/// One connection, as its reader and the kernel see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// The thread that owns it.
    pub thread: String,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// TCP state name (ESTABLISHED, CLOSE_WAIT, …).
    pub state: String,
    /// Milliseconds since it was accepted.
    pub age_ms: u64,
    /// Requests parsed on it.
    pub requests: u64,
    /// Bytes in the kernel's receive queue, not yet read by us.
    pub recv_queue: u64,
    /// Bytes in the kernel's send queue, not yet acknowledged by the client.
    pub send_queue: u64,
    /// Bytes read but not yet parsed.
    pub buffered_in: u64,
    /// Bytes of answers not yet handed to the kernel.
    pub buffered_out: u64,
}

/// A question to a reader: "how many connections do you hold, and what are your `limit`
/// oldest", with where to answer.
pub(crate) struct ConnQuery {
    pub(crate) limit: usize,
    pub(crate) reply: Sender<(usize, Vec<ConnInfo>)>,
}

/// The admin side's handle on one reader.
pub(crate) struct ReaderPort {
    pub(crate) queries: Sender<ConnQuery>,
    pub(crate) waker: Arc<Waker>,
}

pub(crate) fn reader_port(waker: Arc<Waker>) -> (ReaderPort, Receiver<ConnQuery>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    (ReaderPort { queries: tx, waker }, rx)
}

/// What a reader knows of one of its connections (the kernel is asked the rest).
pub(crate) struct Held {
    pub(crate) age: std::time::Duration,
    pub(crate) requests: u32,
    pub(crate) buffered_in: u64,
    pub(crate) buffered_out: u64,
}

impl Held {
    /// The connection on `fd`, held by `thread`, as the kernel and its reader see it: four
    /// calls to the kernel, made only for connections someone asked to see.
    pub(crate) fn describe(&self, thread: &str, fd: &std::os::fd::OwnedFd) -> ConnInfo {
        ConnInfo {
            thread: thread.to_string(),
            peer: sys::socket::peer_addr(fd).ok(),
            state: sys::socket::tcp_info(fd)
                .map(|i| tcp_state_name(i.state))
                .unwrap_or("UNKNOWN")
                .to_string(),
            age_ms: self.age.as_millis() as u64,
            requests: u64::from(self.requests),
            recv_queue: sys::socket::inq(fd).unwrap_or(0),
            send_queue: sys::socket::outq(fd).unwrap_or(0),
            buffered_in: self.buffered_in,
            buffered_out: self.buffered_out,
        }
    }
}

/// Name of a TCP state number from the kernel's tcp_states.h.
fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}
