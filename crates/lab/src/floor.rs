//! The floor: the least an HTTP/1.1 server can do on this machine, so every other figure
//! can be read as a ratio to the physical limit in the same run.
//!
//! It reads, counts complete request heads (`\r\n\r\n`), writes one canned answer per head
//! in one send (the same bytes backlog answers `GET /` with, a fixed Date), and closes when
//! the client does or a head says `Connection: close`. No parsing, no routing, no
//! timeouts, no limits: whatever backlog spends above it is the price of being a server.
//! For HttpArena's endpoints the same loops run the arena engine instead
//! ([`crate::engine`]): it parses and answers correctly, and does nothing else.
//! Each thread has its own `SO_REUSEPORT` listener and loop, and either I/O interface:
//!
//! - epoll: edge-triggered connections, a read until the queue is empty, one write;
//! - io_uring ([`sys::uring`]): multishot accept, multishot receive into the provided
//!   buffer ring, the answers sent with the next `io_uring_enter`, which also waits.
//!
//! Started by the lab as `backlog anchor-floor --io epoll|uring`.

use crate::engine::{Endpoints, Protocol};
use anyhow::Context;
use backlog_server::Io;
use bytes::BytesMut;
use slab::Slab;
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use sys::uring::{Event, Ring};
use sys::{Epoll, Events, Interest};

const LISTENER: u64 = u64::MAX >> 8;
const READ_SIZE: usize = 64 * 1024;

/// A listening socket of its own for each thread (`SO_REUSEPORT`), TCP_NODELAY inherited
/// by what it accepts.
pub(crate) fn reuseport_listener(addr: SocketAddr, backlog: i32) -> anyhow::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    sock.bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    sock.listen(backlog)?;
    Ok(sock.into())
}

/// The floor's listening sockets, bound and not yet served.
#[derive(Debug)]
pub struct Floor {
    listeners: Vec<TcpListener>,
    uring: bool,
    endpoints: Endpoints,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Floor {
    /// Bind `threads` listeners on `addr` (port 0 picks one). `Io::Auto` is io_uring where
    /// the kernel has it; `Io::Uring` fails here, with the cause, where it does not.
    pub fn bind(
        addr: SocketAddr,
        threads: usize,
        backlog: i32,
        io: Io,
        endpoints: Endpoints,
    ) -> anyhow::Result<Floor> {
        let uring = match io {
            Io::Epoll => false,
            Io::Uring => {
                sys::uring::check().context("--io uring")?;
                true
            }
            Io::Auto => sys::uring::check().is_ok(),
        };
        let first = reuseport_listener(addr, backlog)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..threads.max(1) {
            listeners.push(reuseport_listener(addr, backlog)?);
        }
        Ok(Floor {
            listeners,
            uring,
            endpoints,
            addr,
        })
    }

    /// The interface it serves through.
    pub fn io(&self) -> Io {
        if self.uring {
            Io::Uring
        } else {
            Io::Epoll
        }
    }

    /// Serve until the process ends: a thread per listener.
    pub fn serve(self) -> anyhow::Result<()> {
        let (uring, endpoints) = (self.uring, self.endpoints);
        let handles: Vec<_> = self
            .listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                std::thread::Builder::new()
                    .name(format!("floor-{i}"))
                    .spawn(move || {
                        if uring {
                            uring_loop(l, endpoints)
                        } else {
                            epoll_loop(l, endpoints)
                        }
                    })
            })
            .collect::<Result<_, _>>()?;
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a floor thread panicked"))??;
        }
        Ok(())
    }
}

/// `backlog anchor-floor`: bind, print `floor serving addr=… io=…` on stderr, serve until
/// killed. With the arena endpoints it is the arena engine ([`crate::engine`]).
pub fn run(
    addr: SocketAddr,
    threads: usize,
    backlog: i32,
    io: Io,
    endpoints: Endpoints,
) -> anyhow::Result<()> {
    let floor = Floor::bind(addr, threads, backlog, io, endpoints)?;
    eprintln!("floor serving addr={} io={}", floor.addr, floor.io());
    floor.serve()
}

struct EpollConn {
    fd: OwnedFd,
    proto: Protocol,
}

fn epoll_loop(listener: TcpListener, endpoints: Endpoints) -> anyhow::Result<()> {
    let epoll = Epoll::new()?;
    epoll.add(&listener, LISTENER, Interest::Readable)?;
    let mut conns: Slab<EpollConn> = Slab::with_capacity(1024);
    let mut events = Events::with_capacity(256);
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut out = BytesMut::new();
    loop {
        epoll.wait(&mut events, None)?;
        for (token, readiness) in events.iter() {
            if token == LISTENER {
                for _ in 0..64 {
                    match sys::socket::accept(&listener) {
                        Ok(a) => {
                            let entry = conns.vacant_entry();
                            epoll.add(&a.fd, entry.key() as u64, Interest::Connection)?;
                            entry.insert(EpollConn {
                                fd: a.fd,
                                proto: Protocol::new(endpoints),
                            });
                        }
                        Err(_) => break,
                    }
                }
                continue;
            }
            let key = token as usize;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if !serve_readable(conn, readiness.peer_closed(), &mut buf, &mut out) {
                conns.remove(key);
            }
        }
    }
}

