//! The completion driver (`--io uring`): one io_uring per loop.
//!
//! Each round is one `io_uring_enter`: it submits what the last round queued — sends,
//! receives to arm, accepts, closes — and waits for the next completions (or the nearest
//! deadline). Each connection has one multishot receive into the ring's provided buffers,
//! cancelled while backpressure holds its reading and armed again after ([`RecvState`]);
//! one send in flight, whose buffer comes back with its completion. Cross-thread wake-ups
//! come through the loop's eventfd, polled on the ring.
//!
//! Listeners: a socket of the thread's own gets a multishot accept while there is room
//! under `--max-conns`; near the ceiling it is polled for readiness and accepted from with
//! `accept4`, a slot claimed per accept, so at the ceiling connections wait in the kernel's
//! queue as under epoll. A shared socket is always polled (the wiring makes every shared
//! turn a herd, see `Turn::on`): io_uring's accept waits exclusively and wakes waiters in
//! the order they armed, handing every connection to the first loop's ring even while that
//! loop is busy (the connection then waits until it next enters the kernel) and the others
//! sleep — a 9-run accept storm put that at 1.55–1.95× nginx's overflows on one socket.

use super::Written;
use super::{ConnEvent, Driver, Event, Io, Listen, ListenSocket, Read};
use crate::driver::token::Token;
use bytes::BytesMut;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use sys::uring::{Ring, Submit};
use sys::Waker;

/// Room under `--max-conns` below which a listener is polled and accepted from as under
/// epoll: a multishot accept takes whatever arrives, so it is stopped while this much room
/// is left.
const MULTISHOT_ROOM: usize = 1024;

pub(crate) struct UringDriver {
    ring: Ring,
    waker: Arc<Waker>,
    /// Each listener's accepts, by index.
    accepts: Vec<Accepts>,
}

/// A listener's accepts on the ring.
#[derive(Debug, Clone, Copy, Default)]
struct Accepts {
    /// A multishot accept is armed.
    multishot: bool,
    /// It was cancelled and its last completion has not come yet.
    stopping: bool,
    /// A one-shot readiness poll is armed.
    polling: bool,
}

/// A connection's multishot receive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum RecvState {
    #[default]
    Off,
    On,
    /// Cancelled; its last completion has not come yet (arming now would make two).
    Stopping,
}

/// The handle a round acts through.
pub(crate) struct UringIo<'s, 'r> {
    sub: &'s mut Submit<'r>,
    accepts: &'s mut Vec<Accepts>,
}

/// What a completion says of the connection's receive: whether it ended with this
/// completion (a receive's last; never a send's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecvEnded(bool);

impl Driver for UringDriver {
    type Conn = RecvState;
    type Note = RecvEnded;
    type Io<'s, 'r>
        = UringIo<'s, 'r>
    where
        Self: 'r,
        'r: 's;
    const NONBLOCKING: bool = false;
    const MAY_MISS_RESETS: bool = true;

    fn new(waker: &Arc<Waker>) -> io::Result<Self> {
        // With SINGLE_ISSUER the ring belongs to the thread that made it: the loop's. The
        // server checked at start that rings can be made.
        let mut ring = Ring::new().map_err(io::Error::other)?;
        ring.submit()
            .poll_multi(waker.as_fd(), Token::Waker.to_u64());
        Ok(UringDriver {
            ring,
            waker: waker.clone(),
            accepts: Vec::new(),
        })
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.ring.submit_and_wait(1, timeout)
    }

    fn dispatch(&mut self, mut f: impl FnMut(&mut UringIo<'_, '_>, Event<'_, RecvEnded>)) {
        let UringDriver {
            ring,
            waker,
            accepts,
        } = self;
        ring.complete(|sub, ev| {
            let mut io = UringIo { sub, accepts };
            match ev {
                sys::uring::Event::Accepted { token, fd, more } => {
                    let Token::Listener(index) = Token::from_u64(token) else {
                        return;
                    };
                    let index = usize::from(index);
                    if let Some(arm) = io.accepts.get_mut(index).filter(|_| !more) {
                        arm.multishot = false;
                        arm.stopping = false;
                    }
                    f(&mut io, Event::Accepted(fd));
                }
                sys::uring::Event::Received {
                    token,
                    data,
                    arrived,
                    more,
                } => {
                    let ev = ConnEvent::Received { data, arrived };
                    f(
                        &mut io,
                        Event::Conn(Token::from_u64(token), ev, RecvEnded(!more)),
                    );
                }
                sys::uring::Event::Sent { token, result, buf } => {
                    let ev = ConnEvent::Sent { result, buf };
                    f(
                        &mut io,
                        Event::Conn(Token::from_u64(token), ev, RecvEnded(false)),
                    );
                }
                sys::uring::Event::Ready { token, more } => match Token::from_u64(token) {
                    Token::Listener(index) => {
                        let index = usize::from(index);
                        if let Some(arm) = io.accepts.get_mut(index) {
                            arm.polling = false;
                        }
                        f(&mut io, Event::ListenerReady(index));
                    }
                    _ => {
                        if !more {
                            io.sub.poll_multi(waker.as_fd(), Token::Waker.to_u64());
                        }
                        f(&mut io, Event::Woken);
                    }
                },
            }
        });
    }

    fn with_io<R>(&mut self, f: impl FnOnce(&mut UringIo<'_, '_>) -> R) -> R {
        let mut sub = self.ring.submit();
        f(&mut UringIo {
            sub: &mut sub,
            accepts: &mut self.accepts,
        })
    }
}

impl Io for UringIo<'_, '_> {
    type Conn = RecvState;
    type Note = RecvEnded;

