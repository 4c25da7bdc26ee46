//! The admin endpoint against a live server: accept queue, overflow counters, thread balance,
//! per-connection queues, and Prometheus text that a real parser accepts.

use admin::State;
use backlog_server::{Balance, Model, Request, Response, Router, Server, ServerBuilder};
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn app() -> Router {
    Router::new()
        .get("/", |_r: Request| Response::text(200, "Hello, World!\n"))
        .get("/work", |req: Request| {
            let us: u64 = req
                .query_param("spin_us")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_micros(us) {
                std::hint::spin_loop();
            }
            Response::text(200, "worked\n")
        })
}

struct Pair {
    main: Server,
    admin: Server,
}

impl Pair {
    fn start(builder: ServerBuilder) -> Pair {
        Pair::serving(builder, app())
    }

    /// `router` on `builder`, with an admin server over it.
    fn serving(builder: ServerBuilder, router: Router) -> Pair {
        let main = builder
            .listen("127.0.0.1:0".parse().unwrap())
            .bind(router)
            .unwrap();
        let admin = Server::builder()
            .io(backlog_server::Io::from_env())
            .listen("127.0.0.1:0".parse().unwrap())
            .model(Model::Single)
            .label("admin")
            .bind(admin::app(main.introspect()))
            .unwrap();
        Pair { main, admin }
    }

    /// Wait (10 s at most) until the server holds `n` connections.
    fn wait_open(&self, n: u64) {
        testkit::wait_until(&format!("{n} open"), Duration::from_secs(10), || {
            let snapshot = self.main.stats().snapshot();
            snapshot.iter().map(|t| t.open).sum::<u64>() == n
        });
    }

    fn get(&self, path: &str) -> String {
        let resp = testkit::request(self.admin.local_addr(), "GET", path, &[], b"");
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        resp.text()
    }

    /// Prometheus samples by name, each with its labels; parsed by a real parser.
    fn metrics(&self) -> Vec<(String, HashMap<String, String>, f64)> {
        std::thread::sleep(Duration::from_millis(300)); // past the sampler's cache
        let text = self.get("/metrics");
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
        scrape
            .samples
            .into_iter()
            .map(|s| {
                let v = match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                };
                let labels = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (s.metric, labels, v)
            })
            .collect()
    }

    fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .into_iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    fn state(&self) -> State {
        std::thread::sleep(Duration::from_millis(300));
        serde_json::from_str(&self.get("/debug/state")).unwrap()
    }
}

fn request(addr: SocketAddr, raw: &[u8]) -> (TcpStream, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn read_answer(r: &mut BufReader<TcpStream>) -> u16 {
    testkit::read_response(r, false).expect("an answer").status
}

#[test]
fn the_accept_queue_is_seen_filling_and_draining() {
    let pair = Pair::start(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .model(Model::Single)
            .max_conns(1),
    );
    let addr = pair.main.local_addr();
    let (held, mut held_r) = request(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_answer(&mut held_r), 200);
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            request(
                addr,
                b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
        })
        .collect();
    // The kernel completes the handshakes on its own; wait for it rather than guess.
    testkit::wait_until("20 connections queued", Duration::from_secs(5), || {
        pair.main
            .introspect()
            .listeners()
            .first()
            .and_then(|l| l.accept_queue)
            .is_some_and(|q| q.length == 20)
    });
    assert_eq!(pair.metric("backlog_accept_queue_length"), 20.0);
    assert_eq!(
        pair.metric("backlog_accept_queue_limit"),
        pair.main.backlog() as f64
    );
    drop((held, held_r));
    for (_s, mut r) in waiting {
        assert_eq!(read_answer(&mut r), 200);
    }
    // Every queued connection has been answered, so each was accepted first.
    assert_eq!(pair.metric("backlog_accept_queue_length"), 0.0);
}

#[test]
fn listen_overflows_rise_when_a_small_backlog_overflows() {
    let pair = Pair::start(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .model(Model::Single)
            .max_conns(1)
            .backlog(2),
    );
    let addr = pair.main.local_addr();
    let before = pair.metric("backlog_listen_overflows_total");
    let (_held, mut held_r) = request(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_answer(&mut held_r), 200);
    // Accepting is paused; the queue holds backlog + 1; the kernel drops the rest's SYNs
    // (so their connects hang in retries: give each a short timeout, in parallel).
    let extra: Vec<_> = (0..10)
        .map(|_| {
            std::thread::spawn(move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()
            })
        })
        .collect();
    let _extra: Vec<_> = extra
        .into_iter()
        .filter_map(|t| t.join().unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let overflows = pair.metric("backlog_listen_overflows_total");
        if overflows > before {
            break;
        }
        assert!(Instant::now() < deadline, "no ListenOverflows seen");
    }
    let state = pair.state();
    assert!(state.listeners[0].accept_queue_length >= 2);
    assert_eq!(state.listeners[0].accept_queue_limit, 2);
}

