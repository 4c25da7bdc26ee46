//! The Date header, formatted once a second instead of once a response.

use std::time::{SystemTime, UNIX_EPOCH};

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, always 29 bytes) cached per second.
/// Each thread keeps its own, so refreshing needs no lock.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    text: [u8; 29],
}

impl DateCache {
    /// A cache holding `now`'s date.
    pub fn new(now: SystemTime) -> Self {
        let mut cache = DateCache {
            secs: u64::MAX,
            text: [b' '; 29],
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
                self.text.copy_from_slice(formatted.as_bytes());
            }
            self.secs = secs;
        }
    }

    /// The cached value, without the field name.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
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
    }
}
