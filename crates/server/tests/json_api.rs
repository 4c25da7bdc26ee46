//! The json_api example's contract, in every model, kept by both of its binaries: the
//! native one (`json_api`) and the same service as a plain axum app (`axum_app`). Each is
//! started on an ephemeral port and spoken to over raw TCP, as its users would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{request, roundtrip, HttpResponse};

/// The two binaries that keep the contract.
const EXAMPLES: [&str; 2] = ["json_api", "axum_app"];

/// An example binary, built beside this test. `cargo test` builds the examples, but a run
/// of this test alone (`--test json_api`) does not, and would start a stale one: so build
/// them here once (a no-op when they are up to date). `--workspace`, as `cargo test`
/// resolves features for the whole workspace: `-p backlog-server` alone would resolve fewer
/// and build a second copy of every dependency. The features are the ones the suites were
/// built with: `BACKLOG_TEST_FEATURES` as `scripts/test` sets it, else the server's `axum`
/// feature (a plain `cargo test` then rebuilds the server's own crate for the examples, not
/// its dependencies). Other features would make this build and the suites' take turns
/// rebuilding the dependencies whose features differ (a minute of CI's run).
fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let features =
            std::env::var("BACKLOG_TEST_FEATURES").unwrap_or_else(|_| "backlog-server/axum".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-q", "--workspace", "--features", &features]);
        let exe = std::env::current_exe().unwrap();
        if exe
            .parent()
            .and_then(|d| d.parent())
            .is_some_and(|p| p.ends_with("release"))
        {
            build.arg("--release");
        }
        for example in EXAMPLES {
            build.args(["--example", example]);
        }
        assert!(build.status().unwrap().success(), "building the examples");
    });
    let deps = std::env::current_exe().unwrap();
    deps.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

