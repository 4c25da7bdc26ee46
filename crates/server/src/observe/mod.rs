//! What the server counts about itself: per-thread counters ([`stats`]) and how long
//! connections and requests waited in the kernel's queues ([`queue_wait`]), and what a
//! reader tells about its connections when asked (`connections`). What a running
//! server answers the admin endpoint and `backlog top` is [`crate::introspect`].

pub(crate) mod connections;
pub mod queue_wait;
pub mod stats;
