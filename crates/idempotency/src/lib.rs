//! Safe retries for unsafe requests: the `Idempotency-Key` header (IETF httpapi draft "The
//! Idempotency-Key HTTP Header Field", and Stripe's practice), over a durable store.
//!
//! The first POST or PATCH with a key claims it (with a lease), runs, and stores its response
//! under the key; a repeat with the same key and the same request replays that response
//! byte for byte with `Idempotent-Replayed: true`; a repeat while the first still runs gets
//! 409; the key reused for a different request gets 422. For handlers that write through the
//! store's transaction ([`Transactional`]), the effect and the stored response commit
//! together, so a crash either loses both (and the retry runs once) or keeps both (and the
//! retry replays).
//!
//! The key may be sent as the draft's quoted string (`Idempotency-Key: "k2"`) or bare, as
//! Stripe's clients send it (`Idempotency-Key: k2`); both name the same key.
//!
//! The [`Store`] trait holds idempotency records only, so any database can back it (a test
//! can use a map). Built in, each behind its cargo feature (both on by default): `sqlite`
//! ([`SqliteStore`]) and `postgres` ([`PgStore`]). Stores purge expired records by
//! themselves.
//!
//! # Layout
//! - [`key`]: parsing the header (an RFC 8941 string, or a bare key).
//! - [`fingerprint`]: what makes two requests "the same".
//! - [`store`]: the [`Store`] and [`Transactional`] traits and their records; `store::sqlite`
//!   (embedded, one writer with group commit) and `store::postgres` (shared by many servers).
//! - [`middleware`]: [`Idempotent`], the handler wrapper, and [`IdempotencyLayer`].
//! - [`throttle`]: warnings about the store, one per second with a count of the rest.

// Refusals travel as `Response`s (a few hundred bytes) on paths that are never hot.
#![allow(clippy::result_large_err)]

pub mod fingerprint;
pub mod key;
pub mod middleware;
pub mod store;
pub mod throttle;

pub use middleware::{IdempotencyConfig, IdempotencyLayer, Idempotent};
#[cfg(feature = "postgres")]
pub use store::postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
pub use store::{Claim, Claimed, Key, Store, StoreError, StoredResponse, Transactional};
pub use throttle::Throttle;
