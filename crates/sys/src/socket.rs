//! Socket calls on the hot path and the TCP options std and socket2 lack.
//!
//! Reads go straight from the kernel into the spare capacity of a `BytesMut`, without zeroing
//! it first and without an intermediate buffer; that needs one `unsafe` to tell the buffer how
//! many bytes the kernel wrote, and it lives here.

#![allow(unsafe_code)]

use bytes::BytesMut;
use rustix::net::{self, SocketFlags};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

/// An accepted connection and the peer's address.
#[derive(Debug)]
pub struct Accepted {
    /// The connection.
    pub fd: OwnedFd,
    /// The client's address: what `accept4` wrote, so knowing it costs no syscall.
    pub peer: Option<std::net::SocketAddr>,
}

/// Accept one connection, already non-blocking and close-on-exec (`accept4`), with the
/// peer's address.
pub fn accept(listener: impl AsFd) -> io::Result<Accepted> {
    let (fd, addr) = net::acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
    let peer = addr.and_then(|a| std::net::SocketAddr::try_from(a).ok());
    Ok(Accepted { fd, peer })
}

/// Read once into `buf`'s spare capacity, growing it to at least `min_spare` free bytes first.
/// Returns the bytes read; 0 means the peer closed its sending side.
pub fn read_into(fd: impl AsFd, buf: &mut BytesMut, min_spare: usize) -> io::Result<usize> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let len = buf.len();
    let spare = buf.spare_capacity_mut();
    let (filled, _) = rustix::io::read(fd, spare)?;
    let n = filled.len();
    // SAFETY: the kernel initialised exactly `n` bytes of the spare capacity, starting at the
    // old length, and `n` is no larger than that spare capacity.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

/// Write once; returns the bytes the kernel took into the send queue.
pub fn write(fd: impl AsFd, bytes: &[u8]) -> io::Result<usize> {
    Ok(rustix::io::write(fd, bytes)?)
}

/// Disable Nagle: backlog already batches every ready response into one write.
pub fn set_nodelay(fd: impl AsFd) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_tcp_nodelay(fd, true)?)
}

/// Half-close: send FIN after what is queued, keep reading. The first step of a lingering
/// close, so a client still sending is not answered with RST before it reads our response.
pub fn shutdown_write(fd: impl AsFd) -> io::Result<()> {
    Ok(net::shutdown(fd, net::Shutdown::Write)?)
}

/// `TCP_DEFER_ACCEPT`: the kernel keeps a handshaken connection out of the accept queue until
/// its first data arrives (or `timeout` passes), so the acceptor never wakes for a silent
/// client. Neither socket2 nor rustix exposes it.
pub fn set_defer_accept(fd: impl AsFd, timeout: Duration) -> io::Result<()> {
    let secs: libc::c_int = timeout.as_secs().clamp(1, i32::MAX as u64) as libc::c_int;
    // SAFETY: the fd is a valid open socket for the duration of the call (borrowed), the value
    // pointer points at a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Read back `TCP_DEFER_ACCEPT` (seconds; the kernel rounds to its retransmit steps).
pub fn defer_accept(fd: impl AsFd) -> io::Result<u32> {
    let mut secs: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the fd is valid while borrowed; `secs` and `len` are live locals of the sizes
    // the kernel expects for an int option.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&mut secs as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(secs.max(0) as u32)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What `TCP_INFO` reports that backlog shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    /// TCP state (1 ESTABLISHED … 10 LISTEN, as in the kernel's tcp_states.h).
    pub state: u8,
    /// On a LISTEN socket: connections in the accept queue now. Otherwise: unacked segments.
    pub unacked: u32,
    /// On a LISTEN socket: the accept queue's limit (the backlog after the somaxconn clamp).
    pub sacked: u32,
    /// Smoothed round-trip time, µs.
    pub rtt_us: u32,
}

/// `getsockopt(TCP_INFO)`.
pub fn tcp_info(fd: impl AsFd) -> io::Result<TcpInfo> {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the fd is valid while borrowed; `info` is a live, writable tcp_info and `len`
    // holds its size, which the kernel will not exceed.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpInfo {
        state: info.tcpi_state,
        unacked: info.tcpi_unacked,
        sacked: info.tcpi_sacked,
        rtt_us: info.tcpi_rtt,
    })
}

/// Bytes in the socket's receive queue, not yet read (`SIOCINQ`).
pub fn inq(fd: impl AsFd) -> io::Result<u64> {
    Ok(rustix::io::ioctl_fionread(fd)?)
}

/// Bytes in the socket's send queue, not yet acknowledged by the peer (`SIOCOUTQ`).
pub fn outq(fd: impl AsFd) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one c_int through the pointer, which points at a
    // live local; the fd is valid while borrowed.
    let rc = unsafe {
        libc::ioctl(
            fd.as_fd().as_raw_fd(),
            libc::TIOCOUTQ,
            &mut n as *mut libc::c_int,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as u64)
}

/// The peer's address of a connected socket.
pub fn peer_addr(fd: impl AsFd) -> io::Result<std::net::SocketAddr> {
    let addr = rustix::net::getpeername(fd)?.ok_or_else(|| io::Error::other("no peer address"))?;
    std::net::SocketAddr::try_from(addr).map_err(|_| io::Error::other("not an inet address"))
}

/// How an acceptor should treat an error from `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// The accept queue is empty: wait for the next readiness event.
    Drained,
    /// Something went wrong with that one connection (aborted before we took it, a signal,
    /// a network error the kernel reports here): accept the next one.
    Skip,
    /// Out of file descriptors or kernel memory. Retrying now would spin a core: pause
    /// accepting for a moment and leave connections in the kernel's queue.
    Exhausted,
    /// Anything else: the listener itself is broken.
    Fatal,
}

/// Sort an `accept` error, in one place, the way actix-server and mio's examples do.
pub fn classify_accept_error(err: &io::Error) -> AcceptError {
    match err.raw_os_error() {
        Some(libc::EAGAIN) => AcceptError::Drained,
        Some(
            libc::EINTR
            | libc::ECONNABORTED
            | libc::EPROTO
            | libc::EPERM
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::ETIMEDOUT,
        ) => AcceptError::Skip,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => AcceptError::Exhausted,
        _ => AcceptError::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn read_into_appends_what_the_peer_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"hello").unwrap();
        let mut buf = BytesMut::from(&b"ab"[..]);
        let n = read_into(&server, &mut buf, 64).unwrap();
        assert_eq!(n, 5);
        assert_eq!(&buf[..], b"abhello");
    }

    #[test]
    fn tcp_info_on_a_listener_reports_the_accept_queue() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        let info = tcp_info(&listener).unwrap();
        assert_eq!(info.state, 10, "LISTEN");
        assert_eq!(info.unacked, 3);
        assert!(info.sacked >= 1);
        drop(clients);
    }

    #[test]
    fn queues_of_a_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"12345").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(inq(&server).unwrap(), 5);
        assert_eq!(outq(&client).unwrap(), 0);
        assert_eq!(peer_addr(&server).unwrap(), client.local_addr().unwrap());
    }

    #[test]
    fn defer_accept_round_trips() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_defer_accept(&listener, Duration::from_secs(5)).unwrap();
        assert!(defer_accept(&listener).unwrap() >= 1);
    }
}
