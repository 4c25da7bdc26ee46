//! [`Idempotent`] and [`IdempotencyLayer`]: so that POST and PATCH requests (or the methods
//! configured) carrying an `Idempotency-Key` run at most once per key.
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
//! calls may block, so the wrapper says it does ([`Handler::blocking`]): the server runs it on
//! its blocking pool, never on an event loop.

use crate::store::{Claim, Claimed, Key, Store, StoreError, StoredResponse, Transactional};
use crate::{fingerprint, key};
use backlog_server::{BlockingRule, Blocks, Handler, Layer};
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
    /// Answer 400 to a guarded method without a key.
    pub require_key: bool,
    /// The methods keys guard: POST and PATCH unless set (the draft's non-idempotent
    /// methods; PUT and DELETE are idempotent by definition).
    pub methods: Vec<Method>,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            ttl: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(30),
            scope_header: None,
            require_key: false,
            methods: vec![Method::Post, Method::Patch],
        }
    }
}

/// Runs the guarded handler; with a claim, also records its response.
type Run<'a> = &'a dyn Fn(Request, Option<&Claimed>) -> Result<Response, StoreError>;

/// Checks a request before any key is claimed; a refusal is answered and not stored.
pub type Validator = dyn Fn(&Request) -> Result<(), Response> + Send + Sync;

/// What both forms of the middleware share: the store, the settings, the validator.
struct Guard {
    store: Arc<dyn Store>,
    cfg: IdempotencyConfig,
    validate: Option<Box<Validator>>,
}

impl Guard {
    fn guards(&self, req: &Request) -> bool {
        self.cfg.methods.contains(req.method())
    }

    fn call(&self, req: Request, run: Run<'_>) -> Response {
        if let Some(Err(refusal)) = self.validate.as_ref().map(|v| v(&req)) {
            return refusal;
        }
        let guarded = self.guards(&req);
        let (header, repeated) = {
            let mut fields = req
                .headers()
                .filter(|(name, _)| name.eq_ignore_ascii_case("idempotency-key"))
                .map(|(_, value)| value);
            (fields.next().map(<[u8]>::to_vec), fields.next().is_some())
        };
        let Some(raw_key) = header.filter(|_| guarded) else {
            if guarded && self.cfg.require_key {
                return problem(
                    400,
                    "Idempotency-Key required",
                    "this endpoint needs an Idempotency-Key header",
                );
            }
            return run(req, None).unwrap_or_else(unavailable);
        };
        let parsed = match repeated {
            true => Err(key::KeyError::Repeated),
            false => key::parse(&raw_key),
        };
        let key = match parsed {
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
        let k = Key { scope, key };
        let fp = fingerprint::of(&req);
        match self.store.claim(&k, &fp, self.cfg.lease, self.cfg.ttl) {
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
            Ok(Claim::Run { token }) => {
                let claimed = Claimed { key: k, token };
                match run(req, Some(&claimed)) {
                    Ok(resp) => resp,
                    Err(StoreError::LeaseLost) => problem(
                        409,
                        "Request superseded",
                        "this request outlived its lease and a retry took the key over",
                    ),
                    Err(StoreError::HandlerPanicked) => {
                        // Stripe's rule: the first outcome is the answer, a 500 included.
                        let resp = internal_error();
                        match self.store.complete(&claimed, &to_stored(&resp)) {
                            Ok(()) => resp,
                            Err(err) => {
                                let _ = self.store.release(&claimed);
                                unavailable(err)
                            }
                        }
                    }
                    Err(err) => {
                        let _ = self.store.release(&claimed);
                        unavailable(err)
                    }
                }
            }
        }
    }

    /// Run `handler` outside any transaction, then record its response.
    fn plain(&self, handler: &dyn Handler, req: Request, claim: Option<&Claimed>) -> Response {
        let resp = catch_unwind(AssertUnwindSafe(|| handler.call(req)))
            .unwrap_or_else(|_| internal_error());
        if let Some(claimed) = claim {
            if let Err(err) = self.store.complete(claimed, &to_stored(&resp)) {
                // The handler's effect happened; answer it even if it cannot be recorded
                // (a retry may then run it again).
                crate::store::warn_unavailable("cannot record an idempotent response", &err);
            }
        }
        resp
    }
}

/// A handler that writes through a [`Transactional`] store, type-erased: runs the handler
/// in a transaction that also records its response.
type TxRun = dyn Fn(Request, Option<&Claimed>) -> Result<Response, StoreError> + Send + Sync;

enum Inner {
    Plain(Box<dyn Handler>),
    Transactional(Box<TxRun>),
}

/// The Idempotency-Key middleware around one handler.
///
/// ```
/// use backlog_server::{Handler, Request, Response};
/// use idempotency::{IdempotencyConfig, Idempotent};
/// # fn store() -> std::sync::Arc<dyn idempotency::Store> { unimplemented!() }
/// let create = |_req: Request| Response::new(201);
/// # if false {
/// let guarded = Idempotent::wrap(store(), IdempotencyConfig::default(), create);
/// # }
/// ```
pub struct Idempotent {
    guard: Guard,
    inner: Inner,
}

impl Idempotent {
    /// Wrap any handler: its response is stored after it ran (its effects, if any, are its
    /// own business).
    pub fn wrap(store: Arc<dyn Store>, cfg: IdempotencyConfig, handler: impl Handler) -> Self {
        Idempotent {
            guard: Guard {
                store,
                cfg,
                validate: None,
            },
            inner: Inner::Plain(Box::new(handler)),
        }
    }

