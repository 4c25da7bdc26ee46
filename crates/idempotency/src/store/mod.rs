//! Durable storage for idempotency records and for the effects they guard.
//!
//! [`Store`] holds idempotency records and nothing else; [`Transactional`] adds what an
//! application needs to write its effect in the transaction that records the response.
//! Two built-in backends, each behind its cargo feature: `sqlite` (embedded, WAL,
//! `synchronous=FULL`: what committed survives `kill -9`; one writer with group commit) and
//! `postgres` (one database shared by every backlog instance, so a retry landing on another
//! instance is still answered once). Times are Unix milliseconds.

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {}", crate::throttle::chain(.0))]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed or is unreachable (with the server's own message, which the
    /// client library keeps in the error's source).
    #[cfg(feature = "postgres")]
    #[error("postgres: {}", crate::throttle::chain(.0))]
    Postgres(#[from] ::postgres::Error),
    /// The claim was taken over by another request after its lease ran out; this one's
    /// effect was rolled back.
    #[error("the idempotency lease expired and was taken over")]
    LeaseLost,
    /// The handler panicked inside the transaction; its effect was rolled back.
    #[error("handler panicked")]
    HandlerPanicked,
    /// Setting up the store failed.
    #[error("{0}")]
    Setup(String),
}

/// Warn that the store failed: at once the first time, then at most once a second with
/// how many failures were left out, and always with the cause.
pub fn warn_unavailable(what: &str, err: &StoreError) {
    static WARNINGS: crate::Throttle = crate::Throttle::new(std::time::Duration::from_secs(1));
    if let Some(suppressed) = WARNINGS.admit(std::time::Instant::now()) {
        tracing::warn!(%err, suppressed, "{what}");
    }
}

/// A key in its scope (a client identity, or "" for global keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Whose key it is.
    pub scope: String,
    /// The key.
    pub key: String,
}

/// A key this request claimed, and the token that proves the claim is still its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The key.
    pub key: Key,
    /// Changes when another request takes the key over (after the lease ran out).
    pub token: i64,
}

/// A response as stored under a key: replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// Status code.
    pub status: u16,
    /// Header fields, in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl StoredResponse {
    /// Rebuild a stored response from its columns; `None` while the claim is in flight
    /// (no status yet). Both stores keep the fields as a JSON array of pairs.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn from_columns(
        status: Option<i64>,
        headers: Option<String>,
        body: Option<Vec<u8>>,
    ) -> Option<StoredResponse> {
        Some(StoredResponse {
            status: status? as u16,
            headers: headers
                .and_then(|h| serde_json::from_str(&h).ok())
                .unwrap_or_default(),
            body: body.unwrap_or_default(),
        })
    }

    /// The header fields as stored in the `headers` column.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn headers_json(&self) -> String {
        serde_json::to_string(&self.headers).unwrap_or_else(|_| "[]".into())
    }
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours now: run the request, then store its response with this token.
    Run {
        /// Proves the claim is still ours when completing.
        token: i64,
    },
    /// Already answered: replay this.
    Replay(StoredResponse),
    /// Another request with this key is still running (its lease has not expired).
    InFlight,
    /// The key was used for a different request.
    Mismatch,
}

/// A durable store of idempotency records: the only thing the middleware needs. Implement
/// it for another database (or, in tests, a map) and [`Idempotent`](crate::Idempotent)
/// works over it.
///
/// A store also removes expired records by itself (the built-in ones every minute, in the
/// background), so an application never has to.
pub trait Store: Send + Sync + 'static {
    /// Claim `k` for a request with fingerprint `fp`: take it (in flight, leased until
    /// `now + lease`, kept until `now + ttl`), or report what holds it.
    fn claim(
        &self,
        k: &Key,
        fp: &[u8; 32],
        lease: Duration,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;

    /// Store `resp` as the outcome of the claim, if it is still ours
    /// ([`StoreError::LeaseLost`] otherwise).
    fn complete(&self, claimed: &Claimed, resp: &StoredResponse) -> Result<(), StoreError>;

    /// Drop an in-flight claim that will never complete (the store failed mid-request), so
    /// a retry can run at once.
    fn release(&self, claimed: &Claimed) -> Result<(), StoreError>;

    /// Delete expired records; returns how many.
    fn purge_expired(&self) -> Result<u64, StoreError>;

    /// A short name for logs.
    fn kind(&self) -> &'static str;
}

/// A store whose transactions an application may write in, so that a request's effect and
/// its recorded response commit together, or neither does (see
/// [`Idempotent::transactional`](crate::Idempotent::transactional)).
pub trait Transactional: Store {
    /// What work is given to write with: the backend's own transaction.
    type Tx<'t>;

    /// Run `work` in one transaction and commit it; an error or a panic
    /// ([`StoreError::HandlerPanicked`]) rolls it back.
    fn transact<T: Send + 'static>(
        &self,
        work: impl for<'t> FnOnce(&mut Self::Tx<'t>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError>;

    /// Inside `tx`, store `resp` as the claim's outcome ([`StoreError::LeaseLost`] if the
    /// claim is no longer ours, which rolls the whole transaction back).
    fn record(
        tx: &mut Self::Tx<'_>,
        claimed: &Claimed,
        resp: &StoredResponse,
    ) -> Result<(), StoreError>;
}

/// How often the built-in stores delete expired records.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Delete `store`'s expired records every [`PURGE_EVERY`] on a thread of its own, which ends
/// when the store is dropped.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn purge_in_background<S: Store>(store: &Arc<S>) {
    let weak = Arc::downgrade(store);
    let spawned = std::thread::Builder::new()
        .name("idempotency-purge".into())
        .spawn(move || {
            let mut next = std::time::Instant::now() + PURGE_EVERY;
            loop {
                // Short naps, so the thread notices soon that the store is gone.
                std::thread::sleep(Duration::from_secs(1));
                let Some(store) = weak.upgrade() else { return };
                if std::time::Instant::now() < next {
                    continue;
                }
                next = std::time::Instant::now() + PURGE_EVERY;
                match store.purge_expired() {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "expired idempotency keys removed"),
                    Err(err) => warn_unavailable("purging expired idempotency keys", &err),
                }
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(%err, "cannot start the idempotency purge thread; expired keys stay");
    }
}

#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn new_token() -> i64 {
    fastrand::i64(1..i64::MAX)
}

/// What a claim decides from an existing record.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn decide(
    existing_fp: &[u8],
    fp: &[u8; 32],
    done: Option<StoredResponse>,
    lease_until: i64,
    now: i64,
) -> Option<Claim> {
    if existing_fp != fp {
        return Some(Claim::Mismatch);
    }
    match done {
        Some(resp) => Some(Claim::Replay(resp)),
        None if lease_until > now => Some(Claim::InFlight),
        None => None, // lease expired: take it over
    }
}
