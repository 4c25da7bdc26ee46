//! A small router: exact paths, paths with `{name}` segments (`/items/{id}`, read with
//! [`Request::param`]), and path prefixes, each with its methods.
//!
//! Unknown paths get 404; a known path with another method gets 405 with `Allow`, and HEAD
//! is served by the GET route (the encoder drops the body). CONNECT, unless a route asks for
//! it, gets 405: backlog does not tunnel, and a CONNECT target is an authority, not a path.

use crate::Handler;
use h1::{Method, Request, Response};

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
    pattern: Pattern,
    handler: Box<dyn Handler>,
}

/// Routes requests by method and path.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// An empty router: everything is 404.
    pub fn new() -> Self {
        Router::default()
    }

    /// Route `method path` to `handler`. `path` is exact, or has `{name}` segments that
    /// match one segment each (`/items/{id}`; the handler reads `req.param("id")`).
    pub fn route(mut self, method: Method, path: &str, handler: impl Handler) -> Self {
        self.routes.push(Route {
            method: Methods::One(method),
            pattern: Pattern::parse(path),
            handler: Box::new(handler),
        });
        self
    }

    /// Route every method on `path` to `handler`.
    pub fn any(mut self, path: &str, handler: impl Handler) -> Self {
        self.routes.push(Route {
            method: Methods::Any,
            pattern: Pattern::parse(path),
            handler: Box::new(handler),
        });
        self
    }

    /// Route `method` on every path starting with `prefix` to `handler`.
    pub fn prefix(mut self, method: Method, prefix: &str, handler: impl Handler) -> Self {
        self.routes.push(Route {
            method: Methods::One(method),
            pattern: Pattern::Prefix(prefix.to_string()),
            handler: Box::new(handler),
        });
        self
    }

    /// `GET path`.
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

    /// The route for `req` and the path parameters it binds.
    fn find(&self, req: &Request) -> Option<(&Route, Params)> {
        let path = req.path();
        let wanted = match req.method() {
            Method::Head => &Method::Get,
            m => m,
        };
        self.routes.iter().find_map(|r| {
            if !r.method.allows(wanted) {
                return None;
            }
            r.pattern.matches(path).map(|params| (r, params))
        })
    }
}

impl Handler for Router {
    fn blocks(&self, req: &Request) -> bool {
        self.find(req).is_some_and(|(r, _)| r.handler.blocks(req))
    }

    fn may_block(&self) -> bool {
        self.routes.iter().any(|r| r.handler.may_block())
    }

    fn call(&self, mut req: Request) -> Response {
        if *req.method() == Method::Connect
            && !self
                .routes
                .iter()
                .any(|r| r.method == Methods::One(Method::Connect))
        {
            // backlog does not tunnel; a CONNECT target is an authority, not a path.
            return Response::text(405, "Method Not Allowed\n")
                .header("Allow", Self::allow(self.routes.iter()));
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
            return Response::text(404, "Not Found\n");
        }
        Response::text(405, "Method Not Allowed\n")
            .header("Allow", Self::allow(on_path.into_iter()))
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
        assert!(r.may_block());
        let slow = Request::builder()
            .method("PUT")
            .target("/slow")
            .build()
            .unwrap();
        let fast = Request::builder().target("/a").build().unwrap();
        assert!(r.blocks(&slow) && !r.blocks(&fast));
        assert!(!Router::new()
            .get("/", |_r: Request| Response::new(204))
            .may_block());
    }
}