/// Connections placed so that round-robin leaves one reader with three and the other with
/// one, while least-conns evens them out; the same load then shows in the imbalance figure.
fn imbalance_under(balance: Balance) -> f64 {
    let pair = Pair::start(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .model(Model::Dispatch)
            .threads(2)
            .balance(balance),
    );
    let addr = pair.main.local_addr();
    let open = |n: usize| -> Vec<(TcpStream, BufReader<TcpStream>)> {
        (0..n)
            .map(|_| {
                let (s, mut r) = request(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(read_answer(&mut r), 200);
                (s, r)
            })
            .collect()
    };
    let mut first = open(4); // reader-0: #0, #2; reader-1: #1, #3 under both balancers
    drop(first.remove(2));
    drop(first.remove(0));
    let deadline = Instant::now() + Duration::from_secs(5);
    while pair
        .state()
        .threads
        .iter()
        .map(|t| t.counters.open)
        .sum::<u64>()
        != 2
    {
        assert!(Instant::now() < deadline);
    }
    let mut conns = first;
    conns.extend(open(2));
    let _ = pair.state(); // start a fresh interval
    for (s, r) in conns.iter_mut() {
        for _ in 0..50 {
            s.write_all(b"GET /work?spin_us=100 HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            assert_eq!(read_answer(r), 200);
        }
    }
    pair.state().imbalance
}

/// An even load across two readers reads as 1.0, with a blocking pool standing by: the pool's
/// idle threads are not handling threads of the load being measured (they made it 3.07).
#[test]
fn the_blocking_pool_does_not_count_in_the_imbalance() {
    let pair = Pair::start(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .model(Model::Dispatch)
            .threads(2)
            .blocking_threads(4)
            .balance(Balance::RoundRobin),
    );
    let addr = pair.main.local_addr();
    let mut conns: Vec<_> = (0..2)
        .map(|_| request(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    for (_, r) in conns.iter_mut() {
        assert_eq!(read_answer(r), 200);
    }
    let state = pair.state();
    assert!(
        state
            .layout
            .iter()
            .filter(|t| t.name.starts_with("blocking-"))
            .count()
            == 4,
        "{:?}",
        state.layout
    );
    for (s, r) in conns.iter_mut() {
        for _ in 0..100 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
            assert_eq!(read_answer(r), 200);
        }
    }
    let imbalance = pair.state().imbalance;
    assert!(imbalance < 1.1, "even load read as imbalance {imbalance}");
    assert!((pair.metric("backlog_imbalance_ratio") - imbalance).abs() < 0.2);
}

#[test]
fn least_conns_evens_out_what_round_robin_leaves_uneven() {
    let rr = imbalance_under(Balance::RoundRobin);
    let lc = imbalance_under(Balance::LeastConns);
    assert!(rr > 1.3, "round-robin imbalance {rr}");
    assert!(lc < 1.15, "least-conns imbalance {lc}");
}

#[test]
fn connections_show_their_queues_capped_with_a_count_of_the_rest() {
    let pair = Pair::start(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .model(Model::Reuseport)
            .threads(2),
    );
    let addr = pair.main.local_addr();
    let _conns: Vec<_> = (0..5)
        .map(|_| request(addr, b"GET / HTTP/1.1\r\nHost: t\r\nX-Partial: yes"))
        .collect();
    testkit::wait_until("5 partial heads read", Duration::from_secs(5), || {
        let s = pair.main.stats().snapshot();
        s.iter().map(|t| t.open).sum::<u64>() == 5
            && s.iter().map(|t| t.bytes_in).sum::<u64>() == 5 * 39
    });
    let body: serde_json::Value =
        serde_json::from_str(&pair.get("/debug/connections?limit=2")).unwrap();
    assert_eq!(body["total"], 5);
    assert_eq!(body["shown"], 2);
    assert_eq!(body["omitted"], 3);
    let c = &body["connections"][0];
    assert_eq!(c["state"], "ESTABLISHED");
    assert!(c["thread"].as_str().unwrap().starts_with("loop-"));
    assert!(
        c["buffered_in"].as_u64().unwrap() > 0,
        "the partial head waits in our buffer"
    );
    assert!(c["recv_queue"].is_u64() && c["send_queue"].is_u64() && c["age_ms"].is_u64());
    // A limit that is not a number is refused, not read as the default.
    for limit in ["abc", "-1", ""] {
        let path = format!("/debug/connections?limit={limit}");
        let refused = testkit::request(pair.admin.local_addr(), "GET", &path, &[], b"");
        assert_eq!(refused.status, 400, "{path}: {}", refused.text());
    }
}

/// `limit` is clamped: a million asked, a thousand listed, the rest counted.
#[test]
fn a_connection_listing_is_clamped_to_a_thousand() {
    testkit::process::raise_fd_limit(); // 1,100 connections, both ends here
    let pair = Pair::start(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .model(Model::Reuseport)
            .threads(2),
    );
    let addr = pair.main.local_addr();
    let conns: Vec<TcpStream> = (0..1100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    pair.wait_open(1100);
    let body: serde_json::Value =
        serde_json::from_str(&pair.get("/debug/connections?limit=1000000")).unwrap();
    assert_eq!(body["total"], 1100);
    assert_eq!(body["shown"], 1000);
    assert_eq!(body["limit"], 1000);
    assert_eq!(body["omitted"], 100);
    let ages: Vec<u64> = body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["age_ms"].as_u64().unwrap())
        .collect();
    assert!(ages.windows(2).all(|w| w[0] >= w[1]), "oldest first");
    drop(conns);
}

#[test]
fn state_names_the_model_and_its_layout() {
    let pair = Pair::start(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .model(Model::Pool)
            .threads(1)
            .workers(2),
    );
    let state = pair.state();
    assert_eq!(state.model, "pool");
    let shape = admin::Shape {
        listeners: 1,
        acceptors: 0,
        readers: 1,
        workers: 2,
        accept: None,
        balance: None,
        preset: Some("pool".into()),
    };
    assert_eq!(state.shape, shape, "the shape as a structure");
    let names: Vec<_> = state.layout.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["worker-0", "worker-1", "loop-0"]);
    assert_eq!(state.listeners.len(), 1);
    assert!(state.kernel.contains_key("ListenOverflows"));
    let metrics = pair.metrics();
    let info = metrics
        .iter()
        .find(|(n, _, _)| n == "backlog_info")
        .unwrap();
    assert_eq!(info.1["model"], "pool");
    // The I/O interface in force, in both views (BACKLOG_IO runs this suite under either).
    let io = match std::env::var("BACKLOG_IO").as_deref() {
        Ok("uring") => "uring",
        _ => "epoll",
    };
    assert_eq!(state.io, io);
    assert_eq!(info.1["io"], io);
    assert!(metrics
        .iter()
        .any(|(n, l, _)| n == "backlog_thread_busy_ratio" && l["thread"] == "worker-1"));
}

/// The queue waits in `/metrics` (parsed) and `/debug/state`: a connection held 500 ms in the
/// accept queue with its request sent shows ≥ 450 ms in both histograms, in every model.
#[test]
fn queue_waits_are_histograms_by_thread_in_every_model() {
    for model in Model::ALL {
        let pair = Pair::start(
            Server::builder()
                .io(backlog_server::Io::from_env())
                .model(model)
                .threads(2)
                .max_conns(1),
        );
        let addr = pair.main.local_addr();
        // The kernel stamps packets a moment after the first socket asks: warm up first.
        testkit::wait_until("receive timestamps", Duration::from_secs(5), || {
            let (_c, mut r) = request(
                addr,
                b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            );
            read_answer(&mut r);
            pair.main
                .stats()
                .snapshot()
                .iter()
                .any(|t| t.receive_wait.count() > 0)
        });
        let (held, mut held_r) = request(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(read_answer(&mut held_r), 200);
        let (second, mut second_r) = request(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        std::thread::sleep(Duration::from_millis(500));
        drop((held, held_r));
        assert_eq!(read_answer(&mut second_r), 200);
        drop((second, second_r));

        let text = pair.get("/metrics");
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
        for name in [
            "backlog_accept_queue_wait_seconds",
            "backlog_receive_queue_wait_seconds",
        ] {
            let sum: f64 = scrape
                .samples
                .iter()
                .filter(|s| s.metric == format!("{name}_sum"))
                .map(|s| match s.value {
                    prometheus_parse::Value::Untyped(v)
                    | prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v) => v,
                    _ => 0.0,
                })
                .sum();
            let slow: f64 = scrape
                .samples
                .iter()
                .filter(|s| s.metric == name)
                .filter_map(|s| match &s.value {
                    prometheus_parse::Value::Histogram(buckets) => Some(buckets),
                    _ => None,
                })
                .map(|buckets| {
                    let at = |le: f64| {
                        buckets
                            .iter()
                            .find(|b| b.less_than == le)
                            .map_or(0.0, |b| b.count)
                    };
                    at(f64::INFINITY) - at(0.25)
                })
                .sum();
            assert!(sum >= 0.45, "{model:?} {name}: sum {sum}\n{text}");
            assert!(slow >= 1.0, "{model:?} {name}: no wait over 250 ms\n{text}");
        }
        let state = pair.state();
        let slowest = state
            .threads
            .iter()
            .filter_map(|t| t.counters.accept_wait.quantile(1.0))
            .max()
            .unwrap();
        assert!(
            slowest > Duration::from_millis(250),
            "{model:?}: {slowest:?}"
        );
        pair.admin.stop();
        pair.main.stop();
    }
}

/// Any limit is answered from the last listing while it is fresh (250 ms): rotating limits
/// (901, 902, …) once made every request a new listing, four syscalls per connection on the
/// serving threads. A listing is recognised by its ages, which a fresh one would advance.
#[test]
fn rotating_limits_share_one_listing() {
    let pair = Pair::start(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .model(Model::Single),
    );
    let addr = pair.main.local_addr();
    let _conns: Vec<_> = (0..3)
        .map(|_| request(addr, b"GET / HTTP/1.1\r\nHost: t\r\nX-Partial: yes"))
        .collect();
    pair.wait_open(3);
    let ages = |limit: usize| -> Vec<u64> {
        let body: serde_json::Value =
            serde_json::from_str(&pair.get(&format!("/debug/connections?limit={limit}"))).unwrap();
        body["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["age_ms"].as_u64().unwrap())
            .collect()
    };
    let first = ages(1000);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        ages(999),
        first,
        "a different limit within 250 ms lists again"
    );
    assert_eq!(
        ages(2),
        first[..2].to_vec(),
        "a smaller limit is cut from it"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(ages(1000)[0] > first[0], "a stale listing is listed again");
}

/// A 16 MiB answer the client does not read is shown as held by the server, under either
/// driver (io_uring's send owns the buffer while it waits: the listing read 0 there).
#[test]
fn an_unread_answer_shows_as_buffered_out() {
    let pair = Pair::serving(
        Server::builder()
            .io(backlog_server::Io::from_env())
            .model(Model::Single),
        Router::new().get("/big", |_r: Request| {
            Response::new(200).body(vec![b'b'; 16 << 20])
        }),
    );
    let (main, admin) = (&pair.main, &pair.admin);
    let (_c, _r) = request(main.local_addr(), b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    testkit::wait_until("the answer held", Duration::from_secs(5), || {
        let resp = testkit::request(admin.local_addr(), "GET", "/debug/connections", &[], b"");
        let body: serde_json::Value = serde_json::from_str(&resp.text()).unwrap();
        let held = body["connections"]
            .as_array()
            .and_then(|c| c.first())
            .map_or(0, |c| c["buffered_out"].as_u64().unwrap_or(0));
        // The kernel's buffers take some; the server holds the rest.
        held > 8 << 20
    });
}

/// Pointed at the serving port instead of the admin one, a reader is told what it reached.
#[test]
fn fetching_state_from_the_serving_port_says_it_is_not_an_admin_endpoint() {
    let main = Server::builder()
        .io(backlog_server::Io::from_env())
        .listen("127.0.0.1:0".parse().unwrap())
        .model(Model::Single)
        .bind(app())
        .unwrap();
    let err = admin::fetch_state(main.local_addr(), Duration::from_secs(1)).unwrap_err();
    assert!(err.contains("not a backlog admin endpoint"), "{err}");
    assert!(err.contains("404"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let err = admin::fetch_state(addr, Duration::from_secs(1)).unwrap_err();
    assert!(err.contains("cannot reach"), "{err}");
}
