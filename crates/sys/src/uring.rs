//! io_uring: one ring per event loop, with the few operations a server needs.
//!
//! - Multishot accept: one submission yields every connection the listener gets.
//! - Multishot receive into a *provided buffer ring*: the kernel picks a buffer only when
//!   bytes arrive, so an idle connection pins none (a buffer per armed `recv` would cost
//!   each idle keep-alive connection kilobytes). The bytes are lent to the caller during
//!   [`Ring::complete`] and the buffer goes back to the ring as soon as it returns.
//! - Sends that own their bytes: a `BytesMut` moves into the ring with the submission and
//!   comes back with its completion, so nothing the kernel still reads can be freed or
//!   changed. Partial sends return the buffer advanced by nothing: the caller decides.
//! - Multishot poll on an eventfd for cross-thread wake-ups, close and cancel.
//!
//! Submissions queue in memory and leave with the next [`Ring::submit_and_wait`]: one
//! `io_uring_enter` per loop round sends the round's answers and waits for the next events.
//! With receive timestamps on, receives go through `recvmsg` so the `SCM_TIMESTAMPNS`
//! control message rides with the bytes, as it does for the epoll driver's reads.
//!
//! The ring is set up with `SINGLE_ISSUER` and `DEFER_TASKRUN` where the kernel has them
//! (6.1+): completions are then processed only when this thread enters the kernel, not by
//! interrupting it. It must be used by the thread that created it.
//!
//! Tokens are the caller's: 60 bits, returned with each completion.

#![allow(unsafe_code)]

use bytes::BytesMut;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime};

/// Why io_uring cannot serve here: said once at start, never a silent fallback.
#[derive(Debug)]
pub enum Unavailable {
    /// The `kernel.io_uring_disabled` sysctl is 1 (and we are not in its group) or 2.
    Disabled(u8),
    /// `io_uring_setup` returned EPERM: a seccomp profile or container runtime denies it.
    Denied,
    /// The kernel has no io_uring at all (ENOSYS).
    NoSyscall,
    /// The kernel has io_uring but not a feature the server needs.
    Missing(&'static str),
    /// Anything else, with the kernel's error.
    Other(io::Error),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Disabled(v) => write!(
                f,
                "io_uring is disabled on this host (sysctl kernel.io_uring_disabled = {v})"
            ),
            Unavailable::Denied => write!(
                f,
                "io_uring_setup was refused (EPERM): a seccomp profile or container runtime denies io_uring"
            ),
            Unavailable::NoSyscall => write!(f, "this kernel has no io_uring (ENOSYS)"),
            Unavailable::Missing(what) => write!(f, "this kernel lacks {what}"),
            Unavailable::Other(err) => write!(f, "io_uring setup failed: {err}"),
        }
    }
}

impl std::error::Error for Unavailable {}

/// Buffers in each ring's receive pool, and their size. 256 × 4 KiB = 1 MiB per loop,
/// shared by every connection of the loop, whatever their number.
const RECV_BUFFERS: u16 = 256;
const RECV_BUFFER_SIZE: usize = 4096;
/// Send-table slots kept once every send has completed.
const SENDS_KEPT: usize = 256;
/// The buffer group of the receive pool.
const GROUP: u16 = 0;
/// Room in `recvmsg` buffers for the header and one timestamp control message.
const CONTROL_LEN: usize = 64;

const KIND_SHIFT: u32 = 60;
const TOKEN_MASK: u64 = (1 << KIND_SHIFT) - 1;
const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;
const POLL: u64 = 4;
/// Completions nobody waits for (close, cancel).
const QUIET: u64 = 5;
/// A receive through `recvmsg`: its buffers start with the kernel's header.
const RECVMSG: u64 = 6;

/// One completion, as the caller sees it.
#[derive(Debug)]
pub enum Event<'a> {
    /// A connection from a multishot accept (`more`: the accept is still armed).
    Accepted {
        /// The listener's token.
        token: u64,
        /// The connection, blocking (see [`Submit::accept_multi`]) and close-on-exec.
        fd: io::Result<OwnedFd>,
        /// Whether the accept stays armed; if not, arm it again.
        more: bool,
    },
    /// Bytes from a multishot receive; an empty slice is the peer's FIN. The slice is the
    /// ring's buffer, lent until the callback returns.
    Received {
        /// The connection's token.
        token: u64,
        /// The bytes, or the error that ended the receive (ENOBUFS: the pool ran dry).
        data: io::Result<&'a [u8]>,
        /// When the kernel received them, if timestamps are on and it stamped them.
        arrived: Option<SystemTime>,
        /// Whether the receive stays armed; if not, arm it again (unless the connection ended).
        more: bool,
    },
    /// A send finished (possibly partly: `result` says how much the kernel took).
    Sent {
        /// The connection's token.
        token: u64,
        /// Bytes sent, or the error.
        result: io::Result<usize>,
        /// The buffer given to [`Submit::send`], back to its owner, unchanged.
        buf: BytesMut,
    },
    /// A polled descriptor (an eventfd) became readable.
    Ready {
        /// Its token.
        token: u64,
        /// Whether the poll stays armed.
        more: bool,
    },
}

