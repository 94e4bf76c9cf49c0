//! The only module that makes system calls directly (through `rustix`): peer credentials of a
//! Unix socket and a pidfd for the peer process, whether an inherited socket listens, process
//! hardening (dumpable, core limit, `mlockall`, umask), what `/proc` says of a process (its
//! uid, its room to lock memory, the holders of a listening socket), terminal echo for
//! prompts, descriptors held in reserve under the open-files limit, and handing freed heap
//! memory back to the kernel (user and group lookups are [`crate::accounts`]'s). The crate's
//! only `unsafe` code is here, each block commented and audited: two FFI calls rustix does not
//! wrap (`malloc_trim`, `getsockopt(SO_PEERPIDFD)`), taking ownership of the descriptor the
//! latter returns, borrowing an inherited descriptor (`--passphrase-fd`), a child's
//! parent-death signal set between its `fork` and `exec` (the demo's daemon), and glibc's two
//! internal signals put back at their default there (`exec`'s command; a raw `rt_sigaction`,
//! which neither rustix nor glibc's `sigaction` offers for them) with the signals `exec`
//! forwards ignored again where it was given them ignored (SIGCHLD too, which `exec` and
//! `demo` put back at its default to wait for their children), and `exec` ending itself by
//! the signal its command died of (`signal`, `pthread_sigmask`, `raise`: rustix has no
//! `sigaction`), and at every command's start SIGXFSZ ignored and the given signal mask
//! recorded, the signals a command handles unblocked, and `exec`'s command given both back.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::mm::{mlockall, MlockAllFlags};
use rustix::process::{
    dumpable_behavior, getrlimit, set_dumpable_behavior, setrlimit, umask, DumpableBehavior,
    Resource, Rlimit,
};

/// The kernel's view of who is on the other end of a Unix socket (`SO_PEERCRED`): the
/// credentials the peer had when it called `connect`, which it cannot forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Process id (in the daemon's pid namespace; 0 if the peer is in another one).
    pub pid: i32,
}

/// Ask the kernel for the peer's credentials (`SO_PEERCRED`).
pub fn peer_credentials(sock: &UnixStream) -> io::Result<PeerCred> {
    let cred = rustix::net::sockopt::socket_peercred(sock)?;
    Ok(PeerCred {
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
        pid: cred.pid.as_raw_pid(),
    })
}

/// Whether the socket `sock` listens (`SO_ACCEPTCONN`): a socket bound but never passed to
/// `listen` has an address, and refuses every connection made to it.
pub fn is_listening(sock: &impl AsFd) -> io::Result<bool> {
    Ok(rustix::net::sockopt::socket_acceptconn(sock)?)
}

/// Connect to the Unix stream socket at `path`, waiting at most `wait` for the listener to take
/// the connection. A listener that stops accepting (a daemon stopped with `kill -STOP`) fills
/// its queue of pending connections, and a plain `connect` then waits for room for ever; the
/// socket's send timeout (`SO_SNDTIMEO`, set before the `connect`) bounds that wait on Linux,
/// and the `connect` then fails with `EAGAIN` (`ErrorKind::WouldBlock`). The stream keeps that
/// send timeout; its reads have none.
pub fn connect_unix_within(path: &Path, wait: std::time::Duration) -> io::Result<UnixStream> {
    use rustix::net::sockopt::{set_socket_timeout, Timeout};
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // A zero timeout means "none" to the kernel.
    let wait = wait.max(std::time::Duration::from_millis(1));
    set_socket_timeout(&fd, Timeout::Send, Some(wait))?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?;
    Ok(UnixStream::from(fd))
}

/// What [`harden_process`] achieved. The daemon logs the `mlockall` failure once and carries on:
/// an unprivileged user usually may not lock all its memory (`RLIMIT_MEMLOCK`).
#[derive(Debug)]
pub struct HardenReport {
    /// `PR_SET_DUMPABLE` is 0: no core dump, no ptrace attach by same-uid processes, and
    /// `/proc/PID/mem` and friends are owned by root.
    pub dumpable_off: bool,
    /// `RLIMIT_CORE` is 0 (soft and hard).
    pub core_limit_zero: bool,
    /// `mlockall(MCL_CURRENT | MCL_FUTURE)`: `Err` says why it was refused.
    pub mlockall: Result<(), String>,
}

/// Harden the current process before any secret is loaded: not dumpable, no core files, all
/// memory locked (best effort, so secrets do not reach swap), umask 077 (files we create are
/// private whatever the caller's umask).
pub fn harden_process() -> HardenReport {
    let dumpable_off = set_dumpable_behavior(DumpableBehavior::NotDumpable).is_ok();
    let core_limit_zero = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .is_ok();
    // MCL_ONFAULT locks pages as they are touched instead of faulting in every mapping now:
    // without it each thread's whole stack (and every reserved heap arena) would become
    // resident and locked, multiplying the daemon's RSS. Kernels before 4.4 refuse it (EINVAL);
    // then lock everything the old way.
    let mlockall = lock_all_memory().map_err(|e| {
        format!(
            "mlockall failed ({e}); secrets may reach swap. Raise RLIMIT_MEMLOCK \
             (LimitMEMLOCK=infinity in the systemd unit, as examples/systemd/scopevault.service sets it) or grant CAP_IPC_LOCK"
        )
    });
    umask(rustix::fs::Mode::from_raw_mode(0o077));
    HardenReport {
        dumpable_off,
        core_limit_zero,
        mlockall,
    }
}

/// Harden a command of the CLI before it reads a secret or decrypts a vault: not dumpable (no
/// core file, no ptrace or `/proc/PID/mem` by other processes of the same user), and, unless
/// `keep_core_limit`, `RLIMIT_CORE` 0 (soft and hard), as the daemon ([`harden_process`]) does.
/// `exec` keeps its core limit: its command inherits it (and, through `execve`, gets its own
/// dumpable flag back). Returns what failed, for a warning; nothing else of the process
/// changes (no umask, no `mlockall`: a command's files keep their documented modes).
pub fn harden_command(keep_core_limit: bool) -> Result<(), String> {
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| format!("could not make this command non-dumpable: {e}"))?;
    if !keep_core_limit {
        setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )
        .map_err(|e| format!("could not set this command's core-file limit to 0: {e}"))?;
    }
    Ok(())
}

