//! A small JSON service: items stored by id, behind a bearer token.
//!
//! `cargo run -p backlog-server --example json_api -- --model pool` (any `--model` or
//! `--topology`; `--listen`, default 127.0.0.1:3000; `--token`, default `secret`), then
//! `curl -X PUT -H 'Authorization: Bearer secret' -H 'Content-Type: application/json'
//! -d '{"name":"lamp"}' localhost:3000/items/1`. SIGTERM or Ctrl-C drains and exits 0.

use backlog_server::{
    Blocking, BodyLimit, Handler, IntoResponse, JsonError, Model, Refusal, Request, Response,
    Router, Server, Topology,
};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::RwLock;
use std::time::Duration;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    #[arg(long, conflicts_with = "topology")]
    model: Option<Model>,
    #[arg(long)]
    topology: Option<Topology>,
    #[arg(long, default_value = "secret")]
    token: String,
}

/// The items, held once by the `/items` router (`with_state`) and read by its handlers.
type Items = RwLock<BTreeMap<String, Map<String, Value>>>;

fn items(req: &Request) -> &Items {
    req.state().expect("the items router holds them")
}

/// An error as the API shows it: a status and `{"error": "..."}`.
struct ApiError(u16, String);

fn error(status: u16, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        Response::json(self.0, &json!({ "error": self.1 }))
    }
}

impl From<JsonError> for ApiError {
    fn from(err: JsonError) -> Self {
        error(err.status(), err.to_string())
    }
}

#[derive(Deserialize)]
struct ListQuery {
    prefix: Option<String>,
    limit: Option<usize>,
}

fn items_api() -> Router {
    let put = |req: Request| -> Result<Response, ApiError> {
        let body: Map<String, Value> = req.json()?;
        let id = req.param("id").unwrap_or_default().to_string();
        let replaced = items(&req)
            .write()
            .unwrap()
            .insert(id, body.clone())
            .is_some();
        Ok(Response::json(if replaced { 200 } else { 201 }, &body))
    };
    let get = |req: Request| match items(&req)
        .read()
        .unwrap()
        .get(req.param("id").unwrap_or_default())
    {
        Some(item) => Ok(Response::json(200, item)),
        None => Err(error(404, "no such item")),
    };
    let delete = |req: Request| match items(&req)
        .write()
        .unwrap()
        .remove(req.param("id").unwrap_or_default())
    {
        Some(_) => Ok(Response::new(204)),
        None => Err(error(404, "no such item")),
    };
    let list = |req: Request| -> Result<Response, ApiError> {
        let q: ListQuery = req.query_as()?;
        let prefix = q.prefix.unwrap_or_default();
        let items = items(&req).read().unwrap();
        let ids: Vec<&String> = items
            .range(prefix.clone()..)
            .take_while(|(id, _)| id.starts_with(&prefix))
            .take(q.limit.unwrap_or(100))
            .map(|(id, _)| id)
            .collect();
        Ok(Response::json(200, &ids))
    };
    Router::new()
        .get("/", list)
        .put("/{id}", BodyLimit::new(16 * 1024, put))
        .get("/{id}", get)
        .delete("/{id}", delete)
        .with_state(Items::default())
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
    let bearer = format!("Bearer {}", args.token);
    let auth = move |req: Request, next: &dyn Handler| match req.header_str("authorization") {
        Some(value) if value == bearer => next.call(req),
        _ => error(401, "missing or wrong bearer token").into_response(),
    };
    let app = Router::new()
        .get("/health", |_req: Request| {
            Response::json(200, &json!({ "ok": true }))
        })
        .get(
            "/slow",
            Blocking(|_req: Request| {
                std::thread::sleep(Duration::from_millis(50));
                Response::json(200, &json!({ "slept_ms": 50 }))
            }),
        )
        .nest("/items", items_api().layer(auth))
        .fallback(|_req: Request| error(404, "not found"))
        .method_not_allowed(|_req: Request| error(405, "method not allowed"));

    let mut server = Server::builder()
        .listen(args.listen)
        .io(backlog_server::Io::from_env());
    if let Some(model) = args.model {
        server = server.model(model);
    }
    if let Some(topology) = args.topology {
        server = server.topology(topology);
    }
    server
        .on_refusal(|r: &Refusal| error(r.status(), r.reason()).into_response())
        .serve_until_signal(app)?;
    Ok(())
}
