//! The accept loop and its limits: one thread per connection behind a connection cap, a
//! 64 KiB line limit enforced while reading, a read timeout for a started line (slowloris), an
//! idle timeout between requests, and a drain on shutdown.
//!
//! The socket is a Unix stream socket only; there is no TCP listener anywhere in scopevault.

use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::handler::Handler;
use super::peer::PeerIdentity;
use crate::protocol::{err_line, ErrorBody, ErrorCode, MAX_LINE};

/// Longest a connection thread sleeps in `read` before it looks at the shutdown flag again.
const POLL_SLICE: Duration = Duration::from_millis(200);
/// Stack of a connection thread: requests are small and handled without deep recursion.
const CONN_STACK: usize = 256 * 1024;
/// Bytes read per `read` call.
const CHUNK: usize = 8 * 1024;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket directory could let others replace the socket.
    #[error("socket directory {dir} is {why}; make it owned by you (or root) and not writable by group or others (chmod 0700)")]
    UnsafeDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Another daemon answers on the socket.
    #[error(
        "another daemon is already answering on {0}; stop it first or choose another --socket"
    )]
    InUse(PathBuf),
    /// Something that is not a socket sits at the socket path.
    #[error("{0} exists and is not a socket; remove it or choose another --socket")]
    NotASocket(PathBuf),
    /// An I/O error with the path it concerns.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ServeError + 'a {
    move |source| ServeError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The default socket ([`crate::paths::socket`]).
pub fn default_socket_path() -> PathBuf {
    crate::paths::socket()
}

/// Limits of the accept loop.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Simultaneous connections; one more gets `busy` and is closed.
    pub max_connections: usize,
    /// Time a client may take to send one line once it has started it.
    pub read_timeout: Duration,
    /// Time a connection may sit between requests.
    pub idle_timeout: Duration,
    /// Simultaneous connections of one peer uid; one more gets `busy` (only that uid's new
    /// connection). Root and the daemon's own uid are exempt from this, and have
    /// [`ADMIN_RESERVE`] slots above `max_connections` that no other uid can take.
    pub max_per_uid: usize,
    /// The daemon's uid (always served).
    pub daemon_uid: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_per_uid: 64,
            daemon_uid: crate::sys::current_uid(),
        }
    }
}

/// Check that `dir` may hold our socket: reached without a symbolic link, owned by us or
/// root, not writable by group/others.
fn check_socket_dir(dir: &Path) -> Result<(), ServeError> {
    let refuse = |why: String| ServeError::UnsafeDir {
        dir: dir.to_owned(),
        why,
    };
    let chain = crate::paths::lstat_components(dir).map_err(refuse)?;
    let meta = match chain.last() {
        Some((_, m)) => m.clone(),
        None => std::fs::metadata(dir).map_err(io_err("cannot inspect socket directory", dir))?,
    };
    let me = crate::sys::current_uid();
    let refuse = |why: String| ServeError::UnsafeDir {
        dir: dir.to_owned(),
        why,
    };
    if !meta.is_dir() {
        return Err(refuse("not a directory".into()));
    }
    if meta.uid() != me && meta.uid() != 0 {
        return Err(refuse(format!("owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Bind the socket at `path`: create its directory (0700) if missing, refuse a
/// directory others could write to, remove a stale socket only when nothing answers on it, set mode 0660.
pub fn bind_socket(path: &Path) -> Result<UnixListener, ServeError> {
    bind_socket_for_group(path, None)
}

/// As [`bind_socket`]; with `group`, the directory becomes 0750 and the socket 0660, both
/// owned by this user and `group` (`serve --socket-group`), so members of `group` can connect.
pub fn bind_socket_for_group(path: &Path, group: Option<u32>) -> Result<UnixListener, ServeError> {
    let dir = crate::paths::dir_of(path);
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("cannot create socket directory", &dir))?;
    }
    check_socket_dir(&dir)?;
    if let Some(gid) = group {
        if std::fs::metadata(&dir).map(|m| m.uid()).ok() == Some(crate::sys::current_uid()) {
            std::os::unix::fs::chown(&dir, None, Some(gid))
                .map_err(io_err("cannot give the socket group to", &dir))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))
                .map_err(io_err("cannot set the mode of", &dir))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServeError::InUse(path.to_owned()));
            }
            // Nothing answers: a previous daemon died without cleaning up.
            std::fs::remove_file(path).map_err(io_err("cannot remove stale socket", path))?;
        }
        Ok(_) => return Err(ServeError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot inspect socket", path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err("cannot listen on", path))?;
    // Mode bits are defence in depth; every request is authorised on SO_PEERCRED.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err("cannot set the mode of", path))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(io_err("cannot give the socket group to", path))?;
    }
    Ok(listener)
}

