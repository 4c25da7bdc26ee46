//! How the process's allocator gives memory back to the kernel.
//!
//! glibc serves large allocations with mmap and returns them with munmap, but by default it
//! raises that threshold to the size of any mmapped block freed (up to 32 MiB): after the
//! first 1 MiB request body is freed, every later one comes from an arena and stays in the
//! process once freed (measured: 60 MiB resident after 200 × 1 MiB echoes, from 5 MiB).
//! A server whose requests are mostly small and sometimes huge wants the opposite: fix the
//! threshold, so a large buffer always goes back when it is dropped.

/// Serve allocations of `threshold` bytes or more with mmap, always (glibc's
/// `M_MMAP_THRESHOLD`, which also stops the dynamic adjustment). Process-wide; a binary
/// calls it once at start. Elsewhere than glibc it does nothing. Returns whether it applied.
pub fn return_large_allocations(threshold: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(threshold).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter; it takes two integers and touches
        // no memory of ours.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) };
        ok == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = threshold;
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_threshold_is_accepted() {
        assert!(super::return_large_allocations(128 * 1024));
    }
}
