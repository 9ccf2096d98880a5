//! Seccomp allow-lists: after dropping privileges, the relay process and the signer
//! process each confine the system calls they can make to what relayd-run needs.
//!
//! **The signer process** (`crate::signer`) installs its list right after its privilege
//! drop, before it reads a key, while it has one thread; the threads it starts to sign
//! inherit the filter. It needs little: reading and writing its sockets, receiving
//! connections (`recvmsg` with SCM_RIGHTS), memory, threads, futexes, random numbers
//! and exiting; no call that opens a file or makes a socket. Anything else kills the process (`SECCOMP_RET_KILL_PROCESS`): the list
//! is small and fixed, so a call outside it means the process is no longer running
//! relayd-run's code. The relay process then sees end of file, and handshakes fail
//! with "the signer process is gone".
//!
//! **The relay process** installs its list on the main thread once every socket is
//! bound and privileges are dropped, before any other thread exists (`serve`), so no
//! SECCOMP_FILTER_FLAG_TSYNC is needed: every thread made afterwards inherits the filter
//! when it is cloned, the worker threads that parse clients' requests and run TLS, the
//! main thread's health checks, control socket, reloads and pfe, and the threads tokio
//! starts for blocking work. A call outside the list fails with EPERM
//! (`SECCOMP_RET_ERRNO`) instead of killing the process, because the relay process is
//! large and serves everyone: a call the list lacks on a rare path (a C library update
//! choosing another system call, a name service module at a reload) would otherwise end
//! every session of every relay. With EPERM the call is still refused, and the
//! operation fails as a refused call does anywhere: the error is logged, the session,
//! check or reload fails, and the process stays up.
//!
//! **The gap: `check script`.** A script is a child of the relay process and would
//! inherit its filter, and a shell needs calls the relay never makes (`execve` to begin
//! with). So when the plan has `check script` tables, `serve` starts one thread,
//! `scripts`, before it installs the filter; that thread stays unfiltered and does one
//! thing: it runs the scripts the health checks ask for over a channel, waits for them
//! and kills them at their timeout (`health/script.rs`). Filters belong to threads, but
//! the memory is shared: code that has taken over a filtered thread can write requests
//! into that channel, or the runner's stack, and so reach every call through it. In a
//! process with script checks the filter therefore bounds what relayd-run's own code
//! can call, not what an attacker with arbitrary code execution can. Without script
//! checks no thread is unfiltered, and a reload that adds them to such a process is
//! refused (the runner can only be started before the filter). Running the scripts
//! from a process forked before the filter would close the shared-memory route but not
//! the request route (such a process must run whatever path a reloaded plan names, with
//! an argument the relay process chooses) unless reloads could not add scripts; the
//! thread is the smaller change.
//!
//! What the relay list allows, by kind: reading files and directories (a reload reads
//! the plan, late-bound TLS files and, resolving names, the resolver's files); sockets
//! of the Unix, IPv4 and IPv6 families only (TCP, UDP, ping and raw ICMP sockets, the
//! control socket, syslog, sd_notify, the helper and signer socketpairs) with every
//! socket call, `splice` through pipes, epoll, eventfds, timers and sleeps, memory,
//! threads, signal handlers, waiting for and killing its children (the helper and the
//! signer, at exit), removing the control socket at exit, and random numbers. Argument
//! conditions narrow some: `socket` by family, `socketpair` to Unix sockets, `clone`
//! only with CLONE_THREAD (a new thread, never a new process), `ioctl` to FIONBIO and
//! FIONREAD, `fcntl` to reading descriptor flags, reading and setting status flags and
//! F_DUPFD_CLOEXEC, `prctl` to thread names and PR_GET_AUXV, `tgkill` to this
//! process's threads. `clone3`
//! passes its flags in memory a filter cannot read, so another filter answers it
//! ENOSYS, on which the C library falls back to `clone`. Memory may still be mapped
//! executable: a name service module loaded at a reload needs it.
//!
//! Left out, among others: `execve` and `execveat`, `fork`/`vfork` and `clone` without
//! CLONE_THREAD, `ptrace`, `process_vm_readv`/`writev`, `mount` and every other mount
//! call, `chroot`, `unshare`, `setns`, `bpf`, `perf_event_open`, `io_uring_*`,
//! `userfaultfd`, `keyctl`, `add_key`, `kexec_*`, `init_module`, the `set*id` calls,
//! `capset`, `seccomp` itself, packet and netlink sockets, `memfd_create`, `chmod`,
//! `chown`, `rename`, `link` and creating directories.
//!
//! `--no-seccomp` installs neither list, for debugging. The programs are built for the
//! architecture relayd-run is built for (x86_64 or aarch64); they first check the
//! architecture of each call and kill a process that calls through another ABI (the
//! 32-bit `int 0x80` entry on x86_64).

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::btree_map::{BTreeMap, Entry};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which process a list is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The relay process: every thread but the script runner.
    Relay,
    /// The signer process.
    Signer,
}

