//! Signals to other processes (a supervisor telling its workers to drain, `backlog reload`
//! telling a supervisor to start a new generation), and the CPUs a thread may run on.

use std::io;

/// Send signal number `signal` (`libc`'s numbering, e.g. from signal-hook's constants) to
/// process `pid`.
pub fn signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process id"))?;
    let signal = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a signal"))?;
    rustix::process::kill_process(pid, signal)?;
    Ok(())
}

/// Ask the kernel to send this process `signal` when its parent dies, so that workers never
/// outlive a supervisor that was killed outright. The kernel sends it each time the process
/// is re-parented, which for a multi-threaded parent is once per exiting thread: the handler
/// must be idempotent. Returns false if the parent is already gone (adopted by init or a
/// subreaper), in which case the caller should exit.
pub fn signal_with_parent(parent: u32, signal: i32) -> io::Result<bool> {
    let signal = rustix::process::Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a signal"))?;
    rustix::process::set_parent_process_death_signal(Some(signal))?;
    Ok(rustix::process::getppid().is_some_and(|p| p.as_raw_pid() as u32 == parent))
}

/// Make the program `cmd` runs see `EPERM` from one system call (`nr`, e.g.
/// `libc::SYS_io_uring_setup`), as a container runtime's seccomp profile does: no new
/// privileges, then a seccomp filter installed between fork and exec. For tests of how a
/// program behaves where the host denies it something.
#[allow(unsafe_code)]
pub fn refuse_syscall(cmd: &mut std::process::Command, nr: libc::c_long) {
    use std::os::unix::process::CommandExt;
    let op = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // Load the syscall number (offset 0 of seccomp_data); equal: EPERM; else: allow.
    let filter = [
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, nr as u32, 0, 1),
        op(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            0,
            0,
        ),
        op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ];
    // SAFETY: the closure runs in the child between fork and exec and makes only two
    // async-signal-safe calls (prctl); `filter` is moved into it, so the program it points
    // at lives through the call that copies it into the kernel.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The CPUs the calling thread may run on.
pub fn affinity() -> io::Result<Vec<usize>> {
    let set = rustix::thread::sched_getaffinity(None)?;
    Ok((0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect())
}

/// Let the calling thread run on `cpus` only. Threads and processes it starts from now on
/// inherit the set: the lab pins a server by pinning itself while it spawns it.
pub fn pin_thread(cpus: &[usize]) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}

/// Lower the calling thread's priority (only its: Linux keeps a nice value per thread) by
/// `by` nice levels, at most to 19; returns the new nice value. Lowering needs no privilege.
/// A thread whose work may wait (a handshake) then yields the CPU to threads whose work
/// should not (requests).
pub fn lower_thread_priority(by: i32) -> io::Result<i32> {
    let nice = (thread_nice()? + by.max(0)).min(19);
    rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)?;
    Ok(nice)
}

/// Put the calling thread (only it) in the `SCHED_IDLE` class: it runs when nothing of the
/// normal class wants its core, and a normal thread that wakes on that core preempts it at
/// once, where a thread at nice 19 may still run on to the end of its slice. It is not
/// starved outright: the class keeps a small weight, so a saturated machine still gives it a
/// sliver. Needs no privilege.
pub fn idle_thread_class() -> io::Result<()> {
    set_thread_class(0, libc::SCHED_IDLE)
}

/// Put the calling thread (only it) back in the normal class (`SCHED_OTHER`), e.g. from
/// `SCHED_IDLE`, its nice value kept — which from `SCHED_IDLE` takes privilege (see
/// [`can_leave_idle_class`]).
pub fn normal_thread_class() -> io::Result<()> {
    set_thread_class(0, libc::SCHED_OTHER)
}

/// Put thread `tid` of this process back in the normal class, from another thread: one
/// that cannot run to do it itself (a `SCHED_IDLE` thread on a saturated machine). The
/// same privilege as [`normal_thread_class`].
pub fn normal_thread_class_of(tid: i32) -> io::Result<()> {
    set_thread_class(tid, libc::SCHED_OTHER)
}