/// The provided-buffer ring: entries the kernel takes buffers from, in memory it reads.
struct BufRing {
    /// Page-aligned entries, mapped for the ring's lifetime.
    entries: *mut types::BufRingEntry,
    map_len: usize,
    /// The buffers, `RECV_BUFFER_SIZE` each, never moved while the ring lives.
    data: Box<[u8]>,
    tail: u16,
}

impl BufRing {
    fn new() -> io::Result<BufRing> {
        let map_len = (usize::from(RECV_BUFFERS) * std::mem::size_of::<types::BufRingEntry>())
            .next_multiple_of(4096);
        // SAFETY: an anonymous private mapping with no address hint has no preconditions;
        // the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut ring = BufRing {
            entries: ptr.cast(),
            map_len,
            data: vec![0u8; usize::from(RECV_BUFFERS) * RECV_BUFFER_SIZE].into_boxed_slice(),
            tail: 0,
        };
        for bid in 0..RECV_BUFFERS {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Give buffer `bid` to the kernel (visible after [`BufRing::publish`]).
    fn push(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (RECV_BUFFERS - 1));
        let addr = self.data[usize::from(bid) * RECV_BUFFER_SIZE..].as_ptr() as u64;
        // SAFETY: `idx` < RECV_BUFFERS, the number of entries mapped at `entries`; this
        // thread is the only writer of the entries the kernel does not own (those past its
        // head, which `tail` never overtakes: each buffer is pushed once per completion).
        let entry = unsafe { &mut *self.entries.add(idx) };
        entry.set_addr(addr);
        entry.set_len(RECV_BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: `entries` is the ring's base; the tail field overlays the first entry's
        // reserved field and is only ever accessed atomically by both sides.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.entries).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }

    fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * RECV_BUFFER_SIZE;
        &self.data[start..start + len.min(RECV_BUFFER_SIZE)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.map_len == 0 {
            return; // left mapped on purpose: see `Ring`'s drop
        }
        // SAFETY: the mapping made in `new`, unmapped once; the ring has been torn down or
        // its requests cancelled by then (see `Ring`'s drop).
        unsafe { libc::munmap(self.entries.cast(), self.map_len) };
    }
}

/// One event loop's io_uring.
pub struct Ring {
    ring: IoUring,
    ops: Ops,
    bufs: BufRing,
}

/// What the ring keeps for requests in flight.
struct Ops {
    /// Sends in flight: their buffers and tokens, by slot.
    sends: Vec<Option<(u64, BytesMut)>>,
    free_sends: Vec<usize>,
    /// Submissions that produce completions and have not all come back (multishot ones
    /// count once until their last). Cancelled and waited for on drop.
    in_flight: usize,
    /// The header `recvmsg` multishot receives take their layout from (name and control
    /// lengths); read by the kernel when each is submitted, kept for the ring's life.
    msghdr: Box<libc::msghdr>,
}

/// A handle for queueing submissions: from [`Ring::submit`], or given to the callback of
/// [`Ring::complete`] so that a completion can be answered at once. What is queued leaves
/// with the next [`Ring::submit_and_wait`] (or earlier, if the queue fills).
pub struct Submit<'a> {
    submitter: io_uring::Submitter<'a>,
    sq: io_uring::SubmissionQueue<'a>,
    ops: &'a mut Ops,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("in_flight", &self.ops.in_flight)
            .finish_non_exhaustive()
    }
}

fn sysctl_disabled() -> Option<u8> {
    let v = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    v.trim().parse().ok().filter(|&v| v != 0)
}