/// Why a filter could not be built or installed. `Display` is one sentence for an
/// operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeccompError(String);

impl fmt::Display for SeccompError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot install the seccomp filter: {} (--no-seccomp runs without it)",
            self.0
        )
    }
}

impl std::error::Error for SeccompError {}

/// Set once the relay process's filter is installed.
static RELAY_FILTERED: AtomicBool = AtomicBool::new(false);

/// Whether this process runs under the relay filter: threads it starts from now on
/// cannot start programs.
pub fn relay_filtered() -> bool {
    RELAY_FILTERED.load(Ordering::Relaxed)
}

/// One allowed call: its number, its name, and the rules of which one must match
/// (none: always allowed).
struct Allow {
    nr: i64,
    name: &'static str,
    rules: Vec<SeccompRule>,
}

/// Calls allowed whatever their arguments.
macro_rules! always {
    ($($n:ident),* $(,)?) => {
        vec![$(Allow {
            nr: libc::$n,
            name: stringify!($n).trim_start_matches("SYS_"),
            rules: Vec::new(),
        }),*]
    };
}

/// prctl(PR_GET_AUXV), Linux 6.4; not in every libc crate.
const PR_GET_AUXV: u64 = 0x4155_5856;

fn error(e: impl fmt::Display) -> SeccompError {
    SeccompError(e.to_string())
}

