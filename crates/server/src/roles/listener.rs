//! Listening sockets: the accept queue's owner.
//!
//! A listener is a socket and nothing else; who accepts from it is the acceptor's business.
//! The backlog asked for goes to listen(2), which silently clamps it to
//! `net.core.somaxconn` — so we read that sysctl and say so when it wins. `reuseport` binds
//! one socket per thread with SO_REUSEPORT, and the kernel then spreads new connections over
//! their separate accept queues by a hash of the 4-tuple.

use crate::ServerError;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;
use sys::socket::Accepted;

/// How a listening socket is set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListenOptions {
    pub(crate) backlog: u32,
    pub(crate) reuseport: Reuseport,
    pub(crate) defer_accept: bool,
}

/// Whether a listening socket shares its port through SO_REUSEPORT, and how it gets there.
///
/// SO_REUSEPORT lets any socket of the same user with the option join a port, so a second
/// server started by mistake on a port in use would quietly split the traffic with the first.
/// The first socket of a group therefore binds without it (EADDRINUSE if anything holds the
/// port) and sets it between bind and listen, which is when the kernel forms the group; the
/// rest of the group joins that socket. Sockets handed down on purpose (a reload, socket
/// activation) never bind at all. (A program of the same user that sets SO_REUSEPORT itself
/// can still join a running group: that is the kernel's rule, and no option refuses it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuseport {
    /// One socket on the port, nobody else's.
    No,
    /// The first socket of a SO_REUSEPORT group: refused if the port is in use.
    Lead,
    /// Another socket of a group this process started with [`Reuseport::Lead`].
    Join,
}

impl Reuseport {
    /// For a socket that shares its port (`shared`) or not, and is the first of its group
    /// to bind (`first`) or joins one already bound.
    pub fn of(shared: bool, first: bool) -> Reuseport {
        match (shared, first) {
            (false, _) => Reuseport::No,
            (true, true) => Reuseport::Lead,
            (true, false) => Reuseport::Join,
        }
    }
}

/// A bound, listening, non-blocking socket — or, in a worker of the multi-process
/// `dispatch` model, the Unix socket its supervisor sends accepted connections over
/// (Node cluster's round-robin): "accepting" from it is receiving the next descriptor.
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    addr: SocketAddr,
    passed: bool,
}

