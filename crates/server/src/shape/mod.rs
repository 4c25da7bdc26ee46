//! The shape: a [`topology::Topology`] value (who listens, accepts, reads and handles), and
//! the wiring that builds any valid one from the roles (`wiring`).

pub mod topology;
pub(crate) mod wiring;
