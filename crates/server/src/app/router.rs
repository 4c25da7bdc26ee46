//! A small router: exact paths, paths with `{name}` segments (`/items/{id}`, read with
//! [`Request::param`]), and path prefixes, each with its methods; routers nest under a prefix
//! and merge.
//!
//! A request goes to the most specific route that matches its path and method: an exact
//! path before a pattern with parameters before a prefix; between two different patterns of
//! one kind that both match (`/a/{x}/c` and `/a/b/{y}`, two prefixes), the one added first.
//! Two routes that take the same requests are refused when the router is built (a panic, as
//! axum does): the second could never be reached. Unknown paths go to the
//! [`fallback`](Router::fallback) (404 unless set); a known
//! path with another method gets 405 with `Allow` (its body from
//! [`method_not_allowed`](Router::method_not_allowed) if set), and HEAD is served by the GET
//! route (the encoder drops the body). CONNECT, unless a route asks for it, gets 405:
//! backlog does not tunnel, and a CONNECT target is an authority, not a path.

use crate::app::handler::{BlockingRule, Blocks};
use crate::app::layer::{Layer, Layered};
use crate::Handler;
use h1::{Method, Request, Response};
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Exact,
    Params,
    Prefix,
}

enum Pattern {
    Exact(String),
    /// Segments, each a literal or a `{name}` that matches one non-empty segment.
    Params(Vec<Segment>),
    Prefix(String),
}
/// Path parameters a pattern binds: name and percent-decoded value.
type Params = Vec<(Box<str>, Box<str>)>;

enum Segment {
    Literal(String),
    Param(String),
}

impl Pattern {
    /// The pattern with its parameters' names left out: two patterns of one shape match
    /// the same paths.
    fn shape(&self) -> String {
        match self {
            Pattern::Exact(p) => format!("={p}"),
            Pattern::Prefix(p) => format!("^{p}"),
            Pattern::Params(segments) => {
                let parts: Vec<&str> = segments
                    .iter()
                    .map(|s| match s {
                        Segment::Literal(l) => l.as_str(),
                        Segment::Param(_) => "{}",
                    })
                    .collect();
                format!("~{}", parts.join("/"))
            }
        }
    }

    fn rank(&self) -> Rank {
        match self {
            Pattern::Exact(_) => Rank::Exact,
            Pattern::Params(_) => Rank::Params,
            Pattern::Prefix(_) => Rank::Prefix,
        }
    }

    fn parse(path: &str) -> Pattern {
        if !path.contains('{') {
            return Pattern::Exact(path.to_string());
        }
        Pattern::Params(
            path.split('/')
                .map(
                    |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => Segment::Param(name.to_string()),
                        None => Segment::Literal(seg.to_string()),
                    },
                )
                .collect(),
        )
    }

    /// Whether `path` matches, and the parameters it binds (percent-decoded).
    fn matches(&self, path: &str) -> Option<Params> {
        match self {
            Pattern::Exact(p) => (p == path).then(Vec::new),
            Pattern::Prefix(p) => path.starts_with(p.as_str()).then(Vec::new),
            Pattern::Params(segments) => {
                let mut parts = path.split('/');
                let mut params = Vec::new();
                for seg in segments {
                    let part = parts.next()?;
                    match seg {
                        Segment::Literal(l) if l == part => {}
                        Segment::Literal(_) => return None,
                        Segment::Param(_) if part.is_empty() => return None,
                        Segment::Param(name) => {
                            let value = h1::percent_decode(part, false)?;
                            params.push((name.as_str().into(), value.into()));
                        }
                    }
                }
                parts.next().is_none().then_some(params)
            }
        }
    }
}

/// Which methods a route answers.
#[derive(PartialEq)]
enum Methods {
    One(Method),
    Any,
}

impl Methods {
    fn allows(&self, m: &Method) -> bool {
        match self {
            Methods::One(own) => own == m,
            Methods::Any => true,
        }
    }
}

