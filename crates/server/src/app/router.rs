//! A router: exact paths, paths with `{name}` segments (`/items/{id}`, read with
//! [`Request::param`], or parsed with [`Request::param_as`]), and path prefixes, each with
//! its methods; routers nest under a prefix and merge.
//!
//! Paths are matched by a radix tree (the `matchit` crate, axum's matcher), not a scan: a
//! request goes to the most specific route that matches its path and method — segment by
//! segment a literal before a parameter (`/a/b/{y}` before `/a/{x}/c` for `/a/b/c`), and a
//! path before a prefix (the longest prefix first). Two routes that take the same requests
//! are refused when the router is built (a panic, as axum does): the second could never be
//! reached. Unknown paths go to the
//! [`fallback`](Router::fallback) (404 unless set); a known
//! path with another method gets 405 with `Allow` (its body from
//! [`method_not_allowed`](Router::method_not_allowed) if set), and HEAD is served by the GET
//! route (the encoder drops the body). CONNECT, unless a route asks for it, gets 405:
//! backlog does not tunnel, and a CONNECT target is an authority, not a path.

use crate::app::handler::{BlockingRule, Blocks};
use crate::app::layer::{Layer, Layered};
use crate::Handler;
use h1::{Method, Request, Response};
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// An application's shared state, as requests carry it.
type State = Arc<dyn Any + Send + Sync>;

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

    /// The pattern as the matcher takes it: parameters named by position (two routes of
    /// one path shape may name them differently), braces in literals escaped. `None` for a
    /// prefix, which the matcher does not hold.
    fn matcher_path(&self) -> Option<String> {
        let escape = |l: &str| l.replace('{', "{{").replace('}', "}}");
        match self {
            Pattern::Exact(p) => Some(escape(p)),
            Pattern::Prefix(_) => None,
            Pattern::Params(segments) => {
                let mut n = 0;
                let parts: Vec<String> = segments
                    .iter()
                    .map(|s| match s {
                        Segment::Literal(l) => escape(l),
                        Segment::Param(_) => {
                            n += 1;
                            format!("{{p{}}}", n - 1)
                        }
                    })
                    .collect();
                Some(parts.join("/"))
            }
        }
    }

    /// The names of its parameters, in order.
    fn param_names(&self) -> impl Iterator<Item = &str> {
        let segments = match self {
            Pattern::Params(segments) => &segments[..],
            _ => &[],
        };
        segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
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

    /// Whether a prefix pattern takes `path`.
    fn takes_prefix(&self, path: &str) -> bool {
        matches!(self, Pattern::Prefix(p) if path.starts_with(p.as_str()))
    }
}

/// The parameters `route` binds from what the matcher found, percent-decoded; `None` if
/// one does not decode (the route does not match).
fn bind(route: &Route, found: &matchit::Params<'_, '_>) -> Option<Params> {
    let mut params = Params::new();
    for (name, (_, value)) in route.pattern.param_names().zip(found.iter()) {
        let value = h1::percent_decode(value, false)?;
        params.push((name.into(), value.into()));
    }
    Some(params)
}

/// Where the routes are found: the paths in a radix tree, each with the routes (one per
/// method) on it; the prefixes longest first.
///
/// Paths without parameters are also in an [`Exact`] table, looked up first: a static path
/// is the most specific match the tree could give, and finding it as bytes (no UTF-8 check)
/// costs a fraction of the tree's walk, which was the router's largest cost on a pipelined
/// request.
#[derive(Default)]
struct Index {
    paths: matchit::Router<Vec<usize>>,
    exact: Exact,
    prefixes: Vec<usize>,
}

/// The static paths and the routes on each. Scanned while there are few of them: a length
/// compare turns most entries away without reading their bytes, where hashing the path
/// (foldhash) and probing cost ~100 instructions a request on a router of two paths. Past
/// [`Exact::SCAN`] paths, a hash table.
enum Exact {
    Few(Vec<(Box<[u8]>, Vec<usize>)>),
    Many(HashMap<Box<[u8]>, Vec<usize>, foldhash::fast::FixedState>),
}