/// The calling thread's id, for [`normal_thread_class_of`].
pub fn thread_id() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Move thread `tid` (0: the calling thread) to the non-real-time class `policy`.
#[allow(unsafe_code)]
fn set_thread_class(tid: i32, policy: libc::c_int) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the call; the call
    // touches no memory of ours beyond reading `param`.
    let rc = unsafe { libc::sched_setscheduler(tid, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether a thread of this process that enters `SCHED_IDLE` may leave it again: Linux
/// lets it only with `CAP_SYS_NICE` or an `RLIMIT_NICE` of at least 20 (systemd's
/// `LimitNICE=+0`), otherwise the idle class is a one-way door. Tried on a thread of its
/// own, which then ends.
pub fn can_leave_idle_class() -> bool {
    std::thread::spawn(|| idle_thread_class().is_ok() && normal_thread_class().is_ok())
        .join()
        .unwrap_or(false)
}

/// `struct sched_attr` as sched_setattr(2) and sched_getattr(2) take it (the first version,
/// 48 bytes: no utilisation clamps).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    /// For the normal class since Linux 6.12: the slice the thread asks for, in ns.
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// The calling thread's scheduling attributes.
#[allow(unsafe_code)]
fn sched_attr() -> io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as libc::c_uint;
    // SAFETY: `attr` is a writable sched_attr of `size` bytes that outlives the call; pid 0
    // is the calling thread; the kernel writes at most `size` bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if rc == 0 {
        Ok(attr)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Set the calling thread's scheduling attributes.
#[allow(unsafe_code)]
fn set_sched_attr(attr: &SchedAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid sched_attr whose `size` field is its size, and it outlives
    // the call; pid 0 is the calling thread; the kernel only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Ask the scheduler (EEVDF) to run the calling thread, of the normal class, in slices of
/// `slice`: a thread with a shorter slice gets an earlier deadline, so when it wakes it
/// preempts a thread with a longer one instead of waiting for that one's slice to end — the
/// kernel's answer for latency-sensitive threads. Keeps the thread's class and nice value
/// (a thread outside the normal and batch classes is left alone); needs no privilege.
/// Returns whether the kernel honours it (Linux 6.12 and later; earlier kernels take the
/// call and ignore the slice).
pub fn request_slice(slice: std::time::Duration) -> io::Result<bool> {
    let want = slice.as_nanos().min(u64::MAX as u128) as u64;
    let current = sched_attr()?;
    // Slices are the fair classes'; a thread its owner put elsewhere (real-time, idle)
    // stays where it is.
    if ![libc::SCHED_OTHER as u32, libc::SCHED_BATCH as u32].contains(&current.policy) {
        return Ok(false);
    }
    set_sched_attr(&SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: current.policy,
        nice: current.nice,
        runtime: want,
        ..SchedAttr::default()
    })?;
    Ok(thread_slice()? == Some(slice))
}

/// Whether this kernel honours [`request_slice`] (Linux 6.12 and later), asked without
/// changing anything: by the kernel's release.
pub fn slices_honoured() -> bool {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 12)
}

/// The slice the calling thread asked for with [`request_slice`], if the kernel keeps one.
pub fn thread_slice() -> io::Result<Option<std::time::Duration>> {
    let attr = sched_attr()?;
    Ok((attr.runtime > 0).then(|| std::time::Duration::from_nanos(attr.runtime)))
}

/// Whether the calling thread is in the `SCHED_IDLE` class.
#[allow(unsafe_code)]
pub fn thread_is_idle_class() -> bool {
    // SAFETY: sched_getscheduler takes a pid (0: the calling thread) and touches no memory.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_IDLE }
}

/// The calling thread's nice value.
pub fn thread_nice() -> io::Result<i32> {
    Ok(rustix::process::getpriority_process(Some(
        rustix::thread::gettid(),
    ))?)
}

/// What the calling thread has used so far: its CPU time (user and system), and how many
/// times it gave up its core to wait (a voluntary context switch: a blocking call, a
/// sleep). Preemption counts in neither, so a piece of work measured between two readings
/// costs what it ran, however busy the machine. Two syscalls a reading (~2.5 µs here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadUsage {
    /// User and system time, to the nanosecond.
    pub cpu: std::time::Duration,
    /// Voluntary context switches.
    pub waits: u64,
}

