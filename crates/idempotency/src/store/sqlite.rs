//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, a few connections shared
//! by the threads that run handlers. Claims take the write lock up front (`BEGIN
//! IMMEDIATE`), so two requests with one key are serialised by SQLite itself.

use super::{
    decide, new_token, now_ms, rfc3339, Claim, Comment, KeyRef, Store, StoreError, StoredResponse,
    Tx, Work,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Connections kept open.
const CONNECTIONS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS idempotency (
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint BLOB    NOT NULL,
    token       INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    status      INTEGER,
    headers     TEXT,
    body        BLOB,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency (expires_at);
CREATE TABLE IF NOT EXISTS comments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id  TEXT UNIQUE,
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// SQLite under a data directory.
pub struct SqliteStore {
    pool: Mutex<Vec<Connection>>,
    available: Condvar,
}

impl SqliteStore {
    /// Open (creating) `dir/backlog.sqlite3`.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Setup(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("backlog.sqlite3");
        let mut conns = Vec::new();
        for _ in 0..CONNECTIONS {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            // Switching to WAL takes an exclusive lock without waiting on the busy handler:
            // several processes starting on one directory retry instead of failing.
            retry_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
            // FULL: a commit is on disk before it is acknowledged; kill -9 loses nothing.
            conn.pragma_update(None, "synchronous", "FULL")?;
            conns.push(conn);
        }
        retry_busy(|| conns[0].execute_batch(SCHEMA))?;
        Ok(SqliteStore {
            pool: Mutex::new(conns),
            available: Condvar::new(),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(c) = pool.pop() {
                    break c;
                }
                pool = self.available.wait(pool).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = f(&mut conn);
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        self.available.notify_one();
        result
    }
}

/// Retry `f` while SQLite reports the database busy or locked, for up to 10 s.
fn retry_busy(mut f: impl FnMut() -> rusqlite::Result<()>) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn save(
    tx: &rusqlite::Transaction<'_>,
    k: KeyRef<'_>,
    token: i64,
    resp: &StoredResponse,
) -> Result<(), StoreError> {
    let headers = resp.headers_json();
    let n = tx.execute(
        "UPDATE idempotency SET status = ?1, headers = ?2, body = ?3
         WHERE scope = ?4 AND key = ?5 AND token = ?6 AND status IS NULL",
        params![
            resp.status as i64,
            headers,
            resp.body,
            k.scope,
            k.key,
            token
        ],
    )?;
    if n == 0 {
        return Err(StoreError::LeaseLost);
    }
    Ok(())
}

/// What an existing, unexpired record for `k` says, if it settles the claim.
fn existing_claim(
    conn: &Connection,
    k: KeyRef<'_>,
    fp: &[u8; 32],
) -> Result<Option<Claim>, StoreError> {
    let now = now_ms();
    let existing = conn
        .query_row(
            "SELECT fingerprint, lease_until, expires_at, status, headers, body
             FROM idempotency WHERE scope = ?1 AND key = ?2",
            params![k.scope, k.key],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    StoredResponse::from_columns(r.get(3)?, r.get(4)?, r.get(5)?),
                ))
            },
        )
        .optional()?;
    Ok(match existing {
        Some((efp, lease_until, expires_at, done)) if expires_at > now => {
            decide(&efp, fp, done, lease_until, now)
        }
        _ => None,
    })
}

struct SqliteTx<'a, 'c>(&'a rusqlite::Transaction<'c>);

fn comment_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: row.get(0)?,
        client_id: row.get(1)?,
        text: row.get(2)?,
        created_at: rfc3339(row.get(3)?),
    })
}

impl Tx for SqliteTx<'_, '_> {
    fn insert_comment(&mut self, text: &str) -> Result<Comment, StoreError> {
        let now = now_ms();
        self.0.execute(
            "INSERT INTO comments (text, created_at) VALUES (?1, ?2)",
            params![text, now],
        )?;
        Ok(Comment {
            id: self.0.last_insert_rowid(),
            client_id: None,
            text: text.to_string(),
            created_at: rfc3339(now),
        })
    }

    fn list_comments(&mut self, after: i64, limit: i64) -> Result<Vec<Comment>, StoreError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id, client_id, text, created_at FROM comments WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit], comment_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn upsert_comment(
        &mut self,
        client_id: &str,
        text: &str,
    ) -> Result<(Comment, bool), StoreError> {
        let existed: Option<i64> = self
            .0
            .query_row(
                "SELECT id FROM comments WHERE client_id = ?1",
                [client_id],
                |r| r.get(0),
            )
            .optional()?;
        self.0.execute(
            "INSERT INTO comments (client_id, text, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (client_id) DO UPDATE SET text = excluded.text",
            params![client_id, text, now_ms()],
        )?;
        let c = self.0.query_row(
            "SELECT id, client_id, text, created_at FROM comments WHERE client_id = ?1",
            [client_id],
            comment_row,
        )?;
        Ok((c, existed.is_none()))
    }
}

impl Store for SqliteStore {
    fn claim(
        &self,
        k: KeyRef<'_>,
        fp: &[u8; 32],
        lease: Duration,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        self.with(|conn| {
            // First a plain read: in WAL mode it does not wait for a writer, so a repeat of
            // a request whose handler holds the write lock hears 409 at once.
            if let Some(claim) = existing_claim(conn, k, fp)? {
                return Ok(claim);
            }
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(claim) = existing_claim(&tx, k, fp)? {
                return Ok(claim);
            }
            let now = now_ms();
            let token = new_token();
            tx.execute(
                "INSERT INTO idempotency (scope, key, fingerprint, token, lease_until, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                    token = excluded.token, lease_until = excluded.lease_until,
                    expires_at = excluded.expires_at, status = NULL, headers = NULL, body = NULL",
                params![
                    k.scope,
                    k.key,
                    &fp[..],
                    token,
                    now + lease.as_millis() as i64,
                    now + ttl.as_millis() as i64
                ],
            )?;
            tx.commit()?;
            Ok(Claim::Run { token })
        })
    }

    fn transact(
        &self,
        record: Option<(KeyRef<'_>, i64)>,
        work: Work<'_>,
    ) -> Result<StoredResponse, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let resp = work(&mut SqliteTx(&tx))?;
            if let Some((k, token)) = record {
                save(&tx, k, token, &resp)?;
            }
            tx.commit()?;
            Ok(resp)
        })
    }

    fn complete(&self, k: KeyRef<'_>, token: i64, resp: &StoredResponse) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            save(&tx, k, token, resp)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn release(&self, k: KeyRef<'_>, token: i64) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND token = ?3 AND status IS NULL",
                params![k.scope, k.key, token],
            )?;
            Ok(())
        })
    }

    fn purge_expired(&self) -> Result<u64, StoreError> {
        self.with(|conn| {
            let n = conn.execute("DELETE FROM idempotency WHERE expires_at <= ?1", [now_ms()])?;
            Ok(n as u64)
        })
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}
