//! The smallest backlog server: `cargo run -p backlog-server --example hello -- dispatch`
//! (or any topology: `-- "listeners=1 acceptors=2 readers=4 workers=2"`).
//!
//! Pick the shape as the first argument; the handler does not change. Ctrl-C drains and
//! prints each thread's counters.

use backlog_server::{Request, Response, Router, Server, Topology};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shape: Topology = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "reuseport".into())
        .parse()?;
    let app = Router::new()
        .get("/", |_req: Request| Response::text(200, "Hello, World!\n"))
        .get("/hello/{name}", |req: Request| {
            let name = req.param("name").unwrap_or("world");
            Response::text(200, format!("Hello, {name}!\n"))
        });
    println!("{} ({shape}) on http://127.0.0.1:8080", shape.name());
    let stats = Server::builder()
        // The driver as BACKLOG_IO says (epoll unless set): the program chooses to ask.
        .io(backlog_server::Io::from_env())
        .listen("127.0.0.1:8080".parse()?)
        .topology(shape)
        .serve_until_signal(app)?;
    print!("{}", stats.table());
    Ok(())
}
