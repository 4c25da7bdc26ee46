//! The shape: a [`topology::Topology`] value — who listens, accepts, reads and handles, and
//! the roles a thread can play. The wiring that builds any valid one is `crate::wiring`.

pub mod model;
pub mod topology;
