//! Safe retries for unsafe requests: the `Idempotency-Key` header (IETF httpapi draft "The
//! Idempotency-Key HTTP Header Field", and Stripe's practice), over a durable store.
//!
//! The first POST or PATCH with a key claims it (with a lease), runs, and stores its response
//! under the key; a repeat with the same key and the same request replays that response
//! byte for byte with `Idempotent-Replayed: true`; a repeat while the first still runs gets
//! 409; the key reused for a different request gets 422. For handlers that write through the
//! store ([`Tx`]), the effect and the stored response commit in one transaction, so a crash
//! either loses both (and the retry runs once) or keeps both (and the retry replays).
//!
//! # Layout
//! - [`key`]: parsing the header (an RFC 8941 string).
//! - [`fingerprint`]: what makes two requests "the same".
//! - [`store`]: the [`Store`] trait, its records, and the comments table; [`store::sqlite`]
//!   (embedded, the default) and [`store::postgres`] (shared by many servers).
//! - [`middleware`]: [`Idempotent`], the handler wrapper.
//! - [`throttle`]: warnings about the store, one per second with a count of the rest.

// Refusals travel as `Response`s (a few hundred bytes) on paths that are never hot.
#![allow(clippy::result_large_err)]

pub mod fingerprint;
pub mod key;
pub mod middleware;
pub mod store;
pub mod throttle;

pub use middleware::{IdempotencyConfig, Idempotent};
pub use store::{open, Claim, Comment, KeyRef, Store, StoreError, StoredResponse, Tx};
pub use throttle::Throttle;
