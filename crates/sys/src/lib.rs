//! Every syscall backlog makes that `std` does not wrap, and the only `unsafe` in the project.
//!
//! The architectures are the product, so the event loops are our own: epoll (including
//! `EPOLLEXCLUSIVE`, which mio does not expose) and eventfd come from rustix, socket options
//! from socket2 or, where neither crate has them, from libc behind one `unsafe` block each.
//! Everything here returns `std::io::Error`, so callers sort errors with the two predicates
//! [`would_block`] and [`interrupted`] in one place.
//!
//! # Layout
//! - [`epoll`]: an epoll instance, tokens and interest sets.
//! - [`waker`]: an eventfd that another thread writes to wake a loop, with write coalescing.
//! - [`fd`]: descriptors that cross processes: inherited listeners, the ready pipe,
//!   SCM_RIGHTS.
//! - [`memory`]: making the allocator return large buffers to the kernel.
//! - [`netns`]: entering a network namespace (the lab's storms).
//! - [`process`]: signals to other processes (supervisor and workers); CPU affinity.
//! - [`rlimit`]: the file-descriptor limit.
//! - [`socket`]: non-blocking accept, read straight into a `BytesMut`, write, TCP options.
//! - [`uring`]: an io_uring per loop: multishot accept and receive, owned sends.

pub mod epoll;
pub mod fd;
pub mod memory;
pub mod netns;
pub mod process;
pub mod rlimit;
pub mod socket;
pub mod uring;
pub mod waker;

pub use epoll::{Epoll, Events, Interest, Readiness};
pub use waker::Waker;

use std::io;

/// The call would have blocked: the kernel queue it reads from is empty (or the one it writes
/// to is full). Not an error for a non-blocking loop; it means "wait for the next event".
#[inline]
pub fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

/// A signal interrupted the call before it did anything; retry it.
#[inline]
pub fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

/// An io_uring request was cancelled (ECANCELED): it ended because we asked.
#[inline]
pub fn cancelled(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ECANCELED)
}

/// An io_uring receive found its provided-buffer pool empty (ENOBUFS): arm it again once
/// buffers are back.
#[inline]
pub fn out_of_buffers(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENOBUFS)
}

/// A non-blocking connect has started and will finish later (EINPROGRESS).
#[inline]
pub fn in_progress(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EINPROGRESS)
}