    /// Wrap a handler that writes through the store's own transaction (`S::Tx`: a SQLite
    /// savepoint, a PostgreSQL transaction): its effect and its recorded response commit
    /// together, or neither does. A crash then either loses both (and the retry runs once)
    /// or keeps both (and the retry replays).
    pub fn transactional<S, F>(store: Arc<S>, cfg: IdempotencyConfig, handler: F) -> Self
    where
        S: Transactional,
        F: for<'t> Fn(&Request, &mut S::Tx<'t>) -> Result<Response, StoreError>
            + Send
            + Sync
            + 'static,
    {
        let handler = Arc::new(handler);
        let tx_store = store.clone();
        let run = move |req: Request, claim: Option<&Claimed>| {
            let (handler, claim) = (handler.clone(), claim.cloned());
            tx_store.transact(move |tx| {
                let resp = handler(&req, tx)?;
                if let Some(claimed) = &claim {
                    S::record(tx, claimed, &to_stored(&resp))?;
                }
                Ok(resp)
            })
        };
        Idempotent {
            guard: Guard {
                store,
                cfg,
                validate: None,
            },
            inner: Inner::Transactional(Box::new(run)),
        }
    }

    /// Validate requests before claiming their key: a refused request is not stored, so
    /// the client can correct it and retry with the same key.
    pub fn validate(
        mut self,
        check: impl Fn(&Request) -> Result<(), Response> + Send + Sync + 'static,
    ) -> Self {
        self.guard.validate = Some(Box::new(check));
        self
    }
}

impl Handler for Idempotent {
    fn blocking(&self) -> Blocks<'_> {
        Blocks::Always
    }

    fn call(&self, req: Request) -> Response {
        match &self.inner {
            Inner::Plain(h) => self
                .guard
                .call(req, &|req, claim| Ok(self.guard.plain(&**h, req, claim))),
            Inner::Transactional(run) => self.guard.call(req, &**run),
        }
    }
}

/// The middleware as a [`Layer`], for any handler or a whole router:
/// `router.layer(IdempotencyLayer::new(store, cfg))`. Requests it guards (a configured
/// method with a key) count as blocking, since they wait on the store.
pub struct IdempotencyLayer {
    guard: Guard,
}

impl IdempotencyLayer {
    /// Guard requests with `store` and `cfg`.
    pub fn new(store: Arc<dyn Store>, cfg: IdempotencyConfig) -> Self {
        IdempotencyLayer {
            guard: Guard {
                store,
                cfg,
                validate: None,
            },
        }
    }
}

impl Layer for IdempotencyLayer {
    fn call(&self, req: Request, next: &dyn Handler) -> Response {
        self.guard
            .call(req, &|req, claim| Ok(self.guard.plain(next, req, claim)))
    }

    fn blocking(&self) -> Blocks<'_> {
        Blocks::When(self)
    }
}

/// Requests it guards wait on the store; the rest pass straight through.
impl BlockingRule for IdempotencyLayer {
    fn blocks(&self, req: &Request) -> bool {
        self.guard.guards(req) && req.header("idempotency-key").is_some()
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
