//! Socket calls on the hot path and the TCP options std and socket2 lack.
//!
//! Reads go straight from the kernel into the spare capacity of a `BytesMut`, without zeroing
//! it first and without an intermediate buffer; that needs one `unsafe` to tell the buffer how
//! many bytes the kernel wrote, and it lives here.
//!
//! With receive timestamps on (`SO_TIMESTAMPNS`, set on the listening socket and inherited by
//! every accepted one), [`recv_into`] reads through `recvmsg` — still one syscall per read —
//! and returns the time the kernel received the bytes. Checked on this kernel (6.18) over
//! loopback: the stamp is the arrival of the data (within tens of µs of the client's send),
//! accepted sockets inherit the option, and for TCP the stamp is that of the *last* segment a
//! read takes from the queue, so a read spanning segments that arrived apart reports the
//! later one (an underestimate of the first byte's wait).

#![allow(unsafe_code)]

use bytes::BytesMut;
use rustix::net::{self, SocketFlags};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An accepted connection and the peer's address.
#[derive(Debug)]
pub struct Accepted {
    /// The connection.
    pub fd: OwnedFd,
    /// The client's address: what `accept4` wrote, so knowing it costs no syscall.
    pub peer: Option<std::net::SocketAddr>,
    /// When `accept` returned it.
    pub at: std::time::Instant,
}

/// Accept one connection, already non-blocking and close-on-exec (`accept4`), with the
/// peer's address.
pub fn accept(listener: impl AsFd) -> io::Result<Accepted> {
    accept_as(listener, true)
}