struct Route {
    method: Methods,
    /// The path as given (for [`Router::nest`]), and whether it is a prefix.
    path: String,
    prefix: bool,
    pattern: Pattern,
    handler: Box<dyn Handler>,
}

impl Route {
    fn new(method: Methods, path: &str, prefix: bool, handler: Box<dyn Handler>) -> Route {
        let pattern = if prefix {
            Pattern::Prefix(path.to_string())
        } else {
            Pattern::parse(path)
        };
        Route {
            method,
            path: path.to_string(),
            prefix,
            pattern,
            handler,
        }
    }

    /// Whether `other` takes the same requests: the same pattern (parameter names aside)
    /// for a method both answer. The second would never be reached.
    fn same_requests_as(&self, other: &Route) -> bool {
        let methods = match (&self.method, &other.method) {
            (Methods::One(a), Methods::One(b)) => a == b,
            _ => true,
        };
        methods && self.pattern.shape() == other.pattern.shape()
    }

    fn describe(&self) -> String {
        let method = match &self.method {
            Methods::One(m) => m.as_str().to_string(),
            Methods::Any => "any method".to_string(),
        };
        let kind = if self.prefix { " (prefix)" } else { "" };
        format!("{method} {}{kind}", self.path)
    }
}

/// Routes requests by method and path. Adding a route that takes the same requests as one
/// already there (the same method and the same path, parameter names aside) panics: the
/// second could never be reached.
///
/// ```
/// use backlog_server::{Handler, Request, Response, Router};
///
/// let items = Router::new()
///     .get("/", |_req: Request| Response::text(200, "all items"))
///     .get("/{id}", |req: Request| Response::text(200, format!("item {}", req.param("id").unwrap())));
/// let app = Router::new()
///     .get("/health", |_req: Request| Response::text(200, "ok"))
///     .nest("/items", items)
///     .fallback(|_req: Request| Response::text(404, "nothing here"));
///
/// let get = |target: &str| app.call(Request::builder().target(target).build().unwrap());
/// assert_eq!(&get("/items/7").body_bytes()[..], b"item 7");
/// assert_eq!(&get("/items").body_bytes()[..], b"all items");
/// assert_eq!(&get("/nope").body_bytes()[..], b"nothing here");
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    fallback: Option<Box<dyn Handler>>,
    not_allowed: Option<Box<dyn Handler>>,
    /// Some route has its own body limit: only then is a request's route looked up before
    /// its body is read.
    limited: bool,
    /// Some route or fallback may block: only then are requests routed to the blocking
    /// pool by their route ([`Blocks::When`]).
    may_block: bool,
}

impl Router {
    /// An empty router: everything is 404.
    pub fn new() -> Self {
        Router::default()
    }

    /// # Panics
    /// If a route already takes the same requests (axum refuses overlapping routes the same
    /// way): the second could never be reached, which is a mistake to find when the router
    /// is built, not in production.
    fn push(mut self, route: Route) -> Self {
        if let Some(earlier) = self.routes.iter().find(|r| r.same_requests_as(&route)) {
            panic!(
                "conflicting routes: {} is already routed as {}",
                route.describe(),
                earlier.describe()
            );
        }
        self.limited |= route.handler.max_body().is_some();
        self.may_block |= route.handler.blocking().may_block();
        self.routes.push(route);
        self
    }

    /// Whether any of its handlers may block, looked at again after a change that can
    /// turn one into a blocking one (a layer, a fallback).
    fn refresh_blocking(mut self) -> Self {
        let blocks = |h: &dyn Handler| h.blocking().may_block();
        self.may_block = self.routes.iter().any(|r| blocks(&*r.handler))
            || self.fallback.as_deref().is_some_and(blocks)
            || self.not_allowed.as_deref().is_some_and(blocks);
        self
    }

    /// Route `method path` to `handler`. `path` is exact, or has `{name}` segments that
    /// match one segment each (`/items/{id}`; the handler reads `req.param("id")`,
    /// percent-decoded). `method` is backlog's [`Method`] or an `http::Method`.
    pub fn route(self, method: impl Into<Method>, path: &str, handler: impl Handler) -> Self {
        self.push(Route::new(
            Methods::One(method.into()),
            path,
            false,
            Box::new(handler),
        ))
    }

