//! A reader's free list of I/O buffers, lent to connections while they have bytes in flight.
//!
//! An idle keep-alive connection holds no buffer (it would cost 16 KiB each); a busy one
//! borrows a warm buffer instead of allocating. The list is bounded in bytes as well as in
//! count, and a buffer that grew for one large request or answer (a 1 MiB body) is freed
//! rather than kept: otherwise a burst of large requests would leave every reader holding
//! its high-water mark for good (measured: RSS stuck at 125–213 MB after 1 MiB echoes).

use bytes::BytesMut;

/// Buffers the list keeps at most.
const MAX_BUFFERS: usize = 64;
/// A buffer larger than this is freed when returned, not kept.
const MAX_KEPT_CAPACITY: usize = 64 * 1024;
/// Bytes of capacity the list keeps at most.
const MAX_KEPT_BYTES: usize = 1024 * 1024;

/// The free list. Owned by one reader thread.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    free: Vec<BytesMut>,
    bytes: usize,
}

impl Buffers {
    /// A buffer to lend, if one is free.
    pub(crate) fn take(&mut self) -> Option<BytesMut> {
        let buf = self.free.pop()?;
        self.bytes -= buf.capacity();
        Some(buf)
    }

    /// Lend a free buffer to `slot` if it has none.
    pub(crate) fn lend(&mut self, slot: &mut BytesMut) {
        if slot.capacity() == 0 {
            if let Some(buf) = self.take() {
                *slot = buf;
            }
        }
    }

    /// Take back an empty buffer; keep it if it is small and there is room, else free it.
    pub(crate) fn give(&mut self, mut buf: BytesMut) {
        buf.clear();
        // An empty view can be the tail of a large allocation (a body was split off the
        // front of it and has since been dropped): reclaiming shows the allocation's real
        // size, so a 1 MiB read buffer is not kept under a small capacity.
        let _ = buf.try_reclaim(MAX_KEPT_CAPACITY + 1);
        let cap = buf.capacity();
        if cap == 0
            || cap > MAX_KEPT_CAPACITY
            || self.free.len() >= MAX_BUFFERS
            || self.bytes + cap > MAX_KEPT_BYTES
        {
            return;
        }
        self.bytes += cap;
        self.free.push(buf);
    }

    /// Bytes of capacity held on the list.
    #[cfg(test)]
    fn kept_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_buffer_is_freed_not_kept() {
        let mut b = Buffers::default();
        b.give(BytesMut::with_capacity(2 * 1024 * 1024));
        assert!(b.take().is_none());
        b.give(BytesMut::with_capacity(16 * 1024));
        assert_eq!(b.kept_bytes(), 16 * 1024);
        assert_eq!(b.take().map(|x| x.capacity() >= 16 * 1024), Some(true));
        assert_eq!(b.kept_bytes(), 0);
    }

    #[test]
    fn the_tail_of_a_large_buffer_is_freed_too() {
        let mut big = BytesMut::with_capacity(1024 * 1024);
        big.extend_from_slice(&vec![1u8; 1024 * 1024 - 100]);
        let body = big.split_to(1024 * 1024 - 100).freeze();
        drop(body);
        assert!(big.capacity() <= 100);
        let mut b = Buffers::default();
        b.give(big);
        assert!(
            b.take().is_none(),
            "a 1 MiB allocation kept under a small capacity"
        );
    }

    #[test]
    fn the_list_is_bounded_in_bytes_and_count() {
        let mut b = Buffers::default();
        for _ in 0..1000 {
            b.give(BytesMut::with_capacity(60 * 1024));
        }
        assert!(b.kept_bytes() <= MAX_KEPT_BYTES);
        for _ in 0..1000 {
            b.give(BytesMut::with_capacity(16));
        }
        assert!(b.free.len() <= MAX_BUFFERS);
    }
}