/// [`accept`], the connection non-blocking (for readiness loops) or blocking (for an
/// io_uring, whose sends wait for room in the kernel) as it comes, without a syscall more.
pub fn accept_as(listener: impl AsFd, nonblocking: bool) -> io::Result<Accepted> {
    let flags = if nonblocking {
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC
    } else {
        SocketFlags::CLOEXEC
    };
    let (fd, addr) = net::acceptfrom_with(listener, flags)?;
    let peer = addr.and_then(|a| std::net::SocketAddr::try_from(a).ok());
    Ok(Accepted {
        fd,
        peer,
        at: std::time::Instant::now(),
    })
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

/// Turn the kernel's receive timestamps (`SO_TIMESTAMPNS`) on or off for `fd`. Sockets
/// accepted from a listening socket inherit the setting.
pub fn set_receive_timestamps(fd: impl AsFd, on: bool) -> io::Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: `fd` is an open socket for the duration of the call, and the option value is
    // a `c_int` whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether receive timestamps are on for `fd` (an accepted socket inherits its listener's).
pub fn receive_timestamps(fd: impl AsFd) -> io::Result<bool> {
    let on: libc::c_int = get_option(fd.as_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS)?;
    Ok(on != 0)
}

/// Socket option values that are plain data: whatever bytes the kernel writes (all-zero
/// included) make a valid value.
trait OptionValue: Copy {}
impl OptionValue for libc::c_int {}
impl OptionValue for libc::tcp_info {}

/// `getsockopt(level, name)` into a `T`.
fn get_option<T: OptionValue>(
    fd: std::os::fd::BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<T> {
    // SAFETY: `T` is plain data (`OptionValue`), for which all-zero is a valid value.
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the fd is valid while borrowed; `value` is a live, writable `T` and `len` holds
    // its size, which the kernel will not exceed.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// [`read_into`] through `recvmsg`: the same one syscall, and with it, when receive
/// timestamps are on, the time the kernel received the bytes (for TCP: the last segment
/// this read took from the queue).
pub fn recv_into(
    fd: impl AsFd,
    buf: &mut BytesMut,
    min_spare: usize,
) -> io::Result<(usize, Option<SystemTime>)> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let len = buf.len();
    let spare = buf.spare_capacity_mut();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    // Room for one timestamp message, aligned for `cmsghdr`.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero `msghdr` is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at one iovec covering the buffer's spare capacity and at
    // `control`, both live and writable for the call; the kernel writes at most their
    // lengths.
    let n = unsafe { libc::recvmsg(fd.as_fd().as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised exactly `n` bytes of the spare capacity, starting at the
    // old length, and `n` is no larger than that spare capacity.
    unsafe { buf.set_len(len + n) };
    Ok((n, timestamp(&msg)))
}

/// The `SCM_TIMESTAMPNS` message in `msg`, if the kernel sent one.
pub(crate) fn timestamp(msg: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: `msg` was filled by `recvmsg`: `msg_control`/`msg_controllen` describe the
    // control messages it wrote, which the CMSG_* macros walk without leaving that buffer;
    // the payload is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// Write once; returns the bytes the kernel took into the send queue.
pub fn write(fd: impl AsFd, bytes: &[u8]) -> io::Result<usize> {
    Ok(rustix::io::write(fd, bytes)?)
}

/// Disable Nagle: backlog already batches every ready response into one write.
pub fn set_nodelay(fd: impl AsFd) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_tcp_nodelay(fd, true)?)
}

/// Make a connection blocking again, for io_uring: the ring waits for a blocking socket
/// without blocking the thread, while on a non-blocking one a send that finds the buffer
/// full fails with EAGAIN instead of waiting for the client to read.
pub fn set_blocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
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
    let info: libc::tcp_info = get_option(fd.as_fd(), libc::IPPROTO_TCP, libc::TCP_INFO)?;
    Ok(TcpInfo {
        state: info.tcpi_state,
        unacked: info.tcpi_unacked,
        sacked: info.tcpi_sacked,
        rtt_us: info.tcpi_rtt,
    })
}

/// Whether the connection is in TCP_CLOSE with nothing left to read: the peer reset it (or
/// it timed out), so no receive will ever return more than the error.
pub fn peer_reset(fd: impl AsFd) -> io::Result<bool> {
    const TCP_CLOSE: u8 = 7;
    let fd = fd.as_fd();
    Ok(tcp_info(fd)?.state == TCP_CLOSE && inq(fd)? == 0)
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
    if crate::fd::descriptors_dropped(err) {
        // The descriptor table is full, as with EMFILE (the connection is already gone).
        return AcceptError::Exhausted;
    }
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
    use std::time::Instant;

    #[test]
    fn peer_reset_tells_a_reset_connection_from_a_live_or_unread_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(!peer_reset(&server).unwrap(), "live");
        client.write_all(b"unread").unwrap();
        // SO_LINGER 0: close sends a reset.
        socket2::SockRef::from(&client)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(client);
        let start = Instant::now();
        while tcp_info(&server).unwrap().state != 7 {
            assert!(start.elapsed() < std::time::Duration::from_secs(5));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Bytes still queued are read (and the error after them) before it counts as reset.
        assert_eq!(inq(&server).unwrap(), 6);
        assert!(!peer_reset(&server).unwrap());
        let mut buf = BytesMut::with_capacity(64);
        let _ = read_into(&server, &mut buf, 64);
        assert!(peer_reset(&server).unwrap());
    }

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
    fn recv_into_returns_when_the_kernel_received_the_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_receive_timestamps(&listener, true).unwrap();
        // The kernel turns stamping on a moment after the first socket asks (a deferred
        // static key): until a warm-up connection comes back stamped, packets may not be.
        let warm = Instant::now();
        loop {
            let mut c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            c.write_all(b"w").unwrap();
            let (s, _) = listener.accept().unwrap();
            let mut b = BytesMut::new();
            if recv_into(&s, &mut b, 8).unwrap().1.is_some() {
                break;
            }
            assert!(warm.elapsed() < Duration::from_secs(5), "never stamped");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(b"hello").unwrap();
        let sent = SystemTime::now();
        std::thread::sleep(Duration::from_millis(100));
        let (server, _) = listener.accept().unwrap();
        assert!(
            receive_timestamps(&server).unwrap(),
            "inherited from the listener"
        );
        let mut buf = BytesMut::new();
        let (n, stamp) = recv_into(&server, &mut buf, 64).unwrap();
        assert_eq!((n, &buf[..]), (5, &b"hello"[..]));
        let waited = SystemTime::now().duration_since(stamp.unwrap()).unwrap();
        assert!(waited >= Duration::from_millis(90), "waited {waited:?}");
        let skew = stamp
            .unwrap()
            .duration_since(sent)
            .unwrap_or_else(|e| e.duration());
        assert!(
            skew < Duration::from_millis(50),
            "stamp {skew:?} from the send"
        );
        // Without the option: the same read, no stamp.
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c2 = TcpStream::connect(plain.local_addr().unwrap()).unwrap();
        let (s2, _) = plain.accept().unwrap();
        c2.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!receive_timestamps(&s2).unwrap());
        assert_eq!(recv_into(&s2, &mut buf, 64).unwrap(), (1, None));
    }

    #[test]
    fn accepted_sockets_inherit_tcp_nodelay_from_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        set_nodelay(&listener).unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let conn = accept(&listener).unwrap();
        let stream = TcpStream::from(conn.fd);
        assert!(
            stream.nodelay().unwrap(),
            "no setsockopt per connection needed"
        );
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