/// A rule on argument `arg` (a C `int` or flags word: its low 32 bits).
fn rule(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompRule, SeccompError> {
    let c = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(error)?;
    SeccompRule::new(vec![c]).map_err(error)
}

/// Argument `arg` is one of `values`.
fn one_of(arg: u8, values: &[u64]) -> Result<Vec<SeccompRule>, SeccompError> {
    values
        .iter()
        .map(|v| rule(arg, SeccompCmpOp::Eq, *v))
        .collect()
}

fn allow(nr: i64, name: &'static str, rules: Vec<SeccompRule>) -> Allow {
    Allow { nr, name, rules }
}

/// What every relayd-run thread needs to exist: memory, futexes, thread creation and
/// exit, signal masks and returns, random numbers, time.
fn threads() -> Result<Vec<Allow>, SeccompError> {
    let mut v = always![
        SYS_read,
        SYS_write,
        SYS_close,
        SYS_futex,
        SYS_mmap,
        SYS_munmap,
        SYS_mremap,
        SYS_mprotect,
        SYS_madvise,
        SYS_brk,
        SYS_set_robust_list,
        SYS_rseq,
        SYS_sigaltstack,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_restart_syscall,
        SYS_getrandom,
        SYS_sched_yield,
        SYS_clock_gettime,
        SYS_gettid,
        SYS_getpid,
        SYS_exit,
        SYS_exit_group,
        // Answered ENOSYS by the other filter (see the module documentation); allowed
        // here so that a list's stricter default action never overrides that.
        SYS_clone3,
    ];
    v.push(allow(
        libc::SYS_clone,
        "clone",
        vec![rule(
            0,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            libc::CLONE_THREAD as u64,
        )?],
    ));
    // Thread names, and the auxiliary vector (rustix reads it once, for the vDSO).
    v.push(allow(
        libc::SYS_prctl,
        "prctl",
        one_of(
            0,
            &[
                libc::PR_SET_NAME as u64,
                libc::PR_GET_NAME as u64,
                PR_GET_AUXV,
            ],
        )?,
    ));
    // abort() signals its own thread; no other process.
    v.push(allow(
        libc::SYS_tgkill,
        "tgkill",
        vec![rule(0, SeccompCmpOp::Eq, u64::from(std::process::id()))?],
    ));
    Ok(v)
}

fn signer_allows() -> Result<Vec<Allow>, SeccompError> {
    let mut v = threads()?;
    v.extend(always![
        // Requests and answers (std's sockets read with recv and write with send),
        // connections with SCM_RIGHTS.
        SYS_recvfrom,
        SYS_sendto,
        SYS_recvmsg,
        // The C library installs its signal handlers for threads at the first thread,
        // and reads a new thread's CPU set for its attributes.
        SYS_rt_sigaction,
        SYS_sched_getaffinity,
    ]);
    // Debug builds check that a descriptor is open before closing it.
    v.push(allow(
        libc::SYS_fcntl,
        "fcntl",
        one_of(1, &[libc::F_GETFD as u64])?,
    ));
    Ok(v)
}

fn relay_allows() -> Result<Vec<Allow>, SeccompError> {
    let mut v = threads()?;
    v.extend(always![
        // Files: plans and TLS files at a reload, and what resolving a name reads
        // (nsswitch.conf, hosts, resolv.conf; a name service module's library).
        SYS_openat,
        SYS_lseek,
        SYS_pread64,
        SYS_fstat,
        SYS_newfstatat,
        SYS_statx,
        SYS_getdents64,
        SYS_uname,
        // Sockets (their families are checked where they are made).
        SYS_bind,
        SYS_listen,
        SYS_connect,
        SYS_accept4,
        SYS_getsockname,
        SYS_getsockopt,
        SYS_setsockopt,
        SYS_sendto,
        SYS_recvfrom,
        SYS_sendmsg,
        SYS_recvmsg,
        // The resolver's queries.
        SYS_sendmmsg,
        SYS_shutdown,
        SYS_writev,
        // relayd's splice.
        SYS_pipe2,
        SYS_splice,
        // The runtimes' event loops, timers and sleeps.
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_eventfd2,
        SYS_clock_nanosleep,
        // Signal handlers (SIGHUP, SIGTERM, SIGINT, SIGCHLD).
        SYS_rt_sigaction,
        // The helper and signer children, waited for (and killed if stuck) at exit.
        SYS_wait4,
        SYS_kill,
        // Thread attributes.
        SYS_sched_getaffinity,
    ]);
    // The same calls under their names on each architecture: aarch64 has only the
    // `*at`/`p*` forms, which x86_64's C library does not use for these.
    #[cfg(target_arch = "x86_64")]
    v.extend(always![SYS_epoll_wait, SYS_poll, SYS_unlink]);
    #[cfg(target_arch = "aarch64")]
    v.extend(always![SYS_epoll_pwait, SYS_ppoll, SYS_unlinkat]);
    let families = [libc::AF_UNIX, libc::AF_INET, libc::AF_INET6].map(|f| f as u64);
    v.push(allow(libc::SYS_socket, "socket", one_of(0, &families)?));
    v.push(allow(
        libc::SYS_socketpair,
        "socketpair",
        one_of(0, &[libc::AF_UNIX as u64])?,
    ));
    #[allow(
        clippy::unnecessary_cast,
        reason = "an ioctl request's type differs between C libraries"
    )]
    let requests = [libc::FIONBIO as u64, libc::FIONREAD as u64];
    v.push(allow(libc::SYS_ioctl, "ioctl", one_of(1, &requests)?));
    v.push(allow(
        libc::SYS_fcntl,
        "fcntl",
        one_of(
            1,
            &[
                libc::F_GETFD,
                libc::F_GETFL,
                libc::F_SETFL,
                libc::F_DUPFD_CLOEXEC,
            ]
            .map(|c| c as u64),
        )?,
    ));
    Ok(v)
}

fn allows(profile: Profile) -> Result<Vec<Allow>, SeccompError> {
    match profile {
        Profile::Relay => relay_allows(),
        Profile::Signer => signer_allows(),
    }
}

/// The names of the calls a profile allows (some only with certain arguments), sorted.
pub fn allowed(profile: Profile) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = allows(profile)
        .map(|v| v.iter().map(|a| a.name).collect())
        .unwrap_or_default();
    names.sort_unstable();
    names.dedup();
    names
}

