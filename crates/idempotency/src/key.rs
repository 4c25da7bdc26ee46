//! The `Idempotency-Key` field value.
//!
//! The IETF draft makes it an RFC 8941 sf-string (`Idempotency-Key: "8e03978e-…"`):
//!
//! ```text
//! sf-string = DQUOTE *chr DQUOTE
//! chr       = unescaped / escaped
//! unescaped = %x20-21 / %x23-5B / %x5D-7E
//! escaped   = "\" ( DQUOTE / "\" )
//! ```
//!
//! Stripe's clients, and most in the wild, send the key bare (`Idempotency-Key: k2`). Both
//! are accepted: a bare key is one or more visible ASCII characters other than `"` and `\`
//! (so it cannot be confused with a quoted one), and means the same key as its quoted form.

/// The longest key accepted, in characters (after unescaping).
pub const MAX_KEY_LEN: usize = 255;

/// Why a key was refused (each is a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Neither a quoted sf-string nor a bare key; a bad escape or character.
    #[error("Idempotency-Key must be a quoted string (RFC 8941) or a bare token of visible ASCII")]
    Malformed,
    /// Empty.
    #[error("Idempotency-Key must not be empty")]
    Empty,
    /// Longer than [`MAX_KEY_LEN`].
    #[error("Idempotency-Key is longer than 255 characters")]
    TooLong,
    /// Sent in more than one field. Field lines of one name combine into a list (RFC 9110
    /// §5.3), and a key is one item: the same as `"a", "b"` on one line.
    #[error("Idempotency-Key must be sent once: two fields are a list of keys")]
    Repeated,
}

/// Parse the field value into the key it carries.
pub fn parse(value: &[u8]) -> Result<String, KeyError> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return Err(KeyError::Empty);
    }
    if !value.starts_with(b"\"") {
        return bare(value);
    }
    let inner = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .ok_or(KeyError::Malformed)?;
    let mut key = String::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&e @ (b'"' | b'\\')) => key.push(e as char),
                _ => return Err(KeyError::Malformed),
            },
            b'"' => return Err(KeyError::Malformed),
            0x20..=0x7e => key.push(b as char),
            _ => return Err(KeyError::Malformed),
        }
    }
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    Ok(key)
}

/// A key sent without quotes, as Stripe's clients do.
fn bare(value: &[u8]) -> Result<String, KeyError> {
    if !value
        .iter()
        .all(|&b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(KeyError::Malformed);
    }
    if value.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    // Visible ASCII only: valid UTF-8.
    Ok(String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_quoted_strings_with_escapes() {
        assert_eq!(
            parse(b"\"8e03978e-40d5-43e8-bc93-6894a57f9324\"").unwrap(),
            "8e03978e-40d5-43e8-bc93-6894a57f9324"
        );
        assert_eq!(parse(br#""a\"b\\c""#).unwrap(), r#"a"b\c"#);
        assert_eq!(parse(b" \"k\" ").unwrap(), "k");
    }

    #[test]
    fn accepts_bare_keys_as_stripe_sends_them() {
        assert_eq!(parse(b"k2").unwrap(), "k2");
        assert_eq!(
            parse(b" 8e03978e-40d5-43e8 ").unwrap(),
            "8e03978e-40d5-43e8"
        );
        assert_eq!(
            parse(b"k2").unwrap(),
            parse(b"\"k2\"").unwrap(),
            "one key, two spellings"
        );
        assert_eq!(parse(b"two words"), Err(KeyError::Malformed));
        assert_eq!(parse(b"a\\b"), Err(KeyError::Malformed));
        assert_eq!(parse(b"a\"b"), Err(KeyError::Malformed));
        assert_eq!(parse(b"  "), Err(KeyError::Empty));
        assert_eq!(parse("k".repeat(256).as_bytes()), Err(KeyError::TooLong));
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(parse(b"\"open"), Err(KeyError::Malformed));
        assert_eq!(parse(b"\"a\"b\""), Err(KeyError::Malformed));
        assert_eq!(parse(b"\"bad\\escape\""), Err(KeyError::Malformed));
        assert_eq!(parse(b"\"tab\there\""), Err(KeyError::Malformed));
        assert_eq!(parse(b"\"\""), Err(KeyError::Empty));
        let long = format!("\"{}\"", "k".repeat(256));
        assert_eq!(parse(long.as_bytes()), Err(KeyError::TooLong));
        let max = format!("\"{}\"", "k".repeat(255));
        assert!(parse(max.as_bytes()).is_ok());
    }
}
