//! The comments API of the built-in app: the seeds' example of a non-idempotent call, and
//! the app's own table beside the idempotency records.
//!
//! `POST /comments` inserts a row: without an `Idempotency-Key` a retried POST inserts it
//! twice; with one, the row and the stored response commit in one transaction (the store's
//! own, through [`Transactional`]), so it is inserted once however often the request is
//! retried, on whichever instance. `PUT /comments/{client_id}` is the upsert the notes
//! recommend: idempotent by nature. The table belongs to this app, not to the idempotency
//! library: [`CommentsTx`] writes it in a SQLite savepoint or a PostgreSQL transaction.

// Refusals travel as whole `Response`s on paths that are never hot.
#![allow(clippy::result_large_err)]

use backlog_server::{Blocking, Router};
use h1::{Request, Response};
use idempotency::middleware::problem;
use idempotency::{IdempotencyConfig, Idempotent, StoreError, Transactional};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest comment text accepted, in characters.
pub const MAX_TEXT: usize = 10_000;

/// A comment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// The comments table, written inside a store transaction.
pub trait CommentsTx {
    /// Create the table if it is missing.
    fn create_table(&mut self) -> Result<(), StoreError>;
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        .to_string()
}

impl CommentsTx for rusqlite::Savepoint<'_> {
    fn create_table(&mut self) -> Result<(), StoreError> {
        self.execute_batch(
            "CREATE TABLE IF NOT EXISTS comments (
                id         INTEGER PRIMARY KEY AUTOINCREMENT,
                client_id  TEXT UNIQUE,
                text       TEXT    NOT NULL,
                created_at INTEGER NOT NULL
            )",
        )?;
        Ok(())
    }

    fn insert_comment(&mut self, text: &str) -> Result<Comment, StoreError> {
        let now = now_ms();
        self.execute(
            "INSERT INTO comments (text, created_at) VALUES (?1, ?2)",
            rusqlite::params![text, now],
        )?;
        Ok(Comment {
            id: self.last_insert_rowid(),
            client_id: None,
            text: text.to_string(),
            created_at: rfc3339(now),
        })
    }

    fn list_comments(&mut self, after: i64, limit: i64) -> Result<Vec<Comment>, StoreError> {
        let mut stmt = self.prepare_cached(
            "SELECT id, client_id, text, created_at FROM comments WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![after, limit], sqlite_comment)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn upsert_comment(
        &mut self,
        client_id: &str,
        text: &str,
    ) -> Result<(Comment, bool), StoreError> {
        use rusqlite::OptionalExtension;
        let existed: Option<i64> = self
            .query_row(
                "SELECT id FROM comments WHERE client_id = ?1",
                [client_id],
                |r| r.get(0),
            )
            .optional()?;
        self.execute(
            "INSERT INTO comments (client_id, text, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (client_id) DO UPDATE SET text = excluded.text",
            rusqlite::params![client_id, text, now_ms()],
        )?;
        let c = self.query_row(
            "SELECT id, client_id, text, created_at FROM comments WHERE client_id = ?1",
            [client_id],
            sqlite_comment,
        )?;
        Ok((c, existed.is_none()))
    }
}

fn sqlite_comment(row: &rusqlite::Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: row.get(0)?,
        client_id: row.get(1)?,
        text: row.get(2)?,
        created_at: rfc3339(row.get(3)?),
    })
}

impl CommentsTx for postgres::Transaction<'_> {
    fn create_table(&mut self) -> Result<(), StoreError> {
        // One creator at a time across instances starting together.
        self.execute("SELECT pg_advisory_xact_lock(7263530)", &[])?;
        self.batch_execute(
            "CREATE TABLE IF NOT EXISTS comments (
                id         BIGSERIAL PRIMARY KEY,
                client_id  TEXT UNIQUE,
                text       TEXT   NOT NULL,
                created_at BIGINT NOT NULL
            )",
        )?;
        Ok(())
    }

    fn insert_comment(&mut self, text: &str) -> Result<Comment, StoreError> {
        let row = self.query_one(
            "INSERT INTO comments (text, created_at) VALUES ($1, $2)
             RETURNING id, client_id, text, created_at",
            &[&text, &now_ms()],
        )?;
        Ok(pg_comment(&row))
    }

    fn list_comments(&mut self, after: i64, limit: i64) -> Result<Vec<Comment>, StoreError> {
        let rows = self.query(
            "SELECT id, client_id, text, created_at FROM comments WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit],
        )?;
        Ok(rows.iter().map(pg_comment).collect())
    }

    fn upsert_comment(
        &mut self,
        client_id: &str,
        text: &str,
    ) -> Result<(Comment, bool), StoreError> {
        // xmax = 0 only on a freshly inserted row.
        let row = self.query_one(
            "INSERT INTO comments (client_id, text, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (client_id) DO UPDATE SET text = excluded.text
             RETURNING id, client_id, text, created_at, (xmax = 0) AS inserted",
            &[&client_id, &text, &now_ms()],
        )?;
        Ok((pg_comment(&row), row.get(4)))
    }
}

