//! The middleware over a store written here, outside the crate: a map in memory. It proves
//! the `Store` trait is all a backend needs, and checks the middleware's rules without a
//! database.

use backlog_server::{Handler, HandlerExt, Layer, Method, Request, Response, Router};
use idempotency::{
    Claim, Claimed, IdempotencyConfig, IdempotencyLayer, Idempotent, Key, Store, StoreError,
    StoredResponse,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Record {
    fingerprint: [u8; 32],
    token: i64,
    lease_until: Instant,
    expires_at: Instant,
    response: Option<StoredResponse>,
}

#[derive(Default)]
struct MemoryStore {
    records: Mutex<HashMap<Key, Record>>,
    next_token: Mutex<i64>,
}

impl Store for MemoryStore {
    fn claim(
        &self,
        k: &Key,
        fp: &[u8; 32],
        lease: Duration,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let mut records = self.records.lock().unwrap();
        if let Some(r) = records.get(k).filter(|r| r.expires_at > now) {
            if &r.fingerprint != fp {
                return Ok(Claim::Mismatch);
            }
            match &r.response {
                Some(resp) => return Ok(Claim::Replay(resp.clone())),
                None if r.lease_until > now => return Ok(Claim::InFlight),
                None => {}
            }
        }
        let token = {
            let mut t = self.next_token.lock().unwrap();
            *t += 1;
            *t
        };
        records.insert(
            k.clone(),
            Record {
                fingerprint: *fp,
                token,
                lease_until: now + lease,
                expires_at: now + ttl,
                response: None,
            },
        );
        Ok(Claim::Run { token })
    }

    fn complete(&self, claimed: &Claimed, resp: &StoredResponse) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap();
        match records.get_mut(&claimed.key) {
            Some(r) if r.token == claimed.token && r.response.is_none() => {
                r.response = Some(resp.clone());
                Ok(())
            }
            _ => Err(StoreError::LeaseLost),
        }
    }

    fn release(&self, claimed: &Claimed) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap();
        if records
            .get(&claimed.key)
            .is_some_and(|r| r.token == claimed.token)
        {
            records.remove(&claimed.key);
        }
        Ok(())
    }

    fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut records = self.records.lock().unwrap();
        let before = records.len();
        records.retain(|_, r| r.expires_at > now);
        Ok((before - records.len()) as u64)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

fn post(target: &str, key: Option<&str>, body: &str) -> Request {
    let mut b = Request::builder()
        .method("POST")
        .target(target)
        .body(body.to_string());
    if let Some(k) = key {
        b = b.header("Idempotency-Key", k);
    }
    b.build().unwrap()
}

/// A handler with an effect: counts its calls.
fn counting(calls: Arc<AtomicUsize>) -> impl Handler {
    move |_req: Request| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        Response::text(201, format!("created #{n}"))
    }
}

#[test]
fn a_key_runs_the_handler_once_and_replays_its_answer() {
    let store = Arc::new(MemoryStore::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let h = Idempotent::wrap(
        store.clone(),
        IdempotencyConfig::default(),
        counting(calls.clone()),
    );
    assert!(h.blocking().may_block() && h.blocking().blocks(&post("/", None, "")));

    let first = h.call(post("/c", Some("\"k1\""), "a"));
    assert_eq!(
        (first.status(), first.body_bytes()),
        (201, &b"created #1"[..])
    );
    let again = h.call(post("/c", Some("k1"), "a"));
    assert_eq!(
        again.body_bytes(),
        b"created #1",
        "a bare key is the same key"
    );
    assert_eq!(
        again.header_value("idempotent-replayed"),
        Some(&b"true"[..])
    );
    assert_eq!(
        h.call(post("/c", Some("k1"), "b")).status(),
        422,
        "another request"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    assert_eq!(h.call(post("/c", None, "a")).status(), 201, "no key: runs");
    assert_eq!(h.call(post("/c", Some("two words"), "a")).status(), 400);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn methods_are_configurable_and_keys_can_be_required() {
    let store = Arc::new(MemoryStore::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let cfg = IdempotencyConfig {
        methods: vec![Method::Post, Method::Put],
        require_key: true,
        ..IdempotencyConfig::default()
    };
    let h = counting(calls.clone()).layer(IdempotencyLayer::new(store.clone(), cfg));
    let put = |key: &str| {
        Request::builder()
            .method("PUT")
            .header("Idempotency-Key", key)
            .build()
            .unwrap()
    };
    h.call(put("p1"));
    let replay = h.call(put("p1"));
    assert_eq!(
        replay.header_value("idempotent-replayed"),
        Some(&b"true"[..])
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "PUT is guarded when configured"
    );
    assert_eq!(
        h.call(post("/", None, "x")).status(),
        400,
        "a key is required"
    );
    // PATCH is no longer guarded: it runs, key or not, and nothing is stored.
    let patch = || {
        Request::builder()
            .method("PATCH")
            .header("Idempotency-Key", "p2")
            .build()
            .unwrap()
    };
    h.call(patch());
    h.call(patch());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The layer blocks only where it waits on the store.
    let layer = IdempotencyLayer::new(store, IdempotencyConfig::default());
    assert!(layer.blocking().blocks(&post("/", Some("k"), "")));
    assert!(!layer.blocking().blocks(&post("/", None, "")));
}

#[test]
fn a_panicking_handler_answers_500_once_and_for_all() {
    let store = Arc::new(MemoryStore::default());
    let h = Idempotent::wrap(
        store,
        IdempotencyConfig::default(),
        |_req: Request| -> Response { panic!("boom") },
    );
    assert_eq!(h.call(post("/", Some("k"), "")).status(), 500);
    let again = h.call(post("/", Some("k"), ""));
    assert_eq!(again.status(), 500);
    assert_eq!(
        again.header_value("idempotent-replayed"),
        Some(&b"true"[..])
    );
}

#[test]
fn a_router_takes_the_layer_and_expired_keys_are_purged() {
    let store = Arc::new(MemoryStore::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let cfg = IdempotencyConfig {
        ttl: Duration::from_millis(1),
        ..IdempotencyConfig::default()
    };
    let app = Router::new()
        .post("/orders", counting(calls.clone()))
        .layer(IdempotencyLayer::new(store.clone(), cfg));
    app.call(post("/orders", Some("o1"), ""));
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(store.purge_expired().unwrap(), 1);
    app.call(post("/orders", Some("o1"), ""));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "an expired key runs again");
}