/// The calling thread's [`ThreadUsage`]. The CPU time is the thread clock's, which the
/// kernel brings up to date when asked: `getrusage`'s lags by up to a scheduler tick, so a
/// few microseconds measured with it would now and then come out milliseconds long.
#[allow(unsafe_code)]
pub fn thread_usage() -> io::Result<ThreadUsage> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the one `rusage` it is given, which lives until we read it;
    // RUSAGE_THREAD is Linux's, for the calling thread alone.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed, then filled by a call that succeeded.
    let ru = unsafe { ru.assume_init() };
    let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Ok(ThreadUsage {
        cpu: std::time::Duration::new(cpu.tv_sec as u64, cpu.tv_nsec as u32),
        waits: ru.ru_nvcsw as u64,
    })
}

#[cfg(test)]
mod tests {
    /// A thread's usage counts its own work and its own waits, not the time it was away.
    #[test]
    fn a_threads_usage_counts_what_it_ran_and_when_it_waited() {
        let before = super::thread_usage().unwrap();
        let start = std::time::Instant::now();
        let mut spun = before;
        // Spinning is no wait, however often the thread is preempted meanwhile.
        while spun.cpu - before.cpu < std::time::Duration::from_millis(10)
            && start.elapsed() < std::time::Duration::from_secs(10)
        {
            spun = super::thread_usage().unwrap();
        }
        assert!(spun.cpu - before.cpu >= std::time::Duration::from_millis(10));
        assert_eq!(spun.waits, before.waits, "spinning is no wait");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let slept = super::thread_usage().unwrap();
        assert!(slept.waits > spun.waits, "a sleep is a wait");
        assert!(slept.cpu - spun.cpu < std::time::Duration::from_millis(10));
    }

    /// Raising a thread's nice value touches that thread only.
    #[test]
    fn a_thread_lowers_its_own_priority_only() {
        let before = super::thread_nice().unwrap();
        std::thread::spawn(move || {
            let nice = super::lower_thread_priority(5).unwrap();
            assert_eq!(nice, (before + 5).min(19));
            assert_eq!(super::thread_nice().unwrap(), nice);
        })
        .join()
        .unwrap();
        assert_eq!(
            super::thread_nice().unwrap(),
            before,
            "the caller's is unchanged"
        );
    }

    /// The idle class is the calling thread's alone.
    #[test]
    fn a_thread_moves_itself_to_the_idle_class_only() {
        assert!(!super::thread_is_idle_class());
        std::thread::spawn(|| {
            super::idle_thread_class().unwrap();
            assert!(super::thread_is_idle_class());
        })
        .join()
        .unwrap();
        assert!(!super::thread_is_idle_class(), "the caller's is unchanged");
    }

    /// A slice request keeps the thread's nice value and touches that thread only; where the
    /// kernel honours it, the thread reads it back.
    #[test]
    fn a_thread_asks_for_its_own_slice() {
        std::thread::spawn(|| {
            let nice = super::lower_thread_priority(3).unwrap();
            let slice = std::time::Duration::from_micros(100);
            let honoured = super::request_slice(slice).unwrap();
            assert_eq!(super::thread_nice().unwrap(), nice, "the nice value stays");
            if honoured {
                assert_eq!(super::thread_slice().unwrap(), Some(slice));
            }
        })
        .join()
        .unwrap();
        assert_ne!(
            super::thread_slice().unwrap(),
            Some(std::time::Duration::from_micros(100)),
            "the caller's is unchanged"
        );
    }

    /// A thread pinned to one of its CPUs runs on that one only (on a thread of its own, so
    /// the test runner's threads keep theirs).
    #[test]
    fn a_pinned_thread_keeps_to_its_cpu() {
        std::thread::spawn(|| {
            let all = super::affinity().unwrap();
            assert!(!all.is_empty());
            let last = *all.last().unwrap();
            super::pin_thread(&[last]).unwrap();
            assert_eq!(super::affinity().unwrap(), vec![last]);
        })
        .join()
        .unwrap();
    }
}
