//! Size limits on what a client may send, with nginx-like defaults.

/// How much of a request backlog will buffer before answering with a 4xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header fields, in bytes (nginx: 8 KiB large_client_header_buffers).
    /// Past it: 431.
    pub max_header_bytes: usize,
    /// Number of header fields. Past it: 431.
    pub max_headers: usize,
    /// Request target, in bytes. Past it: 414.
    pub max_uri_bytes: usize,
    /// Decoded body, in bytes (nginx: client_max_body_size, 1 MiB). Past it: 413.
    pub max_body_bytes: u64,
}

/// The most header fields the parser keeps on the stack; `max_headers` is capped at it.
pub const HEADER_SLOTS: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}