/// Linux version as (major, minor), from uname.
fn kernel_version() -> Option<(u32, u32)> {
    let uname = rustix::system::uname();
    let release = uname.release().to_str().ok()?;
    let mut parts = release.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether this host lets a process make rings, and if not why. The ring is made and
/// dropped on a thread of its own: a ring's teardown queues work for the thread that made
/// it, which interrupts that thread's blocking calls (a socket read with a timeout then
/// fails with EINTR), and the caller may be a thread that reads sockets.
pub fn check() -> Result<(), Unavailable> {
    std::thread::Builder::new()
        .name("uring-check".into())
        .spawn(|| Ring::new().map(drop))
        .map_err(Unavailable::Other)?
        .join()
        .unwrap_or(Err(Unavailable::Missing(
            "a ring that can be set up without panicking",
        )))
}

impl Ring {
    /// A ring for the calling thread, or the reason there can be none.
    pub fn new() -> Result<Ring, Unavailable> {
        // Multishot receive and provided buffer rings (6.0) are what the driver is built on.
        if kernel_version().is_some_and(|v| v < (6, 0)) {
            return Err(Unavailable::Missing(
                "multishot receive with provided buffer rings (Linux 6.0)",
            ));
        }
        let build = |defer: bool| {
            let mut b = IoUring::builder();
            b.setup_cqsize(4096);
            if defer {
                b.setup_single_issuer().setup_defer_taskrun();
            }
            b.build(256)
        };
        let ring = match build(true) {
            Ok(r) => Ok(r),
            // Kernels before 6.1 refuse DEFER_TASKRUN: run without it.
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => build(false),
            Err(err) => Err(err),
        }
        .map_err(|err| match err.raw_os_error() {
            Some(libc::EPERM) => match sysctl_disabled() {
                Some(v) => Unavailable::Disabled(v),
                None => Unavailable::Denied,
            },
            Some(libc::ENOSYS) => Unavailable::NoSyscall,
            _ => Unavailable::Other(err),
        })?;
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(Unavailable::Other)?;
        for (code, name) in [
            (opcode::Accept::CODE, "IORING_OP_ACCEPT"),
            (opcode::RecvMsg::CODE, "IORING_OP_RECVMSG"),
            (opcode::Recv::CODE, "IORING_OP_RECV"),
            (opcode::Send::CODE, "IORING_OP_SEND"),
            (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
            (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
            (opcode::Close::CODE, "IORING_OP_CLOSE"),
        ] {
            if !probe.is_supported(code) {
                return Err(Unavailable::Missing(name));
            }
        }
        let bufs = BufRing::new().map_err(Unavailable::Other)?;
        // SAFETY: `bufs.entries` maps RECV_BUFFERS entries, page-aligned, and stays mapped
        // until after the ring is gone (`Ring`'s drop cancels every request before its
        // fields, the ring first, then the buffers, are dropped).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries as u64,
                RECV_BUFFERS,
                GROUP,
                0,
            )
        }
        .map_err(|err| match err.raw_os_error() {
            Some(libc::EINVAL) => Unavailable::Missing("provided buffer rings (Linux 5.19)"),
            _ => Unavailable::Other(err),
        })?;
        // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_controllen = CONTROL_LEN;
        Ok(Ring {
            ring,
            ops: Ops {
                sends: Vec::new(),
                free_sends: Vec::new(),
                in_flight: 0,
                msghdr,
            },
            bufs,
        })
    }

    /// Queue submissions.
    pub fn submit(&mut self) -> Submit<'_> {
        let (submitter, sq, _) = self.ring.split();
        Submit {
            submitter,
            sq,
            ops: &mut self.ops,
        }
    }

    /// Submit what is queued and wait for at least `want` completions, or `timeout`: one
    /// `io_uring_enter`. A signal or the timeout end the wait early without error.
    pub fn submit_and_wait(&mut self, want: usize, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            None => self.ring.submit_and_wait(want),
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Hand every completion that has arrived to `f`, with a handle to answer it with more
    /// submissions. Receive buffers go back to the pool as soon as `f` returns.
    pub fn complete(&mut self, mut f: impl FnMut(&mut Submit<'_>, Event<'_>)) {
        let Ring { ring, ops, bufs } = self;
        let (submitter, sq, cq) = ring.split();
        let mut sub = Submit { submitter, sq, ops };
        let mut returned = false;
        for cqe in cq {
            let user_data = cqe.user_data();
            let kind = user_data >> KIND_SHIFT;
            let token = user_data & TOKEN_MASK;
            let res = cqe.result();
            let flags = cqe.flags();
            let more = cqueue::more(flags);
            if !more {
                sub.ops.in_flight = sub.ops.in_flight.saturating_sub(1);
            }
            let err = || io::Error::from_raw_os_error(-res);
            match kind {
                ACCEPT => {
                    let fd = if res >= 0 {
                        // SAFETY: a successful accept's result is a new descriptor that
                        // nothing else owns.
                        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(res) })
                    } else {
                        Err(err())
                    };
                    f(&mut sub, Event::Accepted { token, fd, more });
                }
                RECV | RECVMSG => {
                    let Some(bid) = cqueue::buffer_select(flags) else {
                        // No buffer: an error (or a FIN, which takes none).
                        let data = if res < 0 { Err(err()) } else { Ok(&[][..]) };
                        f(
                            &mut sub,
                            Event::Received {
                                token,
                                data,
                                arrived: None,
                                more,
                            },
                        );
                        continue;
                    };
                    let raw = bufs.buffer(bid, res.max(0) as usize);
                    let (data, arrived) = if kind == RECVMSG {
                        match types::RecvMsgOut::parse(raw, &sub.ops.msghdr) {
                            Ok(out) => {
                                // The payload is a tail of `raw`: keep `raw`'s lifetime.
                                let payload = out.payload_data();
                                let start = payload.as_ptr() as usize - raw.as_ptr() as usize;
                                (
                                    &raw[start..start + payload.len()],
                                    control_timestamp(out.control_data()),
                                )
                            }
                            Err(()) => (&[][..], None),
                        }
                    } else {
                        (raw, None)
                    };
                    f(
                        &mut sub,
                        Event::Received {
                            token,
                            data: Ok(data),
                            arrived,
                            more,
                        },
                    );
                    bufs.push(bid);
                    returned = true;
                }
                SEND => {
                    let slot = token as usize;
                    if let Some((token, buf)) = sub.ops.sends.get_mut(slot).and_then(Option::take) {
                        sub.ops.free_sends.push(slot);
                        let result = if res >= 0 {
                            Ok(res as usize)
                        } else {
                            Err(err())
                        };
                        f(&mut sub, Event::Sent { token, result, buf });
                    }
                }
                POLL => f(&mut sub, Event::Ready { token, more }),
                _ => {}
            }
        }
        if returned {
            bufs.publish();
        }
        // The send table grows to the most sends ever in flight at once (a burst of answers
        // to thousands of connections); once none are, it is let go rather than kept.
        let ops = &mut *sub.ops;
        if ops.free_sends.len() == ops.sends.len() && ops.sends.capacity() > SENDS_KEPT {
            ops.sends = Vec::new();
            ops.free_sends = Vec::new();
        }
    }

    /// Requests still armed or in flight.
    pub fn in_flight(&self) -> usize {
        self.ops.in_flight
    }
}

