//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, written by one thread with
//! group commit.
//!
//! SQLite lets one connection write at a time. With a connection per handler thread, every
//! write waited for the file lock with SQLite's busy handler — sleeps that grow to 100 ms —
//! and under 64 concurrent clients some waited past the 10 s busy timeout and failed with
//! "database is locked" (a 503). Here every write goes to one writer thread, which takes the
//! writes that queued while it was busy, runs each in a savepoint of one transaction (a
//! failing write rolls back alone), commits once — one fsync for the whole batch — and only
//! then answers each caller. Nobody waits on a lock, and the fsync, the real cost of a
//! durable write, is shared. Reads (the fast path of a claim) use their own connections:
//! WAL readers never wait for the writer.

use super::{
    decide, new_token, now_ms, purge_in_background, Claim, Claimed, Key, Store, StoreError,
    StoredResponse, Transactional,
};
use rusqlite::{params, Connection, OptionalExtension, Savepoint, TransactionBehavior};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Read connections kept open.
const READERS: usize = 4;
/// The most writes one transaction takes.
const MAX_BATCH: usize = 256;

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
";

/// Tells a caller how its write ended, once the batch's commit is known.
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A write: runs inside its savepoint; says whether to keep it, and how to answer.
type Job = Box<dyn FnOnce(&mut Savepoint<'_>) -> (bool, Reply) + Send>;

/// SQLite under a data directory.
pub struct SqliteStore {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    available: Condvar,
    writer: Mutex<SyncSender<Job>>,
}

impl SqliteStore {
    /// Open (creating) `dir/backlog.sqlite3`, start its writer, and purge expired records
    /// every minute while the store lives.
    pub fn open(dir: &Path) -> Result<Arc<SqliteStore>, StoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(StoreError::Setup(format!(
                "{} is not a directory (the data directory holds backlog.sqlite3)",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Setup(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("backlog.sqlite3");
        let writer = connect(&path)?;
        retry_busy(|| writer.execute_batch(SCHEMA))?;
        let readers = (0..READERS)
            .map(|_| connect(&path))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = sync_channel::<Job>(4 * MAX_BATCH);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|e| StoreError::Setup(format!("cannot start the SQLite writer: {e}")))?;
        let store = Arc::new(SqliteStore {
            path,
            readers: Mutex::new(readers),
            available: Condvar::new(),
            writer: Mutex::new(tx),
        });
        purge_in_background(&store);
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = {
            let mut pool = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(c) = pool.pop() {
                    break c;
                }
                pool = self.available.wait(pool).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = f(&conn);
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        self.available.notify_one();
        result
    }

    /// Run `work` in the writer's next batch and wait until that batch committed.
    fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Savepoint<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done, result) = sync_channel::<Result<T, StoreError>>(1);
        let job: Job = Box::new(move |sp| {
            let outcome = catch_unwind(AssertUnwindSafe(|| work(sp)))
                .unwrap_or(Err(StoreError::HandlerPanicked));
            let keep = outcome.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = done.send(commit.and(outcome));
            });
            (keep, reply)
        });
        let sender = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        sender
            .send(job)
            .map_err(|_| StoreError::Setup("the SQLite writer has stopped".into()))?;
        result.recv().unwrap_or_else(|_| {
            Err(StoreError::Setup(
                "the write was not committed (its batch failed)".into(),
            ))
        })
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // Other processes (`serve --processes N`) write the same file: wait for them.
    conn.busy_timeout(Duration::from_secs(10))?;
    // Switching to WAL takes an exclusive lock without waiting on the busy handler:
    // several processes starting on one directory retry instead of failing.
    retry_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))?;
    // FULL: a commit is on disk before it is acknowledged; kill -9 loses nothing.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// The write-ahead log's size kept after a checkpoint (SQLite's `journal_size_limit`): a
/// burst that grew it gives the space back once its pages are in the database.
const WAL_KEPT_BYTES: i64 = 64 * 1024 * 1024;

