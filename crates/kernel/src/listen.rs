//! The accept queue of a listening socket: connections whose handshake is complete and that
//! wait for `accept`. When it is full, the kernel drops (or, with syncookies off, never
//! answers) new handshakes and counts ListenOverflows.

use serde::{Deserialize, Serialize};
use std::io;
use std::os::fd::AsFd;

/// One listener's accept queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptQueue {
    /// Connections waiting to be accepted now.
    pub length: u32,
    /// The most it can hold: the backlog given to listen(2) after the somaxconn clamp.
    pub limit: u32,
}

/// Read the accept queue of a listening socket.
pub fn accept_queue(listener: impl AsFd) -> io::Result<AcceptQueue> {
    let info = sys::socket::tcp_info(listener)?;
    Ok(AcceptQueue {
        length: info.unacked,
        limit: info.sacked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn counts_unaccepted_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(accept_queue(&listener).unwrap().length, 0);
        let held: Vec<_> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let q = accept_queue(&listener).unwrap();
        assert_eq!(q.length, 5);
        assert!(q.limit >= 5);
        drop(held);
    }
}
