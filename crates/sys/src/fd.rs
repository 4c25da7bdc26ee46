//! File descriptors that cross process boundaries: listening sockets a supervisor hands to
//! its workers (inherited over exec, or systemd's LISTEN_FDS), the pipe a worker says
//! "ready" on, and accepted connections passed over a Unix socket (SCM_RIGHTS) in the
//! multi-process dispatch model. A socket that lives in the supervisor survives any
//! worker's exit, and with it every connection waiting in its accept queue.

use rustix::io::FdFlags;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// Numbers already taken by [`adopt`]: taking one twice would make two owners.
static ADOPTED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Take ownership of descriptor `raw`, which our parent left open for us (its number came
/// from the environment). Fails if it is not open or was adopted before. The descriptor
/// is made close-on-exec so it goes no further than this process.
pub fn adopt(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let mut adopted = ADOPTED.lock().unwrap_or_else(|e| e.into_inner());
    if adopted.contains(&raw) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("descriptor {raw} was already taken"),
        ));
    }
    // SAFETY: `raw` was handed to this process by its parent for it to own; F_GETFD
    // checks that it is open before anything else touches it, and the ADOPTED list
    // guarantees no second OwnedFd is ever made for the same number.
    let owned = unsafe {
        rustix::io::fcntl_getfd(BorrowedFd::borrow_raw(raw))?;
        OwnedFd::from_raw_fd(raw)
    };
    adopted.push(raw);
    rustix::io::fcntl_setfd(&owned, FdFlags::CLOEXEC)?;
    Ok(owned)
}

/// Let `fd` be inherited by the next exec'd child (or stop it being inherited).
pub fn set_inherited(fd: BorrowedFd<'_>, inherited: bool) -> io::Result<()> {
    let flags = if inherited {
        FdFlags::empty()
    } else {
        FdFlags::CLOEXEC
    };
    rustix::io::fcntl_setfd(fd, flags)?;
    Ok(())
}

/// Make `fd` non-blocking.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// A pipe, both ends close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// A connected pair of Unix stream sockets, close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Most descriptors sent in one message.
pub const MAX_FDS_PER_MESSAGE: usize = 32;

/// Send descriptors (at most [`MAX_FDS_PER_MESSAGE`]) over the Unix socket `via`, with a
/// one-byte payload. Blocks if the socket is blocking and its buffer is full.
pub fn send_fds(via: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let fds = &fds[..fds.len().min(MAX_FDS_PER_MESSAGE)];
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !cmsg.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    rustix::net::sendmsg(via, &[IoSlice::new(&[0])], &mut cmsg, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// What [`recv_fds`] reports when the kernel discarded passed descriptors because this
/// process could not install them (its descriptor table at RLIMIT_NOFILE: the message came
/// with MSG_CTRUNC). Those descriptors are closed and gone: for passed connections, each is a
/// client closed unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the kernel discarded a passed descriptor: this process's descriptor table is full (MSG_CTRUNC)")]
pub struct DescriptorsDropped;

/// Whether `err` is [`DescriptorsDropped`].
pub fn descriptors_dropped(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<DescriptorsDropped>())
}

/// Receive descriptors sent by [`send_fds`] into `out` (made close-on-exec). `Ok(false)`:
/// the other end closed. [`DescriptorsDropped`] (after `out` took whatever did arrive) when
/// the kernel could not install some of them.
pub fn recv_fds(via: BorrowedFd<'_>, out: &mut Vec<OwnedFd>) -> io::Result<bool> {
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let got = rustix::net::recvmsg(
        via,
        &mut [IoSliceMut::new(&mut byte)],
        &mut cmsg,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = msg {
            out.extend(fds);
        }
    }
    if got.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(io::Error::other(DescriptorsDropped));
    }
    Ok(got.bytes > 0)
}

