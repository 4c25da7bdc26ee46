//! Network namespaces: the lab runs storms and floods inside one it creates, where it may
//! change sysctls and overflow queues without touching the host.

use std::io;
use std::os::fd::AsFd;

/// Move the calling thread into the network namespace named `name` (as made by `ip netns
/// add`, under /run/netns). Threads it spawns afterwards start inside it too.
pub fn enter(name: &str) -> io::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{name}"))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    Ok(())
}
