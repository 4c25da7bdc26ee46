//! A peer from the field: actix-web 4 serving HttpArena's endpoints as its users write
//! them (a route per endpoint, `web::Query` for the parameters, the body as `web::Bytes`),
//! one worker per thread. Built only with the `actix` feature; the lab starts it as
//! `backlog anchor-actix`.

use actix_web::{web, App, HttpResponse, HttpServer};
use std::net::SocketAddr;

#[derive(serde::Deserialize)]
struct Sum {
    a: Option<i64>,
    b: Option<i64>,
}

fn text(body: String) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body(body)
}

async fn get(q: web::Query<Sum>) -> HttpResponse {
    text(q.a.unwrap_or(0).wrapping_add(q.b.unwrap_or(0)).to_string())
}

async fn post(q: web::Query<Sum>, body: web::Bytes) -> HttpResponse {
    match crate::engine::body_int(&body) {
        Some(n) => text(
            q.a.unwrap_or(0)
                .wrapping_add(q.b.unwrap_or(0))
                .wrapping_add(n)
                .to_string(),
        ),
        None => HttpResponse::BadRequest().finish(),
    }
}

/// Serve on `addr` (port 0 picks one) with `threads` workers until killed. Prints
/// `actix serving addr=…` on stderr once bound.
pub fn run(addr: SocketAddr, threads: usize, backlog: i32) -> anyhow::Result<()> {
    let listener = crate::floor::reuseport_listener(addr, backlog)?;
    let bound = listener.local_addr()?;
    eprintln!("actix serving addr={bound}");
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new()
                .route("/baseline11", web::get().to(get))
                .route("/baseline11", web::post().to(post))
                .route(
                    "/pipeline",
                    web::get().to(|| async { text("ok".to_string()) }),
                )
        })
        .workers(threads.max(1))
        .backlog(backlog.max(1) as u32)
        .listen(listener)?
        .run()
        .await
    })?;
    Ok(())
}
