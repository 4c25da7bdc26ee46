//! `reuseport` — socket sharding (nginx `reuseport`, Envoy, HAProxy): threads `loop-0..N-1`,
//! each with its own SO_REUSEPORT socket on the same port. The kernel hashes each new
//! connection to one socket's accept queue: no shared accept queue, no lock, no herd; the
//! price is that a busy thread's queue is not drained by an idle one.

use super::Wiring;
use crate::acceptor::{Sink, Turn};
use crate::stats::Role;
use crate::ServerError;

pub(super) fn build(w: &mut Wiring<'_>) -> Result<(), ServerError> {
    let mut listeners = Vec::new();
    for _ in 0..w.cfg.threads.max(1) {
        listeners.push(w.listen(true)?);
    }
    for (i, listener) in listeners.into_iter().enumerate() {
        let parts = w.loop_parts(&format!("loop-{i}"), Role::Loop)?;
        let exec = w.inline_exec(&parts);
        w.spawn_loop(
            parts,
            Some((vec![listener], Turn::Own, Sink::Local)),
            Some((exec, None)),
        );
    }
    Ok(())
}