/// The listening socket and what to clean up when it closes.
pub struct Listener {
    inner: UnixListener,
    /// The path we bound and the (device, inode) of the socket file we created there: it is
    /// removed on exit only if it is still that file. `None` when systemd owns the socket.
    owned_path: Option<(PathBuf, (u64, u64))>,
    /// The socket's path, for messages.
    wake_path: Option<PathBuf>,
}

impl Listener {
    /// Bind a new socket at `path`.
    pub fn bind(path: &Path) -> Result<Listener, ServeError> {
        Listener::bind_with_group(path, None)
    }

    /// Bind a new socket at `path`, reachable by `group` when given (see
    /// [`bind_socket_for_group`]).
    pub fn bind_with_group(path: &Path, group: Option<u32>) -> Result<Listener, ServeError> {
        let inner = bind_socket_for_group(path, group)?;
        let meta =
            std::fs::symlink_metadata(path).map_err(io_err("cannot inspect socket", path))?;
        Ok(Listener {
            inner,
            owned_path: Some((path.to_owned(), (meta.dev(), meta.ino()))),
            wake_path: Some(path.to_owned()),
        })
    }

    /// Use a socket handed over by the service manager (socket activation); systemd keeps
    /// ownership of its path.
    pub fn inherited(inner: UnixListener) -> Listener {
        let wake_path = inner
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_owned));
        Listener {
            inner,
            owned_path: None,
            wake_path,
        }
    }

    /// The socket's path, when it has one.
    pub fn path(&self) -> Option<&Path> {
        self.wake_path.as_deref()
    }
}

/// Asks a running [`serve`] loop to stop: no new connections, in-flight requests finish.
///
/// The accept loop waits in `poll` on the listening socket and on one end of a socket pair;
/// [`Shutdown::trigger`] writes a byte to the other end. No connection to the socket's path
/// is made, so a stop works whether the socket file exists, was removed or replaced, or came
/// from the service manager.
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    wake: Arc<UnixStream>,
}

impl Shutdown {
    /// Request shutdown and wake the accept loop (safe to call from a signal-handling thread).
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // Non-blocking: a full pipe already holds a wake-up.
        let _ = (&*self.wake).write(&[1]);
    }

    /// True once shutdown was requested.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Slots above `max_connections` kept for root and the daemon's uid, so an admin (`lock`,
/// `status`) always gets in while other uids fill the cap.
pub const ADMIN_RESERVE: usize = 16;

/// Open connections per peer uid (admins' are not counted).
type PerUid = Arc<std::sync::Mutex<std::collections::HashMap<u32, usize>>>;

/// Counts open connections; the guard decrements on drop, whatever way the thread ends.
struct ConnGuard {
    open: Arc<AtomicUsize>,
    /// The uid counted in `per_uid`, if any.
    uid: Option<(u32, PerUid)>,
}
impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        if let Some((uid, per_uid)) = &self.uid {
            let mut m = per_uid.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = m.get_mut(uid) {
                *n -= 1;
                if *n == 0 {
                    m.remove(uid);
                }
            }
        }
    }
}

