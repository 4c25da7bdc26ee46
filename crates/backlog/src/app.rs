//! The built-in applications `backlog serve` runs: `hello` (the benchmark's plaintext and the
//! slow handler that makes imbalance visible), `echo` (what HTTP conformance suites expect
//! of a server under test) and `arena` (HttpArena's engine endpoints, so that any shape is
//! measured the way the field is).

use backlog_server::{http, Handler, RequestBody, Router};
use bytes::Bytes;
use h1::{Request, Response};
use idempotency::{PgStore, SqliteStore, StoreError};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The longest `/work?spin_us=` honoured, so one request cannot hold a thread for minutes.
const MAX_SPIN: Duration = Duration::from_secs(10);

/// The `hello` app's database: its comments and their idempotency records, in one store so
/// that both commit in one transaction.
pub enum Db {
    /// Embedded, under `--data` (the default).
    Sqlite(Arc<SqliteStore>),
    /// Shared by a fleet, at `--store postgres://…`.
    Postgres(Arc<PgStore>),
}

impl Db {
    /// The store `spec` names: a `postgres://` URL, or SQLite under `data_dir`. Fails
    /// (for the binary: one line, exit 2) when it cannot be reached or set up.
    pub fn open(spec: Option<&str>, data_dir: &Path) -> Result<Db, StoreError> {
        match spec {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Db::Postgres(PgStore::open(url)?))
            }
            Some(other) => Err(StoreError::Setup(format!(
                "unknown store {other:?}: use postgres://… (or omit --store for SQLite)"
            ))),
            None => Ok(Db::Sqlite(SqliteStore::open(data_dir)?)),
        }
    }

    /// `sqlite` or `postgres`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

/// `GET /`, `GET /work?spin_us=N`, and the comments API over `db`.
pub fn hello(
    db: &Db,
    cfg: idempotency::IdempotencyConfig,
    comment_delay: Duration,
) -> Result<impl Handler, StoreError> {
    let router = Router::new()
        .get("/", |_req: Request| Response::text(200, "Hello, World!\n"))
        .get("/work", work);
    match db {
        Db::Sqlite(s) => crate::comments::routes(router, s.clone(), cfg, comment_delay),
        Db::Postgres(p) => crate::comments::routes(router, p.clone(), cfg, comment_delay),
    }
}

/// Burn `spin_us` microseconds of CPU on the thread running the handler.
fn work(req: Request) -> Response {
    let Some(us) = req.query_param("spin_us").map(str::parse::<u64>) else {
        return Response::text(400, "spin_us=N is required\n");
    };
    let Ok(us) = us else {
        return Response::text(400, "spin_us must be a whole number of microseconds\n");
    };
    let spin = Duration::from_micros(us).min(MAX_SPIN);
    let start = Instant::now();
    let mut x: u64 = 0;
    while start.elapsed() < spin {
        for _ in 0..64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    Response::text(200, format!("spun {} us\n", spin.as_micros()))
}

/// HttpArena's engine endpoints, as its implementation notes and validate.sh define them:
/// `GET /baseline11?a=&b=` answers the sum of the two integers, `POST /baseline11?a=&b=`
/// adds the integer its body holds (sent with Content-Length or chunked: the server
/// decodes either before the handler sees it), `GET /pipeline` answers `ok`; every answer
/// `text/plain`, 404 elsewhere. A parameter left out counts as 0 (the field's reference
/// entries do the same); one that is not an integer, or a body that is not one, is a 400,
/// never a silently wrong sum.
pub fn arena() -> Router {
    Router::new()
        .get("/baseline11", |req: Request| match query_sum(&req) {
            Ok(sum) => decimal(sum),
            Err(why) => Response::text(400, why),
        })
        .post("/baseline11", |req: Request| {
            let body = decimal_i64(req.body().trim_ascii());
            match (query_sum(&req), body) {
                (Ok(sum), Some(n)) => decimal(sum.wrapping_add(n)),
                (Err(why), _) => Response::text(400, why),
                (_, None) => Response::text(400, "the body must be an integer\n"),
            }
        })
        .get("/pipeline", |_req: Request| Response::text(200, "ok"))
        .fallback(|_req: Request| Response::text(404, "not found\n"))
}

/// A 200 whose text is `n` in decimal, kept in the response itself (at most 20 bytes: no
/// allocation of its own).
fn decimal(n: i64) -> Response {
    Response::text(200, Bytes::new()).body_copied(itoa::Buffer::new().format(n).as_bytes())
}

/// `a + b` from the query (a missing one is 0), in one pass over its bytes.
fn query_sum(req: &Request) -> Result<i64, &'static str> {
    let mut sum = 0i64;
    for pair in req.query_bytes().unwrap_or_default().split(|&b| b == b'&') {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        if name == b"a" || name == b"b" {
            let n = decimal_i64(value).ok_or("a and b must be integers\n")?;
            sum = sum.wrapping_add(n);
        }
    }
    Ok(sum)
}

/// A decimal `i64` read from bytes as `i64::from_str` reads it from text: an optional sign,
/// at least one digit, nothing else, no overflow.
fn decimal_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n = 0i64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

/// Every method on every path but CONNECT: 200 with the request body, streamed back as it
/// arrives (a large body is answered while it is read, so memory per echo stays bounded
/// whatever its size; a client must read while it sends, as curl does). CONNECT gets 405,
/// since a 2xx to it would promise a tunnel (RFC 9110 §9.3.6). A tower service, run on the
/// shape's worker runtime or polled on its readers.
#[derive(Clone, Copy)]
pub struct Echo;

impl tower_service::Service<http::Request<RequestBody>> for Echo {
    type Response = http::Response<RequestBody>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<RequestBody>) -> Self::Future {
        let mut resp = http::Response::new(RequestBody::default());
        if req.method() == http::Method::CONNECT {
            *resp.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
            resp.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            return std::future::ready(Ok(resp));
        }
        let (parts, body) = req.into_parts();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(http::HeaderValue::from_static("application/octet-stream"));
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type);
        *resp.body_mut() = body;
        std::future::ready(Ok(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_i64_reads_what_from_str_reads() {
        let cases = [
            "0",
            "7",
            "-7",
            "+7",
            "42",
            "-0",
            "+",
            "-",
            "",
            " 1",
            "1 ",
            "1a",
            "a1",
            "--1",
            "+-1",
            "1.5",
            "1e3",
            "0x10",
            "00012",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "١",
        ];
        for case in cases {
            assert_eq!(
                decimal_i64(case.as_bytes()),
                case.parse::<i64>().ok(),
                "{case:?}"
            );
        }
    }

    #[test]
    fn the_query_sum_takes_a_and_b_and_refuses_what_is_not_an_integer() {
        let sum = |target: &str| {
            let req = Request::builder().target(target).build().unwrap();
            query_sum(&req)
        };
        assert_eq!(sum("/baseline11?a=13&b=42"), Ok(55));
        assert_eq!(sum("/baseline11?b=-2&x=zz&&a=5"), Ok(3));
        assert_eq!(sum("/baseline11"), Ok(0));
        assert_eq!(sum("/baseline11?a=9223372036854775807&b=1"), Ok(i64::MIN));
        assert!(sum("/baseline11?a=x&b=1").is_err());
        assert!(sum("/baseline11?a&b=1").is_err());
        assert!(sum("/baseline11?a=1.5").is_err());
    }
}