/// The writer: batches of queued writes, one transaction and one fsync each.
///
/// After a failed batch (a full disk, most often) the next committed batch is followed by a
/// truncating checkpoint: while the disk was full the checkpoints that move the log's pages
/// into the database could not grow it, so the log kept growing into whatever space was
/// freed; once a commit goes through again, the checkpoint moves them and gives the log's
/// space back, instead of leaving a log that fills the disk again.
fn write_loop(mut conn: Connection, jobs: Receiver<Job>) {
    // One warning a second at most, with how many were left out: at 32 clients a disk full
    // failed ~450 batches a second, each a warning.
    static ROLLBACKS: crate::Throttle = crate::Throttle::new(Duration::from_secs(1));
    let _ = conn.pragma_update(None, "journal_size_limit", WAL_KEPT_BYTES);
    let mut recovering = false;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let committed = (|| -> Result<(), StoreError> {
            let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for job in batch.drain(..) {
                let mut sp = tx.savepoint()?;
                let (keep, reply) = job(&mut sp);
                replies.push(reply);
                if keep {
                    sp.commit()?;
                } else {
                    sp.rollback()?;
                }
            }
            tx.commit()?;
            Ok(())
        })();
        match committed {
            Ok(()) => {
                replies.into_iter().for_each(|r| r(Ok(())));
                if recovering {
                    recovering = !checkpoint_truncate(&conn);
                    if !recovering {
                        tracing::info!("SQLite store writes again; its write-ahead log is checkpointed and truncated");
                    }
                }
            }
            Err(err) => {
                recovering = true;
                // Jobs never run (the transaction did not start) hear the error too.
                let text = err.to_string();
                for reply in replies {
                    reply(Err(StoreError::Setup(format!("commit failed: {text}"))));
                }
                // Jobs the failed batch never ran are dropped: their callers hear so.
                drop(batch);
                if let Some(suppressed) = ROLLBACKS.admit(std::time::Instant::now()) {
                    tracing::warn!(%err, suppressed, "SQLite batch rolled back");
                }
            }
        }
    }
}

/// Move every page of the write-ahead log into the database and truncate the log to zero
/// bytes. True when it completed (false when a reader held it back, or the disk is still
/// too full for the database to grow).
fn checkpoint_truncate(conn: &Connection) -> bool {
    // The row is (busy, log frames, frames checkpointed); busy = 0 means it completed.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
        row.get::<_, i64>(0)
    })
    .is_ok_and(|busy| busy == 0)
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

/// What an existing, unexpired record for `k` says, if it settles the claim.
fn existing_claim(conn: &Connection, k: &Key, fp: &[u8; 32]) -> Result<Option<Claim>, StoreError> {
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

impl Store for SqliteStore {
    fn claim(
        &self,
        k: &Key,
        fp: &[u8; 32],
        lease: Duration,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        // First a plain read: it does not wait for the writer, so a repeat of a request that
        // is still running hears 409 at once, and a replay costs no write.
        if let Some(claim) = self.read(|conn| existing_claim(conn, k, fp))? {
            return Ok(claim);
        }
        let (k, fp) = (k.clone(), *fp);
        self.write(move |sp| {
            if let Some(claim) = existing_claim(sp, &k, &fp)? {
                return Ok(claim);
            }
            let now = now_ms();
            let token = new_token();
            sp.execute(
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
            Ok(Claim::Run { token })
        })
    }

    fn complete(&self, claimed: &Claimed, resp: &StoredResponse) -> Result<(), StoreError> {
        let (claimed, resp) = (claimed.clone(), resp.clone());
        self.write(move |sp| Self::record(sp, &claimed, &resp))
    }

    fn release(&self, claimed: &Claimed) -> Result<(), StoreError> {
        let c = claimed.clone();
        self.write(move |sp| {
            sp.execute(
                "DELETE FROM idempotency WHERE scope = ?1 AND key = ?2 AND token = ?3 AND status IS NULL",
                params![c.key.scope, c.key.key, c.token],
            )?;
            Ok(())
        })
    }

    fn purge_expired(&self) -> Result<u64, StoreError> {
        self.write(|sp| {
            let n = sp.execute("DELETE FROM idempotency WHERE expires_at <= ?1", [now_ms()])?;
            Ok(n as u64)
        })
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

impl Transactional for SqliteStore {
    /// A savepoint in the writer's batch: it derefs to a `rusqlite::Connection` for
    /// `execute` and `query_row`; the work's writes and the record commit together.
    type Tx<'t> = Savepoint<'t>;

    fn transact<T: Send + 'static>(
        &self,
        work: impl for<'t> FnOnce(&mut Savepoint<'t>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write(work)
    }

    fn record(
        tx: &mut Savepoint<'_>,
        claimed: &Claimed,
        resp: &StoredResponse,
    ) -> Result<(), StoreError> {
        let n = tx.execute(
            "UPDATE idempotency SET status = ?1, headers = ?2, body = ?3
             WHERE scope = ?4 AND key = ?5 AND token = ?6 AND status IS NULL",
            params![
                resp.status as i64,
                resp.headers_json(),
                resp.body,
                claimed.key.scope,
                claimed.key.key,
                claimed.token
            ],
        )?;
        if n == 0 {
            return Err(StoreError::LeaseLost);
        }
        Ok(())
    }
}
