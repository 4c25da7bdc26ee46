//! `shared` — nginx: one listening socket, threads `loop-0..N-1` each accepting from it and
//! serving what they accepted. How they take turns is `--accept`: EPOLLEXCLUSIVE (one
//! waiter woken per connection, re-registered every 16 accepts), nginx's accept_mutex (only
//! the lock holder polls), or the thundering herd (every thread wakes).

use super::Wiring;
use crate::acceptor::{AcceptMutex, Sink, Turn};
use crate::stats::Role;
use crate::{AcceptStrategy, ServerError};
use std::sync::Arc;

pub(super) fn build(w: &mut Wiring<'_>) -> Result<(), ServerError> {
    let listener = w.listen(false)?;
    let mutex = Arc::new(AcceptMutex::default());
    for i in 0..w.cfg.threads.max(1) {
        let parts = w.loop_parts(&format!("loop-{i}"), Role::Loop)?;
        let turn = match w.cfg.accept {
            AcceptStrategy::Exclusive => Turn::Exclusive,
            AcceptStrategy::Mutex => Turn::Mutex(mutex.clone()),
            AcceptStrategy::Herd => Turn::Herd,
        };
        let exec = w.inline_exec(&parts);
        w.spawn_loop(
            parts,
            Some((vec![listener.clone()], turn, Sink::Local)),
            Some((exec, None)),
        );
    }
    Ok(())
}