/// Set once `mlockall` succeeded, so [`release_free_memory`] knows to lock again.
static MEMORY_LOCKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn lock_all_memory() -> rustix::io::Result<()> {
    let all = MlockAllFlags::CURRENT | MlockAllFlags::FUTURE;
    let r = match mlockall(all | MlockAllFlags::ONFAULT) {
        Err(rustix::io::Errno::INVAL) => mlockall(all),
        other => other,
    };
    if r.is_ok() {
        MEMORY_LOCKED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    r
}

/// The limits that may have refused an allocation of this process, and what to raise, for an
/// error message (the key derivation's memory: [`crate::vault::VaultError::KdfMemory`]).
pub fn allocation_limits() -> String {
    let locked = MEMORY_LOCKED.load(std::sync::atomic::Ordering::SeqCst);
    let room = memlock_room(None).ok();
    let memlock = match room {
        // CAP_IPC_LOCK: no memory-lock limit applies.
        Some(r) if locked && !r.cap_ipc_lock => r.limit.map(|limit| {
            let in_use = proc_file(None, "status")
                .ok()
                .and_then(|st| {
                    st.lines()
                        .find_map(|l| l.strip_prefix("VmLck:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
                .map(|kib| kib << 10);
            (limit, in_use)
        }),
        _ => None,
    };
    describe_allocation_limits(
        memlock,
        getrlimit(Resource::As).current,
        getrlimit(Resource::Data).current,
    )
}

/// [`allocation_limits`]'s text. `memlock`: this process locked its memory (`mlockall` with
/// `MCL_FUTURE`) under a finite `RLIMIT_MEMLOCK` (bytes), and how much of it is in use when
/// known; `address_space`: the soft `RLIMIT_AS` (`None`: unlimited); `data`: the soft
/// `RLIMIT_DATA` (`None`: unlimited), which since Linux 4.7 counts private anonymous mappings,
/// so the key derivation's blocks too (a slot's 1 GiB under `prlimit --data=600M` was blamed
/// on the machine, "no limit of this process refused it", twenty-second pass).
fn describe_allocation_limits(
    memlock: Option<(u64, Option<u64>)>,
    address_space: Option<u64>,
    data: Option<u64>,
) -> String {
    let mib = |b: u64| b >> 20;
    let mut why = Vec::new();
    if let Some((limit, in_use)) = memlock {
        let used = in_use.map_or_else(String::new, |u| format!(", {} MiB of it in use", mib(u)));
        why.push(format!(
            "this process locked its memory (mlockall), so every allocation counts against its memory lock limit (RLIMIT_MEMLOCK) of {} MiB{used}; \
             raise it (LimitMEMLOCK=infinity in the systemd unit, as examples/systemd/scopevault.service sets it; `ulimit -l unlimited`) or grant CAP_IPC_LOCK",
            mib(limit)
        ));
    }
    if let Some(limit) = address_space {
        why.push(format!(
            "its address-space limit (RLIMIT_AS) is {} MiB: raise it (LimitAS= in a systemd unit, `ulimit -v`)",
            mib(limit)
        ));
    }
    if let Some(limit) = data {
        why.push(format!(
            "its data limit (RLIMIT_DATA) is {} MiB: raise it (LimitDATA= in a systemd unit, `ulimit -d`)",
            mib(limit)
        ));
    }
    if why.is_empty() {
        why.push("the system is out of memory (no limit of this process refused it): free memory, or add swap".to_owned());
    }
    why.join("; ")
}

/// The memory-lock limit (`RLIMIT_MEMLOCK`'s soft limit, bytes) every allocation of this
/// process counts against: `Some` only when its `mlockall` (with `MCL_FUTURE`) succeeded, the
/// limit is finite and the process lacks `CAP_IPC_LOCK` (which lifts it). For the daemon's
/// start-up warning ([`describe_memory_lock_limit`]).
pub fn locked_memory_limit() -> Option<u64> {
    let locked = MEMORY_LOCKED.load(std::sync::atomic::Ordering::SeqCst);
    limit_on_locked_memory(locked, memlock_room(None).ok()?)
}

/// [`locked_memory_limit`] for a process whose memory is `locked` (`mlockall` succeeded) and
/// whose room to lock memory is `room`.
fn limit_on_locked_memory(locked: bool, room: MemlockRoom) -> Option<u64> {
    if !locked || room.cap_ipc_lock {
        return None;
    }
    room.limit
}

/// The daemon's start-up warning when it locked its memory under the finite memory-lock limit
/// `limit` (bytes, [`locked_memory_limit`]): later allocations count against it, a passphrase
/// unlock's key derivation too, so an unlock that does not fit beside the daemon is refused
/// (the shipped unit's old `LimitMEMLOCK=64M` aborted the daemon at the first unlock,
/// nineteenth pass). `kdf_kib`: the most memory a passphrase slot of the vault asks, if known
/// at start.
pub fn describe_memory_lock_limit(limit: u64, kdf_kib: Option<u64>) -> String {
    let kdf = match kdf_kib {
        Some(k) => format!(
            "{} for the vault's key derivation (its passphrase slots ask up to that)",
            memory_amount(k << 10)
        ),
        None => "the KDF's memory (64 MiB for a slot `init` makes, up to 1 GiB a vault may ask)"
            .to_owned(),
    };
    format!(
        "the daemon locked its memory (mlockall, later allocations included) under a memory lock limit (RLIMIT_MEMLOCK) of {}: every allocation counts against it, and a passphrase unlock needs {kdf} beside the daemon's own memory; an unlock that does not fit is refused. \
         Lift the limit: LimitMEMLOCK=infinity in the systemd unit (as examples/systemd/scopevault.service sets it), or `ulimit -l unlimited` in the shell that starts the daemon (or grant CAP_IPC_LOCK)",
        memory_amount(limit)
    )
}

/// An amount of memory as the daemon and doctor print it: KiB below 1 MiB, else MiB.
pub fn memory_amount(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// True if the process is dumpable (`PR_GET_DUMPABLE` is not 0).
pub fn is_dumpable() -> bool {
    !matches!(dumpable_behavior(), Ok(DumpableBehavior::NotDumpable))
}

/// The soft `RLIMIT_CORE` in bytes (`u64::MAX` for unlimited).
pub fn core_limit() -> u64 {
    getrlimit(Resource::Core).current.unwrap_or(u64::MAX)
}

/// Raise the soft limit on open files to the hard limit (the daemon holds one descriptor per
/// connection, and the common soft default of 1,024 is below its connection cap). Returns
/// the soft limit in force afterwards (`u64::MAX` for unlimited).
pub fn raise_open_files_limit() -> u64 {
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
    open_files_limit()
}

/// The soft `RLIMIT_NOFILE` (`u64::MAX` for unlimited).
pub(crate) fn open_files_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Descriptor numbers held to keep room for what a process opens after a step that must not be
/// followed by a failure for want of one (`exec`'s fetch: a hand-out is audited whether the
/// command then runs or not). Each is an eventfd (or a copy of the first): no file, nothing
/// inherited (close-on-exec). They are given back with [`DescriptorReserve::give_back`] or
/// when this is dropped, right before what they kept room for.
#[derive(Debug)]
pub(crate) struct DescriptorReserve {
    held: Vec<OwnedFd>,
}

/// [`DescriptorReserve::take`] could not hold as many descriptors as asked.
#[derive(Debug)]
pub(crate) struct DescriptorShortage {
    /// How many were asked for.
    pub wanted: usize,
    /// How many could be held.
    pub got: usize,
    /// Why the next one could not (`EMFILE` when the open-files limit is reached).
    pub error: io::Error,
}

impl DescriptorReserve {
    /// Hold `n` descriptors, or say how many could be held.
    pub(crate) fn take(n: usize) -> Result<DescriptorReserve, DescriptorShortage> {
        let mut r = DescriptorReserve { held: Vec::new() };
        r.grow(n).map(|()| r)
    }

    /// Whether `n` more descriptors can be held beside these (they are given back at once).
    pub(crate) fn room_for(&mut self, n: usize) -> bool {
        let before = self.held.len();
        let room = self.grow(n).is_ok();
        self.held.truncate(before);
        room
    }

    /// Hold `n` more descriptors, or say how many could be held (those are given back).
    pub(crate) fn take_more(&mut self, n: usize) -> Result<(), DescriptorShortage> {
        self.grow(n)
    }

    /// Give back `n` of the descriptors held (all there are, if fewer).
    pub(crate) fn give_back(&mut self, n: usize) {
        self.held.truncate(self.held.len().saturating_sub(n));
    }

    fn grow(&mut self, n: usize) -> Result<(), DescriptorShortage> {
        let (wanted, start) = (self.held.len() + n, self.held.len());
        while self.held.len() < wanted {
            let next = match self.held.first() {
                Some(first) => rustix::io::fcntl_dupfd_cloexec(first, 0),
                None => rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC),
            };
            match next {
                Ok(fd) => self.held.push(fd),
                Err(e) => {
                    let got = self.held.len() - start;
                    self.held.truncate(start);
                    return Err(DescriptorShortage {
                        wanted: n,
                        got,
                        error: e.into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The real user id of this process.
pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The real group id of this process.
pub fn current_gid() -> u32 {
    rustix::process::getgid().as_raw()
}

/// The process id of this process.
pub fn current_pid() -> i32 {
    rustix::process::getpid().as_raw_pid()
}

/// The supplementary groups of this process (empty if the kernel refuses to say).
pub fn supplementary_groups() -> Vec<u32> {
    rustix::process::getgroups()
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
}

/// How the daemon got its handle on a peer process (docs/audit.md, `peer.exe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidfdSource {
    /// `SO_PEERPIDFD` (Linux 6.5 and later): the kernel hands out a pidfd for the very process
    /// that connected, so a pid reused since cannot be mistaken for it.
    PeerPidfd,
    /// `pidfd_open(pid)` right after `SO_PEERCRED`, on kernels without `SO_PEERPIDFD`: the pid
    /// could in principle have been reused between the peer's exit and this call.
    PidfdOpen,
}

/// A handle on the process at the other end of a Unix socket: a pidfd, which keeps naming that
/// one process (never a later process given the same pid), and its pid as `SO_PEERCRED` gave it.
#[derive(Debug)]
pub struct PeerProcess {
    pidfd: OwnedFd,
    pid: i32,
    source: PidfdSource,
}

impl PeerProcess {
    /// A pidfd for the peer on `sock`, whose credentials `cred` are: `SO_PEERPIDFD`, or on a
    /// kernel that does not know that option (`ENOPROTOOPT`), `pidfd_open(cred.pid)`. `None` if
    /// the peer has already been reaped, is in another pid namespace, or the kernel has no pidfds.
    pub fn of(sock: &UnixStream, cred: &PeerCred) -> Option<PeerProcess> {
        Self::of_via(sock, cred, true)
    }

    fn of_via(sock: &UnixStream, cred: &PeerCred, use_sockopt: bool) -> Option<PeerProcess> {
        let peer_pidfd = if use_sockopt {
            socket_peer_pidfd(sock)
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOPROTOOPT))
        };
        let (pidfd, source) = match peer_pidfd {
            Ok(fd) => (fd, PidfdSource::PeerPidfd),
            // Only an old kernel falls back: any other error (the peer already reaped) must not
            // become a pidfd_open of a number that may now name another process.
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
                let pid = rustix::process::Pid::from_raw(cred.pid)?;
                let fd =
                    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
                (fd, PidfdSource::PidfdOpen)
            }
            Err(_) => return None,
        };
        Some(PeerProcess {
            pidfd,
            pid: cred.pid,
            source,
        })
    }

    /// Which call produced the pidfd.
    pub fn source(&self) -> PidfdSource {
        self.source
    }

    /// The pidfd itself.
    pub fn pidfd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// True while the process has not exited. A pidfd polls readable once its process has
    /// exited (pidfd_open(2)), whether or not it has been reaped; a failed poll counts as
    /// exited, since then nothing is confirmed.
    pub fn is_alive(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            match poll(&mut fds, Some(&now)) {
                Ok(0) => return true,
                Ok(_) => return false,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return false,
            }
        }
    }

    /// The process's pid as `/proc` numbers it, read from the pidfd itself (the `Pid:` line of
    /// `/proc/self/fdinfo/FD`): `None` once the process has been reaped (`-1`) or when it is
    /// not visible in that `/proc`'s pid namespace (`0`). A kernel whose fdinfo has no `Pid:`
    /// line (before 5.4) gives the `SO_PEERCRED` pid, the same kernel reference's number.
    pub fn proc_pid(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.pidfd.as_raw_fd()));
        match info.ok().and_then(|t| fdinfo_pid(&t)) {
            Some(pid) => (pid > 0).then_some(pid),
            None => (self.pid > 0).then_some(self.pid),
        }
    }

    /// The process's executable (`/proc/PID/exe`), or `None` if it cannot be confirmed to
    /// belong to this process.
    ///
    /// The pid comes from the pidfd ([`PeerProcess::proc_pid`]), and a pid number is not given
    /// to another process while its holder lives: so if the pidfd still shows the process
    /// running *after* the link was read, the link was read from this very process. If it has
    /// exited by then, the pid may already name another one: `None`, never a wrong binary.
    pub fn exe(&self) -> Option<ExeLink> {
        self.exe_read_by(process_exe)
    }

    fn exe_read_by(&self, read: impl FnOnce(i32) -> Option<ExeLink>) -> Option<ExeLink> {
        let pid = self.proc_pid()?;
        let exe = read(pid)?;
        self.is_alive().then_some(exe)
    }
}

/// The `Pid:` line of a pidfd's fdinfo, if it has one.
fn fdinfo_pid(fdinfo: &str) -> Option<i32> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `getsockopt(SO_PEERPIDFD)`: a pidfd (close-on-exec) for the process that connected to
/// `sock`. `ENOPROTOOPT` on kernels before 6.5; on some kernels an error if the peer has
/// already been reaped.
fn socket_peer_pidfd(sock: &UnixStream) -> io::Result<OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `sock` is an open socket borrowed for the call; `optval` points to a live,
    // writable `c_int` and `optlen` holds its size, which is what the kernel writes for
    // SO_PEERPIDFD (an int), so it writes at most `len` bytes into our own stack variables.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::c_int>() || fd < 0 {
        return Err(io::Error::other("SO_PEERPIDFD returned no descriptor"));
    }
    // SAFETY: on success the kernel installed `fd` in our descriptor table for this call
    // alone; nothing else knows or owns it, so the `OwnedFd` is its only owner and closes it.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The executable of the peer on `sock` (credentials `cred`), read through a pidfd so it is
/// that process's and no other's ([`PeerProcess::exe`]); `None` if it cannot be confirmed.
pub fn peer_exe(sock: &UnixStream, cred: &PeerCred) -> Option<ExeLink> {
    PeerProcess::of(sock, cred)?.exe()
}

/// A process's executable as the audit log records it (docs/audit.md, `peer.exe`): the path
/// `/proc/PID/exe` names, escaped so that different paths never read the same
/// ([`crate::text::escape_path_bytes`]: a byte that is not UTF-8 is `\xNN`, a backslash
/// `\\`), and whether the file was deleted, apart from the path: the kernel marks a deleted
/// file by appending ` (deleted)` to its path, which a live binary can also be named
/// (twenty-sixth pass, found by the attacker of hostile process environments). It derefs to
/// the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeLink {
    /// The escaped path, without the kernel's ` (deleted)` when `deleted`.
    pub path: String,
    /// The file had been deleted (unlinked) when the link was read.
    pub deleted: bool,
}

impl std::ops::Deref for ExeLink {
    type Target = str;
    fn deref(&self) -> &str {
        &self.path
    }
}

/// The executable of a process (`/proc/PID/exe`), best effort: `None` if the process is gone,
/// in another namespace, or not ours to look at. Not tied to a process: the pid may have been
/// reused; [`peer_exe`] is for peers.
pub fn process_exe(pid: i32) -> Option<ExeLink> {
    if pid <= 0 {
        return None;
    }
    let link = format!("/proc/{pid}/exe");
    let target = std::fs::read_link(&link).ok()?;
    Some(exe_link(Path::new(&link), &target))
}

/// [`ExeLink`] of `target`, what the magic link `link` reads. It ends in ` (deleted)` for a
/// deleted file, and for a live one so named: that one is the very file `link` leads to
/// (same device and inode), a deleted one is not at that path.
fn exe_link(link: &Path, target: &Path) -> ExeLink {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    const MARK: &[u8] = b" (deleted)";
    let bytes = target.as_os_str().as_bytes();
    let deleted = bytes.ends_with(MARK)
        && !matches!(
            (std::fs::metadata(link), std::fs::metadata(target)),
            (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino()
        );
    let bytes = if deleted {
        &bytes[..bytes.len() - MARK.len()]
    } else {
        bytes
    };
    ExeLink {
        path: crate::text::escape_path_bytes(bytes),
        deleted,
    }
}

/// `/proc/PID/NAME`, or `/proc/self/NAME` for `None`.
fn proc_file(pid: Option<i32>, name: &str) -> io::Result<String> {
    match pid {
        Some(pid) if pid <= 0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no such process (pid 0: in another pid namespace)",
        )),
        Some(pid) => std::fs::read_to_string(format!("/proc/{pid}/{name}")),
        None => std::fs::read_to_string(format!("/proc/self/{name}")),
    }
}

/// The command name of a process (`/proc/PID/comm`: its executable's name, at most 15 bytes),
/// or of this one for `None`. Best effort; not tied to a process (the pid may be reused).
pub fn process_comm(pid: Option<i32>) -> Option<String> {
    proc_file(pid, "comm")
        .ok()
        .map(|c| c.trim_end_matches('\n').to_owned())
}

/// The effective uid of a process (`/proc/PID/status`), best effort.
pub fn process_uid(pid: i32) -> Option<u32> {
    let status = proc_file(Some(pid), "status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What a process may lock of its memory, which decides whether its `mlockall` succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemlockRoom {
    /// `CAP_IPC_LOCK` is in its effective set: no limit applies.
    pub cap_ipc_lock: bool,
    /// Its `RLIMIT_MEMLOCK` soft limit in bytes; `None`: unlimited.
    pub limit: Option<u64>,
}

/// [`MemlockRoom`] of a process (`/proc/PID/status` and `/proc/PID/limits`), or of this one
/// for `None`.
pub fn memlock_room(pid: Option<i32>) -> io::Result<MemlockRoom> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let status = proc_file(pid, "status")?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .ok_or_else(|| bad("no CapEff in /proc/PID/status"))?;
    const CAP_IPC_LOCK: u32 = 14;
    let limits = proc_file(pid, "limits")?;
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max locked memory"))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| bad("no \"Max locked memory\" in /proc/PID/limits"))?;
    let limit = match soft {
        "unlimited" => None,
        n => Some(
            n.parse()
                .map_err(|_| bad("an unreadable memory-lock limit"))?,
        ),
    };
    Ok(MemlockRoom {
        cap_ipc_lock: cap_eff & (1 << CAP_IPC_LOCK) != 0,
        limit,
    })
}

