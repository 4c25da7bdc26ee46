//! What the server tells about itself: per-thread counters ([`stats`]), how long
//! connections and requests waited in the kernel's queues ([`queue_wait`]), and the live
//! questions the admin endpoint and `backlog top` ask a running server ([`introspect`]).

pub mod introspect;
pub mod queue_wait;
pub mod stats;
