//! `pool` — RAMCloud: thread `loop-0` accepts and reads; each complete request goes on a
//! bounded queue to `worker-0..M-1`, which run the handler and send the encoded response
//! back; `loop-0` writes responses in request order per connection. A full queue stops
//! `loop-0` reading that connection, so the kernel's receive queue fills and TCP slows the
//! client: backpressure instead of memory growth.

use super::Wiring;
use crate::acceptor::{Sink, Turn};
use crate::reader::{Exec, PoolLink};
use crate::stats::Role;
use crate::worker::{self, ReplyPort, Submitter};
use crate::ServerError;
use std::sync::Arc;

pub(super) fn build(w: &mut Wiring<'_>) -> Result<(), ServerError> {
    let listener = w.listen(false)?;
    let parts = w.loop_parts("loop-0", Role::Loop)?;
    let (port, completions) = ReplyPort::new(parts.waker.clone(), parts.stats.clone());
    let replies = Arc::new(vec![port]);
    let (tx, jobs) = worker::queue(w.cfg.queue_depth);
    let submit = Submitter::new(tx, parts.stats.clone());
    w.spawn_workers(Role::Worker, w.cfg.workers.max(1), jobs, replies);
    let exec = Exec::Pool(PoolLink {
        submit,
        completions,
        reply: 0,
    });
    w.spawn_loop(
        parts,
        Some((vec![listener], Turn::Own, Sink::Local)),
        Some((exec, None)),
    );
    Ok(())
}