impl Submit<'_> {
    fn push(&mut self, sqe: squeue::Entry) {
        loop {
            // SAFETY: every pointer an entry carries is owned by the ring and outlives the
            // request: send buffers sit in `sends` until their completion, the buffer ring
            // and `msghdr` live as long as the ring; file descriptors are the caller's.
            if unsafe { self.sq.push(&sqe) }.is_ok() {
                return;
            }
            // The submission queue is full: hand it to the kernel now.
            self.sq.sync();
            if self.submitter.submit().is_err() {
                // EINTR, or EBUSY (completions to reap first): the entry is retried.
                std::thread::yield_now();
            }
            self.sq.sync();
        }
    }

    /// Accept every connection `listener` gets, until cancelled or an error ends it.
    pub fn accept_multi(&mut self, listener: BorrowedFd<'_>, token: u64) {
        // Blocking connections: the ring waits on them without blocking the thread, and a
        // send to a slow reader then waits for room instead of failing with EAGAIN.
        let sqe = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ACCEPT << KIND_SHIFT | token & TOKEN_MASK);
        self.ops.in_flight += 1;
        self.push(sqe);
    }

    /// Receive whatever `fd` gets into the buffer pool, until the peer's FIN, an error or a
    /// cancel; with `timestamps`, through `recvmsg` so the kernel's arrival time comes along.
    pub fn recv_multi(&mut self, fd: BorrowedFd<'_>, token: u64, timestamps: bool) {
        let fd = types::Fd(fd.as_raw_fd());
        let sqe = if timestamps {
            opcode::RecvMsgMulti::new(fd, &*self.ops.msghdr, GROUP)
                .build()
                .user_data(RECVMSG << KIND_SHIFT | token & TOKEN_MASK)
        } else {
            opcode::RecvMulti::new(fd, GROUP)
                .build()
                .user_data(RECV << KIND_SHIFT | token & TOKEN_MASK)
        };
        self.ops.in_flight += 1;
        self.push(sqe);
    }

    /// Send `buf`; it comes back with the completion ([`Event::Sent`]).
    pub fn send(&mut self, fd: BorrowedFd<'_>, token: u64, buf: BytesMut) {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let ptr = buf.as_ptr();
        let slot = match self.ops.free_sends.pop() {
            Some(s) => {
                self.ops.sends[s] = Some((token, buf));
                s
            }
            None => {
                self.ops.sends.push(Some((token, buf)));
                self.ops.sends.len() - 1
            }
        };
        let sqe = opcode::Send::new(types::Fd(fd.as_raw_fd()), ptr, len)
            // WAITALL: a stream send that fills the socket buffer waits (in the kernel, off
            // this thread) for room and completes when all is taken, not with a short count.
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build()
            .user_data(SEND << KIND_SHIFT | slot as u64);
        self.ops.in_flight += 1;
        self.push(sqe);
    }

    /// Be told when `fd` is readable, every time (an eventfd another thread writes).
    pub fn poll_multi(&mut self, fd: BorrowedFd<'_>, token: u64) {
        let sqe = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(POLL << KIND_SHIFT | token & TOKEN_MASK);
        self.ops.in_flight += 1;
        self.push(sqe);
    }

    /// Be told once when `fd` is readable (a listener near `--max-conns`: accept only
    /// what there is room for, as epoll does).
    pub fn poll_once(&mut self, fd: BorrowedFd<'_>, token: u64) {
        let sqe = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(POLL << KIND_SHIFT | token & TOKEN_MASK);
        self.ops.in_flight += 1;
        self.push(sqe);
    }

    /// Cancel the polls of `token`.
    pub fn cancel_poll(&mut self, token: u64) {
        self.cancel(POLL << KIND_SHIFT | token & TOKEN_MASK);
    }

    /// Cancel the multishot receive of `token` (its last completion still comes).
    pub fn cancel_recv(&mut self, token: u64) {
        self.cancel(RECV << KIND_SHIFT | token & TOKEN_MASK);
        self.cancel(RECVMSG << KIND_SHIFT | token & TOKEN_MASK);
    }

    /// Cancel every request on `fd` (its receive, and a send a client that stops reading
    /// would hold forever): each still completes, with ECANCELED. Before closing a
    /// connection: a request in flight keeps the socket open until it completes.
    pub fn cancel_fd(&mut self, fd: BorrowedFd<'_>) {
        let sqe =
            opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd.as_raw_fd())).all())
                .build()
                .user_data(QUIET << KIND_SHIFT);
        self.ops.in_flight += 1;
        self.push(sqe);
    }

    /// Cancel the multishot accept of `token`.
    pub fn cancel_accept(&mut self, token: u64) {
        self.cancel(ACCEPT << KIND_SHIFT | token & TOKEN_MASK);
    }

    /// Cancel every request with this `user_data`.
    fn cancel(&mut self, user_data: u64) {
        let sqe = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(user_data).all())
            .build()
            .user_data(QUIET << KIND_SHIFT);
        self.ops.in_flight += 1;
        self.push(sqe);
    }

    /// Close `fd` with the next submission (no syscall of its own). A request still armed
    /// on it holds the socket open until it completes: cancel it first ([`Submit::cancel_fd`]).
    pub fn close(&mut self, fd: OwnedFd) {
        let raw: RawFd = fd.into_raw_fd();
        let sqe = opcode::Close::new(types::Fd(raw))
            .build()
            .user_data(QUIET << KIND_SHIFT);
        self.ops.in_flight += 1;
        self.push(sqe);
    }
}

/// The `SCM_TIMESTAMPNS` in a control-message area the kernel wrote.
fn control_timestamp(control: &[u8]) -> Option<SystemTime> {
    if control.is_empty() {
        return None;
    }
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = control.as_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.len();
    crate::socket::timestamp(&msg)
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Cancel everything and wait for it, so no request can still write into a receive
        // buffer or read a send buffer once they are freed.
        let _ = self
            .ring
            .submitter()
            .register_sync_cancel(None, types::CancelBuilder::any());
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while self.ops.in_flight > 0 && std::time::Instant::now() < deadline {
            let _ = self.submit_and_wait(1, Some(Duration::from_millis(10)));
            self.complete(|_, _| {});
        }
        if self.ops.in_flight > 0 {
            // Requests the kernel did not give back: their buffers must outlive them.
            std::mem::forget(std::mem::take(&mut self.ops.sends));
            let bufs = std::mem::replace(&mut self.bufs.data, Box::new([]));
            std::mem::forget(bufs);
            self.bufs.map_len = 0;
        }
    }
}
