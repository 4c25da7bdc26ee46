//! `backlog serve --tls-cert --tls-key`: real TLS clients (curl, openssl s_client, Python's
//! ssl, rustls) against a real `backlog` process on every preset, a certificate reload under
//! load, and what the log must and must not say about keys.

mod util;

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::tls::{client_trusting, connect_tls, TestCert};
use testkit::{read_response, roundtrip};
use util::Served;

fn start(cert: &TestCert, extra: &[&str]) -> Served {
    let (c, k) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--app",
        "arena",
        "--tls-cert",
        c,
        "--tls-key",
        k,
    ];
    args.extend_from_slice(extra);
    Served::start(&args)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn curl(cert: &TestCert, addr: SocketAddr, path: &str) -> (bool, String) {
    run(Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "10", "--cacert"])
        .arg(&cert.cert)
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", addr.port())])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .arg(format!("https://localhost:{}{path}", addr.port())))
}

/// `openssl s_client` with `options`, sending one GET; what it printed.
fn openssl_s_client(cert: &TestCert, addr: SocketAddr, options: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-ign_eof", "-connect", &addr.to_string()])
        .args(options)
        .args(["-servername", "localhost", "-CAfile"])
        .arg(&cert.cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /pipeline HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn python_ssl(cert: &TestCert, addr: SocketAddr) -> (bool, String) {
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.set_alpn_protocols(["http/1.1"])
with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET /baseline11?a=2&b=3 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        print(s.version(), s.selected_alpn_protocol())
        print(data.decode())
"#;
    run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&cert.cert)
        .arg(addr.port().to_string()))
}

#[test]
#[ignore = "needs curl, openssl and python3 (scripts/test installs them)"]
fn curl_openssl_and_python_speak_tls_to_every_preset() {
    let cert = TestCert::new();
    for shape in util::shapes() {
        let server = start(&cert, shape);
        let (ok, out) = curl(&cert, server.addr, "/pipeline");
        assert!(ok, "{shape:?}: curl: {out}");
        assert_eq!(out.trim_end(), "ok\n200 1.1", "{shape:?}");
        let out = openssl_s_client(&cert, server.addr, &["-alpn", "http/1.1"]);
        assert!(out.contains("ALPN protocol: http/1.1"), "{shape:?}: {out}");
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "{shape:?}: {out}"
        );
        assert!(out.contains("HTTP/1.1 200"), "{shape:?}: {out}");
        let (ok, out) = python_ssl(&cert, server.addr);
        assert!(ok, "{shape:?}: python: {out}");
        assert!(out.starts_with("TLSv1.3 http/1.1\n"), "{shape:?}: {out}");
        assert!(
            out.contains("HTTP/1.1 200") && out.ends_with("5\n"),
            "{shape:?}: {out}"
        );
        // Plain HTTP to the TLS port: a 400 the client can read.
        let resp = roundtrip(server.addr, b"GET /pipeline HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(resp.status, 400, "{shape:?}");
        assert!(resp
            .text()
            .contains("plain HTTP request was sent to HTTPS port"));
    }
}

#[test]
#[ignore = "needs openssl (scripts/test installs it)"]
fn tls_1_2_is_served_too() {
    let cert = TestCert::new();
    let server = start(&cert, &["--model", "single"]);
    let out = openssl_s_client(&cert, server.addr, &["-tls1_2"]);
    assert!(out.contains("New, TLSv1.2,"), "{out}");
    assert!(out.contains("HTTP/1.1 200"), "{out}");
}

