//! Why a request was refused, and the status each reason earns.
//!
//! Every error ends the connection: after a framing error the server no longer knows where
//! the next request starts, and guessing is how request smuggling works.

/// A request the server will not process. Small and `Copy`: it is made on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request line or a header field does not follow RFC 9112's grammar (including
    /// obs-fold, whitespace before the colon, control bytes, bare CR).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// HTTP/1.1 request without Host, or any request with more than one.
    #[error("missing or repeated Host")]
    Host,
    /// Content-Length that is repeated, not plain digits or too large to represent; or
    /// present together with Transfer-Encoding.
    #[error("invalid message framing: {0}")]
    Framing(&'static str),
    /// A chunk-size line or trailer that is not valid chunked coding.
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
    /// A transfer coding other than `chunked`.
    #[error("unsupported transfer coding")]
    TransferCoding,
    /// An HTTP version other than 1.0 and 1.1.
    #[error("unsupported HTTP version")]
    Version,
    /// An Expect value other than 100-continue.
    #[error("unsupported expectation")]
    Expectation,
    /// Request line and fields over `max_header_bytes`, or more than `max_headers` fields.
    #[error("request header fields too large")]
    HeadTooLarge,
    /// Request target over `max_uri_bytes`.
    #[error("request target too long")]
    UriTooLong,
    /// Body over `max_body_bytes`.
    #[error("request body too large")]
    BodyTooLarge,
}

impl Error {
    /// The status code RFC 9110 names for this refusal.
    pub fn status(self) -> u16 {
        match self {
            Error::Malformed(_) | Error::Host | Error::Framing(_) | Error::Chunked(_) => 400,
            Error::BodyTooLarge => 413,
            Error::UriTooLong => 414,
            Error::Expectation => 417,
            Error::HeadTooLarge => 431,
            Error::TransferCoding => 501,
            Error::Version => 505,
        }
    }
}
