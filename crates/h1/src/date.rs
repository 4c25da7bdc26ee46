//! The Date header, formatted once a second instead of once a response.

use std::time::{SystemTime, UNIX_EPOCH};

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, always 29 bytes) cached per second.
/// Each thread keeps its own, so refreshing needs no lock.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    /// The two fields every response starts with, `Server` and `Date`, whole: one copy
    /// into the output instead of four.
    fields: [u8; FIELDS_LEN],
}

const SERVER_THEN_DATE: &[u8] = b"Server: backlog\r\nDate: ";
const DATE_AT: usize = SERVER_THEN_DATE.len();
const FIELDS_LEN: usize = DATE_AT + 29 + 2;

impl DateCache {
    /// A cache holding `now`'s date.
    pub fn new(now: SystemTime) -> Self {
        let mut fields = [b' '; FIELDS_LEN];
        fields[..DATE_AT].copy_from_slice(SERVER_THEN_DATE);
        fields[FIELDS_LEN - 2..].copy_from_slice(b"\r\n");
        let mut cache = DateCache {
            secs: u64::MAX,
            fields,
        };
        cache.refresh(now);
        cache
    }

    /// Re-format if `now` is in a later second than the cached text.
    pub fn refresh(&mut self, now: SystemTime) {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if secs != self.secs {
            let formatted =
                httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
            if formatted.len() == 29 {
                self.fields[DATE_AT..DATE_AT + 29].copy_from_slice(formatted.as_bytes());
            }
            self.secs = secs;
        }
    }

    /// The cached value, without the field name.
    pub fn as_bytes(&self) -> &[u8] {
        &self.fields[DATE_AT..DATE_AT + 29]
    }

    /// `Server: backlog` and `Date: <the cached value>`, each with its CRLF.
    pub fn server_and_date(&self) -> &[u8] {
        &self.fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_imf_fixdate_and_refreshes_each_second() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let mut cache = DateCache::new(t);
        assert_eq!(cache.as_bytes(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        cache.refresh(t + Duration::from_millis(500));
        assert_eq!(cache.as_bytes(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        cache.refresh(t + Duration::from_secs(1));
        assert_eq!(cache.as_bytes(), b"Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(
            cache.server_and_date(),
            b"Server: backlog\r\nDate: Sun, 06 Nov 1994 08:49:38 GMT\r\n"
        );
    }
}