    fn listen<L: ListenSocket>(&mut self, listeners: &[Arc<L>], how: Listen) {
        self.accepts.resize(listeners.len(), Accepts::default());
        for (i, (listener, arm)) in listeners.iter().zip(self.accepts.iter_mut()).enumerate() {
            let token = Token::Listener(i as u16).to_u64();
            let (multishot, poll) = match how {
                Listen::Stop => {
                    self.sub.cancel_accept(token);
                    self.sub.cancel_poll(token);
                    arm.stopping = arm.multishot;
                    continue;
                }
                Listen::Off => (false, false),
                // Connections a supervisor passes over a Unix socket are not accepted but
                // received: that socket is polled, then read as under epoll.
                Listen::On { own, room, .. } => {
                    let multishot = own && room > MULTISHOT_ROOM && !listener.is_passed();
                    (multishot, !multishot && room > 0)
                }
            };
            if multishot {
                if !arm.multishot {
                    self.sub.accept_multi(listener.as_fd(), token);
                    arm.multishot = true;
                }
                continue;
            }
            if arm.multishot {
                if !arm.stopping {
                    self.sub.cancel_accept(token);
                    arm.stopping = true;
                }
                continue;
            }
            if poll && !arm.polling {
                self.sub.poll_once(listener.as_fd(), token);
                arm.polling = true;
            }
        }
    }

    fn requeue<L: ListenSocket>(&mut self, _: &[Arc<L>]) {}

    fn listening(&self) -> bool {
        self.accepts.iter().any(|a| a.multishot || a.polling)
    }

    fn open(
        &mut self,
        fd: &OwnedFd,
        token: Token,
        c: &mut RecvState,
        stamps: bool,
    ) -> io::Result<()> {
        self.sub.recv_multi(fd.as_fd(), token.to_u64(), stamps);
        *c = RecvState::On;
        Ok(())
    }

    fn note(c: &mut RecvState, RecvEnded(ended): RecvEnded) {
        if ended {
            *c = RecvState::Off;
        }
    }

    fn input_waiting(_: &RecvState) -> bool {
        // Bytes come to the reader as completions; it never reads.
        false
    }

    fn read_all(_: &mut RecvState) {}

    fn read(&mut self, _: &OwnedFd, _: &mut RecvState, _: &mut BytesMut, _: bool) -> Read {
        Read::Again
    }

    /// One send in flight per connection: what is ready leaves when the last send is back.
    fn write(&mut self, fd: &OwnedFd, token: Token, w: Written<'_>) {
        if let Some(out) = w.conn.poll_transmit() {
            self.sub.send(fd.as_fd(), token.to_u64(), out);
        }
    }

    fn shutdown_write(&mut self, fd: &OwnedFd, _: &mut RecvState) {
        let _ = sys::socket::shutdown_write(fd);
    }

    fn want_input(
        &mut self,
        fd: &OwnedFd,
        token: Token,
        c: &mut RecvState,
        wants: bool,
        stamps: bool,
    ) {
        match *c {
            RecvState::Off if wants => {
                self.sub.recv_multi(fd.as_fd(), token.to_u64(), stamps);
                *c = RecvState::On;
            }
            // Backpressure: stop taking bytes; they wait in the kernel and slow the client.
            RecvState::On if !wants => {
                self.sub.cancel_recv(token.to_u64());
                *c = RecvState::Stopping;
            }
            _ => {}
        }
    }

    fn close(&mut self, fd: OwnedFd, c: RecvState, sending: bool) {
        // Its receive, and a send to a client that stopped reading, would hold the socket
        // open (and the send's buffer) until they complete.
        if c != RecvState::Off || sending {
            self.sub.cancel_fd(fd.as_fd());
        }
        self.sub.close(fd);
    }

    fn may_miss_reset(c: &RecvState) -> bool {
        *c == RecvState::On
    }

    fn quiet(c: &RecvState) -> bool {
        // A cancelled receive may still complete with bytes: moved only after its last.
        *c == RecvState::Off
    }

    fn detach(&mut self, _: &OwnedFd, _: RecvState) {}
}