#[test]
fn a_reload_under_load_changes_the_certificate_with_no_failed_request() {
    let cert = TestCert::new();
    let scratch = testkit::scratch("backlog-tls-pid-");
    let pid_file = scratch.path().join("backlog.pid");
    let mut server = start(
        &cert,
        &[
            "--model",
            "reuseport",
            "--threads",
            "2",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
    );
    let old_pem = cert.cert_pem.clone();
    // The clients trust both the old and the next certificate: a request may fail only if
    // the server dropped it.
    let next = TestCert::new();
    let both = client_trusting(&[&old_pem, &next.cert_pem]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let addr = server.addr;
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (stop, ok, failed, cfg) = (stop.clone(), ok.clone(), failed.clone(), both.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut kept = (i % 2 == 0).then(|| BufReader::new(connect_tls(addr, &cfg)));
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let answered = match kept.as_mut() {
                        // Keep-alive clients, on connections made before the reload.
                        Some(r) => {
                            r.get_mut()
                                .write_all(b"GET /pipeline HTTP/1.1\r\nHost: t\r\n\r\n")
                                .is_ok()
                                && read_response(r, false).is_ok_and(|x| x.status == 200)
                        }
                        // A new connection (a new handshake) per request.
                        None => {
                            let mut s = connect_tls(addr, &cfg);
                            s.write_all(
                                b"GET /pipeline HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                            )
                            .is_ok()
                                && read_response(&mut BufReader::new(s), false)
                                    .is_ok_and(|x| x.status == 200)
                        }
                    };
                    let counter = if answered { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    testkit::wait_until("load before the reload", Duration::from_secs(10), || {
        ok.load(Ordering::Relaxed) > 200
    });
    // The new pair replaces the files, then `backlog reload` sends SIGHUP.
    std::fs::copy(&next.cert, &cert.cert).unwrap();
    std::fs::copy(&next.key, &cert.key).unwrap();
    let status = Command::new(util::BIN)
        .args(["reload", "--pid-file"])
        .arg(&pid_file)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    server.wait_for("TLS certificates reloaded");
    let at_reload = ok.load(Ordering::Relaxed);
    testkit::wait_until("load after the reload", Duration::from_secs(10), || {
        ok.load(Ordering::Relaxed) > at_reload + 200
    });
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
    // New handshakes present the new certificate: a client trusting only it is served.
    let only_new = client_trusting(&[&next.cert_pem]);
    let mut s = connect_tls(addr, &only_new);
    s.write_all(b"GET /pipeline HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(s), false).unwrap().status,
        200
    );
}

#[test]
fn a_key_others_can_read_is_warned_about_and_no_key_is_ever_logged() {
    use std::os::unix::fs::PermissionsExt;
    let cert = TestCert::new();
    std::fs::set_permissions(&cert.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut server = start(&cert, &["--model", "single"]);
    server.wait_for("readable by other users");
    // A bad reload (a key that is not one) is logged without its contents.
    std::fs::write(
        &cert.key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    server.signal("-HUP");
    server.wait_for("TLS reload failed");
    server.signal("-TERM");
    assert_eq!(server.wait_exit(), 0);
    let body: String = cert
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for line in &server.seen {
        assert!(!line.contains("PRIVATE KEY"), "{line}");
        assert!(!line.contains("AAAA"), "{line}");
        assert!(!line.contains(&body[..16]), "{line}");
    }
}

#[test]
fn an_unusable_certificate_is_a_start_up_error() {
    let cert = TestCert::new();
    let other = TestCert::new();
    let out = Command::new(util::BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--app",
            "arena",
            "--tls-cert",
        ])
        .arg(&cert.cert)
        .arg("--tls-key")
        .arg(&other.key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS"), "{err}");
    let out = Command::new(util::BIN)
        .args(["serve", "--tls-cert"])
        .arg(&cert.cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--tls-cert needs --tls-key");
}

#[test]
fn metrics_and_state_show_handshakes_in_flight_and_failures_by_cause() {
    let cert = TestCert::new();
    let mut server = start(
        &cert,
        &[
            "--model",
            "dispatch",
            "--threads",
            "2",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = server.admin_addr();
    let client = cert.client();
    for _ in 0..3 {
        let mut s = connect_tls(server.addr, &client);
        s.write_all(b"GET /pipeline HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(
            read_response(&mut BufReader::new(s), false).unwrap().status,
            200
        );
    }
    let resp = roundtrip(server.addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(resp.status, 400);
    // A handshake begun and left hanging is in flight.
    let mut hanging = testkit::connect(server.addr);
    hanging.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    let metrics = || testkit::request(admin, "GET", "/metrics", &[], b"").text();
    testkit::wait_until(
        "the hanging handshake shows",
        Duration::from_secs(5),
        || {
            metrics()
                .lines()
                .any(|l| l.starts_with("backlog_tls_handshakes_in_flight{") && l.ends_with(" 1"))
        },
    );
    let text = metrics();
    let count = |kind: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with("backlog_tls_handshake_seconds_count{")
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(count("full") + count("resumed"), 3, "{text}");
    assert!(count("resumed") >= 1, "{text}");
    let plain: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("backlog_tls_failures_total{") && l.contains("cause=\"plain_http\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(plain, 1, "{text}");
    let state = testkit::request(admin, "GET", "/debug/state", &[], b"").text();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["tls"]["in_flight"], 1, "{state}");
    assert_eq!(state["tls"]["failures"]["plain_http"], 1, "{state}");
    drop(hanging);
}