/// The example running; SIGTERM and reaped when dropped.
struct Api {
    child: std::sync::Mutex<Child>,
    addr: SocketAddr,
    /// What it logged (its stderr), for a failure's report.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Api {
    /// Start the example on a port the kernel picks, and take the address from its own
    /// "backlog serving … addr=" line: no port chosen here that another test or process
    /// could take in between, and no probe connection before the first request.
    fn start(name: &str, args: &[&str]) -> Api {
        let mut child = Command::new(example(name))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let addr = line
                    .contains("backlog serving")
                    .then(|| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix("addr="))
                    })
                    .flatten()
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
                kept.lock().unwrap().push(line);
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(10)) else {
            // Never leave it running: no Api owns it yet to stop it.
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not start: {:#?}", log.lock().unwrap());
        };
        Api {
            child: std::sync::Mutex::new(child),
            addr,
            log,
        }
    }

    fn call(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpResponse {
        let call = || request(self.addr, method, target, headers, body.as_bytes());
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
            Ok(resp) => resp,
            Err(panic) => {
                // Say whether the server is still there: a call that fails because the
                // process died reads very differently from one the server got wrong.
                let exited = self.child.lock().unwrap().try_wait();
                eprintln!(
                    "{method} {target} on {} failed; the server: {exited:?}; its log: {:#?}",
                    self.addr,
                    self.log.lock().unwrap()
                );
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// SIGTERM; the exit status.
    fn stop(self) -> std::process::ExitStatus {
        let mut child = self.child.lock().unwrap();
        sys::process::signal(child.id(), signal_hook::consts::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        drop(child);
        std::mem::forget(self);
        status
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

const AUTH: (&str, &str) = ("Authorization", "Bearer secret");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn json(resp: &HttpResponse) -> serde_json::Value {
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{}",
        resp.text()
    );
    serde_json::from_slice(&resp.body).unwrap()
}

fn check_contract(api: &Api, name: &str) {
    let health = api.call("GET", "/health", &[], "");
    assert_eq!(
        (health.status, json(&health)),
        (200, serde_json::json!({"ok": true}))
    );

    let put = |id: &str, body: &str| api.call("PUT", &format!("/items/{id}"), &[AUTH, JSON], body);
    assert_eq!(put("apple", r#"{"n":1}"#).status, 201, "{name}: new");
    assert_eq!(put("apple", r#"{"n":2}"#).status, 200, "{name}: replaced");
    assert_eq!(put("avocado", "{}").status, 201);
    assert_eq!(put("banana", "{}").status, 201);
    let bad = put("x", "{not json");
    assert_eq!(bad.status, 400, "{name}");
    assert!(json(&bad)["error"].is_string());
    assert_eq!(put("x", "[1]").status, 400, "{name}: an object is required");
    let form = api.call(
        "PUT",
        "/items/x",
        &[AUTH, ("Content-Type", "text/plain")],
        "{}",
    );
    assert_eq!(form.status, 415, "{name}");
    assert!(json(&form)["error"].is_string());
    let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(16 * 1024));
    let too_big = put("x", &big);
    assert_eq!(too_big.status, 413, "{name}");
    assert!(json(&too_big)["error"].is_string());

    let got = api.call("GET", "/items/apple", &[AUTH], "");
    assert_eq!(
        (got.status, json(&got)),
        (200, serde_json::json!({"n": 2})),
        "{name}"
    );
    let missing = api.call("GET", "/items/pear", &[AUTH], "");
    assert_eq!(missing.status, 404);
    assert!(json(&missing)["error"].is_string());

    let list = |q: &str| json(&api.call("GET", &format!("/items{q}"), &[AUTH], ""));
    assert_eq!(
        list(""),
        serde_json::json!(["apple", "avocado", "banana"]),
        "{name}"
    );
    assert_eq!(
        list("?prefix=a&limit=10"),
        serde_json::json!(["apple", "avocado"])
    );
    assert_eq!(list("?prefix=a&limit=1"), serde_json::json!(["apple"]));

    assert_eq!(api.call("DELETE", "/items/banana", &[AUTH], "").status, 204);
    assert_eq!(api.call("DELETE", "/items/banana", &[AUTH], "").status, 404);

    for (target, headers) in [
        ("/items", &[][..]),
        ("/items/apple", &[("Authorization", "Bearer nope")][..]),
    ] {
        let denied = api.call("GET", target, headers, "");
        assert_eq!(denied.status, 401, "{name} {target}");
        assert!(json(&denied)["error"].is_string());
    }
    let unknown = api.call("GET", "/nope", &[], "");
    assert_eq!(unknown.status, 404);
    assert!(json(&unknown)["error"].is_string());
    let wrong = api.call("POST", "/health", &[], "");
    assert_eq!(wrong.status, 405, "{name}");
    // A list (RFC 9110 §5.6.1): `GET, HEAD` and `GET,HEAD` say the same.
    let allow: Vec<&str> = wrong
        .header("allow")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(allow, ["GET", "HEAD"], "{name}");
    assert!(json(&wrong)["error"].is_string());
    // The server's own refusals come in the API's format too.
    let refused = roundtrip(api.addr, b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(refused.status, 400);
    assert!(json(&refused)["error"].is_string());
}

/// The median time of `GET /health` while eight `/slow` calls (50 ms each, more than the
/// default blocking pool holds at once) are in progress.
fn health_beside_slow(api: &Api) -> Duration {
    let mut times = Vec::new();
    for _ in 0..5 {
        let addr = api.addr;
        let slow: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(move || request(addr, "GET", "/slow", &[], b"").status))
            .collect();
        std::thread::sleep(Duration::from_millis(10));
        let t0 = Instant::now();
        assert_eq!(api.call("GET", "/health", &[], "").status, 200);
        times.push(t0.elapsed());
        for s in slow {
            assert_eq!(s.join().unwrap(), 200);
        }
    }
    times.sort();
    times[times.len() / 2]
}

#[test]
fn the_json_api_example_keeps_its_contract_in_every_model() {
    for example in EXAMPLES {
        for model in ["single", "dispatch", "pool", "shared", "reuseport"] {
            let name = format!("{example} on {model}");
            let api = Api::start(example, &["--model", model]);
            check_contract(&api, &name);
            let health = health_beside_slow(&api);
            eprintln!("{name}: GET /health beside /slow, median of 5: {health:?}");
            assert!(
                health < Duration::from_millis(40),
                "{name}: /health waited {health:?} behind 50 ms slow calls"
            );
            let status = api.stop();
            assert!(
                status.success(),
                "{name}: SIGTERM must exit 0, got {status}"
            );
        }
    }
}

#[test]
fn the_json_api_example_takes_a_topology() {
    for example in EXAMPLES {
        let api = Api::start(
            example,
            &["--topology", "listeners=1 acceptors=1 readers=2 workers=0"],
        );
        check_contract(&api, example);
        assert!(api.stop().success());
    }
    let api = Api::start(
        "axum_app",
        &["--topology", "listeners=2 acceptors=0 readers=2 workers=2"],
    );
    check_contract(&api, "axum_app on a hybrid topology");
    assert!(api.stop().success());
}

/// The axum app's tower-http layers work on backlog: the list compresses with gzip when
/// the client accepts it (and not when it does not).
#[test]
fn the_axum_app_compresses_the_list() {
    let api = Api::start("axum_app", &["--model", "pool"]);
    for i in 0..20 {
        let id = format!("item-{i:02}");
        let put = api.call("PUT", &format!("/items/{id}"), &[AUTH, JSON], "{}");
        assert_eq!(put.status, 201);
    }
    let plain = api.call("GET", "/items", &[AUTH], "");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    let ids: Vec<String> = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(ids.len(), 20);
    let gz = api.call("GET", "/items", &[AUTH, ("Accept-Encoding", "gzip")], "");
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(&gz.body[..2], &[0x1f, 0x8b], "a gzip member");
    assert!(gz.body.len() < plain.body.len());
    // HEAD: the GET's fields; a length only if it is the GET's (the compressed length is
    // not known where the head is written, and `Content-Length: 0` would be false).
    let head = api.call("HEAD", "/items", &[AUTH, ("Accept-Encoding", "gzip")], "");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    let stated = head.header("content-length");
    assert!(
        stated.is_none() || stated == Some(gz.body.len().to_string().as_str()),
        "HEAD states Content-Length {stated:?}, the GET sent {}",
        gz.body.len()
    );
    let head = api.call("HEAD", "/items", &[AUTH], "");
    let len = plain.body.len().to_string();
    assert_eq!(head.header("content-length"), Some(len.as_str()));
    assert!(api.stop().success());
}