impl Default for Exact {
    fn default() -> Self {
        Exact::Few(Vec::new())
    }
}

impl Exact {
    /// Paths a scan is cheaper for than a hash (a scan that finds nothing reads only this
    /// many lengths).
    const SCAN: usize = 8;

    fn from_map(paths: HashMap<Box<[u8]>, Vec<usize>, foldhash::fast::FixedState>) -> Exact {
        if paths.len() <= Exact::SCAN {
            Exact::Few(paths.into_iter().collect())
        } else {
            Exact::Many(paths)
        }
    }

    fn get(&self, path: &[u8]) -> Option<&Vec<usize>> {
        match self {
            // Slice equality compares the lengths before any byte.
            Exact::Few(paths) => paths.iter().find(|(p, _)| **p == *path).map(|(_, ids)| ids),
            Exact::Many(map) => map.get(path),
        }
    }
}

impl Index {
    /// # Panics
    /// If the matcher refuses a path (two parameters side by side in one segment).
    fn build(routes: &[Route]) -> Index {
        let mut by_path: Vec<(String, Vec<usize>)> = Vec::new();
        let mut prefixes = Vec::new();
        let mut exact = HashMap::default();
        for (i, route) in routes.iter().enumerate() {
            if let Pattern::Exact(p) = &route.pattern {
                exact
                    .entry(p.as_bytes().into())
                    .or_insert_with(Vec::new)
                    .push(i);
            }
            let Some(path) = route.pattern.matcher_path() else {
                prefixes.push(i);
                continue;
            };
            match by_path.iter_mut().find(|(p, _)| *p == path) {
                Some((_, ids)) => ids.push(i),
                None => by_path.push((path, vec![i])),
            }
        }
        let mut paths = matchit::Router::new();
        for (path, ids) in by_path {
            if let Err(err) = paths.insert(path, ids) {
                panic!("route refused by the matcher: {err}");
            }
        }
        // Longest first: the most specific prefix wins; equal lengths keep their order.
        prefixes.sort_by_key(|&i| std::cmp::Reverse(routes[i].path.len()));
        Index {
            paths,
            exact: Exact::from_map(exact),
            prefixes,
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
/// assert_eq!(get("/items/7").body_bytes(), b"item 7");
/// assert_eq!(get("/items").body_bytes(), b"all items");
/// assert_eq!(get("/nope").body_bytes(), b"nothing here");
/// ```
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
    index: Index,
    /// What [`Router::with_state`] gave: handed to every request this router routes.
    state: Option<State>,
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
        self.index = Index::build(&self.routes);
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
        let other = other.keeping_state();
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
        let other = other.keeping_state();
        for route in other.routes {
            self = self.push(route);
        }
        self.fallback = self.fallback.or(other.fallback);
        self.not_allowed = self.not_allowed.or(other.not_allowed);
        self.refresh_blocking()
    }

    /// Give every request this router routes `state`, read in handlers with
    /// `req.state::<T>()`: shared state without an `Arc` cloned into every closure. A router
    /// nested or merged into another keeps its own.
    ///
    /// ```
    /// use backlog_server::{Handler, Request, Response, Router};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// struct Hits(AtomicU64);
    /// let app = Router::new()
    ///     .get("/", |req: Request| {
    ///         let hits = req.state::<Hits>().unwrap();
    ///         Response::text(200, format!("{}", hits.0.fetch_add(1, Ordering::Relaxed) + 1))
    ///     })
    ///     .with_state(Hits(AtomicU64::new(0)));
    /// let get = || app.call(Request::builder().build().unwrap());
    /// assert_eq!(get().body_bytes(), b"1");
    /// assert_eq!(get().body_bytes(), b"2");
    /// ```
    pub fn with_state<T: Send + Sync + 'static>(mut self, state: T) -> Self {
        self.state = Some(Arc::new(state));
        self
    }

    /// Its routes, each wrapped to carry this router's state (before they move into
    /// another router, which may hold another).
    fn keeping_state(mut self) -> Self {
        let Some(state) = self.state.take() else {
            return self;
        };
        self.wrap_routes(|inner| {
            Box::new(WithState {
                state: state.clone(),
                inner,
            })
        });
        self
    }

