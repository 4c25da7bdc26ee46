//! One thread's event loop on an io_uring (`--io uring`): the same roles as the epoll loop
//! ([`crate::event_loop`]), driven by completions instead of readiness.
//!
//! Each round is one `io_uring_enter`: it submits what the last round queued — the answers'
//! sends, receives to arm, accepts, closes — and waits for the next completions (or the
//! nearest deadline). Accepts are multishot while there is room under `--max-conns`; near
//! the ceiling the listener is polled and accepted from as under epoll, a slot claimed per
//! accept, so at the ceiling connections wait in the kernel's queue. Each connection has one
//! multishot receive into the ring's provided buffers, cancelled while backpressure holds
//! its reading and armed again after. Cross-thread wake-ups (handed-over connections,
//! worker answers, room under the ceiling, shutdown) come through the loop's eventfd,
//! polled on the ring. Everything else (the connection core, the timer wheel, balancers,
//! pools, the drain) is the epoll loop's.

use crate::event_loop::{deliver, sleep_limit, EventLoop, DRAIN_IDLE_GRACE};
use crate::reader::Driver;
use crate::token::Token;
use std::os::fd::AsFd;
use std::time::Instant;
use sys::uring::{Event, Ring};

/// The token of the loop's eventfd poll.
const WAKER: u64 = Token::Waker.to_u64();

pub(crate) fn run(lp: EventLoop) {
    let EventLoop {
        waker,
        shutdown,
        roles,
        stats,
        drain_timeout,
        ..
    } = lp;
    let (mut acceptor, mut balancer, mut reader) = roles.split();
    // Created here: with SINGLE_ISSUER the ring belongs to the thread that made it. The
    // server checked at start that rings can be made.
    let mut ring = match Ring::new() {
        Ok(r) => r,
        Err(err) => {
            tracing::error!(%err, "cannot set up io_uring; thread exits");
            return;
        }
    };
    ring.submit().poll_multi(waker.as_fd(), WAKER);
    let mut drain_deadline: Option<Instant> = None;
    let mut busy_since = Instant::now();
    loop {
        let now = Instant::now();
        let accept_wait = acceptor
            .as_mut()
            .and_then(|a| a.before_wait_uring(&mut ring.submit(), now));
        let timeout = sleep_limit(accept_wait, reader.as_ref(), drain_deadline, now);
        stats.busy(now.duration_since(busy_since).as_nanos() as u64);
        if let Err(err) = ring.submit_and_wait(1, timeout) {
            tracing::error!(%err, "io_uring_enter failed; thread exits");
            return;
        }
        busy_since = Instant::now();
        if let Some(r) = reader.as_mut() {
            r.set_now(busy_since);
        }

        if drain_deadline.is_none() && shutdown.requested() {
            drain_deadline = Some(Instant::now() + drain_timeout);
            let mut sub = ring.submit();
            // The acceptor (and the balancer it feeds) goes once its cancelled accepts have
            // finished: a connection one took before the cancel is answered, not dropped.
            if let Some(a) = acceptor.as_mut() {
                a.cancel_uring(&mut sub);
            }
            if let Some(r) = reader.as_mut() {
                r.begin_drain(
                    &mut Driver::Uring(&mut sub),
                    (drain_timeout / 4).min(DRAIN_IDLE_GRACE),
                );
            }
        }

        let mut woken = false;
        ring.complete(|sub, ev| match ev {
            Event::Accepted { token, fd, more } => {
                let Token::Listener(index) = Token::from_u64(token) else {
                    return;
                };
                let mut to = |c| deliver(&mut Driver::Uring(sub), &mut reader, &mut balancer, c);
                if let Some(a) = acceptor.as_mut() {
                    a.on_accepted_uring(usize::from(index), fd, more, busy_since, &mut to);
                }
            }
            Event::Received {
                token,
                data,
                arrived,
                more,
            } => {
                if let Some(r) = reader.as_mut() {
                    r.on_received(&mut Driver::Uring(sub), token, data, arrived, more);
                }
            }
            Event::Sent { token, result, buf } => {
                if let Some(r) = reader.as_mut() {
                    r.on_sent(&mut Driver::Uring(sub), token, result, buf);
                }
            }
            Event::Ready { token, more } => match Token::from_u64(token) {
                Token::Listener(index) => {
                    if let Some(a) = acceptor.as_mut() {
                        a.on_listener_ready_uring(usize::from(index), busy_since, &mut |c| {
                            deliver(&mut Driver::Uring(sub), &mut reader, &mut balancer, c)
                        });
                    }
                }
                _ => {
                    woken = true;
                    if !more {
                        sub.poll_multi(waker.as_fd(), WAKER);
                    }
                }
            },
        });
        let mut sub = ring.submit();
        if let Some(r) = reader.as_mut() {
            let mut io = Driver::Uring(&mut sub);
            if woken {
                waker.reset();
                r.on_wake(&mut io);
            }
            r.after_events(&mut io);
            r.on_timers(&mut io);
        } else if woken {
            waker.reset();
        }
        if let Some(a) = acceptor.as_mut() {
            a.after_events();
        }

        if let Some(deadline) = drain_deadline {
            if acceptor.as_ref().is_some_and(|a| !a.armed_uring()) {
                if let Some(a) = acceptor.take() {
                    let mut io = Driver::Uring(&mut sub);
                    a.close_uring(&mut |c| deliver(&mut io, &mut reader, &mut balancer, c));
                }
                // The balancer's inboxes go with it: each reader then sees every acceptor
                // feeding it gone, and may finish its drain.
                balancer = None;
            }
            if acceptor.is_none() && reader.as_ref().is_none_or(|r| r.drained()) {
                break;
            }
            if Instant::now() >= deadline {
                let cut = reader
                    .as_mut()
                    .map_or(0, |r| r.cut_all(&mut Driver::Uring(&mut sub)));
                tracing::warn!(
                    cut,
                    "drain deadline passed; closing connections still in progress"
                );
                break;
            }
        }
    }
    // The ring's drop submits what is queued (the last closes), cancels the rest and waits.
}
