//! A small router: exact paths and path prefixes, each with its methods.
//!
//! Unknown paths get 404; a known path with another method gets 405 with `Allow`, and HEAD
//! is served by the GET route (the encoder drops the body). CONNECT, unless a route asks for
//! it, gets 405: backlog does not tunnel, and a CONNECT target is an authority, not a path.

use crate::Handler;
use h1::{Method, Request, Response};

enum Pattern {
    Exact(String),
    Prefix(String),
}

struct Route {
    method: Method,
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

    /// Route `method path` (exact match) to `handler`.
    pub fn route(mut self, method: Method, path: &str, handler: impl Handler) -> Self {
        self.routes.push(Route {
            method,
            pattern: Pattern::Exact(path.to_string()),
            handler: Box::new(handler),
        });
        self
    }

    /// Route `method` on every path starting with `prefix` to `handler`.
    pub fn prefix(mut self, method: Method, prefix: &str, handler: impl Handler) -> Self {
        self.routes.push(Route {
            method,
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

    fn matches(pattern: &Pattern, path: &str) -> bool {
        match pattern {
            Pattern::Exact(p) => p == path,
            Pattern::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

impl Router {
    /// Every method some route serves, for a 405 that has no path to go by.
    fn allow_all(&self) -> String {
        let mut methods: Vec<&str> = Vec::new();
        for route in &self.routes {
            let names: &[&str] = match route.method {
                Method::Get => &["GET", "HEAD"],
                ref m => &[m.as_str()],
            };
            for name in names {
                if !methods.contains(name) {
                    methods.push(name);
                }
            }
        }
        methods.join(", ")
    }

    fn find(&self, req: &Request) -> Option<&Route> {
        let path = req.path();
        let wanted = match req.method() {
            Method::Head => &Method::Get,
            m => m,
        };
        self.routes
            .iter()
            .find(|r| &r.method == wanted && Self::matches(&r.pattern, path))
    }
}

impl Handler for Router {
    fn blocks(&self, req: &Request) -> bool {
        self.find(req).is_some_and(|r| r.handler.blocks(req))
    }

    fn may_block(&self) -> bool {
        self.routes.iter().any(|r| r.handler.may_block())
    }

    fn call(&self, req: Request) -> Response {
        if *req.method() == Method::Connect
            && !self.routes.iter().any(|r| r.method == Method::Connect)
        {
            return Response::text(405, "Method Not Allowed\n").header("Allow", self.allow_all());
        }
        let path = req.path();
        let wanted = match req.method() {
            Method::Head => &Method::Get,
            m => m,
        };
        let mut path_known = false;
        for route in &self.routes {
            if Self::matches(&route.pattern, path) {
                path_known = true;
                if &route.method == wanted {
                    return route.handler.call(req);
                }
            }
        }
        if !path_known {
            return Response::text(404, "Not Found\n");
        }
        let mut allow = String::new();
        for route in self
            .routes
            .iter()
            .filter(|r| Self::matches(&r.pattern, path))
        {
            if !allow.is_empty() {
                allow.push_str(", ");
            }
            allow.push_str(route.method.as_str());
            if route.method == Method::Get {
                allow.push_str(", HEAD");
            }
        }
        Response::text(405, "Method Not Allowed\n").header("Allow", allow)
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