fn pg_comment(row: &postgres::Row) -> Comment {
    Comment {
        id: row.get(0),
        client_id: row.get(1),
        text: row.get(2),
        created_at: rfc3339(row.get(3)),
    }
}

#[derive(serde::Deserialize)]
struct NewComment {
    text: String,
}

/// Create the comments table in `store`, then add the comments routes to `router`.
/// `delay` holds each POST inside its transaction (a hook for crash tests and the lab; zero
/// in normal use).
pub fn routes<S>(
    router: Router,
    store: Arc<S>,
    cfg: IdempotencyConfig,
    delay: Duration,
) -> Result<Router, StoreError>
where
    S: Transactional,
    for<'t> S::Tx<'t>: CommentsTx,
{
    store.transact(|tx| tx.create_table())?;
    let (list_store, put_store) = (store.clone(), store.clone());
    Ok(router
        .post(
            "/comments",
            Idempotent::transactional(store, cfg, move |req: &Request, tx: &mut S::Tx<'_>| {
                create(req, tx, delay)
            })
            .validate(|req| parse_text(req).map(|_| ())),
        )
        .get(
            "/comments",
            Blocking(move |req: Request| list(&*list_store, &req)),
        )
        .prefix(
            h1::Method::Put,
            "/comments/",
            Blocking(move |req: Request| upsert(&*put_store, &req)),
        ))
}

fn parse_text(req: &Request) -> Result<String, Response> {
    let parsed: NewComment = serde_json::from_slice(req.body()).map_err(|e| {
        problem(
            400,
            "Invalid comment",
            &format!("expected JSON {{\"text\": …}}: {e}"),
        )
    })?;
    if parsed.text.chars().count() > MAX_TEXT {
        return Err(problem(
            400,
            "Invalid comment",
            "text is longer than 10000 characters",
        ));
    }
    if parsed.text.trim().is_empty() {
        return Err(problem(400, "Invalid comment", "text is empty"));
    }
    Ok(parsed.text)
}

fn create(req: &Request, tx: &mut dyn CommentsTx, delay: Duration) -> Result<Response, StoreError> {
    let text = match parse_text(req) {
        Ok(t) => t,
        Err(resp) => return Ok(resp),
    };
    // A store error propagates: the transaction rolls back and the middleware answers 503.
    let comment = tx.insert_comment(&text)?;
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    Ok(
        Response::json_bytes(201, serde_json::to_vec(&comment).unwrap_or_default())
            .header("Location", format!("/comments/{}", comment.id)),
    )
}

fn list<S>(store: &S, req: &Request) -> Response
where
    S: Transactional,
    for<'t> S::Tx<'t>: CommentsTx,
{
    let after = req
        .query_param("after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0i64);
    let limit = req
        .query_param("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100i64)
        .clamp(1, 1000);
    match store.transact(move |tx| tx.list_comments(after, limit)) {
        Ok(rows) => Response::json_bytes(200, serde_json::to_vec(&rows).unwrap_or_default()),
        Err(err) => store_error(err),
    }
}

fn upsert<S>(store: &S, req: &Request) -> Response
where
    S: Transactional,
    for<'t> S::Tx<'t>: CommentsTx,
{
    let client_id = req.path().trim_start_matches("/comments/").to_string();
    if client_id.is_empty() || client_id.contains('/') {
        return problem(400, "Invalid comment id", "PUT /comments/{client_id}");
    }
    let text = match parse_text(req) {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    match store.transact(move |tx| tx.upsert_comment(&client_id, &text)) {
        Ok((comment, created)) => Response::json_bytes(
            if created { 201 } else { 200 },
            serde_json::to_vec(&comment).unwrap_or_default(),
        ),
        Err(err) => store_error(err),
    }
}

fn store_error(err: StoreError) -> Response {
    idempotency::store::warn_unavailable("store unavailable", &err);
    problem(
        503,
        "Store unavailable",
        "the data store cannot be reached; retry shortly",
    )
    .header("Retry-After", "1")
}
