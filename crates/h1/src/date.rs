//! The Date header, formatted once a second instead of once a response.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, always 29 bytes) cached per second.
/// Each thread keeps its own, so refreshing needs no lock.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    /// When, by the monotonic clock, the cached second may have ended: until then
    /// [`DateCache::refresh_by`] reads no clock (an event loop asks every round).
    due: Option<Instant>,
    /// The two fields every response starts with, `Server` and `Date`, whole, after the
    /// status line of a 200: one copy into the output opens the most common answer, two
    /// any other.
    fields: [u8; FIELDS_LEN],
}

const OK_LINE: &[u8] = b"HTTP/1.1 200 OK\r\n";
const SERVER_THEN_DATE: &[u8] = b"Server: backlog\r\nDate: ";
const SERVER_AT: usize = OK_LINE.len();
const DATE_AT: usize = SERVER_AT + SERVER_THEN_DATE.len();
const FIELDS_LEN: usize = DATE_AT + 29 + 2;

impl DateCache {
    /// A cache holding `now`'s date.
    pub fn new(now: SystemTime) -> Self {
        let mut fields = [b' '; FIELDS_LEN];
        fields[..SERVER_AT].copy_from_slice(OK_LINE);
        fields[SERVER_AT..DATE_AT].copy_from_slice(SERVER_THEN_DATE);
        fields[FIELDS_LEN - 2..].copy_from_slice(b"\r\n");
        let mut cache = DateCache {
            secs: u64::MAX,
            due: None,
            fields,
        };
        cache.refresh(now);
        cache
    }

    /// Re-format if `now` is in a later second than the cached text.
    pub fn refresh(&mut self, now: SystemTime) {
        self.show(since_epoch(now).as_secs());
    }

    /// Format `secs` (since the epoch) unless it is the second already shown.
    fn show(&mut self, secs: u64) {
        if secs != self.secs {
            let formatted = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            if formatted.len() == 29 {
                self.fields[DATE_AT..DATE_AT + 29].copy_from_slice(formatted.as_bytes());
            }
            self.secs = secs;
        }
    }

    /// Re-format if the second may have turned by `now` (monotonic): the wall clock is
    /// read once a second, not once a round. A wall clock stepped meanwhile shows at the
    /// next turn, within a second.
    pub fn refresh_by(&mut self, now: Instant) {
        if self.due.is_some_and(|due| now < due) {
            return;
        }
        let wall = since_epoch(SystemTime::now());
        self.show(wall.as_secs());
        let left = 1_000_000_000 - wall.subsec_nanos();
        self.due = Some(now + Duration::from_nanos(u64::from(left)));
    }

    /// The cached value, without the field name.
    pub fn as_bytes(&self) -> &[u8] {
        &self.fields[DATE_AT..DATE_AT + 29]
    }

    /// `Server: backlog` and `Date: <the cached value>`, each with its CRLF.
    pub fn server_and_date(&self) -> &[u8] {
        &self.fields[SERVER_AT..]
    }

    /// `HTTP/1.1 200 OK` and then [`server_and_date`](Self::server_and_date).
    pub fn ok_line_server_and_date(&self) -> &[u8] {
        &self.fields
    }
}

/// `t` as time since the epoch (zero for a clock set before it).
fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            cache.ok_line_server_and_date(),
            b"HTTP/1.1 200 OK\r\nServer: backlog\r\nDate: Sun, 06 Nov 1994 08:49:38 GMT\r\n"
        );
    }

    /// By the monotonic clock: the first call reads the wall clock, later ones within the
    /// second do not (the text stays), and one a second on reads it again.
    #[test]
    fn refresh_by_reads_the_wall_clock_once_a_second() {
        let mut cache = DateCache::new(UNIX_EPOCH);
        assert_eq!(cache.as_bytes(), b"Thu, 01 Jan 1970 00:00:00 GMT");
        let t0 = Instant::now();
        cache.refresh_by(t0);
        let now = cache.as_bytes().to_vec();
        assert_ne!(now, b"Thu, 01 Jan 1970 00:00:00 GMT");
        let due = cache.due.expect("a due time");
        assert!(due > t0 && due <= t0 + Duration::from_secs(1));
        cache.refresh(UNIX_EPOCH);
        cache.refresh_by(t0);
        assert_eq!(
            cache.as_bytes(),
            b"Thu, 01 Jan 1970 00:00:00 GMT",
            "no clock read"
        );
        cache.refresh_by(due);
        assert_ne!(cache.as_bytes(), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
