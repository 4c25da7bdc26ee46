//! [`Idempotent`]: wraps a handler so that POST and PATCH requests carrying an
//! `Idempotency-Key` run at most once per key.
//!
//! Outcomes, after the IETF draft and Stripe:
//! - first request with a key: claim it (leased), run, store the response, answer;
//! - same key, same request, first one done: replay the stored response byte for byte, with
//!   `Idempotent-Replayed: true` — whatever it was, a 500 included;
//! - same key while the first still runs: 409; same key, different request: 422;
//! - no key where one is required: 400; a malformed key or one over 255 characters: 400.
//!
//! Refusals made before the handler ran (400, 409, 422, 503) are not stored, so they can be
//! retried. A lease left by a crashed process expires, and then a retry runs. The store's
//! calls may block, so the wrapper says it does ([`Handler::blocks`]): the server runs it on
//! its blocking pool (or, in `pool`, on a worker), never on an event loop.

use crate::store::{Claim, KeyRef, Store, StoreError, StoredResponse, Tx};
use crate::{fingerprint, key};
use backlog_server::Handler;
use h1::{Method, Request, Response};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

/// The middleware's settings.
#[derive(Debug, Clone)]
pub struct IdempotencyConfig {
    /// How long a stored response answers retries (`--idempotency-ttl`, default 24 h).
    pub ttl: Duration,
    /// How long a claim stays in flight before another request may take it over (a crashed
    /// holder's claim expires after this).
    pub lease: Duration,
    /// A request header naming the client, to scope keys per client; keys are global
    /// without it.
    pub scope_header: Option<String>,
    /// Answer 400 to POST / PATCH without a key.
    pub require_key: bool,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            ttl: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(30),
            scope_header: None,
            require_key: false,
        }
    }
}

/// A handler that writes through the store, inside the transaction that also stores its
/// response. A store error rolls the transaction back (nothing is stored under the key).
pub type TxHandler = dyn Fn(&Request, &mut dyn Tx) -> Result<Response, StoreError> + Send + Sync;

enum Inner {
    Plain(Box<dyn Handler>),
    Transactional(Box<TxHandler>),
}

/// Checks a request before any key is claimed; a refusal is answered and not stored.
pub type Validator = dyn Fn(&Request) -> Result<(), Response> + Send + Sync;

/// The Idempotency-Key middleware around one handler.
pub struct Idempotent {
    store: Arc<dyn Store>,
    cfg: IdempotencyConfig,
    inner: Inner,
    validate: Option<Box<Validator>>,
}

impl Idempotent {
    /// Wrap any handler: its response is stored after it ran (its effects, if any, are its
    /// own business).
    pub fn wrap(store: Arc<dyn Store>, cfg: IdempotencyConfig, handler: impl Handler) -> Self {
        Idempotent {
            store,
            cfg,
            inner: Inner::Plain(Box::new(handler)),
            validate: None,
        }
    }

    /// Wrap a handler that writes through the store: its effect and its stored response
    /// commit together, or neither does.
    pub fn transactional(
        store: Arc<dyn Store>,
        cfg: IdempotencyConfig,
        handler: impl Fn(&Request, &mut dyn Tx) -> Result<Response, StoreError> + Send + Sync + 'static,
    ) -> Self {
        Idempotent {
            store,
            cfg,
            inner: Inner::Transactional(Box::new(handler)),
            validate: None,
        }
    }

    /// Validate requests before claiming their key: a refused request is not stored, so
    /// the client can correct it and retry with the same key.
    pub fn validate(
        mut self,
        check: impl Fn(&Request) -> Result<(), Response> + Send + Sync + 'static,
    ) -> Self {
        self.validate = Some(Box::new(check));
        self
    }