/// What a call outside the list gets (see the module documentation).
fn default_action(profile: Profile) -> SeccompAction {
    match profile {
        Profile::Relay => SeccompAction::Errno(libc::EPERM as u32),
        Profile::Signer => SeccompAction::KillProcess,
    }
}

fn arch() -> Result<TargetArch, SeccompError> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(error)
}

/// The profile's programs, in the order they are installed: the filter that answers
/// `clone3` ENOSYS, then the allow-list (which refuses installing another filter). The
/// kernel runs both on every call and takes the stricter answer: for `clone3`, which
/// the list allows, the errno.
pub fn programs(profile: Profile) -> Result<Vec<BpfProgram>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for a in allows(profile)? {
        match rules.entry(a.nr) {
            Entry::Vacant(e) => {
                e.insert(a.rules);
            }
            // Listed twice: unconditional if either is.
            Entry::Occupied(mut e) => {
                if a.rules.is_empty() || e.get().is_empty() {
                    e.get_mut().clear();
                } else {
                    e.get_mut().extend(a.rules);
                }
            }
        }
    }
    let list = SeccompFilter::new(
        rules,
        default_action(profile),
        SeccompAction::Allow,
        arch()?,
    )
    .map_err(error)?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(error)?;
    Ok(vec![
        BpfProgram::try_from(clone3).map_err(error)?,
        BpfProgram::try_from(list).map_err(error)?,
    ])
}

/// Installs `programs` on the calling thread (and so on the threads it starts later).
/// Sets no-new-privs, which it needs, if it was not set yet.
pub fn install(programs: &[BpfProgram]) -> Result<(), SeccompError> {
    for p in programs {
        seccompiler::apply_filter(p).map_err(error)?;
    }
    Ok(())
}

/// The signer process's filter, on its only thread.
pub fn enter_signer() -> Result<(), SeccompError> {
    install(&programs(Profile::Signer)?)
}

/// The relay process's filter. Call on the main thread while it is the only one:
/// `unfiltered` runs first and may start threads that stay outside the filter (the
/// script runner); every thread started after this returns is filtered.
pub fn enter_relay(unfiltered: impl FnOnce() -> Result<(), String>) -> Result<(), SeccompError> {
    let programs = programs(Profile::Relay)?;
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count());
    if threads > 1 {
        return Err(SeccompError(format!(
            "the process already has {threads} threads, and filters are installed per thread"
        )));
    }
    unfiltered().map_err(SeccompError)?;
    install(&programs)?;
    RELAY_FILTERED.store(true, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]
#[allow(unsafe_code, reason = "raw calls that no safe wrapper makes")]
mod tests {
    use super::*;
    use std::io;

    /// The errno of a raw call's -1 (or 0 if it succeeded).
    fn errno_of(rc: libc::c_long) -> i32 {
        if rc == -1 {
            io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        }
    }