/// Take a slot for a connection of `uid`, or `None` (answer `busy`): an admin (root, the
/// daemon's uid) always gets one; others within their uid's quota and the total cap.
fn take_slot(
    uid: Option<u32>,
    limits: &Limits,
    open: &Arc<AtomicUsize>,
    per_uid: &PerUid,
) -> Option<ConnGuard> {
    let admin = matches!(uid, Some(u) if u == 0 || u == limits.daemon_uid);
    if admin {
        // Admins have ADMIN_RESERVE slots above the cap that no other uid can take.
        if open.fetch_add(1, Ordering::SeqCst) >= limits.max_connections + ADMIN_RESERVE {
            open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        return Some(ConnGuard {
            open: open.clone(),
            uid: None,
        });
    }
    // A peer whose credentials cannot be read counts against uid u32::MAX's quota.
    let uid = uid.unwrap_or(u32::MAX);
    let mut m = per_uid.lock().unwrap_or_else(|e| e.into_inner());
    let mine = m.get(&uid).copied().unwrap_or(0);
    if mine >= limits.max_per_uid {
        return None;
    }
    if open.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
        open.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    *m.entry(uid).or_default() += 1;
    Some(ConnGuard {
        open: open.clone(),
        uid: Some((uid, per_uid.clone())),
    })
}

/// The running accept loop's shared parts.
pub struct Server {
    listener: Listener,
    limits: Limits,
    handler: Arc<Handler>,
    shutdown: Shutdown,
    /// The read end of the wake-up pair.
    woken: UnixStream,
    open: Arc<AtomicUsize>,
}

impl Server {
    /// A server on `listener` answering with `handler`.
    pub fn new(listener: Listener, limits: Limits, handler: Arc<Handler>) -> io::Result<Server> {
        let (wake, woken) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        woken.set_nonblocking(true)?;
        let shutdown = Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            wake: Arc::new(wake),
        };
        let open = handler.open_connections();
        Ok(Server {
            listener,
            limits,
            handler,
            shutdown,
            woken,
            open,
        })
    }

    /// A handle that stops [`Server::run`].
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Accept until shutdown, then wait (at most `read_timeout` + 1 s) for connections to
    /// finish their current request, and remove the socket we created.
    pub fn run(self) -> io::Result<()> {
        use rustix::event::{poll, PollFd, PollFlags};
        let Server {
            listener,
            limits,
            handler,
            shutdown,
            woken,
            open,
        } = self;
        let limits = Arc::new(limits);
        let per_uid: PerUid = Arc::default();
        listener.inner.set_nonblocking(true)?;
        loop {
            if shutdown.requested() {
                break;
            }
            let mut fds = [
                PollFd::new(&listener.inner, PollFlags::IN),
                PollFd::new(&woken, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            if !fds[1].revents().is_empty() {
                let mut sink = [0u8; 64];
                while matches!((&woken).read(&mut sink), Ok(n) if n > 0) {}
                continue;
            }
            let conn = listener.inner.accept().map(|(s, _)| s);
            let stream = match conn {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // EMFILE and friends: back off briefly rather than spin.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let uid = crate::sys::peer_credentials(&stream).ok().map(|c| c.uid);
            let Some(guard) = take_slot(uid, &limits, &open, &per_uid) else {
                refuse_busy(stream);
                continue;
            };
            let (h, l, s) = (handler.clone(), limits.clone(), shutdown.clone());
            let spawned = std::thread::Builder::new()
                .name("sv-conn".into())
                .stack_size(CONN_STACK)
                .spawn(move || {
                    let _guard = guard;
                    serve_connection(stream, &h, &l, &s);
                });
            if spawned.is_err() {
                // The guard moved into the failed closure was dropped with it.
                continue;
            }
        }
        drop(listener.inner);
        if let Some((p, ident)) = &listener.owned_path {
            // Only our own socket: not one a second daemon or an admin put there since.
            let ours = std::fs::symlink_metadata(p)
                .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == *ident);
            if ours {
                let _ = std::fs::remove_file(p);
            }
        }
        let deadline = Instant::now() + limits.read_timeout + Duration::from_secs(1);
        while open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// Tell an over-the-limit client `busy` without ever blocking the accept loop on it.
fn refuse_busy(mut stream: UnixStream) {
    let _ = stream.set_nonblocking(true);
    let line = err_line(&ErrorBody::new(
        ErrorCode::Busy,
        "too many connections; retry in a moment",
    ));
    let _ = stream.write_all(&line);
}

enum Next {
    Line(Zeroizing<Vec<u8>>),
    TooLarge,
    Closed,
}

/// Pending bytes of one connection, in buffers that are zeroed before they are freed (a
/// request may carry a passphrase or a ticket).
struct LineReader {
    buf: Zeroizing<Vec<u8>>,
    chunk: Zeroizing<Vec<u8>>,
    timeout_set: Option<Duration>,
}

impl LineReader {
    fn new() -> Self {
        LineReader {
            buf: Zeroizing::new(Vec::with_capacity(1024)),
            chunk: Zeroizing::new(vec![0; CHUNK]),
            timeout_set: None,
        }
    }

    /// Append without letting `Vec` reallocate behind our back: a grown copy is made by
    /// hand, and the old buffer is zeroed when it drops.
    fn push(&mut self, n: usize) {
        if self.buf.len() + n > self.buf.capacity() {
            let cap = (self.buf.len() + n)
                .next_power_of_two()
                .min(MAX_LINE + CHUNK);
            let mut grown = Zeroizing::new(Vec::with_capacity(cap));
            grown.extend_from_slice(&self.buf);
            self.buf = grown;
        }
        self.buf.extend_from_slice(&self.chunk[..n]);
    }

    fn take_line(&mut self) -> Option<Zeroizing<Vec<u8>>> {
        let pos = self.buf.iter().position(|&b| b == b'\n')?;
        let mut line = Zeroizing::new(Vec::with_capacity(pos));
        line.extend_from_slice(&self.buf[..pos]);
        // Shift the rest (pipelined requests) to the front in place.
        self.buf.copy_within(pos + 1.., 0);
        let rest = self.buf.len() - pos - 1;
        zeroize::Zeroize::zeroize(&mut self.buf[rest..]);
        self.buf.truncate(rest);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Some(line)
    }

    fn set_timeout(&mut self, stream: &UnixStream, t: Duration) {
        let t = t.max(Duration::from_millis(1));
        if self.timeout_set != Some(t) {
            let _ = stream.set_read_timeout(Some(t));
            self.timeout_set = Some(t);
        }
    }

    /// The next request line, bounded by the limits.
    fn next(&mut self, stream: &mut UnixStream, limits: &Limits, shutdown: &Shutdown) -> Next {
        let idle_since = Instant::now();
        let mut line_since = (!self.buf.is_empty()).then(Instant::now);
        loop {
            if let Some(line) = self.take_line() {
                return Next::Line(line);
            }
            if self.buf.len() > MAX_LINE {
                return Next::TooLarge;
            }
            let now = Instant::now();
            let deadline = match line_since {
                Some(t) => t + limits.read_timeout,
                None => {
                    if shutdown.requested() {
                        return Next::Closed;
                    }
                    idle_since + limits.idle_timeout
                }
            };
            if now >= deadline {
                return Next::Closed;
            }
            self.set_timeout(stream, (deadline - now).min(POLL_SLICE));
            // Never read past one byte beyond the limit: a 10 MB line costs us 64 KiB.
            let want = (MAX_LINE + 1 - self.buf.len()).min(CHUNK);
            match stream.read(&mut self.chunk[..want]) {
                Ok(0) => return Next::Closed,
                Ok(n) => {
                    line_since.get_or_insert(now);
                    self.push(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Next::Closed,
            }
        }
    }
}

fn serve_connection(mut stream: UnixStream, handler: &Handler, limits: &Limits, sd: &Shutdown) {
    // A client that stops reading cannot hold this thread longer than a read timeout.
    let _ = stream.set_write_timeout(Some(limits.read_timeout.max(Duration::from_secs(1))));
    let peer = match PeerIdentity::of(&stream) {
        Ok(p) => p,
        Err(_) => {
            let _ = stream.write_all(&err_line(&ErrorBody::new(
                ErrorCode::Internal,
                "cannot read the peer's credentials from the kernel",
            )));
            return;
        }
    };
    let mut reader = LineReader::new();
    loop {
        match reader.next(&mut stream, limits, sd) {
            Next::Line(line) => {
                let reply = handler.handle_line(&peer, &line);
                drop(line);
                if stream.write_all(&reply).is_err() {
                    return;
                }
            }
            Next::TooLarge => {
                handler.note_too_large(&peer);
                let _ = stream.write_all(&err_line(&ErrorBody::new(
                    ErrorCode::TooLarge,
                    format!("request line longer than {MAX_LINE} bytes; connection closed"),
                )));
                return;
            }
            Next::Closed => return,
        }
    }
}
