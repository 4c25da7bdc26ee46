//! Durable storage for idempotency records and for the effects they guard.
//!
//! One trait, two stores: [`sqlite`] (embedded, WAL, `synchronous=FULL`: what committed
//! survives `kill -9`) and [`postgres`] (one database shared by every backlog instance, so a
//! retry landing on another instance is still answered once). Times are Unix milliseconds.

pub mod postgres;
pub mod sqlite;

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {}", crate::throttle::chain(.0))]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed or is unreachable (with the server's own message, which the
    /// client library keeps in the error's source).
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
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    /// Whose key it is.
    pub scope: &'a str,
    /// The key.
    pub key: &'a str,
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

/// A comment, the built-in app's example of a non-idempotent insert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// Row id, ascending in insertion order.
    pub id: i64,
    /// The client-chosen id of an upserted comment (`PUT /comments/{client_id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The text.
    pub text: String,
    /// When it was stored, RFC 3339.
    pub created_at: String,
}

/// Work done inside a store transaction.
pub trait Tx {
    /// Insert a comment.
    fn insert_comment(&mut self, text: &str) -> Result<Comment, StoreError>;
    /// Comments with id > `after`, oldest first, at most `limit`.
    fn list_comments(&mut self, after: i64, limit: i64) -> Result<Vec<Comment>, StoreError>;
    /// Insert or rewrite the comment with this client id; true if it was created.
    fn upsert_comment(
        &mut self,
        client_id: &str,
        text: &str,
    ) -> Result<(Comment, bool), StoreError>;
}

/// Work to run in one transaction.
pub type Work<'a> = &'a mut dyn FnMut(&mut dyn Tx) -> Result<StoredResponse, StoreError>;

/// A durable store of idempotency records (and the comments they guard).
pub trait Store: Send + Sync + 'static {
    /// Claim `k` for a request with fingerprint `fp`: take it (in flight, leased until
    /// `now + lease`, kept until `now + ttl`), or report what holds it.
    fn claim(
        &self,
        k: KeyRef<'_>,
        fp: &[u8; 32],
        lease: Duration,
        ttl: Duration,
    ) -> Result<Claim, StoreError>;

    /// Run `work` in one transaction. With `record`, the response it returns is stored under
    /// that claimed key in the same transaction — or, if the claim is no longer ours, the
    /// whole transaction rolls back ([`StoreError::LeaseLost`]).
    fn transact(
        &self,
        record: Option<(KeyRef<'_>, i64)>,
        work: Work<'_>,
    ) -> Result<StoredResponse, StoreError>;

    /// Store `resp` as the outcome of claimed `k` (for handlers that do not write through
    /// the store, and for a handler that panicked).
    fn complete(&self, k: KeyRef<'_>, token: i64, resp: &StoredResponse) -> Result<(), StoreError>;

    /// Drop an in-flight claim that will never complete (the store failed mid-request), so
    /// a retry can run at once.
    fn release(&self, k: KeyRef<'_>, token: i64) -> Result<(), StoreError>;

    /// Delete expired records; returns how many.
    fn purge_expired(&self) -> Result<u64, StoreError>;

    /// A short name for logs.
    fn kind(&self) -> &'static str;
}

/// Open the store named by `spec`: a `postgres://` URL, or SQLite under `data_dir`.
/// Fails (for the binary: one line, exit 2) when it cannot be reached or set up.
pub fn open(spec: Option<&str>, data_dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    match spec {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(postgres::PgStore::open(url)?))
        }
        Some(other) => Err(StoreError::Setup(format!(
            "unknown store {other:?}: use postgres://… (or omit --store for SQLite)"
        ))),
        None => Ok(Arc::new(sqlite::SqliteStore::open(data_dir)?)),
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

pub(crate) fn new_token() -> i64 {
    fastrand::i64(1..i64::MAX)
}

/// What a claim decides from an existing record.
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