/// The processes named `comm` ([`process_comm`]) holding open the listening Unix socket bound
/// at `path` (by its path as bound, or as an absolute path): its inode from `/proc/net/unix`,
/// then every `/proc/PID/fd` that names it. Best effort: the descriptors of another user's
/// processes are seen by root only. With systemd's socket activation these are systemd and the
/// service it started.
///
/// A process is counted only if it has the name both before and after its descriptors are
/// read: a process forked by one holding the socket holds it too until it execs, and one seen
/// holding it before its `exec` and named after the program it exec'd (which no longer holds
/// it) passed for a second holder of that name (systemd forking the child of another service,
/// a `scopevault audit rotate` timer; under load in the tests, a child another test thread
/// forked), and `doctor` could not tell which was the daemon.
pub fn socket_listeners(path: &Path, comm: &str) -> Vec<i32> {
    socket_holders_named(path, comm, &mut |_| {})
}

/// [`socket_listeners`], calling `after_fds` with each pid once what is read of it before its
/// name is read again is read (a test makes the process exec there).
fn socket_holders_named(path: &Path, comm: &str, after_fds: &mut dyn FnMut(i32)) -> Vec<i32> {
    /// `__SO_ACCEPTCON` in `/proc/net/unix`'s Flags column: a listening socket.
    const ACCEPTCON: u32 = 0x10000;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (flags, inode, bound) = (f.get(3)?, f.get(6)?, Path::new(f.get(7)?));
            let listening = u32::from_str_radix(flags, 16).is_ok_and(|x| x & ACCEPTCON != 0);
            (listening && (bound == path || bound == abs)).then(|| format!("socket:[{inode}]"))
        })
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let named = || process_comm(Some(pid)).as_deref() == Some(comm);
            let holds = named()
                && std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                    fds.flatten().any(|fd| {
                        std::fs::read_link(fd.path())
                            .is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
                    })
                });
            after_fds(pid);
            holds && named()
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Take an exclusive, non-blocking `flock` on an open file (released when it is closed):
/// `Err(WouldBlock)` if another process holds it.
pub fn try_lock_exclusive(file: &std::fs::File) -> io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    Ok(())
}

/// Open `path` for reading if it is a regular file, and never open anything else. The path is
/// first opened `O_PATH`, which follows links but calls no device's open and waits for no FIFO
/// writer, and that descriptor is judged with `fstat`; only a regular file is then opened for
/// reading, through `/proc/self/fd/N` (the very inode judged, whatever the path leads to by
/// then), and checked to be that inode. A path judged and then opened by name let a link
/// flipped in between get `/dev/ptmx` opened (lint, nineteenth pass). The read is opened
/// `O_NONBLOCK | O_NOCTTY`. `nofollow` refuses a link at the path (`ELOOP`, as `O_NOFOLLOW`).
/// Anything but a regular file is `InvalidInput` naming what it is ([`not_a_regular_file`],
/// recognised by [`is_not_a_regular_file`]).
pub fn open_regular(path: &Path, nofollow: bool) -> io::Result<std::fs::File> {
    open_regular_at(rustix::fs::CWD, path, nofollow, rustix::fs::OFlags::RDONLY)
}