impl Listener {
    /// Bind and listen on `addr`.
    pub(crate) fn bind(addr: SocketAddr, opts: ListenOptions) -> Result<Listener, ServerError> {
        let bind_err = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                ServerError::AddrInUse { addr }
            } else {
                ServerError::Bind { addr, source }
            }
        };
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(bind_err)?;
        socket.set_reuse_address(true).map_err(bind_err)?;
        if opts.reuseport == Reuseport::Join {
            socket.set_reuse_port(true).map_err(bind_err)?;
        }
        if addr.is_ipv6() {
            // `[::]` means IPv6 only; ask for 0.0.0.0 separately. Explicit beats the
            // bindv6only sysctl deciding for us.
            socket.set_only_v6(true).map_err(bind_err)?;
        }
        socket.set_nonblocking(true).map_err(bind_err)?;
        socket.bind(&SockAddr::from(addr)).map_err(bind_err)?;
        if opts.reuseport == Reuseport::Lead {
            socket.set_reuse_port(true).map_err(bind_err)?;
        }
        if opts.defer_accept {
            sys::socket::set_defer_accept(&socket, Duration::from_secs(30)).map_err(bind_err)?;
        }
        let backlog = opts.backlog.min(i32::MAX as u32) as i32;
        socket.listen(backlog).map_err(bind_err)?;
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        Ok(Listener {
            socket,
            addr,
            passed: false,
        })
    }

    /// Bind a listener as `cfg` asks (its address, backlog, TCP_DEFER_ACCEPT), for a
    /// process that binds sockets and hands them to others: a supervisor for its workers.
    pub fn bind_for(
        cfg: &crate::Config,
        addr: SocketAddr,
        reuseport: Reuseport,
    ) -> Result<Listener, ServerError> {
        Listener::bind(
            addr,
            ListenOptions {
                backlog: effective_backlog(cfg.backlog),
                reuseport,
                defer_accept: cfg.defer_accept,
            },
        )
    }

    /// Serve on a socket that is already bound and listening: one a supervisor or systemd
    /// passed down. Refused if it is not a listening TCP socket.
    pub fn from_fd(fd: OwnedFd) -> Result<Listener, ServerError> {
        let socket = Socket::from(fd);
        let bad = |why: &str| ServerError::Config(format!("an inherited socket {why}"));
        if !socket.is_listener().map_err(|_| bad("is not a socket"))? {
            return Err(bad("is not listening"));
        }
        if socket.r#type().ok() != Some(Type::STREAM) {
            return Err(bad("is not a stream socket"));
        }
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| bad("is not an IP socket"))?;
        socket
            .set_nonblocking(true)
            .map_err(|source| ServerError::Io {
                what: "making an inherited socket non-blocking",
                source,
            })?;
        Ok(Listener {
            socket,
            addr,
            passed: false,
        })
    }

    /// Take connections from a Unix socket that a supervisor, which accepts on `addr`,
    /// sends them over (SCM_RIGHTS, one per message).
    pub fn from_passed(fd: OwnedFd, addr: SocketAddr) -> Result<Listener, ServerError> {
        let socket = Socket::from(fd);
        socket
            .set_nonblocking(true)
            .map_err(|source| ServerError::Io {
                what: "making the connection socket non-blocking",
                source,
            })?;
        Ok(Listener {
            socket,
            addr,
            passed: true,
        })
    }

    /// Whether connections come from a supervisor rather than a listen queue.
    pub fn is_passed(&self) -> bool {
        self.passed
    }

    /// The next connection, non-blocking: accept(2), or the next descriptor the supervisor
    /// sent. `WouldBlock` when there is none now.
    pub fn accept(&self) -> std::io::Result<Accepted> {
        self.accept_as(true)
    }

    /// [`Listener::accept`], the connection non-blocking or blocking (an io_uring's).
    pub(crate) fn accept_as(&self, nonblocking: bool) -> std::io::Result<Accepted> {
        if !self.passed {
            return sys::socket::accept_as(self, nonblocking);
        }
        let fd = sys::fd::recv_fd(self.socket.as_fd())?;
        if !nonblocking {
            sys::socket::set_blocking(&fd)?;
        }
        // The supervisor accepted it; asking the kernel is the price of the handoff.
        let peer = sys::socket::peer_addr(&fd).ok();
        let _ = sys::socket::set_nodelay(&fd);
        Ok(Accepted {
            fd,
            peer,
            at: std::time::Instant::now(),
        })
    }

    /// Set, on the listening socket, the options every accepted connection should have —
    /// accepted sockets inherit them, so no connection pays a syscall for them: TCP_NODELAY
    /// (a response leaves in one write; Nagle would only hold back the next) and, with
    /// `timestamps`, the kernel's receive timestamps (see [`queue_wait`](crate::observe::queue_wait)).
    /// Descriptors a supervisor passes one by one get TCP_NODELAY as they come.
    pub fn prepare_accepted(&self, timestamps: bool) -> Result<(), ServerError> {
        if self.passed {
            return Ok(());
        }
        let io = |what| move |source| ServerError::Io { what, source };
        sys::socket::set_nodelay(&self.socket)
            .map_err(io("setting TCP_NODELAY on the listening socket"))?;
        sys::socket::set_receive_timestamps(&self.socket, timestamps)
            .map_err(io("setting SO_TIMESTAMPNS on the listening socket"))
    }

    /// The address it is bound to (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// `net.core.somaxconn`, the ceiling listen(2) applies to every backlog.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The backlog the kernel will actually use for `asked`, and log when it is lower.
pub(crate) fn effective_backlog(asked: u32) -> u32 {
    match somaxconn() {
        Some(max) if max < asked => {
            tracing::warn!(
                asked,
                somaxconn = max,
                "net.core.somaxconn is lower than the requested backlog; the kernel clamps the accept queue to {max}"
            );
            max
        }
        _ => asked,
    }
}

impl crate::driver::ListenSocket for Listener {
    fn is_passed(&self) -> bool {
        Listener::is_passed(self)
    }
}
