//! The process's file-descriptor limit, which bounds how many connections it can hold.

use rustix::process::{getrlimit, setrlimit, Resource};

/// The soft RLIMIT_NOFILE in force: what this process may open now.
pub fn nofile() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(1 << 20)
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit then in force.
/// Failure to raise is not an error: the current limit is returned.
pub fn raise_nofile() -> u64 {
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(soft), Some(hard)) = (limit.current, limit.maximum) {
        if soft < hard {
            limit.current = Some(hard);
            let _ = setrlimit(Resource::Nofile, limit);
        }
    }
    nofile()
}

#[cfg(test)]
mod tests {
    #[test]
    fn soft_limit_reaches_the_hard_one() {
        let n = super::raise_nofile();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(Some(n), now.current);
        assert_eq!(now.current, now.maximum.or(now.current));
    }
}
