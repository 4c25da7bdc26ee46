//! `dispatch` — memcached: thread `acceptor` listens and accepts, and hands each connection
//! to one of `reader-0..N-1` (by `--balance`), waking it through its eventfd. Readers never
//! accept; each reads, runs the handler and writes for the connections it was given.

use super::Wiring;
use crate::acceptor::{Sink, Turn};
use crate::handoff::{inbox, Balancer};
use crate::stats::Role;
use crate::ServerError;

pub(super) fn build(w: &mut Wiring<'_>) -> Result<(), ServerError> {
    let listener = w.listen(false)?;
    let acceptor = w.loop_parts("acceptor", Role::Acceptor)?;
    let mut inboxes = Vec::new();
    let mut readers = Vec::new();
    for i in 0..w.cfg.threads.max(1) {
        let parts = w.loop_parts(&format!("reader-{i}"), Role::Reader)?;
        let (tx, rx) = inbox(
            parts.waker.clone(),
            parts.stats.clone(),
            w.conn_limit.clone(),
        );
        inboxes.push(tx);
        readers.push((parts, rx));
    }
    let balancer = Balancer::new(w.cfg.balance, inboxes);
    w.spawn_loop(
        acceptor,
        Some((vec![listener], Turn::Own, Sink::Handoff(balancer))),
        None,
    );
    for (parts, rx) in readers {
        let exec = w.inline_exec(&parts);
        w.spawn_loop(parts, None, Some((exec, Some(rx))));
    }
    Ok(())
}