/// The next descriptor sent over `via` by [`send_fds`], as accept(2) would hand over a
/// connection: EAGAIN when none is waiting (a non-blocking `via`), ENOTCONN once the
/// sender has closed its end (an acceptor pauses on it, as on any accept failure it cannot
/// skip).
pub fn recv_fd(via: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut got = Vec::with_capacity(1);
    if !recv_fds(via, &mut got)? {
        return Err(io::Error::from_raw_os_error(libc::ENOTCONN));
    }
    // A message without a descriptor: nothing to take now.
    got.pop()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EAGAIN))
}

/// Grow this process's descriptor table to hold descriptor number `n - 1` now, once.
///
/// The kernel grows the table by doubling as descriptors are opened (at 256, 512, 1024…),
/// and in a process with several threads each growth waits for an RCU grace period before
/// the old table can go: `accept` stalls for ~17 ms (measured on this machine's 6.18
/// kernel, at fds 256 and 512). During a connection burst that stall is when the accept
/// queue overflows. A table sized at start never grows again (it never shrinks), at the
/// price of 8 bytes per slot.
pub fn reserve_table(n: usize) -> io::Result<()> {
    if n < 2 {
        return Ok(());
    }
    let min = RawFd::try_from(n - 1).unwrap_or(RawFd::MAX);
    let stdin = std::io::stdin();
    // Any open descriptor will do as the source; a dup above `min` forces the growth.
    let probe = rustix::io::fcntl_dupfd_cloexec(stdin.as_fd(), min).or_else(|_| {
        let (r, _w) = rustix::pipe::pipe()?;
        rustix::io::fcntl_dupfd_cloexec(&r, min)
    })?;
    drop(probe);
    Ok(())
}

/// Descriptors this process has open now (entries of /proc/self/fd, less the one reading it).
pub fn open_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count().saturating_sub(1))
        .unwrap_or(0)
}

/// `fd`'s number, for the environment of a child that inherits it.
pub fn number(fd: &impl AsFd) -> RawFd {
    use std::os::fd::AsRawFd;
    fd.as_fd().as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    /// The table's size, as /proc says (`FDSize`).
    fn table_size() -> usize {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn the_descriptor_table_is_sized_once_and_kept() {
        reserve_table(3000).unwrap();
        assert!(table_size() >= 3000, "FDSize {}", table_size());
        // Nothing stays open: the next descriptor is a low one.
        let (r, _w) = pipe().unwrap();
        assert!(number(&r) < 1000);
    }

    #[test]
    fn a_descriptor_is_adopted_once_and_only_if_open() {
        let (r, _w) = pipe().unwrap();
        let raw = r.into_raw_fd();
        let owned = adopt(raw).unwrap();
        assert!(adopt(raw).is_err(), "a second owner");
        drop(owned);
        assert!(adopt(999_999).is_err());
    }

    #[test]
    fn descriptors_cross_a_unix_socket() {
        let (a, b) = socketpair().unwrap();
        let (r, w) = pipe().unwrap();
        send_fds(a.as_fd(), &[w.as_fd()]).unwrap();
        drop(w);
        let mut got = Vec::new();
        assert!(recv_fds(b.as_fd(), &mut got).unwrap());
        assert_eq!(got.len(), 1);
        // The received end writes into the same pipe.
        rustix::io::write(&got[0], b"x").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(rustix::io::read(&r, &mut buf).unwrap(), 1);
        drop(a);
        assert!(!recv_fds(b.as_fd(), &mut got).unwrap());
    }

    #[test]
    fn recv_fd_answers_like_accept() {
        let (a, b) = socketpair().unwrap();
        set_nonblocking(b.as_fd()).unwrap();
        let err = recv_fd(b.as_fd()).unwrap_err();
        assert!(crate::would_block(&err), "{err}");
        let (_r, w) = pipe().unwrap();
        send_fds(a.as_fd(), &[w.as_fd()]).unwrap();
        assert!(recv_fd(b.as_fd()).is_ok());
        drop(a);
        let err = recv_fd(b.as_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    }
}
