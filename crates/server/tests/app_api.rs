//! The application API a real server honours in every model: the peer address on each
//! request, values a layer attaches, per-route body limits applied before the body is read,
//! and refusals rendered by the application.

mod util;

use backlog_server::{BodyLimit, Handler, Limits, Refusal, Request, Response, Router};
use std::io::{BufReader, Write};
use util::*;

struct Caller(String);

fn app() -> Router {
    let tag = |mut req: Request, next: &dyn Handler| {
        let who = req.header_str("x-user").unwrap_or("anonymous").to_string();
        req.extensions_mut().insert(Caller(who));
        next.call(req)
    };
    Router::new()
        .get("/peer", |req: Request| {
            Response::text(
                200,
                req.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
            )
        })
        .get("/who", |req: Request| {
            Response::text(200, req.extensions().get::<Caller>().unwrap().0.clone())
        })
        .layer(tag)
        .post(
            "/small",
            BodyLimit::new(16, |req: Request| Response::text(200, req.body().clone())),
        )
        .post(
            "/large",
            BodyLimit::new(4096, |req: Request| {
                Response::text(200, req.body().len().to_string())
            }),
        )
        .post("/default", |req: Request| {
            Response::text(200, req.body().len().to_string())
        })
}

#[test]
fn peer_extensions_route_limits_and_rendered_refusals_in_every_model() {
    for (name, builder) in models() {
        let server = builder
            .limits(Limits {
                max_body_bytes: 1024,
                ..Limits::default()
            })
            .on_refusal(|r: &Refusal| {
                Response::json_bytes(200, format!(r#"{{"error":"{}"}}"#, r.reason()))
            })
            .bind(app())
            .unwrap();
        let addr = server.local_addr();

        let (mut w, mut r) = open(addr);
        w.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r, false).unwrap();
        assert_eq!(resp.text(), w.local_addr().unwrap().to_string(), "{name}");
        drop((w, r));

        let who = request(addr, "GET", "/who", &[("X-User", "ann")], b"");
        assert_eq!(
            who.text(),
            "ann",
            "{name}: a layer's value reaches the handler"
        );

        let ok = request(addr, "POST", "/small", &[], &[b'x'; 16]);
        assert_eq!(ok.status, 200, "{name}");
        let big = request(addr, "POST", "/small", &[], &[b'x'; 17]);
        assert_eq!(big.status, 413, "{name}: the route's own limit");
        assert_eq!(big.header("content-type"), Some("application/json"));
        assert_eq!(big.text(), r#"{"error":"request body too large"}"#);
        assert_eq!(big.header("connection"), Some("close"), "{name}");
        // A route may allow more than the server-wide limit; others keep it.
        assert_eq!(
            request(addr, "POST", "/large", &[], &[b'x'; 3000]).text(),
            "3000"
        );
        let over = request(addr, "POST", "/default", &[], &[b'x'; 1025]);
        assert_eq!(over.status, 413, "{name}");

        // A malformed request: the server's status, the application's format, closed.
        let (mut w, mut r) = open(addr);
        w.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let bad = read_response(&mut BufReader::new(&mut r), false).unwrap();
        assert_eq!(bad.status, 400, "{name}");
        assert_eq!(bad.text(), r#"{"error":"missing or repeated Host"}"#);
        drop((w, r));
        server.stop();
    }
}

/// The `http` crate's types at the edge: a route keyed by an `::http::Method`, a handler that
/// reads the request as an `http::HeaderMap` and answers with an `::http::Response` or a bare
/// `::http::StatusCode` — over a real socket, in every model.
#[test]
fn handlers_take_and_give_the_http_crates_types_in_every_model() {
    let app = || {
        Router::new()
            .route(::http::Method::PUT, "/items/{id}", |req: Request| {
                let headers = req.header_map();
                let tag = headers
                    .get("x-tag")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_string();
                ::http::Response::builder()
                    .status(::http::StatusCode::CREATED)
                    .header(
                        ::http::header::LOCATION,
                        format!("/items/{}", req.param("id").unwrap()),
                    )
                    .body(format!("tag {tag}\n"))
                    .unwrap()
            })
            .route(::http::Method::DELETE, "/items/{id}", |_req: Request| {
                ::http::StatusCode::NO_CONTENT
            })
    };
    for (name, builder) in models() {
        let server = builder.bind(app()).unwrap();
        let addr = server.local_addr();
        let put = roundtrip(
            addr,
            b"PUT /items/7 HTTP/1.1\r\nHost: t\r\nX-Tag: blue\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(put.status, 201, "{name}");
        assert_eq!(put.header("location"), Some("/items/7"), "{name}");
        assert_eq!(put.text(), "tag blue\n", "{name}");
        let delete = roundtrip(addr, b"DELETE /items/7 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(delete.status, 204, "{name}");
        let get = roundtrip(addr, b"GET /items/7 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(get.status, 405, "{name}: the routes are keyed by method");
        server.stop();
    }
}
