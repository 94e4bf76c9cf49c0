//! The socket client used by `get`, `exec`, tests and examples.
//!
//! ```no_run
//! use scopevault::client::Client;
//! let mut c = Client::connect(std::path::Path::new("/run/scopevault/scopevault.sock"))?;
//! let fetched = c.fetch("checkout-flow", None)?;
//! for cred in &fetched.credentials {
//!     let _username = cred.fields.get("username");
//!     let _password = cred.secrets.get("password").map(|s| s.expose());
//! }
//! # Ok::<(), scopevault::client::ClientError>(())
//! ```

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::protocol::{
    parse_response, AdminStatus, ErrorBody, ErrorCode, FetchBy, Fetched, Health, Request,
    ResponseError, RotateStatus, ScrubCounts, ScrubReceipt, Tasks, Ticket,
};
use crate::secret::SecretString;

/// Longest response line the client accepts: 16 MiB (a task with many large certificates).
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Why a request through the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon answers on the socket.
    #[error("cannot connect to the scopevault daemon at {path}: {source}; is `scopevault serve` running (and is --socket / SCOPEVAULT_SOCKET right)?")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The connection broke.
    #[error("lost the connection to the daemon: {0}")]
    Io(#[from] io::Error),
    /// The daemon refused the request.
    #[error("{}: {}", .0.code.as_str(), .0.message)]
    Refused(ErrorBody),
    /// The daemon closed the connection without answering.
    #[error("the daemon closed the connection without an answer")]
    Closed,
    /// The answer could not be read.
    #[error("the daemon's answer is not a valid response (is it the same scopevault version?)")]
    Malformed,
    /// The socket's path or the process answering on it is not one we may trust with a
    /// secret; nothing was sent.
    #[error("refusing to talk to {path}: {why}; nothing was sent (see docs/protocol.md, \"Who the client talks to\")")]
    Untrusted {
        /// The socket path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl ClientError {
    /// The daemon's error code, when it refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused(b) => Some(b.code),
            _ => None,
        }
    }
}

/// The uids a daemon on `socket` may run as: root, us, and the owner of the socket's
/// directory when that directory and its parent are writable by their owners only (so the
/// owner put the socket there, and nobody else could have made the directory theirs). Every
/// component of the directory's path is `lstat`ed: a symbolic link anywhere is refused, since
/// whoever owns the link, not the directory it names, decides where we connect.
pub fn trusted_daemon_uids(socket: &Path) -> Result<Vec<u32>, String> {
    use std::os::unix::fs::MetadataExt;
    let dir = crate::paths::dir_of(socket);
    let chain = crate::paths::lstat_components(&dir)?;
    let me = crate::sys::current_uid();
    let mut uids = vec![0, me];
    if let [.., parent, (_, meta)] = chain.as_slice() {
        let (_, pmeta) = parent;
        let private = |m: &std::fs::Metadata| m.mode() & 0o022 == 0;
        if private(meta) && private(pmeta) && (pmeta.uid() == 0 || pmeta.uid() == me) {
            uids.push(meta.uid());
        }
    }
    Ok(uids)
}

/// One connection to the daemon; requests are answered in order.
pub struct Client {
    stream: UnixStream,
    pending: Zeroizing<Vec<u8>>,
    peer: crate::sys::PeerCred,
}

