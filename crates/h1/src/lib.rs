//! HTTP/1.1 without I/O (RFC 9110, RFC 9112).
//!
//! Bytes in, requests and events out; responses in, bytes out. Nothing here touches a socket,
//! a thread or a clock other than the `now` it is given, so the same code serves all five of
//! backlog's connection architectures and is tested byte by byte, split at every boundary,
//! and fuzzed without a network.
//!
//! # Layout
//! - [`decoder`]: [`RequestDecoder`], a per-connection state machine that turns a byte stream
//!   into [`Request`]s: heads through httparse, then the checks httparse leaves to us (Host,
//!   framing, smuggling), then the body by Content-Length or [`chunked`] coding.
//! - [`request`]: [`Request`], owned and zero-copy: slices of the connection's read buffer.
//! - [`response`]: [`Response`], a builder, and its encoding with Date, Server and framing.
//! - [`extensions`]: [`Extensions`], values layers attach to a request for the handler.
//! - `json` (feature `serde`): `Request::json`, `Request::query_as`, `Response::json`.
//! - [`limits`]: [`Limits`], with nginx-like defaults.
//! - [`error`]: [`Error`], each variant mapped to the status RFC 9110 gives it.
//! - [`date`]: [`DateCache`], the Date header formatted once a second.

pub mod chunked;
pub mod date;
pub mod decoder;
pub mod error;
pub mod extensions;
mod interop;
pub use interop::{encode_http_head, recycle_header_map};
#[cfg(feature = "serde")]
pub mod json;
pub mod limits;
mod recycle;
pub mod request;
pub mod response;

pub use date::DateCache;
pub use decoder::{Decoded, RequestDecoder, Streamed};
pub use error::Error;
pub use extensions::Extensions;
#[cfg(feature = "serde")]
pub use json::{is_json, JsonError};
pub use limits::Limits;
pub use request::{percent_decode, Method, ParamError, Request, RequestBuilder, Version};
pub use response::{BodyCoding, EncodeContext, Framing, Head, InvalidHeader, Response, StatusCode};
