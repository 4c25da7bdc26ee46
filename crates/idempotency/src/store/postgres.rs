//! The shared store: PostgreSQL, for several backlog instances (on one machine or many)
//! answering one set of clients. The key claim is one `INSERT … ON CONFLICT DO NOTHING`; a
//! conflicting claim locks the existing row (`FOR UPDATE`) to decide. The schema is created
//! on start by versioned migrations. Connections are pooled and replaced when they fail, so
//! the store recovers by itself when the database comes back.

use super::{
    decide, new_token, now_ms, purge_in_background, Claim, Claimed, Key, Store, StoreError,
    StoredResponse, Transactional,
};
use postgres::{Client, NoTls, Transaction};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections kept open at most.
const MAX_IDLE: usize = 8;

/// Schema migrations, applied in order once each (tracked in `backlog_schema`).
const MIGRATIONS: &[&str] = &["CREATE TABLE idempotency (
        scope       TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        fingerprint BYTEA   NOT NULL,
        token       BIGINT  NOT NULL,
        lease_until BIGINT  NOT NULL,
        expires_at  BIGINT  NOT NULL,
        status      INTEGER,
        headers     TEXT,
        body        BYTEA,
        PRIMARY KEY (scope, key)
    );
    CREATE INDEX idempotency_expires ON idempotency (expires_at);"];

/// PostgreSQL at a URL.
pub struct PgStore {
    config: postgres::Config,
    idle: Mutex<Vec<Client>>,
}

impl PgStore {
    /// Connect, migrate the schema, and purge expired records every minute while the
    /// store lives.
    pub fn open(url: &str) -> Result<Arc<PgStore>, StoreError> {
        let mut config = postgres::Config::from_str(url)?;
        config.connect_timeout(Duration::from_secs(3));
        let store = PgStore {
            config,
            idle: Mutex::new(Vec::new()),
        };
        store.with(migrate)?;
        let store = Arc::new(store);
        purge_in_background(&store);
        Ok(store)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut client = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => self.config.connect(NoTls)?,
        };
        let result = f(&mut client);
        // A connection that failed is dropped; the next call opens a fresh one.
        let broken = matches!(&result, Err(StoreError::Postgres(_))) || client.is_closed();
        if !broken {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(client);
            }
        }
        result
    }
}

fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    // One migrator at a time across every instance starting together.
    tx.execute("SELECT pg_advisory_xact_lock(7263529)", &[])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS backlog_schema (version INTEGER NOT NULL)")?;
    let version: i32 = tx
        .query_opt("SELECT version FROM backlog_schema", &[])?
        .map(|r| r.get(0))
        .unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql)?;
        tracing::info!(version = i + 1, "postgres schema migrated");
    }
    tx.execute("DELETE FROM backlog_schema", &[])?;
    tx.execute(
        "INSERT INTO backlog_schema (version) VALUES ($1)",
        &[&(MIGRATIONS.len() as i32)],
    )?;
    tx.commit()?;
    Ok(())
}

impl Store for PgStore {
    fn claim(
        &self,
        k: &Key,
        fp: &[u8; 32],
        lease: Duration,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        self.with(|client| {
            let mut tx = client.transaction()?;
            let now = now_ms();
            let token = new_token();
            let lease_until = now + lease.as_millis() as i64;
            let expires_at = now + ttl.as_millis() as i64;
            let inserted = tx.query_opt(
                "INSERT INTO idempotency (scope, key, fingerprint, token, lease_until, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING RETURNING token",
                &[&k.scope, &k.key, &&fp[..], &token, &lease_until, &expires_at],
            )?;
            if inserted.is_some() {
                tx.commit()?;
                return Ok(Claim::Run { token });
            }
            let row = tx.query_one(
                "SELECT fingerprint, lease_until, expires_at, status, headers, body
                 FROM idempotency WHERE scope = $1 AND key = $2 FOR UPDATE",
                &[&k.scope, &k.key],
            )?;
            let efp: Vec<u8> = row.get(0);
            let existing_expires: i64 = row.get(2);
            let done = StoredResponse::from_columns(
                row.get::<_, Option<i32>>(3).map(i64::from),
                row.get(4),
                row.get(5),
            );
            if existing_expires > now {
                if let Some(claim) = decide(&efp, fp, done, row.get(1), now) {
                    tx.commit()?;
                    return Ok(claim);
                }
            }
            tx.execute(
                "UPDATE idempotency SET fingerprint = $3, token = $4, lease_until = $5,
                    expires_at = $6, status = NULL, headers = NULL, body = NULL
                 WHERE scope = $1 AND key = $2",
                &[&k.scope, &k.key, &&fp[..], &token, &lease_until, &expires_at],
            )?;
            tx.commit()?;
            Ok(Claim::Run { token })
        })
    }

    fn complete(&self, claimed: &Claimed, resp: &StoredResponse) -> Result<(), StoreError> {
        self.with(|client| {
            let mut tx = client.transaction()?;
            Self::record(&mut tx, claimed, resp)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn release(&self, claimed: &Claimed) -> Result<(), StoreError> {
        self.with(|client| {
            client.execute(
                "DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND token = $3 AND status IS NULL",
                &[&claimed.key.scope, &claimed.key.key, &claimed.token],
            )?;
            Ok(())
        })
    }

    fn purge_expired(&self) -> Result<u64, StoreError> {
        self.with(|client| {
            Ok(client.execute(
                "DELETE FROM idempotency WHERE expires_at <= $1",
                &[&now_ms()],
            )?)
        })
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}

impl Transactional for PgStore {
    /// A transaction on a pooled connection.
    type Tx<'t> = Transaction<'t>;

    fn transact<T: Send + 'static>(
        &self,
        work: impl for<'t> FnOnce(&mut Transaction<'t>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.with(|client| {
            let mut tx = client.transaction()?;
            // A panic drops the transaction uncommitted: rolled back.
            let out = catch_unwind(AssertUnwindSafe(|| work(&mut tx)))
                .unwrap_or(Err(StoreError::HandlerPanicked))?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn record(
        tx: &mut Transaction<'_>,
        claimed: &Claimed,
        resp: &StoredResponse,
    ) -> Result<(), StoreError> {
        let n = tx.execute(
            "UPDATE idempotency SET status = $1, headers = $2, body = $3
             WHERE scope = $4 AND key = $5 AND token = $6 AND status IS NULL",
            &[
                &(resp.status as i32),
                &resp.headers_json(),
                &resp.body,
                &claimed.key.scope,
                &claimed.key.key,
                &claimed.token,
            ],
        )?;
        if n == 0 {
            return Err(StoreError::LeaseLost);
        }
        Ok(())
    }
}