    fn seccomp_mode() -> String {
        std::fs::read_to_string("/proc/thread-self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim().to_string()))
            .unwrap()
    }

    #[test]
    fn both_lists_build_and_leave_out_what_relayd_run_never_needs() {
        for profile in [Profile::Relay, Profile::Signer] {
            let programs = programs(profile).unwrap();
            assert_eq!(programs.len(), 2);
            let names = allowed(profile);
            for never in [
                "execve",
                "execveat",
                "fork",
                "vfork",
                "ptrace",
                "mount",
                "umount2",
                "chroot",
                "unshare",
                "setns",
                "bpf",
                "seccomp",
                "setuid",
                "setresuid",
                "capset",
                "process_vm_readv",
                "process_vm_writev",
                "memfd_create",
                "io_uring_setup",
                "perf_event_open",
                "keyctl",
                "init_module",
                "kexec_load",
                "userfaultfd",
                "chmod",
                "fchmodat",
                "mkdirat",
                "renameat2",
            ] {
                assert!(!names.contains(&never), "{profile:?} allows {never}");
            }
        }
        let signer = allowed(Profile::Signer);
        for relay_only in ["socket", "connect", "openat", "splice", "accept4", "kill"] {
            assert!(
                !signer.contains(&relay_only),
                "the signer allows {relay_only}"
            );
        }
        assert!(allowed(Profile::Signer).len() < allowed(Profile::Relay).len());
    }

    /// The relay list in a thread of its own (filters are per thread): what it lacks
    /// fails with EPERM, `clone3` with ENOSYS, and what a relay does still works.
    #[test]
    fn a_filtered_thread_gets_eperm_for_what_the_relay_list_lacks() {
        // Unfiltered, a netlink socket is anyone's and a directory can be made here.
        let dir = std::env::temp_dir().join(format!("relayd-run-seccomp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let netlink = || {
            socket2::Socket::new(
                socket2::Domain::from(libc::AF_NETLINK),
                socket2::Type::RAW,
                Some(socket2::Protocol::from(0)),
            )
        };
        assert!(netlink().is_ok());
        let programs = programs(Profile::Relay).unwrap();
        let d = dir.clone();
        let seen = std::thread::spawn(move || {
            install(&programs).unwrap();
            let eperm = Some(libc::EPERM);
            assert_eq!(seccomp_mode(), "2");
            // Refused.
            assert_eq!(netlink().unwrap_err().raw_os_error(), eperm, "netlink");
            let packet = socket2::Socket::new(
                socket2::Domain::PACKET,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(0)),
            );
            assert_eq!(packet.unwrap_err().raw_os_error(), eperm, "AF_PACKET");
            let spawned = std::process::Command::new("/bin/true").status();
            assert_eq!(
                spawned.unwrap_err().raw_os_error(),
                eperm,
                "a child process"
            );
            assert_eq!(
                std::fs::create_dir(d.join("x")).unwrap_err().raw_os_error(),
                eperm,
                "mkdir"
            );
            let path = c"/nonexistent/relayd-run";
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            let rc = unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            assert_eq!(errno_of(rc.into()), libc::EPERM, "execve");
            let rc = unsafe { libc::ptrace(libc::PTRACE_PEEKDATA, 0, 0, 0) };
            assert_eq!(errno_of(rc), libc::EPERM, "ptrace");
            let null = std::ptr::null();
            let rc = unsafe { libc::mount(null, null, null, 0, std::ptr::null()) };
            assert_eq!(errno_of(rc.into()), libc::EPERM, "mount");
            // Another filter would be a call like any other.
            let rc = unsafe { libc::syscall(libc::SYS_seccomp, 1, 0, 0) };
            assert_eq!(errno_of(rc), libc::EPERM, "seccomp");
            // clone3's flags cannot be read: ENOSYS sends the C library to clone.
            let rc = unsafe { libc::syscall(libc::SYS_clone3, 0, 0) };
            assert_eq!(errno_of(rc), libc::ENOSYS, "clone3");
            // Allowed: sockets of the relay's families, a new thread (through clone),
            // files to read.
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            drop((l, c));
            std::os::unix::net::UnixStream::pair().unwrap();
            let inner = std::thread::spawn(seccomp_mode).join().unwrap();
            assert_eq!(inner, "2", "threads inherit the filter");
            std::fs::read_to_string("/proc/self/stat").unwrap();
            true
        })
        .join();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(seen.unwrap());
        assert_eq!(
            seccomp_mode(),
            "0",
            "the test thread itself is not filtered"
        );
    }

    /// Run by [`the_signer_filter_kills_the_process_on_a_call_it_lacks`] in a child
    /// process; a no-op otherwise.
    #[test]
    fn signer_filter_child() {
        if std::env::var_os("RELAYD_RUN_SECCOMP_CHILD").is_none() {
            return;
        }
        // No core file from the kill.
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
        enter_signer().unwrap();
        // Allowed: memory, a thread, writing.
        let v = std::thread::spawn(|| vec![1u8; 1 << 20].len())
            .join()
            .unwrap();
        eprintln!("signer filter installed ({v})");
        // Not allowed: a socket.
        let _ = std::net::TcpListener::bind("127.0.0.1:0");
        std::process::exit(3);
    }

    #[test]
    fn the_signer_filter_kills_the_process_on_a_call_it_lacks() {
        use std::os::unix::process::ExitStatusExt;
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "seccomp::tests::signer_filter_child",
                "--nocapture",
            ])
            .env("RELAYD_RUN_SECCOMP_CHILD", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("signer filter installed"), "{err}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "{:?}: {err}",
            out.status
        );
    }
}