    /// Replace each route's handler with `wrap` of it.
    fn wrap_routes(&mut self, wrap: impl Fn(Box<dyn Handler>) -> Box<dyn Handler>) {
        for route in &mut self.routes {
            let inner = std::mem::replace(&mut route.handler, Box::new(Unreachable));
            route.handler = wrap(inner);
        }
    }

    /// Wrap every route added so far in `layer` (routes added later, and the fallbacks,
    /// are not wrapped: an authentication layer does not turn 404s into 401s).
    pub fn layer<L: Layer>(mut self, layer: L) -> Self {
        let layer = Arc::new(layer);
        self.wrap_routes(|inner| Box::new(Layered::new(layer.clone(), inner)));
        self.refresh_blocking()
    }
}

/// A route of a router with its own state, moved into another router.
struct WithState {
    state: State,
    inner: Box<dyn Handler>,
}

impl Handler for WithState {
    fn call(&self, mut req: Request) -> Response {
        req.set_state(self.state.clone());
        self.inner.call(req)
    }
    fn blocking(&self) -> Blocks<'_> {
        self.inner.blocking()
    }
    fn body_limit(&self, req: &Request) -> Option<u64> {
        self.inner.body_limit(req)
    }
    fn max_body(&self) -> Option<u64> {
        self.inner.max_body()
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

    /// The most specific route for `req` and the path parameters it binds
    /// (percent-decoded; a value that does not decode matches nothing).
    fn find(&self, req: &Request) -> Option<(&Route, Params)> {
        let wanted = match req.method() {
            Method::Head => &Method::Get,
            m => m,
        };
        let exact = self.index.exact.get(req.path_bytes());
        if let Some(ids) = exact {
            // The tree would find this node too (static beats a parameter), with no
            // parameters to bind.
            let route = ids
                .iter()
                .map(|&i| &self.routes[i])
                .find(|r| r.method.allows(wanted));
            if let Some(route) = route {
                return Some((route, Params::new()));
            }
        }
        // Past the table the path is needed as text: checked once for the tree and the
        // prefixes alike.
        let path = req.path();
        if exact.is_none() {
            if let Ok(found) = self.index.paths.at(path) {
                let route = found
                    .value
                    .iter()
                    .map(|&i| &self.routes[i])
                    .find(|r| r.method.allows(wanted));
                if let Some(params) = route.and_then(|r| bind(r, &found.params)) {
                    return route.map(|r| (r, params));
                }
            }
        }
        self.index
            .prefixes
            .iter()
            .map(|&i| &self.routes[i])
            .find(|r| r.method.allows(wanted) && r.pattern.takes_prefix(path))
            .map(|r| (r, Params::new()))
    }

    /// Every route on `path`, whatever its method (for `Allow`).
    fn on_path(&self, path: &str) -> Vec<&Route> {
        let mut on = Vec::new();
        if let Ok(found) = self.index.paths.at(path) {
            on.extend(
                found
                    .value
                    .iter()
                    .map(|&i| &self.routes[i])
                    .filter(|r| bind(r, &found.params).is_some()),
            );
        }
        on.extend(
            self.index
                .prefixes
                .iter()
                .map(|&i| &self.routes[i])
                .filter(|r| r.pattern.takes_prefix(path)),
        );
        on
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
        if let Some(state) = &self.state {
            req.set_state(state.clone());
        }
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
        let on_path = self.on_path(req.path());
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
        assert_eq!(call("GET", "/items/7").body_bytes(), b"7");
        assert_eq!(call("GET", "/items/a%20b").body_bytes(), b"a b");
        assert_eq!(call("GET", "/items/").status(), 404);
        assert_eq!(call("GET", "/items/7/more").status(), 404);
        assert_eq!(call("DELETE", "/items/7").status(), 204);
        let resp = call("PUT", "/items/7");
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.header_value("allow"), Some(&b"GET, HEAD, DELETE"[..]));
        assert_eq!(call("PATCH", "/users/u1/items/9").body_bytes(), b"u1:9");
        assert_eq!(call("OPTIONS", "/echo").body_bytes(), b"OPTIONS");
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
    fn static_paths_are_found_whether_scanned_or_hashed() {
        for n in [1, Exact::SCAN, Exact::SCAN + 1, 40] {
            let mut r = Router::new();
            for i in 0..n {
                // Same lengths, different bytes: the length compare alone decides nothing.
                r = r.get(&format!("/p{i:03}"), move |_r: Request| {
                    Response::text(200, format!("get {i}"))
                });
                r = r.post(&format!("/p{i:03}"), move |_r: Request| {
                    Response::text(200, format!("post {i}"))
                });
            }
            for i in 0..n {
                let path = format!("/p{i:03}");
                assert_eq!(text(r.call(req("GET", &path))), format!("get {i}"), "{n}");
                assert_eq!(text(r.call(req("POST", &path))), format!("post {i}"));
                assert_eq!(r.call(req("PUT", &path)).status(), 405);
            }
            assert_eq!(r.call(req("GET", &format!("/p{n:03}"))).status(), 404);
            assert_eq!(r.call(req("GET", "/p00")).status(), 404);
        }
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

    /// The matcher's order: segment by segment a literal before a parameter, whatever
    /// the order the routes were added in; paths before prefixes, the longest prefix first.
    #[test]
    fn the_matcher_prefers_literals_then_parameters_then_the_longest_prefix() {
        let app = Router::new()
            .get("/a/{x}/c", |r: Request| {
                Response::text(200, format!("x={}", r.param("x").unwrap()))
            })
            .get("/a/b/{y}", |r: Request| {
                Response::text(200, format!("y={}", r.param("y").unwrap()))
            })
            .prefix(Method::Get, "/p/", |_r: Request| {
                Response::text(200, "short")
            })
            .prefix(Method::Get, "/p/q/", |_r: Request| {
                Response::text(200, "long")
            })
            .post("/p/q/exact", |_r: Request| Response::text(200, "exact"));
        assert_eq!(text(app.call(req("GET", "/a/b/c"))), "y=c");
        assert_eq!(text(app.call(req("GET", "/a/z/c"))), "x=z");
        assert_eq!(text(app.call(req("GET", "/p/q/r"))), "long");
        assert_eq!(text(app.call(req("GET", "/p/r"))), "short");
        // A path route for another method: the prefix still takes GET.
        assert_eq!(text(app.call(req("GET", "/p/q/exact"))), "long");
        assert_eq!(text(app.call(req("POST", "/p/q/exact"))), "exact");
        // Different parameter names on one path shape, for different methods.
        let items = Router::new()
            .get("/items/{id}", |r: Request| {
                Response::text(200, r.param("id").unwrap().to_string())
            })
            .delete("/items/{name}", |r: Request| {
                Response::text(200, r.param("name").unwrap().to_string())
            });
        assert_eq!(text(items.call(req("GET", "/items/7"))), "7");
        assert_eq!(text(items.call(req("DELETE", "/items/lamp"))), "lamp");
    }

    #[test]
    fn parameters_parse_as_asked_and_state_is_shared_without_clones() {
        struct Db(&'static str);
        let get = |r: Request| -> Result<Response, h1::ParamError> {
            let id: u32 = r.param_as("id")?;
            let db = r.state::<Db>().map_or("none", |d| d.0);
            Ok(Response::text(200, format!("{db}:{id}")))
        };
        let inner = Router::new().get("/{id}", get).with_state(Db("inner"));
        let app = Router::new()
            .get("/top/{id}", get)
            .nest("/in", inner)
            .with_state(Db("outer"));
        assert_eq!(text(app.call(req("GET", "/top/7"))), "outer:7");
        assert_eq!(
            text(app.call(req("GET", "/in/8"))),
            "inner:8",
            "a nested router keeps its own"
        );
        let bad = app.call(req("GET", "/top/seven"));
        assert_eq!(bad.status(), 400);
        assert!(text(bad).contains("\"id\""));
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