    /// Run the handler; for a transactional one, inside a store transaction that also
    /// records the response under `record`.
    fn run(&self, req: Request, record: Option<(KeyRef<'_>, i64)>) -> Result<Response, StoreError> {
        match &self.inner {
            Inner::Plain(h) => {
                let resp = catch_unwind(AssertUnwindSafe(|| h.call(req)))
                    .unwrap_or_else(|_| internal_error());
                if let Some((k, token)) = record {
                    let stored = to_stored(&resp);
                    if let Err(err) = self.store.complete(k, token, &stored) {
                        // The handler's effect happened; answer it even if it cannot be
                        // recorded (a retry may then run it again).
                        crate::store::warn_unavailable(
                            "cannot record an idempotent response",
                            &err,
                        );
                    }
                }
                Ok(resp)
            }
            Inner::Transactional(f) => {
                let result =
                    self.store
                        .transact(record, &mut |tx| match catch_unwind(AssertUnwindSafe(|| {
                            f(&req, tx)
                        })) {
                            Ok(Ok(resp)) => Ok(to_stored(&resp)),
                            Ok(Err(err)) => Err(err),
                            Err(_) => Err(StoreError::HandlerPanicked),
                        });
                match result {
                    Ok(stored) => Ok(from_stored(&stored, false)),
                    Err(StoreError::HandlerPanicked) => {
                        // Stripe's rule: the first outcome is the answer, a 500 included.
                        let resp = internal_error();
                        if let Some((k, token)) = record {
                            self.store.complete(k, token, &to_stored(&resp))?;
                        }
                        Ok(resp)
                    }
                    Err(err) => Err(err),
                }
            }
        }
    }
}

impl Handler for Idempotent {
    fn blocks(&self, _req: &Request) -> bool {
        true
    }

    fn may_block(&self) -> bool {
        true
    }

    fn call(&self, req: Request) -> Response {
        if let Some(Err(refusal)) = self.validate.as_ref().map(|v| v(&req)) {
            return refusal;
        }
        let unsafe_method = matches!(req.method(), Method::Post | Method::Patch);
        let header = req.header("idempotency-key").map(<[u8]>::to_vec);
        let Some(raw_key) = header.filter(|_| unsafe_method) else {
            if unsafe_method && self.cfg.require_key {
                return problem(
                    400,
                    "Idempotency-Key required",
                    "this endpoint needs an Idempotency-Key header",
                );
            }
            return self.run(req, None).unwrap_or_else(unavailable);
        };
        let key = match key::parse(&raw_key) {
            Ok(k) => k,
            Err(err) => return problem(400, "Invalid Idempotency-Key", &err.to_string()),
        };
        let scope = self
            .cfg
            .scope_header
            .as_deref()
            .and_then(|h| req.header(h))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let k = KeyRef {
            scope: &scope,
            key: &key,
        };
        let fp = fingerprint::of(&req);
        match self.store.claim(k, &fp, self.cfg.lease, self.cfg.ttl) {
            Err(err) => unavailable(err),
            Ok(Claim::Replay(stored)) => from_stored(&stored, true),
            Ok(Claim::InFlight) => problem(
                409,
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry later",
            ),
            Ok(Claim::Mismatch) => problem(
                422,
                "Idempotency-Key reused",
                "this Idempotency-Key was used for a different request",
            ),
            Ok(Claim::Run { token }) => match self.run(req, Some((k, token))) {
                Ok(resp) => resp,
                Err(StoreError::LeaseLost) => problem(
                    409,
                    "Request superseded",
                    "this request outlived its lease and a retry took the key over",
                ),
                Err(err) => {
                    let _ = self.store.release(k, token);
                    unavailable(err)
                }
            },
        }
    }
}

/// An RFC 9457 problem+json response.
pub fn problem(status: u16, title: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    });
    Response::new(status)
        .header("Content-Type", "application/problem+json")
        .body(body.to_string())
}

fn unavailable(err: StoreError) -> Response {
    crate::store::warn_unavailable("store unavailable", &err);
    problem(
        503,
        "Store unavailable",
        "the data store cannot be reached; retry shortly",
    )
    .header("Retry-After", "1")
}

fn internal_error() -> Response {
    problem(500, "Internal Server Error", "the handler failed")
}

fn to_stored(resp: &Response) -> StoredResponse {
    StoredResponse {
        status: resp.status(),
        headers: resp
            .headers()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect(),
        body: resp.body_bytes().to_vec(),
    }
}

fn from_stored(stored: &StoredResponse, replayed: bool) -> Response {
    let mut resp = Response::new(stored.status);
    for (n, v) in &stored.headers {
        resp = resp.header(n.clone(), v.clone());
    }
    if replayed {
        resp = resp.header("Idempotent-Replayed", "true");
    }
    resp.body(stored.body.clone())
}
