//! One epoll instance per thread: the heart of every event loop in backlog.
//!
//! Connections are registered edge-triggered for reading and writing once, at accept, so the
//! hot path never calls `epoll_ctl` again (one `read`, one `write`, `epoll_wait` amortised).
//! Listening sockets stay level-triggered: an acceptor may leave connections in the accept
//! queue on purpose (a batch limit, `--max-conns`) and must be told again that they are there.

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::time::Timespec;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// What a registration asks to be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// A connection: readable, writable, peer hang-up; edge-triggered.
    Connection,
    /// A listening socket, or an eventfd: readable; level-triggered.
    Readable,
    /// A listening socket shared with other threads' epolls, with `EPOLLEXCLUSIVE`: the kernel
    /// wakes one waiter per new connection instead of all of them.
    ReadableExclusive,
}

impl Interest {
    fn flags(self) -> EventFlags {
        match self {
            Interest::Connection => {
                EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET
            }
            Interest::Readable => EventFlags::IN,
            Interest::ReadableExclusive => EventFlags::IN | EventFlags::EXCLUSIVE,
        }
    }
}

/// What epoll reported for one registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness(EventFlags);

impl Readiness {
    /// Bytes (or a new connection, or a wake-up) wait to be read, or the peer closed.
    pub fn readable(self) -> bool {
        self.0
            .intersects(EventFlags::IN | EventFlags::HUP | EventFlags::ERR | EventFlags::RDHUP)
    }
    /// The peer closed its sending side (FIN, `EPOLLRDHUP`): whatever it sent before is in
    /// the receive queue, and a read after it returns 0. A short read no longer means "wait for
    /// the next edge": no edge will come.
    pub fn peer_closed(self) -> bool {
        self.0.contains(EventFlags::RDHUP)
    }
    /// The connection is dead (`EPOLLERR` or `EPOLLHUP`: a reset, or both directions shut):
    /// nothing more can be read from it or written to it.
    pub fn broken(self) -> bool {
        self.0.intersects(EventFlags::ERR | EventFlags::HUP)
    }
    /// The send queue has room again.
    pub fn writable(self) -> bool {
        self.0
            .intersects(EventFlags::OUT | EventFlags::HUP | EventFlags::ERR)
    }
}

/// A reusable buffer of events returned by [`Epoll::wait`].
pub struct Events {
    buf: Vec<epoll::Event>,
}

impl Events {
    /// Room for `capacity` events per wait.
    pub fn with_capacity(capacity: usize) -> Self {
        Events {
            buf: Vec::with_capacity(capacity.max(1)),
        }
    }

    /// The events of the last wait, as (token, readiness).
    pub fn iter(&self) -> impl Iterator<Item = (u64, Readiness)> + '_ {
        self.buf.iter().map(|ev| {
            let flags = ev.flags;
            let data = ev.data;
            (data.u64(), Readiness(flags))
        })
    }

    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the last wait returned nothing (timed out).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// An epoll instance. Tokens are the caller's: a `u64` handed back with each event.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new epoll instance, close-on-exec.
    pub fn new() -> io::Result<Self> {
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(Epoll { fd })
    }

    /// Register `source` under `token`.
    pub fn add(&self, source: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        epoll::add(
            &self.fd,
            source,
            EventData::new_u64(token),
            interest.flags(),
        )?;
        Ok(())
    }

    /// Remove `source`. Closing an fd removes it too, unless another fd refers to the same
    /// open file (a listener shared by threads), so listeners are always deleted explicitly.
    pub fn delete(&self, source: impl AsFd) -> io::Result<()> {
        epoll::delete(&self.fd, source)?;
        Ok(())
    }

    /// Wait for events, at most `timeout` (forever with `None`). A signal ending the wait early
    /// is not an error: it returns with no events.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.buf.clear();
        let ts = timeout.map(|d| Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: d.subsec_nanos() as _,
        });
        match epoll::wait(
            &self.fd,
            rustix::buffer::spare_capacity(&mut events.buf),
            ts.as_ref(),
        ) {
            Ok(_) => Ok(()),
            Err(rustix::io::Errno::INTR) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn listener_readiness_is_reported_with_its_token() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let ep = Epoll::new().unwrap();
        ep.add(&listener, 7, Interest::Readable).unwrap();
        let mut events = Events::with_capacity(8);
        ep.wait(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        assert!(events.is_empty());
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(b"x").unwrap();
        ep.wait(&mut events, Some(Duration::from_secs(5))).unwrap();
        let got: Vec<_> = events.iter().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 7);
        assert!(got[0].1.readable());
    }
}
