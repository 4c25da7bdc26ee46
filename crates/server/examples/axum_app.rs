//! The json_api example's service written as a plain axum 0.8 app, served by backlog.
//!
//! `cargo run -p backlog-server --example axum_app -- --model pool` (any `--model` or
//! `--topology`, `--io epoll|uring|auto`; `--listen`, default 127.0.0.1:3000; `--token`,
//! default `secret`). Same routes, statuses and JSON bodies as `json_api.rs`, with
//! tower-http's gzip compression and request tracing as layers; nothing in the app knows
//! it runs on backlog: the last lines hand the `Router` to the server in place of
//! `axum::serve`. SIGTERM or Ctrl-C drains and exits 0.

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use backlog_server::{Io, Model, Refusal, Server, Topology};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    #[arg(long, conflicts_with = "topology")]
    model: Option<Model>,
    #[arg(long)]
    topology: Option<Topology>,
    /// epoll, uring or auto (default: BACKLOG_IO, else epoll).
    #[arg(long)]
    io: Option<Io>,
    #[arg(long, default_value = "secret")]
    token: String,
}

type Items = Arc<RwLock<BTreeMap<String, Map<String, Value>>>>;

/// An error as the API shows it: a status and `{"error": "..."}`.
struct ApiError(StatusCode, String);

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// A body that is not a JSON object: 415 without a JSON content type, 413 past the
/// route's limit, 400 for anything else (axum says 422 for valid JSON of the wrong shape;
/// the API says 400).
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            other => other,
        };
        error(status, rejection.body_text())
    }
}

#[derive(Deserialize)]
struct ListQuery {
    prefix: Option<String>,
    limit: Option<usize>,
}

async fn list(State(items): State<Items>, Query(q): Query<ListQuery>) -> Json<Vec<String>> {
    let prefix = q.prefix.unwrap_or_default();
    let items = items.read().unwrap();
    Json(
        items
            .range(prefix.clone()..)
            .take_while(|(id, _)| id.starts_with(&prefix))
            .take(q.limit.unwrap_or(100))
            .map(|(id, _)| id.clone())
            .collect(),
    )
}

async fn put(
    State(items): State<Items>,
    Path(id): Path<String>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<(StatusCode, Json<Map<String, Value>>), ApiError> {
    let Json(body) = body?;
    let replaced = items.write().unwrap().insert(id, body.clone()).is_some();
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(body)))
}

async fn fetch(
    State(items): State<Items>,
    Path(id): Path<String>,
) -> Result<Json<Map<String, Value>>, ApiError> {
    match items.read().unwrap().get(&id) {
        Some(item) => Ok(Json(item.clone())),
        None => Err(error(StatusCode::NOT_FOUND, "no such item")),
    }
}

async fn delete(
    State(items): State<Items>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match items.write().unwrap().remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(error(StatusCode::NOT_FOUND, "no such item")),
    }
}

fn items_api(items: Items, token: String) -> Router {
    let bearer = Arc::new(format!("Bearer {token}"));
    let auth = move |req: Request, next: Next| {
        let bearer = bearer.clone();
        async move {
            match req.headers().get(header::AUTHORIZATION) {
                Some(value) if value.as_bytes() == bearer.as_bytes() => next.run(req).await,
                _ => {
                    error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response()
                }
            }
        }
    };
    Router::new()
        .route("/", get(list))
        .route(
            "/{id}",
            get(fetch)
                .put(put)
                .delete(delete)
                .layer(DefaultBodyLimit::max(16 * 1024)),
        )
        .layer(middleware::from_fn(auth))
        .with_state(items)
}

fn app(token: String) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({ "ok": true })) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Json(json!({ "slept_ms": 50 }))
            }),
        )
        .nest("/items", items_api(Items::default(), token))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        // axum adds the `Allow` field to this answer itself.
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // The server's own warnings and errors (a loop that could not start, a lost
    // connection) on stderr; RUST_LOG says more.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let mut server = Server::builder()
        .listen(args.listen)
        .io(args.io.unwrap_or_else(Io::from_env));
    if let Some(model) = args.model {
        server = server.model(model);
    }
    if let Some(topology) = args.topology {
        server = server.topology(topology);
    }
    server
        .on_refusal(|r: &Refusal| {
            backlog_server::Response::json(r.status(), &json!({ "error": r.reason() }))
        })
        .serve_service_until_signal(app(args.token))?;
    Ok(())
}
