//! `single` — Node.js: one thread, `loop-0`, listens, accepts, reads, writes and runs the
//! handler. No locks and no handoffs; one slow handler stalls every connection.

use super::Wiring;
use crate::acceptor::{Sink, Turn};
use crate::stats::Role;
use crate::ServerError;

pub(super) fn build(w: &mut Wiring<'_>) -> Result<(), ServerError> {
    let listener = w.listen(false)?;
    let name = w.cfg.label.clone().unwrap_or_else(|| "loop-0".to_string());
    let parts = w.loop_parts(&name, Role::Loop)?;
    let exec = w.inline_exec(&parts);
    w.spawn_loop(
        parts,
        Some((vec![listener], Turn::Own, Sink::Local)),
        Some((exec, None)),
    );
    Ok(())
}
