//! The comments API of the built-in app: the seeds' example of a non-idempotent call.
//!
//! `POST /comments` inserts a row: without an `Idempotency-Key` a retried POST inserts it
//! twice; with one, the row and the stored response commit in one transaction, so it is
//! inserted once however often the request is retried, on whichever instance. `PUT
//! /comments/{client_id}` is the upsert the notes recommend: idempotent by nature.

// Refusals travel as whole `Response`s on paths that are never hot.
#![allow(clippy::result_large_err)]

use backlog_server::{Blocking, Router};
use h1::{Request, Response};
use idempotency::middleware::problem;
use idempotency::{IdempotencyConfig, Idempotent, Store, StoreError, StoredResponse, Tx};
use std::sync::Arc;
use std::time::Duration;

/// The longest comment text accepted, in characters.
pub const MAX_TEXT: usize = 10_000;

#[derive(serde::Deserialize)]
struct NewComment {
    text: String,
}

/// Add the comments routes to `router`. `delay` holds each POST inside its transaction (a
/// hook for crash tests and the lab; zero in normal use).
pub fn routes(
    router: Router,
    store: Arc<dyn Store>,
    cfg: IdempotencyConfig,
    delay: Duration,
) -> Router {
    let (list_store, put_store) = (store.clone(), store.clone());
    router
        .post(
            "/comments",
            Idempotent::transactional(store, cfg, move |req, tx| create(req, tx, delay))
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
        )
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

fn create(req: &Request, tx: &mut dyn Tx, delay: Duration) -> Result<Response, StoreError> {
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

fn list(store: &dyn Store, req: &Request) -> Response {
    let after = req
        .query_param("after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0i64);
    let limit = req
        .query_param("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100i64)
        .clamp(1, 1000);
    let result = store.transact(None, &mut |tx| {
        let rows = tx.list_comments(after, limit)?;
        Ok(StoredResponse {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(&rows).unwrap_or_default(),
        })
    });
    match result {
        Ok(s) => Response::json_bytes(s.status, s.body),
        Err(err) => store_error(err),
    }
}

fn upsert(store: &dyn Store, req: &Request) -> Response {
    let client_id = req.path().trim_start_matches("/comments/");
    if client_id.is_empty() || client_id.contains('/') {
        return problem(400, "Invalid comment id", "PUT /comments/{client_id}");
    }
    let text = match parse_text(req) {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let result = store.transact(None, &mut |tx| {
        let (comment, created) = tx.upsert_comment(client_id, &text)?;
        Ok(StoredResponse {
            status: if created { 201 } else { 200 },
            headers: Vec::new(),
            body: serde_json::to_vec(&comment).unwrap_or_default(),
        })
    });
    match result {
        Ok(s) => Response::json_bytes(s.status, s.body),
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
