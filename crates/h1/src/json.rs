//! JSON bodies and typed queries (the `serde` feature): what a JSON API reads from a request
//! and writes back, with errors that already know their status.
//!
//! A body is JSON only when the request says so: `Content-Type: application/json`, or any
//! `application/*+json` (RFC 6839), with parameters ignored. Anything else is 415, so a form
//! post never reaches a JSON handler by accident; malformed JSON or the wrong shape is 400.

use crate::{Request, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a JSON body or a query could not become the type asked for.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The request's Content-Type is missing or not JSON: 415.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body is not JSON, or not the JSON the handler expects: 400.
    #[error("invalid JSON body: {0}")]
    Body(#[from] serde_json::Error),
    /// The query string does not fit the type: 400.
    #[error("invalid query: {0}")]
    Query(#[from] serde_urlencoded::de::Error),
}

impl JsonError {
    /// The status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            JsonError::UnsupportedMediaType => 415,
            JsonError::Body(_) | JsonError::Query(_) => 400,
        }
    }
}

/// Whether a Content-Type value names JSON: `application/json` or `application/<x>+json`,
/// case-insensitively, parameters ignored.
pub fn is_json(content_type: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(content_type) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    let sub = sub.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (sub == "json" || sub.ends_with("+json"))
}

impl Request {
    /// The body as JSON of type `T`. [`JsonError::UnsupportedMediaType`] (415) unless the
    /// request's Content-Type is JSON; [`JsonError::Body`] (400) when the body does not parse
    /// as `T`.
    ///
    /// ```
    /// # use h1::Request;
    /// #[derive(serde::Deserialize)]
    /// struct Item { name: String }
    /// let req = Request::builder()
    ///     .method("PUT")
    ///     .header("Content-Type", "application/json")
    ///     .body(r#"{"name":"lamp"}"#)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(req.json::<Item>().unwrap().name, "lamp");
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, JsonError> {
        if !self.header("content-type").is_some_and(is_json) {
            return Err(JsonError::UnsupportedMediaType);
        }
        Ok(serde_json::from_slice(self.body())?)
    }

    /// The query string as `T` (`?prefix=a&limit=10` into a struct with those fields;
    /// percent-decoded, `+` as a space; missing fields may be `Option` or `#[serde(default)]`).
    pub fn query_as<T: DeserializeOwned>(&self) -> Result<T, JsonError> {
        Ok(serde_urlencoded::from_str(self.query().unwrap_or(""))?)
    }
}

impl Response {
    /// A JSON response: `value` serialized, `Content-Type: application/json`. A value that
    /// cannot be serialized (a map with non-string keys) is a bug in the handler: 500.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::json_bytes(status, body),
            Err(_) => Response::text(500, "Internal Server Error\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Q {
        prefix: Option<String>,
        #[serde(default)]
        limit: usize,
    }

    fn req(content_type: Option<&str>, body: &str) -> Request {
        let mut b = Request::builder().method("POST").body(body.to_string());
        if let Some(ct) = content_type {
            b = b.header("Content-Type", ct);
        }
        b.build().unwrap()
    }

    #[test]
    fn json_bodies_need_a_json_content_type() {
        let ok = req(Some("application/json; charset=utf-8"), r#"{"a":1}"#);
        assert_eq!(ok.json::<serde_json::Value>().unwrap()["a"], 1);
        let vendor = req(Some("Application/Problem+JSON"), "[]");
        assert!(vendor.json::<Vec<u8>>().is_ok());
        for ct in [
            None,
            Some("text/plain"),
            Some("application/jsonx"),
            Some("json"),
        ] {
            let err = req(ct, "{}").json::<serde_json::Value>().unwrap_err();
            assert_eq!(err.status(), 415, "{ct:?}");
        }
        let err = req(Some("application/json"), "{").json::<serde_json::Value>();
        assert_eq!(err.unwrap_err().status(), 400);
        let err = req(Some("application/json"), r#"{"a":1}"#).json::<Vec<u8>>();
        assert_eq!(err.unwrap_err().status(), 400, "wrong shape");
    }

    #[test]
    fn queries_decode_into_types() {
        let q = |target: &str| Request::builder().target(target).build().unwrap();
        assert_eq!(
            q("/i?prefix=a%20b&limit=10").query_as::<Q>().unwrap(),
            Q {
                prefix: Some("a b".into()),
                limit: 10
            }
        );
        assert_eq!(
            q("/i").query_as::<Q>().unwrap(),
            Q {
                prefix: None,
                limit: 0
            }
        );
        assert_eq!(q("/i?limit=x").query_as::<Q>().unwrap_err().status(), 400);
    }

    #[test]
    fn values_serialize_with_their_type() {
        let resp = Response::json(201, &serde_json::json!({"ok": true}));
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.body_bytes(), br#"{"ok":true}"#);
        assert_eq!(
            resp.header_value("content-type"),
            Some(&b"application/json"[..])
        );
    }
}
