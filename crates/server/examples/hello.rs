//! The smallest backlog server: `cargo run -p backlog-server --example hello -- dispatch`.
//!
//! Pick the model as the first argument; the handler does not change.

use server::{Model, Request, Response, Router, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = match std::env::args().nth(1).as_deref() {
        Some("single") => Model::Single,
        Some("dispatch") => Model::Dispatch,
        Some("pool") => Model::Pool,
        Some("shared") => Model::Shared,
        _ => Model::Reuseport,
    };
    let app = Router::new()
        .get("/", |_req: Request| Response::text(200, "Hello, World!\n"))
        .get("/hello", |req: Request| {
            let name = req.query_param("name").unwrap_or("world");
            Response::text(200, format!("Hello, {name}!\n"))
        });
    let server = Server::builder()
        .listen("127.0.0.1:8080".parse()?)
        .model(model)
        .bind(app)?;
    println!("{} serving on http://{}", model.name(), server.local_addr());
    let handle = server.handle();
    // Stop on the first line typed on stdin, to show a clean shutdown from another thread.
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_line(&mut String::new());
        handle.shutdown();
    });
    let stats = server.wait();
    print!("{}", stats.table());
    Ok(())
}