/// [`open_regular`] for `name` in the directory open as `dir` (as `openat`: an absolute
/// `name`, or [`rustix::fs::CWD`], works as a plain path), opened at the end with `access`
/// (`RDONLY`, `RDWR | APPEND`, `WRONLY`, and `O_DSYNC`, `O_DIRECT` and the like) instead of
/// for reading: what opens the vault's lock, the audit log and its journal for writing judges
/// them first, as what reads them does. `O_NONBLOCK | O_NOCTTY | O_CLOEXEC` are added;
/// `access` never holds `O_CREAT` ([`open_or_create_regular_at`] creates).
pub fn open_regular_at(
    dir: impl AsFd,
    name: &Path,
    nofollow: bool,
    access: rustix::fs::OFlags,
) -> io::Result<std::fs::File> {
    use rustix::fs::{FileType, Mode, OFlags};
    use std::os::fd::AsRawFd;
    debug_assert!(!access.intersects(OFlags::CREATE | OFlags::EXCL | OFlags::TRUNC));
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    let judged = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    let st = rustix::fs::fstat(&judged)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        // `O_PATH | O_NOFOLLOW` opens the link itself where a plain open fails.
        FileType::Symlink if nofollow => return Err(rustix::io::Errno::LOOP.into()),
        other => return Err(not_a_regular_file(other)),
    }
    let file = std::fs::File::from(rustix::fs::open(
        format!("/proc/self/fd/{}", judged.as_raw_fd()),
        access | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?);
    let opened = rustix::fs::fstat(&file)?;
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) {
        return Err(io::Error::other(
            "the file opened is not the one judged (is /proc mounted?)",
        ));
    }
    ensure_regular(&file)?;
    Ok(file)
}

/// `name` in the directory open as `dir`, never through a symbolic link: created (`O_CREAT |
/// O_EXCL`, `mode`) and opened with `access` if nothing is there, else opened with `access`
/// only if it is a regular file ([`open_regular_at`]); `true` with a file this call created.
/// A plain `O_CREAT` open of an existing name opens whatever is there: a FIFO or a device at
/// the audit log's path was opened before it was judged (twentieth pass).
pub fn open_or_create_regular_at(
    dir: impl AsFd,
    name: &Path,
    access: rustix::fs::OFlags,
    mode: u32,
) -> io::Result<(std::fs::File, bool)> {
    use rustix::fs::{Mode, OFlags};
    let create = access | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // A name removed between the two opens is created at the next turn; one that keeps
    // coming and going is reported as the last open found it.
    let mut turns = 0;
    loop {
        turns += 1;
        match rustix::fs::openat(&dir, name, create, Mode::from_raw_mode(mode)) {
            Ok(fd) => return Ok((std::fs::File::from(fd), true)),
            Err(rustix::io::Errno::EXIST) => match open_regular_at(&dir, name, true, access) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && turns < 3 => continue,
                r => return r.map(|f| (f, false)),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

/// `Ok` if `file` is a regular file, else [`not_a_regular_file`].
pub fn ensure_regular(file: &std::fs::File) -> io::Result<()> {
    let st = rustix::fs::fstat(file)?;
    match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => Ok(()),
        other => Err(not_a_regular_file(other)),
    }
}

/// What [`not_a_regular_file`] carries: the error's `Display` is "not a regular file (a
/// FIFO)".
#[derive(Debug)]
struct NotRegular(&'static str);

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a regular file ({})", self.0)
    }
}

impl std::error::Error for NotRegular {}

/// Whether `e` is [`not_a_regular_file`]'s error (a FIFO, a device, a directory where a
/// regular file must be), told apart from any other `InvalidInput`.
pub fn is_not_a_regular_file(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<NotRegular>())
}

/// The error for a path that is not a regular file, naming what it is: "not a regular file (a
/// FIFO)".
pub fn not_a_regular_file(kind: rustix::fs::FileType) -> io::Error {
    use rustix::fs::FileType as T;
    let what = match kind {
        T::Fifo => "a FIFO",
        T::CharacterDevice => "a character device",
        T::BlockDevice => "a block device",
        T::Directory => "a directory",
        T::Socket => "a socket",
        T::Symlink => "a symbolic link",
        _ => "of an unknown type",
    };
    io::Error::new(io::ErrorKind::InvalidInput, NotRegular(what))
}

/// [`not_a_regular_file`] for what `metadata` describes.
pub fn not_a_regular_file_of(meta: &std::fs::Metadata) -> io::Error {
    use std::os::unix::fs::MetadataExt;
    not_a_regular_file(rustix::fs::FileType::from_raw_mode(meta.mode()))
}

/// `access(path, W_OK)`: may this process open `path` for writing now (mode bits, read-only
/// mounts, a removed file)?
pub fn check_writable(path: &Path) -> io::Result<()> {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK)?;
    Ok(())
}

/// The executable a process runs: the path it was started from, as `/proc/PID/exe` names it,
/// and the (device, inode) of the file it runs, which stays that file's while the process
/// lives, whatever is put at the path since.
#[derive(Debug, Clone)]
pub struct RunningExe {
    path: PathBuf,
    file: (u64, u64),
}

impl RunningExe {
    /// This process's (`None`), or process `pid`'s: that needs the right to read its
    /// `/proc/PID/exe` (root, for a daemon, which makes itself non-dumpable).
    pub fn of(pid: Option<i32>) -> io::Result<RunningExe> {
        use std::os::unix::fs::MetadataExt;
        let link = match pid {
            Some(pid) if pid > 0 => PathBuf::from(format!("/proc/{pid}/exe")),
            Some(_) => return Err(io::Error::from(io::ErrorKind::NotFound)),
            None => PathBuf::from("/proc/self/exe"),
        };
        let path = std::fs::read_link(&link)?;
        let meta = std::fs::metadata(&link)?;
        Ok(RunningExe {
            path,
            file: (meta.dev(), meta.ino()),
        })
    }

    /// The path it was started from, when the file there is no longer the one it runs (a new
    /// binary installed over it, or removed); `None` while it is, or when the path cannot be
    /// looked up.
    pub fn replaced(&self) -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        // The kernel names a removed (or replaced) file `PATH (deleted)`.
        let bytes = self.path.as_os_str().as_bytes();
        let path = bytes
            .strip_suffix(b" (deleted)")
            .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
            .unwrap_or_else(|| self.path.clone());
        match std::fs::metadata(&path) {
            Ok(m) if (m.dev(), m.ino()) == self.file => None,
            Ok(_) => Some(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(path),
            Err(_) => None,
        }
    }
}

/// This process's executable as it started ([`note_own_exe`]).
static OWN_EXE: std::sync::OnceLock<Option<RunningExe>> = std::sync::OnceLock::new();

/// Remember this process's executable (the daemon, at its start), for [`own_exe_replaced`].
pub fn note_own_exe() {
    OWN_EXE.get_or_init(|| RunningExe::of(None).ok());
}

/// The path this process was started from, when the file there is no longer the one it runs
/// ([`RunningExe::replaced`]); `None` too before [`note_own_exe`].
pub fn own_exe_replaced() -> Option<PathBuf> {
    OWN_EXE.get()?.as_ref()?.replaced()
}

/// Whether this process (its effective ids, as `mkdir`, `bind` and `unlink` use them) may
/// create and remove entries in the directory `dir`: it is a directory, writable and
/// searchable (`faccessat(W_OK | X_OK, AT_EACCESS)`: mode bits, ACLs, read-only mounts).
pub fn check_may_create_in(dir: &Path) -> io::Result<()> {
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    rustix::fs::accessat(
        rustix::fs::CWD,
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        rustix::fs::AtFlags::EACCESS,
    )?;
    Ok(())
}

/// Give freed heap memory back to the kernel (glibc's `malloc_trim`).
///
/// Opening a vault of ten thousand credentials allocates several times what stays alive
/// (file bytes, plaintext, JSON and TOML parse trees), and glibc keeps freed pages mapped in
/// its arenas: without a trim the daemon's resident memory reflects that peak for the rest of
/// its life. A no-op where the allocator is not glibc's.
///
/// Locked pages cannot be discarded (`madvise(MADV_DONTNEED)` refuses them), so when the
/// daemon runs with `mlockall` the lock is lifted for the trim and put back at once: measured
/// with 10,000 credentials, the trim then frees 15-25 MiB instead of almost nothing. The
/// window is the trim's duration (a millisecond or two): only under memory pressure in that
/// window could a page be swapped out, and every resident page is locked again right after.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let relock = MEMORY_LOCKED.load(std::sync::atomic::Ordering::SeqCst);
        if relock {
            let _ = rustix::mm::munlockall();
        }
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: `malloc_trim` takes a plain integer, only walks glibc's own free lists under
        // glibc's own locks, and may be called at any time from any thread (malloc_trim(3)).
        #[allow(unsafe_code)]
        unsafe {
            malloc_trim(0);
        }
        if relock {
            // If locking fails now (limits changed under us) the daemon carries on as when the
            // first mlockall is refused; secrets stay zeroized-on-drop either way.
            let _ = lock_all_memory();
        }
    }
}