impl Client {
    /// Connect to the daemon at `path`, and check who answers before anything is sent.
    ///
    /// The directory holding the socket must be reached without a symbolic link (every
    /// component is `lstat`ed), and the process on the other end (`SO_PEERCRED`) must run as
    /// root, as the current user, or as the owner of the socket's directory when that
    /// directory and its parent are writable by their owners only (the daemon's own user, e.g.
    /// `scopevault` owning `/run/scopevault`). Anything else is refused with
    /// [`ClientError::Untrusted`] before a passphrase, ticket or request leaves the process.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let untrusted = |why: String| ClientError::Untrusted {
            path: path.to_owned(),
            why,
        };
        // Nothing at the path (or no directory): no daemon to talk to, and nobody to trust or
        // distrust. Say "cannot connect", as for a refused connection.
        if let Err(source) = std::fs::symlink_metadata(path) {
            if source.kind() == io::ErrorKind::NotFound {
                return Err(ClientError::Connect {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let trusted = trusted_daemon_uids(path).map_err(untrusted)?;
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_owned(),
            source,
        })?;
        let peer = crate::sys::peer_credentials(&stream).map_err(|e| {
            untrusted(format!(
                "cannot read the peer's credentials from the kernel ({e})"
            ))
        })?;
        if !trusted.contains(&peer.uid) {
            return Err(untrusted(format!(
                "the process answering runs as uid {}, which is neither root, you, nor the owner of the socket's directory",
                peer.uid
            )));
        }
        Ok(Client {
            stream,
            pending: Zeroizing::new(Vec::new()),
            peer,
        })
    }

    /// Who answers, as the kernel said at [`Client::connect`] (`SO_PEERCRED`): the process
    /// that made the listening socket. That is the daemon when it bound the socket itself;
    /// with systemd's socket activation it is systemd (uid 0).
    pub fn peer(&self) -> crate::sys::PeerCred {
        self.peer
    }

    /// Give up on a response after `t` (default: wait as long as the daemon takes).
    pub fn set_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)?;
        self.stream.set_write_timeout(t)
    }

    /// Send one request and read its response line.
    pub fn call<T: for<'de> Deserialize<'de>>(&mut self, req: &Request) -> Result<T, ClientError> {
        if let Err(e) = self.stream.write_all(&req.to_line()) {
            // A daemon at its connection limit answers `busy` and closes at once, before it
            // reads anything: our write then fails (EPIPE) with its answer still unread.
            // Report that answer (busy: retry), not a bare broken pipe.
            return match self.read_line().map(|l| parse_response::<T>(&l)) {
                Ok(Err(ResponseError::Refused(b))) => Err(ClientError::Refused(b)),
                _ => Err(ClientError::Io(e)),
            };
        }
        let line = self.read_line()?;
        parse_response(&line).map_err(|e| match e {
            ResponseError::Refused(b) => ClientError::Refused(b),
            ResponseError::Malformed => ClientError::Malformed,
        })
    }

    fn read_line(&mut self) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let mut chunk = Zeroizing::new(vec![0u8; 8192]);
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line = Zeroizing::new(Vec::with_capacity(pos));
                line.extend_from_slice(&self.pending[..pos]);
                let mut rest = Zeroizing::new(Vec::with_capacity(self.pending.len() - pos));
                rest.extend_from_slice(&self.pending[pos + 1..]);
                self.pending = rest;
                return Ok(line);
            }
            if self.pending.len() > MAX_RESPONSE {
                return Err(ClientError::Malformed);
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            if self.pending.len() + n > self.pending.capacity() {
                // Grow by hand so the old buffer is zeroed, not freed with secrets in it.
                let mut grown = Zeroizing::new(Vec::with_capacity((self.pending.len() + n) * 2));
                grown.extend_from_slice(&self.pending);
                self.pending = grown;
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    /// `health`.
    pub fn health(&mut self) -> Result<Health, ClientError> {
        self.call(&Request::Health)
    }

    /// `tasks`.
    pub fn tasks(&mut self) -> Result<Tasks, ClientError> {
        self.call(&Request::Tasks)
    }

    /// `fetch` for a task (all its credentials, or the one named).
    pub fn fetch(&mut self, task: &str, credential: Option<&str>) -> Result<Fetched, ClientError> {
        self.call(&Request::Fetch {
            by: FetchBy::Task(task.to_owned()),
            credential: credential.map(str::to_owned),
        })
    }

    /// `fetch` by redeeming a ticket.
    pub fn redeem(
        &mut self,
        ticket: &SecretString,
        credential: Option<&str>,
    ) -> Result<Fetched, ClientError> {
        self.call(&Request::Fetch {
            by: FetchBy::Ticket(ticket.clone()),
            credential: credential.map(str::to_owned),
        })
    }

    /// `ticket`.
    pub fn ticket(&mut self, task: &str, ttl: u64) -> Result<Ticket, ClientError> {
        self.call(&Request::Ticket {
            task: task.to_owned(),
            ttl,
        })
    }

    /// `lock`.
    pub fn lock(&mut self) -> Result<AdminStatus, ClientError> {
        self.call(&Request::Lock)
    }

    /// `unlock` with a passphrase.
    pub fn unlock(&mut self, passphrase: SecretString) -> Result<AdminStatus, ClientError> {
        self.call(&Request::Unlock { passphrase })
    }

    /// `reload`.
    pub fn reload(&mut self) -> Result<AdminStatus, ClientError> {
        self.call(&Request::Reload)
    }

    /// `audit_rotate`.
    pub fn audit_rotate(&mut self) -> Result<RotateStatus, ClientError> {
        self.call(&Request::AuditRotate)
    }

    /// `scrub_report`: record what a scrub of `task`'s artefacts did in the audit log.
    pub fn scrub_report(
        &mut self,
        task: &str,
        scrub: ScrubCounts,
    ) -> Result<ScrubReceipt, ClientError> {
        self.call(&Request::ScrubReport {
            task: task.to_owned(),
            scrub,
        })
    }
}
