//! The comments API of the built-in app: the seeds' example of a non-idempotent call, and
//! the app's own table beside the idempotency records.
//!
//! `POST /comments` inserts a row: without an `Idempotency-Key` a retried POST inserts it
//! twice; with one, the row and the stored response commit in one transaction (the store's
//! own, through [`Transactional`]), so it is inserted once however often the request is
//! retried, on whichever instance. `PUT /comments/{client_id}` is the upsert the notes
//! recommend: idempotent by nature. The table belongs to this app, not to the idempotency
//! library: [`CommentsTx`] writes it in a SQLite savepoint or a PostgreSQL transaction.
//!
//! A comment is addressed as `/comments/{key}` ([`CommentKey`]): all digits is the id the
//! server gave it (what POST's `Location` names), anything else the id a client chose with
//! PUT. Both read with GET. PUT on a digits key rewrites that comment and is 404 if there is
//! none — the server assigns numbers, so a client-chosen id may not be all digits — and PUT on
//! any other key creates or rewrites the comment with that client id.

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
    /// The comment `key` names, if there is one.
    fn get_comment(&mut self, key: &CommentKey) -> Result<Option<Comment>, StoreError>;
    /// Rewrite the text of comment `id`; `None` if there is no such comment.
    fn update_comment(&mut self, id: i64, text: &str) -> Result<Option<Comment>, StoreError>;
}

/// How a URL names a comment: `/comments/{key}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentKey {
    /// All digits: the id the server assigned (POST's `Location`).
    Id(i64),
    /// Anything else: the id a client chose with PUT.
    Client(String),
}

impl CommentKey {
    /// Read a decoded path segment; `None` for an empty one or digits past i64.
    pub fn parse(segment: &str) -> Option<CommentKey> {
        if segment.is_empty() {
            None
        } else if segment.bytes().all(|b| b.is_ascii_digit()) {
            segment.parse().ok().map(CommentKey::Id)
        } else {
            Some(CommentKey::Client(segment.to_string()))
        }
    }
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

    fn get_comment(&mut self, key: &CommentKey) -> Result<Option<Comment>, StoreError> {
        use rusqlite::OptionalExtension;
        let found = match key {
            CommentKey::Id(id) => self.query_row(
                "SELECT id, client_id, text, created_at FROM comments WHERE id = ?1",
                [id],
                sqlite_comment,
            ),
            CommentKey::Client(client_id) => self.query_row(
                "SELECT id, client_id, text, created_at FROM comments WHERE client_id = ?1",
                [client_id],
                sqlite_comment,
            ),
        };
        Ok(found.optional()?)
    }

    fn update_comment(&mut self, id: i64, text: &str) -> Result<Option<Comment>, StoreError> {
        let changed = self.execute(
            "UPDATE comments SET text = ?2 WHERE id = ?1",
            rusqlite::params![id, text],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.get_comment(&CommentKey::Id(id))
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

    fn get_comment(&mut self, key: &CommentKey) -> Result<Option<Comment>, StoreError> {
        let row = match key {
            CommentKey::Id(id) => self.query_opt(
                "SELECT id, client_id, text, created_at FROM comments WHERE id = $1",
                &[id],
            )?,
            CommentKey::Client(client_id) => self.query_opt(
                "SELECT id, client_id, text, created_at FROM comments WHERE client_id = $1",
                &[client_id],
            )?,
        };
        Ok(row.as_ref().map(pg_comment))
    }

    fn update_comment(&mut self, id: i64, text: &str) -> Result<Option<Comment>, StoreError> {
        let row = self.query_opt(
            "UPDATE comments SET text = $2 WHERE id = $1
             RETURNING id, client_id, text, created_at",
            &[&id, &text],
        )?;
        Ok(row.as_ref().map(pg_comment))
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
    let (list_store, get_store, put_store) = (store.clone(), store.clone(), store.clone());
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
        .get(
            "/comments/{key}",
            Blocking(move |req: Request| get_one(&*get_store, &req)),
        )
        .put(
            "/comments/{key}",
            Blocking(move |req: Request| put(&*put_store, &req)),
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
    // Absent: from the start, 100 at a time; a limit past 1,000 is 1,000. Present but not an
    // integer: refused, rather than quietly answered as if it were absent.
    let number = |name: &str, default: i64| match req.query_param(name) {
        None => Ok(default),
        Some(v) => v.parse::<i64>().map_err(|_| {
            problem(
                400,
                "Invalid query",
                &format!("{name} must be an integer, not {v:?}"),
            )
        }),
    };
    let (after, limit) = match (number("after", 0), number("limit", 100)) {
        (Ok(after), Ok(limit)) => (after, limit.clamp(1, 1000)),
        (Err(refused), _) | (_, Err(refused)) => return refused,
    };
    match store.transact(move |tx| tx.list_comments(after, limit)) {
        Ok(rows) => Response::json_bytes(200, serde_json::to_vec(&rows).unwrap_or_default()),
        Err(err) => store_error(err),
    }
}

/// The key in `/comments/{key}`, or the 404 for a key that can name nothing.
fn key_of(req: &Request) -> Result<CommentKey, Response> {
    req.param("key")
        .and_then(CommentKey::parse)
        .ok_or_else(|| not_found(req.param("key").unwrap_or("")))
}

fn not_found(key: &str) -> Response {
    problem(
        404,
        "No such comment",
        &format!("no comment is named {key:?}"),
    )
}

/// `/comments/{key}` as a Location value: the key percent-encoded but for RFC 3986's
/// unreserved bytes, so any client id makes a valid header.
fn location(key: &str) -> String {
    let mut out = String::from("/comments/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn get_one<S>(store: &S, req: &Request) -> Response
where
    S: Transactional,
    for<'t> S::Tx<'t>: CommentsTx,
{
    let key = match key_of(req) {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    let shown = req.param("key").unwrap_or("").to_string();
    match store.transact(move |tx| tx.get_comment(&key)) {
        Ok(Some(comment)) => {
            Response::json_bytes(200, serde_json::to_vec(&comment).unwrap_or_default())
        }
        Ok(None) => not_found(&shown),
        Err(err) => store_error(err),
    }
}

/// PUT: rewrite comment N, or create or rewrite the comment a client named.
fn put<S>(store: &S, req: &Request) -> Response
where
    S: Transactional,
    for<'t> S::Tx<'t>: CommentsTx,
{
    let key = match key_of(req) {
        Ok(k) => k,
        Err(resp) => return resp,
    };
    let text = match parse_text(req) {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let body = |c: &Comment| serde_json::to_vec(c).unwrap_or_default();
    match key {
        CommentKey::Id(id) => match store.transact(move |tx| tx.update_comment(id, &text)) {
            Ok(Some(comment)) => Response::json_bytes(200, body(&comment)),
            Ok(None) => problem(
                404,
                "No such comment",
                &format!("no comment has id {id}: ids are assigned by POST /comments, and an id a client chooses may not be all digits"),
            ),
            Err(err) => store_error(err),
        },
        CommentKey::Client(client_id) => {
            match store.transact(move |tx| tx.upsert_comment(&client_id, &text)) {
                Ok((comment, true)) => Response::json_bytes(201, body(&comment)).header(
                    "Location",
                    location(comment.client_id.as_deref().unwrap_or_default()),
                ),
                Ok((comment, false)) => Response::json_bytes(200, body(&comment)),
                Err(err) => store_error(err),
            }
        }
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