/// The inherited descriptor `fd` (`--passphrase-fd N`) for reading, as itself: a duplicate
/// shares its open file description, so a file is read from where it stands (reopening
/// `/dev/fd/N` started over at byte 0, and fd 0 so reopened was read twice: once for the
/// passphrase, once for a secret), and a socket works. Refused: a descriptor that is not open,
/// or not open for reading.
pub fn inherited_for_reading(fd: i32) -> io::Result<std::fs::File> {
    // Only a descriptor the process has: `borrow_raw` requires it to be open while borrowed,
    // and nothing closes descriptors in this single-threaded start-up.
    if fd < 0 || std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "it is not open"));
    }
    // SAFETY: `fd` is open (checked above) and stays open while borrowed: it is only used for
    // the two calls below, and the duplicate is owned separately.
    #[allow(unsafe_code)]
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mode = rustix::fs::fcntl_getfl(borrowed)? & rustix::fs::OFlags::RWMODE;
    if mode == rustix::fs::OFlags::WRONLY {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "it is open for writing only",
        ));
    }
    let dup = rustix::io::fcntl_dupfd_cloexec(borrowed, 3)?;
    Ok(std::fs::File::from(dup))
}

/// A child process to forward signals to, named by a pidfd taken right after it was spawned
/// (it cannot have been reaped yet): a signal sent through it reaches that process or, once
/// it has been reaped, nobody (`ESRCH`) — never a later process that got the same pid. On a
/// kernel without pidfds (before 5.3), the pid, until [`ChildSignals::reaped`] is called.
pub struct ChildSignals {
    pidfd: Option<OwnedFd>,
    pid: u32,
    reaped: std::sync::atomic::AtomicBool,
}

impl ChildSignals {
    /// For the child `pid`, which must not have been waited for yet.
    pub fn new(pid: u32) -> ChildSignals {
        let pidfd = rustix::process::Pid::from_raw(pid as i32).and_then(|p| {
            rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
        });
        ChildSignals {
            pidfd,
            pid,
            reaped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Send `sig` to the child, if it has not been reaped.
    pub fn send(&self, sig: i32) -> io::Result<()> {
        let signal = rustix::process::Signal::from_named_raw(sig)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown signal"))?;
        match &self.pidfd {
            Some(fd) => Ok(rustix::process::pidfd_send_signal(fd, signal)?),
            None if self.is_reaped() => Err(rustix::io::Errno::SRCH.into()),
            None => send_signal(self.pid, sig),
        }
    }

    /// The child has been waited for: its pid may name another process from now on.
    pub fn reaped(&self) {
        self.reaped.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The child's pid (to read its `/proc` entry; never to signal it).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether [`ChildSignals::reaped`] was called.
    pub fn is_reaped(&self) -> bool {
        self.reaped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Signals whose default action dumps core: a command that died of one of them is not
/// re-raised by [`die_of_signal`]'s caller (exit 128+N instead).
pub const CORE_SIGNALS: [i32; 10] = [
    libc::SIGQUIT,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGSYS,
];

/// End this process by signal `sig`, as its command ended (`exec`, as env(1), sudo and
/// timeout(1) do): its default action put back (signal-hook's handler may hold it), unblocked
/// in this thread, then raised. Returns only if that did not end the process (a signal whose
/// default is not to terminate); the caller then exits 128+N.
pub fn die_of_signal(sig: i32) {
    // SAFETY: `signal(sig, SIG_DFL)`, `pthread_sigmask` and `raise` take plain integers and a
    // signal set on this stack; they are called from the main thread once nothing is left
    // to clean up, and a number that is not a signal makes each fail with EINVAL, no more.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
}

/// Have the child that `cmd` spawns get signal `sig` from the kernel when this process dies
/// (`PR_SET_PDEATHSIG`), however it dies, SIGKILL included: for a child that must not outlive
/// the command that started it (the demo's daemon: SIGTERM; `exec`'s command, which holds
/// the values: SIGKILL). Linux sends it when the *thread* that spawned the child ends: call
/// this, and spawn, from the main thread. A parent that is gone already when the child sets
/// it (between the fork and the `prctl`) fails the spawn. A set-user-ID program's `execve`
/// clears it.
pub fn terminate_with_parent(cmd: &mut std::process::Command, sig: rustix::process::Signal) {
    use std::os::unix::process::CommandExt;
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the child between `fork` and `exec`, where only
    // async-signal-safe work is allowed: it makes two system calls (`prctl`, `getppid`) and
    // builds its errors from raw OS error numbers; it allocates nothing and takes no lock.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(sig))?;
            if rustix::process::getppid() != Some(parent) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}

/// glibc's own signals, SIGCANCEL and SIGSETXID (the kernel's first two real-time signals):
/// no program can set their disposition through `sigaction`, which refuses them.
const GLIBC_INTERNAL_SIGNALS: [i32; 2] = [32, 33];

/// Have the command `cmd` spawns start with the signal dispositions this process was given:
/// for `exec`, whose command must start as it would without scopevault in between. A signal
/// ignored by whoever started scopevault (`nohup`, a shell's background job) stays ignored,
/// any other is at its default after `execve`, as always; what would differ is glibc's two
/// internal signals, which its `posix_spawn` (std's way to spawn, when it can) leaves
/// *ignored* in the child (it ignores them in its helper, and `execve` keeps an ignored
/// signal): `SigIgn 0000000180000000` in the command's /proc/self/status (twenty-first pass).
/// A `pre_exec` makes std fork and exec instead, and in the child, between the two, both are
/// put back at their default: whoever started scopevault may have had them ignored by the same
/// `posix_spawn` (cargo does), which is nobody's choice. (SIGPIPE starts at its default too,
/// as std does for every child: Rust's runtime ignores it before `main`, so what the caller
/// gave is not known.)
///
/// `handled` are the signals `exec` is about to catch itself, before the spawn: the child
/// inherits a caught signal, which `execve` puts back at its default, so each of them that
/// this process was given ignored is ignored again in the child, as it was given.
pub fn start_with_given_signal_dispositions(cmd: &mut std::process::Command, handled: &[i32]) {
    use std::os::unix::process::CommandExt;
    let mut ignored: Vec<i32> = handled.iter().copied().filter(|&s| is_ignored(s)).collect();
    // SIGCHLD, put back at its default by `take_sigchld_default`, as it was given.
    if SIGCHLD_GIVEN_IGNORED.load(std::sync::atomic::Ordering::SeqCst) {
        ignored.push(libc::SIGCHLD);
    }
    let xfsz_ignored = SIGXFSZ_GIVEN_IGNORED.load(std::sync::atomic::Ordering::SeqCst);
    let mask = GIVEN_SIGNAL_MASK.get();
    // SAFETY: the closure runs in the child between `fork` and `exec`, where only
    // async-signal-safe work is allowed: it makes two `rt_sigaction` system calls with an
    // argument on its stack, one `sigaction` per signal of `ignored` and one for SIGXFSZ, and
    // `pthread_sigmask` for the mask it was given (where it was recorded); it allocates nothing
    // and takes no lock. glibc's `sigaction` refuses these two signals, hence
    // the raw system call. The kernel's `struct sigaction` differs between architectures (with
    // or without `sa_restorer`), but all zero is the same everywhere: `SIG_DFL`, no flags, an
    // empty mask; 32 bytes cover every 64-bit layout. A failure leaves the signal as it was:
    // not worth failing the command for.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            let default = [0u64; 4];
            for sig in GLIBC_INTERNAL_SIGNALS {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    libc::c_long::from(sig),
                    default.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    std::mem::size_of::<u64>(),
                );
            }
            // `sigaction` is async-signal-safe; `ignored` was allocated before the fork and
            // is only read here.
            for &sig in &ignored {
                let mut act = std::mem::zeroed::<libc::sigaction>();
                act.sa_sigaction = libc::SIG_IGN;
                libc::sigaction(sig, &act, std::ptr::null_mut());
            }
            // SIGXFSZ, which every command ignores ([`start_process`]), as it was given.
            if !xfsz_ignored {
                let act = std::mem::zeroed::<libc::sigaction>();
                libc::sigaction(libc::SIGXFSZ, &act, std::ptr::null_mut());
            }
            // The signal mask exec was given (std empties it in the child), read from the
            // static set before the fork; `pthread_sigmask` is async-signal-safe.
            if let Some(mask) = mask {
                libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut());
            }
            Ok(())
        });
    }
}

/// Whether this process was given SIGXFSZ ignored, recorded by [`start_process`].
static SIGXFSZ_GIVEN_IGNORED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The signal mask this process was given, recorded by [`start_process`]: `exec`'s command
/// gets it back ([`start_with_given_signal_dispositions`]).
static GIVEN_SIGNAL_MASK: std::sync::OnceLock<libc::sigset_t> = std::sync::OnceLock::new();

