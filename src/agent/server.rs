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
use super::protocol::{err_line, ErrorBody, ErrorCode, MAX_LINE};

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

/// The default socket: `$XDG_RUNTIME_DIR/scopevault/scopevault.sock`, or
/// `/run/scopevault/scopevault.sock` as root or without `XDG_RUNTIME_DIR`.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if crate::sys::current_uid() != 0 && !dir.is_empty() => {
            PathBuf::from(dir).join("scopevault/scopevault.sock")
        }
        _ => PathBuf::from("/run/scopevault/scopevault.sock"),
    }
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Check that `dir` may hold our socket: owned by us or root, not writable by group/others.
fn check_socket_dir(dir: &Path) -> Result<(), ServeError> {
    let meta = std::fs::metadata(dir).map_err(io_err("cannot inspect socket directory", dir))?;
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
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
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
    /// The path we bound (removed on exit); `None` when systemd owns the socket.
    owned_path: Option<PathBuf>,
    /// Where to connect to wake a blocked `accept` on shutdown.
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
        Ok(Listener {
            inner,
            owned_path: Some(path.to_owned()),
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
#[derive(Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    wake_path: Option<PathBuf>,
}

impl Shutdown {
    /// Request shutdown and wake the accept loop.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(p) = &self.wake_path {
            // A connection wakes the blocked accept(); it sees the flag and stops.
            let _ = UnixStream::connect(p);
        }
    }

    /// True once shutdown was requested.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Counts open connections; the guard decrements on drop, whatever way the thread ends.
struct ConnGuard(Arc<AtomicUsize>);
impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The running accept loop's shared parts.
pub struct Server {
    listener: Listener,
    limits: Limits,
    handler: Arc<Handler>,
    shutdown: Shutdown,
    open: Arc<AtomicUsize>,
}

impl Server {
    /// A server on `listener` answering with `handler`.
    pub fn new(listener: Listener, limits: Limits, handler: Arc<Handler>) -> Server {
        let shutdown = Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            wake_path: listener.wake_path.clone(),
        };
        let open = handler.open_connections();
        Server {
            listener,
            limits,
            handler,
            shutdown,
            open,
        }
    }

    /// A handle that stops [`Server::run`].
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Accept until shutdown, then wait (at most `read_timeout` + 1 s) for connections to
    /// finish their current request, and remove the socket we created.
    pub fn run(self) -> io::Result<()> {
        let Server {
            listener,
            limits,
            handler,
            shutdown,
            open,
        } = self;
        let limits = Arc::new(limits);
        for conn in listener.inner.incoming() {
            if shutdown.requested() {
                break;
            }
            let stream = match conn {
                Ok(s) => s,
                // EMFILE and friends: back off briefly rather than spin.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if open.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
                open.fetch_sub(1, Ordering::SeqCst);
                refuse_busy(stream);
                continue;
            }
            let guard = ConnGuard(open.clone());
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
        if let Some(p) = &listener.owned_path {
            let _ = std::fs::remove_file(p);
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
