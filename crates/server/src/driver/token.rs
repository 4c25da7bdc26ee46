//! The one token layout both drivers use to say what a readiness event or a completion is
//! for: the loop's waker, a listener, or a connection. epoll carries it as the event's data,
//! io_uring as the low bits of a request's `user_data` (the ring keeps the top four bits for
//! the kind of request, see `sys::uring`), so a token fits in [`Token::BITS`] bits.
//!
//! A connection's token holds its slab key and the low 24 bits of its generation: a key is
//! reused once its connection closes, and an event or a completion still in flight for the
//! old connection must not be taken for the new one's.

/// What an event or a completion is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    /// The loop's eventfd: another thread wants it to look at its inbox, replies or the
    /// shutdown flag.
    Waker,
    /// The loop's `index`-th listening socket.
    Listener(u16),
    /// A connection: its slab key and (the low 24 bits of) its generation.
    Conn {
        /// Its slot in the reader's slab.
        key: u32,
        /// Its generation, masked to [`GEN_MASK`].
        gen: u32,
    },
}

/// The generation bits a connection's token keeps.
pub(crate) const GEN_MASK: u32 = 0xff_ffff;
/// Where the kind of token sits: above a connection's 32-bit key and 24-bit generation.
const KIND_SHIFT: u32 = 56;
const LISTENER: u64 = 1 << KIND_SHIFT;
const WAKER: u64 = 2 << KIND_SHIFT;

// The ring's `user_data` leaves a token its low 60 bits.
const _: () = assert!(Token::BITS <= 60);

impl Token {
    /// Bits a token takes.
    pub(crate) const BITS: u32 = KIND_SHIFT + 2;

    /// A connection's token.
    pub(crate) fn conn(key: usize, gen: u32) -> Token {
        Token::Conn {
            key: key as u32,
            gen: gen & GEN_MASK,
        }
    }

    /// As the kernel carries it.
    pub(crate) const fn to_u64(self) -> u64 {
        match self {
            Token::Waker => WAKER,
            Token::Listener(index) => LISTENER | index as u64,
            Token::Conn { key, gen } => ((gen & GEN_MASK) as u64) << 32 | key as u64,
        }
    }

    /// Read back what [`Token::to_u64`] wrote.
    pub(crate) fn from_u64(raw: u64) -> Token {
        match raw >> KIND_SHIFT {
            0 => Token::Conn {
                key: raw as u32,
                gen: (raw >> 32) as u32 & GEN_MASK,
            },
            1 => Token::Listener(raw as u16),
            _ => Token::Waker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_reads_back_as_itself_and_fits_the_ring() {
        let tokens = [
            Token::Waker,
            Token::Listener(0),
            Token::Listener(u16::MAX),
            Token::conn(0, 0),
            Token::conn(u32::MAX as usize, u32::MAX),
            Token::conn(12_345, 7),
        ];
        for t in tokens {
            let raw = t.to_u64();
            assert!(raw < 1 << Token::BITS, "{t:?} = {raw:#x}");
            assert_eq!(Token::from_u64(raw), t);
        }
        // A generation past 24 bits keeps its low bits: the same connection.
        assert_eq!(Token::conn(5, 1 << 24 | 3), Token::conn(5, 3));
    }
}