/// The first thing every command does, before it writes anything (twenty-sixth pass, found by
/// the attacker of hostile process environments): record the signal mask it was given and
/// whether SIGXFSZ was ignored (for `exec`'s command), then ignore SIGXFSZ. At its default,
/// a write past the file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`) killed the process
/// mid-write without a word: `exec` with its command's report half scrubbed, the daemon at
/// its start or mid-record, `cred set` with its temporary file left. Ignored, such a write
/// fails with `EFBIG`, which every writer reports ([`is_file_size_limit`]).
pub fn start_process() {
    // SAFETY: `pthread_sigmask` with no new set only writes the current mask into `given`, on
    // this stack; `signal(SIGXFSZ, SIG_IGN)` takes plain integers. Called first in `main`,
    // before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        let mut given = std::mem::zeroed::<libc::sigset_t>();
        if libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut given) == 0 {
            let _ = GIVEN_SIGNAL_MASK.set(given);
        }
        if is_ignored(libc::SIGXFSZ) {
            SIGXFSZ_GIVEN_IGNORED.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Unblock `signals` in this thread (and the threads it starts from now on): for a command
/// that handles them (`serve`, `exec`, `demo`, a prompt's [`watch_prompt_signals`]), called
/// before it starts a thread. Given blocked (an
/// inherited signal mask: a supervisor that blocks them around its fork), they stayed pending
/// and the daemon ignored SIGTERM, `exec` neither forwarded it nor acted on it (twenty-sixth
/// pass, found by the attacker of hostile process environments). One pending already is
/// delivered now, at its default action for a signal not yet caught.
pub fn unblock_signals(signals: &[i32]) {
    thread_sigmask(libc::SIG_UNBLOCK, signals);
}

/// Block `signals` in this thread (only): the prompt holds SIGINT while rpassword reads, since
/// rpassword raises SIGINT at itself on a Ctrl-C and only then puts back the (echo-off)
/// terminal state it found; delivered there, the signal thread's restore raced that and lost
/// (echo left off as the process died, 2 runs in 40). Held, it is delivered when
/// [`unblock_signals`] is called after rpassword returned.
pub fn block_signals(signals: &[i32]) {
    thread_sigmask(libc::SIG_BLOCK, signals);
}

/// `pthread_sigmask(how, signals)` for this thread: [`block_signals`], [`unblock_signals`].
fn thread_sigmask(how: libc::c_int, signals: &[i32]) {
    // SAFETY: `sigemptyset`, `sigaddset` and `pthread_sigmask` work on a signal set on this
    // stack; a number that is not a signal makes `sigaddset` fail with EINVAL, no more; `how`
    // is SIG_BLOCK or SIG_UNBLOCK (another makes `pthread_sigmask` fail with EINVAL).
    #[allow(unsafe_code)]
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for &sig in signals {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// What to do about a write refused by the file-size limit (`EFBIG`, with SIGXFSZ ignored:
/// [`start_process`]): the limit is the cause, not the file, the disk or the permissions.
pub const FILE_SIZE_LIMIT_ADVICE: &str = "the file would pass this process's file-size limit (RLIMIT_FSIZE: `ulimit -f`, systemd's LimitFSIZE=): raise or remove the limit";

/// Whether `e`, or an error it was caused by, is `EFBIG`: a write past the file-size limit.
pub fn is_file_size_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        // An error that must be `Clone` (the audit writer's) holds its OS error in an `Arc`,
        // whose `source` is the inner error's own, not the inner error.
        let io = err.downcast_ref::<io::Error>().or_else(|| {
            err.downcast_ref::<std::sync::Arc<io::Error>>()
                .map(|a| &**a)
        });
        if io.is_some_and(|io| io.raw_os_error() == Some(libc::EFBIG)) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether this process was given SIGCHLD ignored, recorded by [`take_sigchld_default`].
static SIGCHLD_GIVEN_IGNORED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Put SIGCHLD back at its default, for a process that waits for its children (`exec`,
/// `demo`), as timeout(1) does: given it ignored (`signal(SIGCHLD, SIG_IGN)` in a caller is
/// inherited through `execve`), the kernel reaps every child itself and the wait fails with
/// `ECHILD` (`exec` lost its command's exit code and skipped its scrub). Whether it was
/// ignored is kept: [`start_with_given_signal_dispositions`] ignores it again in the command.
pub fn take_sigchld_default() {
    if is_ignored(libc::SIGCHLD) {
        SIGCHLD_GIVEN_IGNORED.store(true, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: `signal(SIGCHLD, SIG_DFL)` takes plain integers; it is called before this
        // process starts any child, and its default action is to do nothing.
        #[allow(unsafe_code)]
        unsafe {
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        }
    }
}

/// Whether signal `sig` is ignored in this process (`SIG_IGN`), asked with `sigaction`.
pub fn is_ignored(sig: i32) -> bool {
    // SAFETY: `sigaction` with no new action only writes the current one into `old`, on this
    // stack; a number that is not a signal fails with EINVAL and leaves it zeroed (`SIG_DFL`).
    #[allow(unsafe_code)]
    unsafe {
        let mut old = std::mem::zeroed::<libc::sigaction>();
        libc::sigaction(sig, std::ptr::null(), &mut old);
        old.sa_sigaction == libc::SIG_IGN
    }
}

/// Send signal number `sig` (as received from signal-hook) to process `pid` (for a child,
/// [`ChildSignals`] is safer: a pid may have been reused).
pub fn send_signal(pid: u32, sig: i32) -> io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
    let sig = rustix::process::Signal::from_named_raw(sig)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown signal"))?;
    rustix::process::kill_process(pid, sig)?;
    Ok(())
}

/// The controlling terminal with echo turned off until this is dropped (then the settings it
/// had are restored).
///
/// A no-echo prompt must turn echo off *before* it shows the prompt: rpassword writes the
/// prompt first and configures the terminal after, so an answer typed (or pasted, or sent by
/// `expect`) as soon as the prompt appears was echoed in that window — the passphrase on the
/// screen, in the scrollback and in any session recording.
///
/// A SIGINT (Ctrl-C), SIGTERM or SIGHUP while echo is off puts the settings back too, then the
/// process dies of the signal as it did before, as ssh and sudo do: before the twenty-third
/// pass (found by its attacker of keys and unlocking) the terminal was left with echo off and
/// the shell the admin returned to showed nothing typed. See [`watch_prompt_signals`].
#[derive(Debug)]
pub struct EchoOff {
    tty: std::fs::File,
    saved: rustix::termios::Termios,
}

/// The terminal and the settings to put back when a signal comes during a prompt
/// ([`EchoOff`]); `None` outside a prompt.
static PROMPT_TERMINAL: std::sync::Mutex<Option<(std::fs::File, rustix::termios::Termios)>> =
    std::sync::Mutex::new(None);

/// Put back the settings of the terminal of a prompt under way, if one is, and hold the prompt
/// lock: while the guard lives no prompt can turn echo off ([`EchoOff::new`] takes the lock
/// around it).
fn restore_prompt_terminal(
) -> std::sync::MutexGuard<'static, Option<(std::fs::File, rustix::termios::Termios)>> {
    let guard = PROMPT_TERMINAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((tty, saved)) = guard.as_ref() {
        let _ = rustix::termios::tcsetattr(tty, rustix::termios::OptionalActions::Now, saved);
    }
    guard
}

/// Start, once per process, a thread that receives SIGINT, SIGTERM and SIGHUP (signal-hook's
/// iterator: the handler only writes to a pipe) and, for each, puts back a prompt's terminal
/// settings ([`restore_prompt_terminal`]) and then runs the signal's default action
/// (`emulate_default_handler`: the process dies of it, its exit status saying so). The thread
/// stays for the rest of the process: signal-hook cannot give a signal its default disposition
/// back, so outside a prompt it does what the default would (the process dies of the signal).
/// Only the commands that prompt start it (the admin commands, `unlock`), and none of them
/// handles these signals otherwise (`serve`, `exec` and `demo`, which do, never prompt). A
/// signal the process was started ignoring (`nohup`: SIGHUP) is left alone, still ignored; one
/// it was started blocking is unblocked ([`unblock_signals`]).
fn watch_prompt_signals() -> io::Result<()> {
    static STARTED: std::sync::OnceLock<Result<(), io::ErrorKind>> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let ignored = ignored_signals();
        let watched: Vec<i32> = [SIGINT, SIGTERM, SIGHUP]
            .into_iter()
            .filter(|s| ignored & (1u64 << (s - 1)) == 0)
            .collect();
        let mut signals = signal_hook::iterator::Signals::new(&watched).map_err(|e| e.kind())?;
        // Given blocked (an inherited signal mask), they stayed pending: a SIGTERM at the
        // prompt did nothing, and Ctrl-C ended the command with an error rather than by
        // SIGINT (twenty-seventh pass, found by the twenty-sixth pass's review).
        unblock_signals(&watched);
        std::thread::Builder::new()
            .name("prompt-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    // The lock held until the process dies of the signal: no prompt of ours
                    // turns echo off between the restore and the death.
                    let _held = restore_prompt_terminal();
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                }
            })
            .map_err(|e| e.kind())?;
        Ok(())
    });
    started.map_err(io::Error::from)
}

/// The signals this process ignores (`SigIgn` of /proc/self/status: bit `n - 1` for signal
/// `n`); none if it cannot be read.
fn ignored_signals() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .unwrap_or(0)
}

impl EchoOff {
    /// Turn echo off on `/dev/tty` (echo of the final newline too, as the prompt reader does).
    pub fn new() -> io::Result<EchoOff> {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")?;
        let saved = tcgetattr(&tty)?;
        watch_prompt_signals()?;
        // Known to the signal thread before echo goes off, and echo turned off under the lock
        // the signal thread holds from its restore to the process's death.
        let mut guard = PROMPT_TERMINAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Some((tty.try_clone()?, saved.clone()));
        let mut quiet = saved.clone();
        // ISIG off too, as the prompt reader's raw mode has it: a Ctrl-C typed before that
        // reader has set its mode is then a character it reads (an interrupted prompt, see
        // [`EchoOff::interrupted`]), not a SIGINT whose restore the reader's own setting then
        // undid, echo off as the process died (a Ctrl-C given SIGINT blocked, 2 runs in 40;
        // twenty-seventh pass).
        quiet.local_modes &= !(LocalModes::ECHO | LocalModes::ECHONL | LocalModes::ISIG);
        let echo_off = EchoOff { tty, saved };
        if let Err(e) = tcsetattr(&echo_off.tty, OptionalActions::Now, &quiet) {
            drop(guard);
            return Err(e.into());
        }
        drop(guard);
        Ok(echo_off)
    }
}