/// Read until the kernel's queue is empty, answering every complete head. `false`: close.
/// With the client's FIN reported (`fin`), read on to the 0 that ends it: no edge follows.
fn serve_readable(conn: &mut EpollConn, fin: bool, buf: &mut BytesMut, out: &mut BytesMut) -> bool {
    loop {
        buf.clear();
        let n = match sys::socket::read_into(&conn.fd, buf, READ_SIZE) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(err) if sys::would_block(&err) => return true,
            Err(err) if sys::interrupted(&err) => continue,
            Err(_) => return false,
        };
        out.clear();
        let close = conn.proto.feed(&buf[..n], out);
        if !out.is_empty() {
            // Canned answers to a closed-loop client always fit the send buffer; a short
            // write would mean a client the floor does not serve.
            match sys::socket::write(&conn.fd, out) {
                Ok(w) if w == out.len() => {}
                _ => return false,
            }
        }
        if close {
            return false;
        }
        if n < buf.capacity() && !fin {
            return true;
        }
    }
}

struct UringConn {
    fd: OwnedFd,
    gen: u32,
    proto: Protocol,
    /// Answers owed and not yet sent.
    owed: BytesMut,
    sending: bool,
    /// The receive is no longer armed: re-arm it (the pool ran dry), or it ended.
    rearm: bool,
    /// The receive ended for good (FIN or error): close once the answers are sent.
    ended: bool,
    /// A send failed: close now.
    broken: bool,
    /// A head asked to close.
    close: bool,
}

fn token(key: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | key as u64
}

fn uring_loop(listener: TcpListener, endpoints: Endpoints) -> anyhow::Result<()> {
    let mut ring = Ring::new()?;
    ring.submit().accept_multi(listener.as_fd(), LISTENER);
    let mut conns: Slab<UringConn> = Slab::with_capacity(1024);
    let mut next_gen = 0u32;
    let mut accepted: Vec<OwnedFd> = Vec::new();
    let mut touched: Vec<usize> = Vec::new();
    let mut spare: Vec<BytesMut> = Vec::new();
    let mut rearm_accept = false;
    loop {
        ring.submit_and_wait(1, None)?;
        ring.complete(|_, ev| match ev {
            Event::Accepted { fd, more, .. } => {
                if let Ok(fd) = fd {
                    accepted.push(fd);
                }
                rearm_accept |= !more;
            }
            Event::Received {
                token, data, more, ..
            } => {
                let key = (token & u64::from(u32::MAX)) as usize;
                let Some(c) = conns
                    .get_mut(key)
                    .filter(|c| u64::from(c.gen) == token >> 32)
                else {
                    return;
                };
                match data {
                    Ok([]) => c.ended = true,
                    Ok(bytes) => {
                        c.close |= c.proto.feed(bytes, &mut c.owed);
                        c.rearm |= !more;
                    }
                    Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => c.rearm = true,
                    Err(_) => c.ended = true,
                }
                touched.push(key);
            }
            Event::Sent { token, result, buf } => {
                spare.push(buf);
                let key = (token & u64::from(u32::MAX)) as usize;
                if let Some(c) = conns
                    .get_mut(key)
                    .filter(|c| u64::from(c.gen) == token >> 32)
                {
                    c.sending = false;
                    if result.is_err() {
                        c.broken = true;
                    }
                    touched.push(key);
                }
            }
            Event::Ready { .. } => {}
        });
        if std::mem::take(&mut rearm_accept) {
            ring.submit().accept_multi(listener.as_fd(), LISTENER);
        }
        for fd in accepted.drain(..) {
            next_gen = next_gen.wrapping_add(1);
            let key = conns.insert(UringConn {
                fd,
                gen: next_gen,
                proto: Protocol::new(endpoints),
                owed: BytesMut::new(),
                sending: false,
                rearm: false,
                ended: false,
                broken: false,
                close: false,
            });
            let c = &conns[key];
            ring.submit()
                .recv_multi(c.fd.as_fd(), token(key, c.gen), false);
        }
        for key in touched.drain(..) {
            let Some(c) = conns.get_mut(key) else {
                continue;
            };
            let tok = token(key, c.gen);
            if !c.sending && !c.owed.is_empty() && !c.broken {
                let mut out = spare.pop().unwrap_or_default();
                out.clear();
                std::mem::swap(&mut out, &mut c.owed);
                ring.submit().send(c.fd.as_fd(), tok, out);
                c.sending = true;
            }
            if c.sending {
                continue;
            }
            if c.ended || c.close || c.broken {
                let c = conns.remove(key);
                if !c.ended {
                    ring.submit().cancel_recv(tok);
                }
                ring.submit().close(c.fd);
            } else if std::mem::take(&mut c.rearm) {
                ring.submit().recv_multi(c.fd.as_fd(), tok, false);
            }
        }
    }
}