    /// Route every method on `path` to `handler`.
    pub fn any(self, path: &str, handler: impl Handler) -> Self {
        self.push(Route::new(Methods::Any, path, false, Box::new(handler)))
    }

    /// Route `method` on every path starting with `prefix` to `handler`.
    pub fn prefix(self, method: impl Into<Method>, prefix: &str, handler: impl Handler) -> Self {
        self.push(Route::new(
            Methods::One(method.into()),
            prefix,
            true,
            Box::new(handler),
        ))
    }

    /// `GET path` (and HEAD).
    pub fn get(self, path: &str, handler: impl Handler) -> Self {
        self.route(Method::Get, path, handler)
    }

    /// `POST path`.
    pub fn post(self, path: &str, handler: impl Handler) -> Self {
        self.route(Method::Post, path, handler)
    }

    /// `PUT path`.
    pub fn put(self, path: &str, handler: impl Handler) -> Self {
        self.route(Method::Put, path, handler)
    }

    /// `PATCH path`.
    pub fn patch(self, path: &str, handler: impl Handler) -> Self {
        self.route(Method::Patch, path, handler)
    }

    /// `DELETE path`.
    pub fn delete(self, path: &str, handler: impl Handler) -> Self {
        self.route(Method::Delete, path, handler)
    }

    /// What answers paths no route matches (404 text unless set).
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(Box::new(handler));
        self.refresh_blocking()
    }

    /// What answers a known path with a method it does not take. The router sets the
    /// status to 405 and adds `Allow`; `handler` chooses the body.
    pub fn method_not_allowed(mut self, handler: impl Handler) -> Self {
        self.not_allowed = Some(Box::new(handler));
        self.refresh_blocking()
    }

    /// Mount `other`'s routes under `prefix` (`/items` + `/{id}` = `/items/{id}`; its `/`
    /// is `prefix` itself). Layers already applied to them stay; its fallbacks are not
    /// taken (this router's answer for unknown paths).
    pub fn nest(mut self, prefix: &str, other: Router) -> Self {
        let prefix = prefix.trim_end_matches('/');
        for route in other.routes {
            let path = match route.path.as_str() {
                "/" | "" if !route.prefix => prefix.to_string(),
                p => format!("{prefix}{p}"),
            };
            self = self.push(Route::new(route.method, &path, route.prefix, route.handler));
        }
        self
    }

    /// Add `other`'s routes to this router; its fallbacks are used where this router has
    /// none.
    pub fn merge(mut self, other: Router) -> Self {
        for route in other.routes {
            self = self.push(route);
        }
        self.fallback = self.fallback.or(other.fallback);
        self.not_allowed = self.not_allowed.or(other.not_allowed);
        self.refresh_blocking()
    }

    /// Wrap every route added so far in `layer` (routes added later, and the fallbacks,
    /// are not wrapped: an authentication layer does not turn 404s into 401s).
    pub fn layer<L: Layer>(mut self, layer: L) -> Self {
        let layer = Arc::new(layer);
        for route in &mut self.routes {
            let inner = std::mem::replace(&mut route.handler, Box::new(Unreachable));
            route.handler = Box::new(Layered::new(layer.clone(), inner));
        }
        self.refresh_blocking()
    }
}

/// A placeholder while a route's handler is being wrapped.
struct Unreachable;

impl Handler for Unreachable {
    fn call(&self, _req: Request) -> Response {
        Response::new(500)
    }
}