impl EchoOff {
    /// Ctrl-C was typed at the prompt: the prompt reader (raw mode, so the terminal sends no
    /// signal itself) raised SIGINT and returned "interrupted". Put the terminal's settings
    /// back and die of SIGINT here, so that the process does not return an error and exit
    /// first (racing the signal thread of [`watch_prompt_signals`]). When SIGINT is ignored
    /// (the process was started ignoring it), this returns, and the prompt's error stands.
    pub fn interrupted(self) {
        use signal_hook::consts::SIGINT;
        drop(self);
        if ignored_signals() & (1u64 << (SIGINT - 1)) == 0 {
            let _ = signal_hook::low_level::emulate_default_handler(SIGINT);
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let mut guard = PROMPT_TERMINAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Nothing to do if the terminal went away; it has no echo to restore then.
        let _ = rustix::termios::tcsetattr(
            &self.tty,
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
        *guard = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Twentieth pass (found by the nineteenth pass's review): a daemon that locked its memory
    /// under a finite memory-lock limit said nothing at start, and its first passphrase
    /// `unlock` was refused (aborted it, before the nineteenth pass). The warning names the
    /// limit, the key derivation's memory (the vault's when known) and the fix.
    #[test]
    fn the_memory_lock_warning_names_the_limit_the_kdf_memory_and_the_fix() {
        let known = describe_memory_lock_limit(64 << 20, Some(256 * 1024));
        assert!(
            known.contains("memory lock limit (RLIMIT_MEMLOCK) of 64 MiB")
                && known
                    .contains("a passphrase unlock needs 256 MiB for the vault's key derivation")
                && known.contains("LimitMEMLOCK=infinity")
                && known.contains("`ulimit -l unlimited`"),
            "{known}"
        );
        let unknown = describe_memory_lock_limit(8 << 20, None);
        assert!(
            unknown.contains("of 8 MiB") && unknown.contains("needs the KDF's memory"),
            "{unknown}"
        );
        assert_eq!(memory_amount(64 << 10), "64 KiB");
        assert_eq!(memory_amount(3 << 30), "3072 MiB");
        // Said only where the limit applies: the memory locked, no CAP_IPC_LOCK, a finite
        // limit. The daemon side (`tests/it/daemon/memlock.rs`) runs the real daemon where it
        // can: with CAP_IPC_LOCK, and with its lock refused.
        let room = |cap_ipc_lock, limit| MemlockRoom {
            cap_ipc_lock,
            limit,
        };
        assert_eq!(
            limit_on_locked_memory(true, room(false, Some(64 << 20))),
            Some(64 << 20)
        );
        assert_eq!(limit_on_locked_memory(true, room(false, None)), None);
        assert_eq!(
            limit_on_locked_memory(true, room(true, Some(8 << 20))),
            None
        );
        assert_eq!(
            limit_on_locked_memory(false, room(false, Some(8 << 20))),
            None
        );
    }

    /// The answer to an `unlock` whose Argon2 memory was refused names the limit that refused
    /// it and how to raise it: under the shipped unit's old `LimitMEMLOCK=64M` the daemon's
    /// lock succeeded and every allocation then counted against those 64 MiB (nineteenth
    /// pass; the daemon side is `tests/it/daemon/memlock.rs`).
    #[test]
    fn allocation_limits_name_the_memory_lock_limit_when_the_memory_is_locked() {
        let locked = describe_allocation_limits(Some((64 << 20, Some(21 << 20))), None, None);
        assert!(
            locked.contains("memory lock limit (RLIMIT_MEMLOCK) of 64 MiB, 21 MiB of it in use")
                && locked.contains("LimitMEMLOCK=infinity")
                && locked.contains("CAP_IPC_LOCK")
                && !locked.contains("RLIMIT_AS"),
            "{locked}"
        );
        let both = describe_allocation_limits(Some((64 << 20, None)), Some(224 << 20), None);
        assert!(
            both.contains("RLIMIT_MEMLOCK) of 64 MiB;") && both.contains("(RLIMIT_AS) is 224 MiB"),
            "{both}"
        );
        let data = describe_allocation_limits(None, None, Some(600 << 20));
        assert!(
            data.contains("data limit (RLIMIT_DATA) is 600 MiB")
                && data.contains("LimitDATA=")
                && !data.contains("out of memory"),
            "{data}"
        );
        let neither = describe_allocation_limits(None, None, None);
        assert!(
            neither.contains("out of memory") && !neither.contains("RLIMIT"),
            "{neither}"
        );
        // This process locked nothing: the memory-lock limit is not what refuses it.
        assert!(!allocation_limits().contains("RLIMIT_MEMLOCK"));
    }

    #[test]
    fn peer_credentials_of_a_socketpair_are_ours() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_credentials(&a).unwrap();
        assert_eq!(c.uid, current_uid());
        assert_eq!(c.gid, current_gid());
        assert_eq!(c.pid, current_pid());
        assert_eq!(c.pid as u32, std::process::id());
    }

    /// Kernel release as (major, minor), from /proc.
    fn kernel_version() -> (u32, u32) {
        let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut it = r
            .trim()
            .split(['.', '-'])
            .map(|n| n.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// Skip (or, with `CI=true`, fail) a test that needs something this machine lacks, as
    /// tests/it/common/skip.rs does: the reason is also appended to `SCOPEVAULT_SKIP_LOG`.
    fn skip(why: &str) {
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name}: cannot run under CI=true, where every test must run: {why}"
        );
        eprintln!("skipped: {why}");
        if let Some(log) = std::env::var_os("SCOPEVAULT_SKIP_LOG") {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            f.write_all(format!("scopevault::{name}: {why}\n").as_bytes())
                .unwrap();
        }
    }

    /// A python3 process connected to a fresh listener: the child (stdin piped: it exits when
    /// stdin is closed), the accepted stream, and the child's own `/proc/self/exe`.
    struct PythonPeer {
        child: std::process::Child,
        stream: UnixStream,
        own_exe: String,
        _dir: tempfile::TempDir,
    }

    fn python_peer(exit_at_once: bool) -> Option<PythonPeer> {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let script = "import os, socket, sys\n\
            s = socket.socket(socket.AF_UNIX)\n\
            s.connect(sys.argv[1])\n\
            print(os.readlink('/proc/self/exe'), flush=True)\n\
            sys.stdin.read()\n";
        let spawned = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                skip(&format!("python3 cannot be run ({e})"));
                return None;
            }
        };
        let mut own_exe = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut own_exe)
            .unwrap();
        let own_exe = own_exe.trim_end().to_owned();
        assert!(!own_exe.is_empty(), "python3 printed no exe");
        if exit_at_once {
            drop(child.stdin.take());
            // Reaped: its pid is free for the kernel to give to another process.
            assert!(child.wait().unwrap().success());
        }
        let (stream, _) = listener.accept().unwrap();
        Some(PythonPeer {
            child,
            stream,
            own_exe,
            _dir: dir,
        })
    }

