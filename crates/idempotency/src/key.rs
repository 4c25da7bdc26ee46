//! The `Idempotency-Key` field value: an RFC 8941 sf-string.
//!
//! ```text
//! sf-string = DQUOTE *chr DQUOTE
//! chr       = unescaped / escaped
//! unescaped = %x20-21 / %x23-5B / %x5D-7E
//! escaped   = "\" ( DQUOTE / "\" )
//! ```

/// The longest key accepted, in characters (after unescaping).
pub const MAX_KEY_LEN: usize = 255;

/// Why a key was refused (each is a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a quoted sf-string, or a bad escape or character.
    #[error("Idempotency-Key must be a quoted string (RFC 8941)")]
    Malformed,
    /// Empty.
    #[error("Idempotency-Key must not be empty")]
    Empty,
    /// Longer than [`MAX_KEY_LEN`].
    #[error("Idempotency-Key is longer than 255 characters")]
    TooLong,
}

/// Parse the field value into the key it carries.
pub fn parse(value: &[u8]) -> Result<String, KeyError> {
    let value = value.trim_ascii();
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
    fn refuses_everything_else() {
        assert_eq!(parse(b"unquoted"), Err(KeyError::Malformed));
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