impl Router {
    /// The methods `routes` answer, for `Allow` (GET brings HEAD).
    fn allow<'a>(routes: impl Iterator<Item = &'a Route>) -> String {
        let mut methods: Vec<&str> = Vec::new();
        for route in routes {
            let names: &[&str] = match &route.method {
                Methods::One(Method::Get) => &["GET", "HEAD"],
                Methods::One(m) => &[m.as_str()],
                Methods::Any => &[],
            };
            for name in names {
                if !methods.contains(name) {
                    methods.push(name);
                }
            }
        }
        methods.join(", ")
    }

    /// The most specific route for `req` and the path parameters it binds.
    fn find(&self, req: &Request) -> Option<(&Route, Params)> {
        let path = req.path();
        let wanted = match req.method() {
            Method::Head => &Method::Get,
            m => m,
        };
        let mut best: Option<(&Route, Params)> = None;
        for route in &self.routes {
            if !route.method.allows(wanted)
                || best
                    .as_ref()
                    .is_some_and(|(b, _)| b.pattern.rank() <= route.pattern.rank())
            {
                continue;
            }
            if let Some(params) = route.pattern.matches(path) {
                if route.pattern.rank() == Rank::Exact {
                    return Some((route, params));
                }
                best = Some((route, params));
            }
        }
        best
    }

    fn refuse(&self, req: Request, allow: String) -> Response {
        let resp = match &self.not_allowed {
            Some(h) => h.call(req).with_status(405),
            None => Response::text(405, "Method Not Allowed\n"),
        };
        resp.set_header("Allow", allow)
    }

    fn not_found(&self, req: Request) -> Response {
        match &self.fallback {
            Some(h) => h.call(req),
            None => Response::text(404, "Not Found\n"),
        }
    }
}

/// A request blocks as the handler it is routed to does.
impl BlockingRule for Router {
    fn blocks(&self, req: &Request) -> bool {
        match self.find(req) {
            Some((route, _)) => route.handler.blocking().blocks(req),
            None => self
                .fallback
                .as_ref()
                .is_some_and(|f| f.blocking().blocks(req)),
        }
    }
}

