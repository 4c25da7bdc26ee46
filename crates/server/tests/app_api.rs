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