    #[test]
    fn pidfd_of_a_peer_comes_from_so_peerpidfd_and_is_close_on_exec() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = peer_credentials(&a).unwrap();
        let p = PeerProcess::of(&a, &cred).unwrap();
        if kernel_version() >= (6, 5) {
            assert_eq!(p.source(), PidfdSource::PeerPidfd);
        }
        let flags = rustix::io::fcntl_getfd(p.pidfd()).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        assert!(p.is_alive());
        let me = std::env::current_exe().unwrap();
        assert_eq!(p.exe().as_deref(), Some(&*me.to_string_lossy()));
        assert_eq!(peer_exe(&a, &cred).as_deref(), Some(&*me.to_string_lossy()));
    }

    #[test]
    fn the_pid_is_read_from_the_pidfd() {
        assert_eq!(
            fdinfo_pid("pos:\t0\nflags:\t02000002\nPid:\t4242\nNSpid:\t4242\n"),
            Some(4242)
        );
        assert_eq!(fdinfo_pid("Pid:\t-1\nNSpid:\t-1\n"), Some(-1));
        assert_eq!(fdinfo_pid("pos:\t0\nflags:\t02000002\n"), None);
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = peer_credentials(&a).unwrap();
        let p = PeerProcess::of(&a, &cred).unwrap();
        assert_eq!(p.proc_pid(), Some(current_pid()));
    }

    #[test]
    fn pidfd_open_fallback_names_the_same_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = peer_credentials(&a).unwrap();
        let p = PeerProcess::of_via(&a, &cred, false).unwrap();
        assert_eq!(p.source(), PidfdSource::PidfdOpen);
        let me = std::env::current_exe().unwrap();
        assert_eq!(p.exe().as_deref(), Some(&*me.to_string_lossy()));
        // No pid (a peer in another pid namespace): nothing to open.
        let elsewhere = PeerCred { pid: 0, ..cred };
        assert!(PeerProcess::of_via(&a, &elsewhere, false).is_none());
    }

    #[test]
    fn exe_of_a_live_peer_process_is_its_real_binary() {
        let Some(mut peer) = python_peer(false) else {
            return;
        };
        let cred = peer_credentials(&peer.stream).unwrap();
        assert_eq!(cred.pid as u32, peer.child.id());
        for use_sockopt in [true, false] {
            let p = PeerProcess::of_via(&peer.stream, &cred, use_sockopt).unwrap();
            assert_eq!(p.exe().as_deref(), Some(&*peer.own_exe), "{:?}", p.source());
        }
        assert!(peer.own_exe.contains("python"), "{}", peer.own_exe);
        assert_ne!(
            peer.own_exe,
            std::env::current_exe().unwrap().to_string_lossy()
        );
        drop(peer.child.stdin.take());
        peer.child.wait().unwrap();
    }

    #[test]
    fn a_peer_that_exits_after_accept_has_no_exe() {
        let Some(mut peer) = python_peer(false) else {
            return;
        };
        let cred = peer_credentials(&peer.stream).unwrap();
        let p = PeerProcess::of(&peer.stream, &cred).unwrap();
        assert!(p.is_alive());
        drop(peer.child.stdin.take());
        // Exited but not yet reaped (a zombie: its pid still taken), then reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while p.is_alive() {
            assert!(std::time::Instant::now() < deadline, "peer never exited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(p.exe(), None);
        peer.child.wait().unwrap();
        assert_eq!(p.proc_pid(), None, "a reaped process has no pid");
        assert_eq!(p.exe(), None);
        assert_eq!(peer_exe(&peer.stream, &cred), None);
    }

    #[test]
    fn a_peer_that_exits_while_its_exe_is_read_has_no_exe() {
        let Some(mut peer) = python_peer(false) else {
            return;
        };
        let cred = peer_credentials(&peer.stream).unwrap();
        let p = PeerProcess::of(&peer.stream, &cred).unwrap();
        let mut read = None;
        // The link is read while the peer runs; it exits and is reaped before the check.
        let exe = p.exe_read_by(|pid| {
            read = process_exe(pid);
            drop(peer.child.stdin.take());
            peer.child.wait().unwrap();
            read.clone()
        });
        assert_eq!(read.as_deref(), Some(&*peer.own_exe));
        assert_eq!(exe, None);
    }

    #[test]
    fn a_peer_gone_before_accept_has_no_exe_even_when_its_pid_is_reused() {
        let Some(peer) = python_peer(true) else {
            return;
        };
        let cred = peer_credentials(&peer.stream).unwrap();
        assert_eq!(cred.pid as u32, peer.child.id());
        assert_eq!(peer_exe(&peer.stream, &cred), None);
        // Depending on the kernel SO_PEERPIDFD refuses a reaped peer or hands out a pidfd
        // showing no pid; either way no pid to read a link from.
        if let Some(p) = PeerProcess::of(&peer.stream, &cred) {
            assert_eq!(p.source(), PidfdSource::PeerPidfd);
            assert_eq!(p.proc_pid(), None);
            assert!(!p.is_alive());
        }
        // Now give the dead peer's pid to another binary, as the kernel may at any time
        // (writing ns_last_pid needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).
        let Some(sleep) = which("sleep") else {
            return skip("no `sleep` on PATH");
        };
        // Another test's child may take the pid between our write and our spawn, and hold
        // it for a while: wait for it to go before trying again (bounded).
        let mut reused = None;
        let busy_until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        for _ in 0..200 {
            while Path::new(&format!("/proc/{}", cred.pid)).exists()
                && std::time::Instant::now() < busy_until
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if let Err(e) =
                std::fs::write("/proc/sys/kernel/ns_last_pid", (cred.pid - 1).to_string())
            {
                return skip(&format!("cannot write ns_last_pid to reuse a pid ({e})"));
            }
            let mut c = std::process::Command::new(&sleep)
                .arg("30")
                .spawn()
                .unwrap();
            if c.id() == cred.pid as u32 {
                reused = Some(c);
                break;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let Some(mut other) = reused else {
            panic!(
                "pid {} was never reused in 200 tries (or stayed taken 20 s)",
                cred.pid
            );
        };
        // Wait until the new process has exec'd sleep (not still our fork).
        let real = std::fs::canonicalize(&sleep).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_exe(cred.pid).as_deref() != Some(&*real.to_string_lossy()) {
            assert!(std::time::Instant::now() < deadline, "sleep never ran");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The pid alone now names the wrong binary; the read bound to SO_PEERPIDFD refuses
        // to guess. The pidfd_open fallback cannot tell (the residual docs/audit.md states):
        // opened after the reuse, it names the new process.
        let bound = peer_exe(&peer.stream, &cred);
        let fallback = PeerProcess::of_via(&peer.stream, &cred, false).and_then(|p| p.exe());
        let _ = other.kill();
        let _ = other.wait();
        assert_eq!(bound, None);
        assert_eq!(fallback.as_deref(), Some(&*real.to_string_lossy()));
    }

    fn which(name: &str) -> Option<std::path::PathBuf> {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
    }

    #[test]
    fn process_exe_of_self_is_the_test_binary() {
        let exe = process_exe(current_pid()).unwrap();
        let me = std::env::current_exe().unwrap();
        assert_eq!(*exe, me.to_string_lossy());
        assert!(!exe.deleted);
        assert_eq!(process_exe(0), None);
    }

    /// What `/proc` says of this process is what the kernel says: its memory-lock limit, its
    /// uid, its name, and that it holds the socket it listens on (and no one holds a socket
    /// that is not listening).
    #[test]
    fn proc_reads_agree_with_the_kernel_about_this_process() {
        let room = memlock_room(None).unwrap();
        assert_eq!(room, memlock_room(Some(current_pid())).unwrap());
        assert_eq!(room.limit, getrlimit(Resource::Memlock).current);
        assert_eq!(process_uid(current_pid()), Some(current_uid()));
        assert_eq!(process_comm(Some(current_pid())), process_comm(None));
        assert!(memlock_room(Some(0)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let me = process_comm(None).unwrap();
        assert_eq!(socket_listeners(&path, &me), Vec::<i32>::new());
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(socket_listeners(&path, &me).contains(&current_pid()));
        assert!(!socket_listeners(&path, "no-such-name").contains(&current_pid()));
    }

    /// Twentieth pass (found by the nineteenth pass's review: `doctor` said the socket-activated
    /// daemon's process "is not visible here" once under load). A process forked by one that
    /// holds the socket holds it too until it execs; seen holding it, then named after the
    /// program it exec'd (which no longer holds it), it passed for a second daemon, and doctor
    /// could not tell which was the daemon. (Under load in the tests, a child another test
    /// thread forked, seen before its `exec` of scopevault and named after it.) A process is
    /// now counted only if it had the name before its descriptors were read and still has it
    /// after. Here the child (`sh`, holding the socket as its stdout) execs `sleep` (without
    /// it) at the exact moment the scan has read its descriptors.
    #[test]
    fn a_process_that_execs_while_its_descriptors_are_read_is_not_counted() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let held = OwnedFd::from(listener.try_clone().unwrap());
        let mut child = Command::new("sh")
            .args(["-c", "read go; exec sleep 600 >/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::from(held))
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // `sh` holds it, and is not named `sleep`.
        while process_comm(Some(pid)).as_deref() != Some("sh") {
            std::thread::yield_now();
        }
        assert!(socket_listeners(&path, "sh").contains(&pid));
        let mut go = child.stdin.take();
        let found = socket_holders_named(&path, "sleep", &mut |q| {
            if q == pid {
                if let Some(mut w) = go.take() {
                    w.write_all(b"go\n").unwrap();
                    // Observed, not timed: until the exec is done.
                    while process_comm(Some(pid)).as_deref() != Some("sleep") {
                        std::thread::yield_now();
                    }
                }
            }
        });
        assert!(go.is_none(), "the child was scanned");
        assert!(!found.contains(&pid), "{found:?}");
        // Named `sleep` now, it does not hold the socket.
        assert!(!socket_listeners(&path, "sleep").contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[cfg(test)]
mod running_exe_tests {
    use super::RunningExe;

    /// What doctor reads of a daemon that does not say it itself (`/proc/PID/exe`, root): a
    /// process whose binary was installed over, then removed, is told from one whose is not.
    /// A copy of /bin/sleep made by `cp`: no write descriptor of this test process, which a
    /// child another test forks could keep (then executing the copy fails, "Text file busy").
    fn copy_sleep(to: &std::path::Path) {
        let st = std::process::Command::new("cp")
            .arg("/bin/sleep")
            .arg(to)
            .status()
            .unwrap();
        assert!(st.success());
    }

    #[test]
    fn a_process_whose_binary_was_installed_over_or_removed_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("sleep");
        copy_sleep(&exe);
        let mut child = std::process::Command::new(&exe).arg("30").spawn().unwrap();
        let running = RunningExe::of(Some(child.id() as i32)).unwrap();
        assert_eq!(running.replaced(), None);
        let new = dir.path().join("sleep.new");
        copy_sleep(&new);
        std::fs::rename(&new, &exe).unwrap();
        assert_eq!(running.replaced().as_deref(), Some(exe.as_path()));
        // Read again now, the kernel names it `PATH (deleted)`: still that path.
        let again = RunningExe::of(Some(child.id() as i32)).unwrap();
        assert_eq!(again.replaced().as_deref(), Some(exe.as_path()));
        std::fs::remove_file(&exe).unwrap();
        assert_eq!(running.replaced().as_deref(), Some(exe.as_path()));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