impl Handler for Router {
    fn blocking(&self) -> Blocks<'_> {
        if self.may_block {
            Blocks::When(self)
        } else {
            Blocks::Never
        }
    }

    fn body_limit(&self, req: &Request) -> Option<u64> {
        if !self.limited {
            return None;
        }
        self.find(req).and_then(|(r, _)| r.handler.body_limit(req))
    }

    fn call(&self, mut req: Request) -> Response {
        if *req.method() == Method::Connect
            && !self
                .routes
                .iter()
                .any(|r| r.method == Methods::One(Method::Connect))
        {
            // backlog does not tunnel; a CONNECT target is an authority, not a path.
            let allow = Self::allow(self.routes.iter());
            return self.refuse(req, allow);
        }
        if let Some((route, params)) = self.find(&req) {
            if !params.is_empty() {
                req.set_params(params);
            }
            return route.handler.call(req);
        }
        let path = req.path();
        let on_path: Vec<&Route> = self
            .routes
            .iter()
            .filter(|r| r.pattern.matches(path).is_some())
            .collect();
        if on_path.is_empty() {
            return self.not_found(req);
        }
        let allow = Self::allow(on_path.into_iter());
        self.refuse(req, allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Blocking;

    fn router() -> Router {
        Router::new()
            .get("/a", |_r: Request| Response::text(200, "a"))
            .post("/a", |_r: Request| Response::text(201, "made"))
            .put("/slow", Blocking(|_r: Request| Response::text(200, "slow")))
    }

    fn call(method: &str, target: &str) -> Response {
        let req = Request::builder()
            .method(method)
            .target(target)
            .build()
            .unwrap();
        router().call(req)
    }

    #[test]
    fn routes_answer_404_405_with_allow_and_connect_405() {
        assert_eq!(call("GET", "/a").status(), 200);
        assert_eq!(call("HEAD", "/a").status(), 200);
        assert_eq!(call("POST", "/a").status(), 201);
        assert_eq!(call("GET", "/nope").status(), 404);
        let resp = call("DELETE", "/a");
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.header_value("allow"), Some(&b"GET, HEAD, POST"[..]));
        let resp = call("CONNECT", "h:443");
        assert_eq!(resp.status(), 405);
        assert_eq!(
            resp.header_value("allow"),
            Some(&b"GET, HEAD, POST, PUT"[..])
        );
    }

    #[test]
    fn path_parameters_are_bound_and_decoded() {
        let r = Router::new()
            .get("/items/{id}", |req: Request| {
                Response::text(200, req.param("id").unwrap_or("?").to_string())
            })
            .delete("/items/{id}", |_r: Request| Response::new(204))
            .patch("/users/{user}/items/{id}", |req: Request| {
                let (u, i) = (req.param("user").unwrap(), req.param("id").unwrap());
                Response::text(200, format!("{u}:{i}"))
            })
            .any("/echo", |req: Request| {
                Response::text(200, req.method().as_str().to_string())
            });
        let call = |method: &str, target: &str| {
            let req = Request::builder()
                .method(method)
                .target(target)
                .build()
                .unwrap();
            r.call(req)
        };
        assert_eq!(&call("GET", "/items/7").body_bytes()[..], b"7");
        assert_eq!(&call("GET", "/items/a%20b").body_bytes()[..], b"a b");
        assert_eq!(call("GET", "/items/").status(), 404);
        assert_eq!(call("GET", "/items/7/more").status(), 404);
        assert_eq!(call("DELETE", "/items/7").status(), 204);
        let resp = call("PUT", "/items/7");
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.header_value("allow"), Some(&b"GET, HEAD, DELETE"[..]));
        assert_eq!(
            &call("PATCH", "/users/u1/items/9").body_bytes()[..],
            b"u1:9"
        );
        assert_eq!(&call("OPTIONS", "/echo").body_bytes()[..], b"OPTIONS");
        assert_eq!(call("GET", "/items/%zz").status(), 404, "undecodable");
    }

    #[test]
    fn a_router_may_block_when_a_route_does() {
        let r = router();
        assert!(r.blocking().may_block());
        let slow = Request::builder()
            .method("PUT")
            .target("/slow")
            .build()
            .unwrap();
        let fast = Request::builder().target("/a").build().unwrap();
        assert!(r.blocking().blocks(&slow) && !r.blocking().blocks(&fast));
        assert!(!Router::new()
            .get("/", |_r: Request| Response::new(204))
            .blocking()
            .may_block());
        // A layer that blocks turns the routes it wraps into blocking ones.
        let layered = Router::new()
            .get("/", |_r: Request| Response::new(204))
            .layer(crate::app::layer::tests::Db);
        assert!(layered.blocking().may_block());
    }

    fn req(method: &str, target: &str) -> Request {
        Request::builder()
            .method(method)
            .target(target)
            .build()
            .unwrap()
    }

    fn text(resp: Response) -> String {
        String::from_utf8_lossy(resp.body_bytes()).into_owned()
    }

    #[test]
    fn the_most_specific_route_wins() {
        let r = Router::new()
            .prefix(Method::Get, "/items/", |_r: Request| {
                Response::text(200, "prefix")
            })
            .get("/items/{id}", |_r: Request| Response::text(200, "param"))
            .get("/items/new", |_r: Request| Response::text(200, "exact"));
        assert_eq!(text(r.call(req("GET", "/items/new"))), "exact");
        assert_eq!(text(r.call(req("GET", "/items/7"))), "param");
        assert_eq!(text(r.call(req("GET", "/items/7/x"))), "prefix");
    }

    #[test]
    fn fallbacks_answer_unknown_paths_and_wrong_methods() {
        let r = Router::new()
            .get("/a", |_r: Request| Response::new(200))
            .fallback(|_r: Request| Response::json_bytes(404, r#"{"error":"not found"}"#))
            .method_not_allowed(|_r: Request| {
                Response::json_bytes(200, r#"{"error":"method not allowed"}"#)
            });
        let missing = r.call(req("GET", "/b"));
        assert_eq!(
            (missing.status(), text(missing)),
            (404, r#"{"error":"not found"}"#.into())
        );
        let wrong = r.call(req("PUT", "/a"));
        assert_eq!(wrong.status(), 405, "the router keeps the status");
        assert_eq!(wrong.header_value("allow"), Some(&b"GET, HEAD"[..]));
        assert_eq!(text(wrong), r#"{"error":"method not allowed"}"#);
        let connect = r.call(req("CONNECT", "h:443"));
        assert_eq!(connect.status(), 405);
    }

    #[test]
    fn nest_and_merge_mount_routes_with_their_layers() {
        let guarded = |req: Request, next: &dyn Handler| match req.header("x-key") {
            Some(_) => next.call(req),
            None => Response::new(401),
        };
        let items = Router::new()
            .get("/", |_r: Request| Response::text(200, "list"))
            .get("/{id}", |r: Request| {
                Response::text(200, r.param("id").unwrap().to_string())
            })
            .layer(guarded);
        let other = Router::new()
            .get("/health", |_r: Request| Response::text(200, "ok"))
            .fallback(|_r: Request| Response::text(404, "merged fallback"));
        let r = Router::new().nest("/items/", items).merge(other);
        assert_eq!(r.call(req("GET", "/items")).status(), 401);
        let with_key = |target: &str| {
            r.call(
                Request::builder()
                    .target(target)
                    .header("X-Key", "k")
                    .build()
                    .unwrap(),
            )
        };
        assert_eq!(text(with_key("/items")), "list");
        assert_eq!(text(with_key("/items/a%2Fb")), "a/b");
        assert_eq!(text(r.call(req("GET", "/health"))), "ok");
        assert_eq!(text(r.call(req("GET", "/x"))), "merged fallback");
        assert_eq!(text(r.call(req("GET", "/items/1/2"))), "merged fallback");
    }

    #[test]
    fn body_limits_come_from_the_matched_route() {
        use crate::BodyLimit;
        let plain = Router::new().post("/a", |_r: Request| Response::new(200));
        assert_eq!(plain.body_limit(&req("POST", "/a")), None);
        let r = plain
            .post(
                "/small",
                BodyLimit::new(16, |_r: Request| Response::new(200)),
            )
            .layer(|req: Request, next: &dyn Handler| next.call(req));
        assert_eq!(r.body_limit(&req("POST", "/small")), Some(16));
        assert_eq!(r.body_limit(&req("POST", "/a")), None);
        assert_eq!(r.body_limit(&req("POST", "/none")), None);
        let nested = Router::new().nest("/v1", r);
        assert_eq!(nested.body_limit(&req("POST", "/v1/small")), Some(16));
    }

    #[test]
    fn routes_that_take_the_same_requests_are_refused_when_the_router_is_built() {
        let ok = |_r: Request| Response::new(200);
        let conflict = |build: Box<dyn FnOnce() -> Router + std::panic::UnwindSafe>| {
            let err = std::panic::catch_unwind(build).err().expect("refused");
            err.downcast_ref::<String>().cloned().unwrap_or_default()
        };
        let msg = conflict(Box::new(move || Router::new().get("/a", ok).get("/a", ok)));
        assert!(msg.contains("GET /a is already routed as GET /a"), "{msg}");
        let msg = conflict(Box::new(move || {
            Router::new().get("/items/{id}", ok).get("/items/{key}", ok)
        }));
        assert!(msg.contains("GET /items/{key}"), "{msg}");
        conflict(Box::new(move || Router::new().any("/x", ok).post("/x", ok)));
        conflict(Box::new(move || {
            Router::new()
                .get("/v1/a", ok)
                .nest("/v1", Router::new().get("/a", ok))
        }));
        // Not conflicts: another method, another shape, a prefix beside an exact path.
        let r = Router::new()
            .get("/a", ok)
            .post("/a", ok)
            .get("/a/{id}", ok)
            .prefix(Method::Get, "/a", ok)
            .get("/b/{id}/c", ok)
            .get("/b/{id}/{part}", ok);
        assert_eq!(r.call(req("POST", "/a")).status(), 200);
    }
}
