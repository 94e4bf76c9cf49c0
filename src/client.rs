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
use std::time::{Duration, Instant};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::protocol::{
    parse_response, AdminStatus, ErrorBody, ErrorCode, FetchBy, Fetched, Health, Request,
    ResponseError, RotateStatus, ScrubCounts, ScrubReceipt, Tasks, Ticket, UnlockKey,
};
use crate::secret::SecretString;

/// Longest response line the client accepts: 16 MiB (a task with many large certificates).
pub use crate::protocol::MAX_RESPONSE;

/// Why a request through the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon answers on the socket, or this user may not reach it.
    #[error("cannot connect to the scopevault daemon at {path}: {source}; {}", connect_hint(.source))]
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
    /// The daemon did not take the connection, or did not answer a request, within the time
    /// the client gives it ([`Client::connect_within`], [`Client::set_timeout`]): a daemon
    /// stopped (`kill -STOP`) or hung still holds its socket, and the kernel queues
    /// connections to it (up to its backlog) that nobody reads.
    #[error("the daemon at {path} {stage} within {} s: is it stopped (`kill -STOP`: state `T` in `ps -o pid,stat,cmd -C scopevault`) or hung? Its log says what it last did; `kill -CONT` it, or restart it", .after.as_secs())]
    NoAnswer {
        /// The socket path.
        path: PathBuf,
        /// Where the daemon stopped: at the connection, or at the request.
        stage: Unanswered,
        /// How long the client waited.
        after: Duration,
    },
    /// The daemon refused the request. Its message is the daemon's text: shown with every
    /// control, bidirectional and invisible character escaped, a line break (`\n`) included,
    /// so that it cannot start a line of its own in our error, whose own line breaks the CLI
    /// keeps (`cli::message_of`).
    /// Every command it advises names the `--vault` and `--socket` the CLI was given
    /// ([`crate::advice::in_daemon_text`]; the library's own users note none).
    #[error("{}: {}", .0.code.as_str(), crate::text::escape_for_terminal(&crate::advice::in_daemon_text(&.0.message)))]
    Refused(ErrorBody),
    /// The daemon refused the request with a code this client does not know (a newer
    /// daemon's; docs/protocol.md: a refusal is any string `code` with a string `message`).
    /// Shown like [`ClientError::Refused`], the code escaped as the message is; exit 5, as
    /// any refusal by the daemon but `vault_refused`.
    #[error(
        "{}: {}",
        crate::text::escape_for_terminal(code),
        crate::text::escape_for_terminal(&crate::advice::in_daemon_text(message))
    )]
    RefusedOther {
        /// The code as the daemon sent it.
        code: String,
        /// The daemon's message.
        message: String,
    },
    /// The daemon closed the connection without answering.
    #[error("the daemon closed the connection without an answer")]
    Closed,
    /// The answer could not be read.
    #[error("the daemon's answer is not a valid response (is it the same scopevault version?)")]
    Malformed,
    /// A `fetch` answer that does not answer the request: credentials for another task than
    /// the one asked for, another credential than the one named, or one the daemon's `tasks`
    /// answer on this connection did not list for the task. Nothing of it is used (exit 5).
    #[error("the daemon's answer is not a valid response: {0}; nothing of it was used (a daemon that answers for another task or credential than asked for is not one to trust with the request)")]
    Mismatched(String),
    /// The answer is longer than [`MAX_RESPONSE`], which the client does not read past: a
    /// daemon of this version never sends one (docs/protocol.md, "Responses"), an older one
    /// did for a task whose credentials together were that large.
    /// The message names what was too large by the op asked: only a `fetch` answer is made of
    /// credentials (it blamed them, and advised `--credential`, for a `tasks` answer too:
    /// twenty-second pass).
    #[error("the daemon's answer to `{op}` is longer than 16 MiB ({MAX_RESPONSE} bytes), the most a client reads, so nothing of it is used: {}", too_long_advice(*.op))]
    TooLong {
        /// The op whose answer it was.
        op: crate::protocol::Op,
    },
    /// The daemon's `health` names another vault than the one an unlock's key is for
    /// ([`Client::unlock`]): no unlock request was sent.
    #[error("the daemon at {path}{} serves another vault (vault {}), not vault {wanted}, the vault the unlock was for: no unlock request was sent to it (neither the key nor an `unlock` with no key). Connect to the daemon that serves vault {wanted} (docs/protocol.md, \"Which vault the daemon serves, before a key is sent\")", if *.locked { " (locked)" } else { "" }, crate::text::escape_for_terminal(served))]
    OtherVault {
        /// The socket path.
        path: PathBuf,
        /// The vault the daemon names (`health`'s `vault_id`), as it sent it.
        served: String,
        /// The vault the unlock was for.
        wanted: String,
        /// Whether the daemon said it was locked.
        locked: bool,
    },
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

/// Whether `fetched` answers a `fetch` of `task` (and of `credential`, when named):
/// [`ClientError::Mismatched`] saying what does not match if not. The names are the daemon's,
/// escaped for a terminal. Whether the `tasks` answer listed them is [`unlisted`]'s to say.
fn answers_fetch(
    fetched: &Fetched,
    task: &str,
    credential: Option<&str>,
) -> Result<(), ClientError> {
    use crate::text::escape_for_terminal as esc;
    if fetched.task != task {
        return Err(ClientError::Mismatched(format!(
            "it hands out credentials for task `{}`, not for `{}` asked for",
            esc(&fetched.task),
            esc(task)
        )));
    }
    if let Some(want) = credential {
        match fetched.credentials.as_slice() {
            [one] if one.name == want => {}
            got => {
                let names: Vec<String> =
                    got.iter().map(|c| format!("`{}`", esc(&c.name))).collect();
                return Err(ClientError::Mismatched(format!(
                    "it hands out {} instead of credential `{}` alone, which was asked for",
                    if names.is_empty() {
                        "no credential".to_owned()
                    } else {
                        names.join(", ")
                    },
                    esc(want)
                )));
            }
        }
    }
    Ok(())
}

/// The first credential of `fetched` that `listed` (the task's credentials as a `tasks`
/// answer gave them) does not name.
fn unlisted<'f>(fetched: &'f Fetched, listed: &[String]) -> Option<&'f str> {
    fetched
        .credentials
        .iter()
        .find(|c| !listed.contains(&c.name))
        .map(|c| c.name.as_str())
}

/// What a daemon that did not answer in time left unanswered ([`ClientError::NoAnswer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The connection: the daemon's queue of pending connections is full.
    Connect,
    /// A request on a connection the daemon (or the kernel, for it) accepted.
    Request,
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unanswered::Connect => "did not accept the connection",
            Unanswered::Request => "accepted the connection but did not answer",
        })
    }
}

impl ClientError {
    /// The daemon's error code, when it refused with one this client knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused(b) => Some(b.code),
            _ => None,
        }
    }

    /// The daemon's error code as sent, when it refused, known to this client or not.
    pub fn code_str(&self) -> Option<&str> {
        match self {
            ClientError::Refused(b) => Some(b.code.as_str()),
            ClientError::RefusedOther { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// How a daemon from before the twenty-second pass refuses `tasks` with a `task` member
/// (`bad_request`, its parser's words for a member the op does not take).
const OLD_TASK_MEMBER_REFUSAL: &str = "field `task` is not allowed in op `tasks`";

/// The uids a daemon on `socket` may run as: root, us, and the owner of the socket's
/// directory when that directory and its parent are writable by their owners only (so the
/// owner put the socket there, and nobody else could have made the directory theirs). Every
/// component of the directory's path is `lstat`ed: a symbolic link anywhere is refused, since
/// whoever owns the link, not the directory it names, decides where we connect.
pub fn trusted_daemon_uids(socket: &Path) -> Result<Vec<u32>, String> {
    trust(socket).map(|t| t.uids())
}

/// Who a daemon on a socket may run as ([`trusted_daemon_uids`]), and why the owner of the
/// socket's directory is not among them, for the refusal.
struct Trust {
    me: u32,
    /// The owner of the socket's directory, and why it is not trusted (`None`: it is).
    owner: Option<(u32, Option<String>)>,
}

/// What to do after a failed connect. A refusal by permission (the socket, or a directory on
/// its path, shuts this user out) says so: asking whether the daemon runs would send the user
/// looking for a daemon that is there (the twenty-sixth pass's newcomer attacker).
fn connect_hint(source: &io::Error) -> String {
    if source.kind() == io::ErrorKind::PermissionDenied {
        format!(
            "this user (uid {}) may not reach that socket: a daemon may well be running; run as its user, as root, or as a member of the group it gives the socket (`serve --socket-group`), and `scopevault doctor --socket PATH` says what shuts you out",
            crate::sys::current_uid()
        )
    } else {
        "is `scopevault serve` running (and is --socket / SCOPEVAULT_SOCKET right)?".to_owned()
    }
}

fn trust(socket: &Path) -> Result<Trust, String> {
    use std::os::unix::fs::MetadataExt;
    let dir = crate::paths::dir_of(socket);
    let chain = crate::paths::lstat_components(&dir)?;
    let me = crate::sys::current_uid();
    let mut owner = None;
    if let [.., (parent, pmeta), (dir, meta)] = chain.as_slice() {
        let open = |m: &std::fs::Metadata| m.mode() & 0o022 != 0;
        let why = if open(meta) {
            Some(format!(
                "{} is writable by group or others (mode {:o})",
                dir.display(),
                meta.mode() & 0o7777
            ))
        } else if open(pmeta) {
            Some(format!(
                "its parent {} is writable by group or others (mode {:o}), so anyone could have made the directory theirs",
                parent.display(),
                pmeta.mode() & 0o7777
            ))
        } else if pmeta.uid() != 0 && pmeta.uid() != me {
            Some(format!(
                "its parent {} belongs to uid {}, neither root nor you",
                parent.display(),
                pmeta.uid()
            ))
        } else {
            None
        };
        owner = Some((meta.uid(), why));
    }
    Ok(Trust { me, owner })
}

impl Trust {
    fn uids(&self) -> Vec<u32> {
        let mut uids = vec![0, self.me];
        if let Some((uid, None)) = self.owner {
            uids.push(uid);
        }
        uids
    }

    /// Why a daemon running as `uid` is not trusted: the rule that failed.
    fn refusal(&self, uid: u32) -> String {
        match &self.owner {
            Some((owner, Some(why))) if *owner == uid => format!(
                "the process answering runs as uid {uid}, the owner of the socket's directory, which is trusted only when that directory and its parent are writable by their owners only and the parent belongs to root or you: {why}"
            ),
            Some((owner, _)) => format!(
                "the process answering runs as uid {uid}, which is neither root, you, nor the owner of the socket's directory (uid {owner})"
            ),
            None => format!("the process answering runs as uid {uid}, which is neither root nor you"),
        }
    }
}

/// What to do about an answer over [`MAX_RESPONSE`], by the op it answered.
fn too_long_advice(op: crate::protocol::Op) -> &'static str {
    match op {
        crate::protocol::Op::Fetch => "the task's credentials together are too large; fetch them one at a time (`--credential NAME`), and have an admin run `scopevault doctor`, which names a credential over the bound on one credential, and update the daemon",
        crate::protocol::Op::Tasks => "the list of tasks is too large (an older daemon sends it whole, this version refuses it and answers for one task); have an admin update the daemon or list fewer credentials in the tasks",
        _ => "a daemon of this version never sends one; have an admin update the daemon",
    }
}

/// One connection to the daemon; requests are answered in order.
pub struct Client {
    stream: UnixStream,
    pending: Zeroizing<Vec<u8>>,
    peer: crate::sys::PeerCred,
    /// The socket path, for [`ClientError::NoAnswer`].
    path: PathBuf,
    /// How long one request may take, its write and its whole answer together (`None`: as
    /// long as the daemon takes).
    wait: Option<Duration>,
    /// The last `health` answered on this connection: the vault an unlock's key is judged
    /// against ([`Client::unlock`]).
    health: Option<Health>,
    /// The credentials the daemon's `tasks` answers on this connection listed, by task: a
    /// `fetch` of that task must hand out none but these ([`Client::fetch`]).
    listed: std::collections::HashMap<String, Vec<String>>,
}

/// The vault the daemon that answered `h` serves (or, locked, loads at its `unlock`) when it
/// is another one than `wanted`; `None` when it is `wanted`, or the daemon names none (one
/// before 0.1 round 26, locked, or with no vault file it can read). The one comparison behind
/// [`Client::unlock`] and its kin, and the CLI's commands that judge a daemon's vault.
pub fn served_other_vault<'h>(h: &'h Health, wanted: &str) -> Option<&'h str> {
    h.vault_id.as_deref().filter(|d| *d != wanted)
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
        Client::open(path, None)
    }

    /// [`Client::connect`], waiting at most `wait` for the daemon to take the connection, and
    /// at most `wait` for each request's answer ([`Client::set_timeout`]); past either, the
    /// error is [`ClientError::NoAnswer`]. For every request that must not wait for ever on a
    /// daemon that stopped answering: `health` for `status` and `doctor`, the admin ops, and
    /// the fetches of `get`, `totp`, `exec` and `redact` (their `--timeout`).
    pub fn connect_within(path: &Path, wait: Duration) -> Result<Client, ClientError> {
        Client::open(path, Some(wait))
    }

    fn open(path: &Path, wait: Option<Duration>) -> Result<Client, ClientError> {
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
        let trusted = trust(path).map_err(untrusted)?;
        let connected = match wait {
            Some(w) => crate::sys::connect_unix_within(path, w),
            None => UnixStream::connect(path),
        };
        let stream = connected.map_err(|source| match (wait, source.kind()) {
            (Some(after), io::ErrorKind::WouldBlock) => ClientError::NoAnswer {
                path: path.to_owned(),
                stage: Unanswered::Connect,
                after,
            },
            _ => ClientError::Connect {
                path: path.to_owned(),
                source,
            },
        })?;
        let peer = crate::sys::peer_credentials(&stream).map_err(|e| {
            untrusted(format!(
                "cannot read the peer's credentials from the kernel ({e})"
            ))
        })?;
        if !trusted.uids().contains(&peer.uid) {
            return Err(untrusted(trusted.refusal(peer.uid)));
        }
        Ok(Client {
            stream,
            pending: Zeroizing::new(Vec::new()),
            peer,
            path: path.to_owned(),
            wait,
            health: None,
            listed: Default::default(),
        })
    }

    /// Who answers, as the kernel said at [`Client::connect`] (`SO_PEERCRED`): the process
    /// that made the listening socket. That is the daemon when it bound the socket itself;
    /// with systemd's socket activation it is systemd (uid 0).
    pub fn peer(&self) -> crate::sys::PeerCred {
        self.peer
    }

    /// Give up on a request after `t`: its write and its whole answer together, however the
    /// daemon trickles it (default: wait as long as the daemon takes; [`Client::connect_within`]
    /// sets its `wait`). Past it, the request fails with [`ClientError::NoAnswer`].
    pub fn set_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        if t.is_some_and(|t| t.is_zero()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a zero timeout would give up at once",
            ));
        }
        if t.is_none() {
            // What an earlier request with a wait left on the socket.
            self.stream.set_read_timeout(None)?;
            self.stream.set_write_timeout(None)?;
        }
        self.wait = t;
        Ok(())
    }

    /// The error for a request the daemon did not answer in time.
    fn no_answer(&self) -> ClientError {
        ClientError::NoAnswer {
            path: self.path.clone(),
            stage: Unanswered::Request,
            after: self.wait.unwrap_or_default(),
        }
    }

    /// Set the socket's timeouts to what is left until `deadline` (none without one); past
    /// it, [`ClientError::NoAnswer`].
    fn arm(&self, deadline: Option<Instant>) -> Result<(), ClientError> {
        let Some(deadline) = deadline else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.no_answer());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.set_write_timeout(Some(left))?;
        Ok(())
    }

    /// An I/O error of a request with a deadline: a timeout is the daemon not answering.
    fn io_error(&self, deadline: Option<Instant>, e: io::Error) -> ClientError {
        let timed_out = matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        if deadline.is_some() && timed_out {
            self.no_answer()
        } else {
            ClientError::Io(e)
        }
    }

    /// Send one request and read its response line.
    pub fn call<T: for<'de> Deserialize<'de>>(&mut self, req: &Request) -> Result<T, ClientError> {
        let deadline = self.wait.map(|w| Instant::now() + w);
        self.arm(deadline)?;
        if let Err(e) = self.stream.write_all(&req.to_line()) {
            // A daemon at its connection limit answers `busy` and closes at once, before it
            // reads anything: our write then fails (EPIPE) with its answer still unread.
            // Report that answer (busy: retry), not a bare broken pipe.
            return match self
                .read_line(deadline, req.op())
                .map(|l| parse_response::<T>(&l))
            {
                Ok(Err(ResponseError::Refused(b))) => Err(ClientError::Refused(b)),
                Ok(Err(ResponseError::RefusedOther { code, message })) => {
                    Err(ClientError::RefusedOther { code, message })
                }
                _ => Err(self.io_error(deadline, e)),
            };
        }
        let line = self.read_line(deadline, req.op())?;
        // One request, one answer line (docs/protocol.md, "Responses"): more already sent with
        // it is not a daemon of this protocol, and nothing of the answer is used. (A line that
        // arrives after this look is read as the next request's answer, if there is one: what
        // a daemon could have sent as that answer anyway.)
        if !self.pending.is_empty() {
            return Err(ClientError::Malformed);
        }
        parse_response(&line).map_err(|e| match e {
            ResponseError::Refused(b) => ClientError::Refused(b),
            ResponseError::RefusedOther { code, message } => {
                ClientError::RefusedOther { code, message }
            }
            ResponseError::Malformed => ClientError::Malformed,
        })
    }

    fn read_line(
        &mut self,
        deadline: Option<Instant>,
        op: crate::protocol::Op,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let mut chunk = Zeroizing::new(vec![0u8; 8192]);
        // What is already searched for the line's end: each byte is looked at once, however
        // slowly the answer arrives (a search from the start each time made a 16 MiB answer
        // without a line end cost quadratic time).
        let mut searched = 0;
        loop {
            if let Some(pos) = self.pending[searched..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| p + searched)
            {
                if pos > MAX_RESPONSE {
                    return Err(ClientError::TooLong { op });
                }
                let mut line = Zeroizing::new(Vec::with_capacity(pos));
                line.extend_from_slice(&self.pending[..pos]);
                let mut rest = Zeroizing::new(Vec::with_capacity(self.pending.len() - pos));
                rest.extend_from_slice(&self.pending[pos + 1..]);
                self.pending = rest;
                return Ok(line);
            }
            searched = self.pending.len();
            if self.pending.len() > MAX_RESPONSE {
                return Err(ClientError::TooLong { op });
            }
            self.arm(deadline)?;
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(deadline, e)),
            };
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

    /// `health`. The answer is kept for this connection's unlocks ([`Client::unlock`]).
    pub fn health(&mut self) -> Result<Health, ClientError> {
        let h: Health = self.call(&Request::Health)?;
        self.health = Some(h.clone());
        Ok(h)
    }

    /// `tasks`.
    pub fn tasks(&mut self) -> Result<Tasks, ClientError> {
        let t: Tasks = self.call(&Request::Tasks { task: None })?;
        self.note_listed(&t);
        Ok(t)
    }

    /// `tasks` for one task: its entry alone, if the peer is a runner of it (an answer that
    /// stays short however many tasks the policy has).
    pub fn task_info(&mut self, task: &str) -> Result<Tasks, ClientError> {
        let t: Tasks = self.call(&Request::Tasks {
            task: Some(task.to_owned()),
        })?;
        self.note_listed(&t);
        Ok(t)
    }

    /// Keep the credentials each task of a `tasks` answer lists, which a later `fetch` of
    /// that task on this connection is checked against.
    fn note_listed(&mut self, t: &Tasks) {
        for info in &t.tasks {
            self.listed
                .insert(info.name.clone(), info.credentials.clone());
        }
    }

    /// [`Client::task_info`], or the whole list from a daemon from before the twenty-second
    /// pass, which refuses the `task` member as its parser words it (docs/protocol.md,
    /// `tasks`). Any other refusal, a `bad_request` for another reason included, is the
    /// answer: it is not turned into a request for the whole list (nor, by the caller, into a
    /// fetch decided on that list).
    pub fn task_info_or_all(&mut self, task: &str) -> Result<Tasks, ClientError> {
        match self.task_info(task) {
            Err(ClientError::Refused(b))
                if b.code == ErrorCode::BadRequest && b.message == OLD_TASK_MEMBER_REFUSAL =>
            {
                self.tasks()
            }
            answer => answer,
        }
    }

    /// `fetch` for a task (all its credentials, or the one named).
    ///
    /// The answer must be for that task and, when a credential was named, hand out that one
    /// alone; when a `tasks` answer on this connection listed the task's credentials, it hands
    /// out none but those, or, on exactly that refusal, those of a second `tasks` answer for
    /// the task asked once after the hand-out (a policy reload may have added a credential
    /// between the two requests). Anything else is [`ClientError::Mismatched`], nothing of it
    /// used: a daemon (or anything the client was made to trust) that answered
    /// `checkout-flow` with `payments-health`'s credentials had them printed or put in a
    /// command's environment (twenty-seventh pass).
    pub fn fetch(&mut self, task: &str, credential: Option<&str>) -> Result<Fetched, ClientError> {
        let fetched: Fetched = self.call(&Request::Fetch {
            by: FetchBy::Task(task.to_owned()),
            credential: credential.map(str::to_owned),
        })?;
        answers_fetch(&fetched, task, credential)?;
        let Some(name) = self
            .listed
            .get(task)
            .and_then(|listed| unlisted(&fetched, listed))
            .map(str::to_owned)
        else {
            return Ok(fetched);
        };
        // A policy reload between the `tasks` answer and this one (a credential added to the
        // task) looks the same as a daemon handing out what it did not list: the daemon's
        // word now is asked once, and the answer is taken only if it lists every credential
        // handed out for this task. Until the twenty-eighth pass that one request failed.
        use crate::text::escape_for_terminal as esc;
        let again = match self.task_info_or_all(task) {
            Ok(t) => t
                .tasks
                .into_iter()
                .find(|t| t.name == task)
                .map(|t| t.credentials),
            Err(e) => {
                return Err(ClientError::Mismatched(format!(
                    "it hands out credential `{}`, which its `tasks` answer did not list for task `{}`, and asking `tasks` again failed ({e})",
                    esc(&name),
                    esc(task)
                )));
            }
        };
        match again.as_deref().and_then(|listed| unlisted(&fetched, listed)) {
            None if again.is_some() => Ok(fetched),
            still => Err(ClientError::Mismatched(format!(
                "it hands out credential `{}`, which neither its `tasks` answer nor a second one asked after the hand-out lists for task `{}`",
                esc(still.unwrap_or(name.as_str())),
                esc(task)
            ))),
        }
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

    /// `unlock` with a passphrase, for the vault `for_vault` (its id, as the header of its
    /// file names it: [`crate::vault::file_vault_id`]).
    ///
    /// Nothing is sent when the daemon names another vault: [`ClientError::OtherVault`]. The
    /// daemon's word is its `health` on this connection, the last one asked
    /// ([`Client::health`]) or, when none was, asked now, before the key. A key taken to be
    /// one vault's is never sent to a daemon of another (a `--socket` of another vault's
    /// daemon, another user's daemon in a directory they own): before the twenty-seventh pass
    /// only the CLI's `unlock` asked, and the library sent the key to whatever daemon it
    /// trusted. `for_vault` `None` (the caller cannot know the vault: no vault file readable
    /// here) sends the key to a daemon naming any vault; a daemon naming none gets it too, and
    /// one that lies about its vault id is not caught (docs/security.md, "Limits").
    pub fn unlock(
        &mut self,
        for_vault: Option<&str>,
        passphrase: SecretString,
    ) -> Result<AdminStatus, ClientError> {
        self.unlock_by(for_vault, UnlockKey::Passphrase(passphrase))
    }

    /// `unlock` with the text of an age identity file (`identity`; a daemon older than the
    /// twenty-third pass answers `bad_request` naming the member), for the vault `for_vault`,
    /// judged as [`Client::unlock`] does.
    pub fn unlock_with_identity(
        &mut self,
        for_vault: Option<&str>,
        identity: SecretString,
    ) -> Result<AdminStatus, ClientError> {
        self.unlock_by(for_vault, UnlockKey::Identity(identity))
    }

    /// `unlock` with no key: the daemon tries its own start-time sources again (its identity
    /// file, its systemd credential, its keyring slot). A daemon older than the twenty-fourth
    /// pass answers `bad_request`. Not sent to a daemon that names another vault than
    /// `for_vault`, as [`Client::unlock`]: it would unlock that daemon's own vault.
    pub fn unlock_with_own_sources(
        &mut self,
        for_vault: Option<&str>,
    ) -> Result<AdminStatus, ClientError> {
        self.unlock_by(for_vault, UnlockKey::DaemonSources)
    }

    /// `unlock` with `key`, unless the daemon's `health` on this connection names another
    /// vault than `for_vault` ([`Client::unlock`]).
    pub fn unlock_by(
        &mut self,
        for_vault: Option<&str>,
        key: UnlockKey,
    ) -> Result<AdminStatus, ClientError> {
        if let Some(wanted) = for_vault {
            let h = match self.health.take() {
                Some(h) => h,
                None => self.health()?,
            };
            let other = served_other_vault(&h, wanted).map(str::to_owned);
            let locked = h.locked;
            self.health = Some(h);
            if let Some(served) = other {
                return Err(ClientError::OtherVault {
                    path: self.path.clone(),
                    served,
                    wanted: wanted.to_owned(),
                    locked,
                });
            }
        }
        self.call(&Request::Unlock { key })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A listening socket at `path` with a queue of one pending connection, which nothing
    /// accepts: a daemon stopped with `kill -STOP` once its queue is full.
    fn listener_nobody_accepts(path: &Path) -> rustix::fd::OwnedFd {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        rustix::net::bind(&fd, &SocketAddrUnix::new(path).unwrap()).unwrap();
        rustix::net::listen(&fd, 0).unwrap();
        fd
    }

    /// Seventeenth pass (found by attacking that pass's own fixes): a daemon that stopped
    /// accepting fills its queue, and a `connect` to it then waited for room for ever. A
    /// client given a wait gives up on the connection too, and says which step went
    /// unanswered.
    #[test]
    fn a_full_queue_of_connections_is_given_up_on_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _listener = listener_nobody_accepts(&path);
        // The kernel queues one more than the backlog; this client fills the queue.
        let _queued = UnixStream::connect(&path).unwrap();
        match Client::connect_within(&path, Duration::from_secs(1)) {
            Err(ClientError::NoAnswer {
                stage: Unanswered::Connect,
                ..
            }) => {}
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("connected to a full queue"),
        }
    }

    /// A daemon that sends more than [`MAX_RESPONSE`] without a line end is refused as soon as
    /// it passes it: each byte is searched once for the line end (a search from the start at
    /// each read took quadratic time, minutes for 16 MiB in a debug build, and the request's
    /// wait ran out first). The wait here is a liveness bound, not what is tested. The error
    /// says the answer is over the limit (twenty-second pass: it suggested another version).
    #[test]
    fn an_answer_without_a_line_end_is_refused_past_the_limit() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let sender = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let block = vec![b'x'; 1 << 16];
            while s.write_all(&block).is_ok() {}
        });
        let mut c = Client::connect_within(&path, Duration::from_secs(60)).unwrap();
        match c.health() {
            Err(e @ ClientError::TooLong { .. }) => {
                assert!(e.to_string().contains("longer than 16 MiB"), "{e}");
            }
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("an answer"),
        }
        drop(c);
        sender.join().unwrap();
    }

    /// Twenty-second pass (found by attacking this pass's fixes): an over-long answer to
    /// `tasks` was said to be the task's credentials together, with advice to fetch one at a
    /// time (`--credential`), which asks `tasks` first and failed the same way. The message
    /// names the op it answered, and only a `fetch`'s blames credentials.
    #[test]
    fn a_too_long_answer_is_blamed_on_what_was_asked() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let sender = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let block = vec![b'x'; 1 << 16];
                while s.write_all(&block).is_ok() {}
            }
        });
        let wait = Duration::from_secs(60);
        let tasks = Client::connect_within(&path, wait).unwrap().task_info("t");
        let fetch = Client::connect_within(&path, wait)
            .unwrap()
            .fetch("t", None);
        sender.join().unwrap();
        let Err(e @ ClientError::TooLong { .. }) = tasks else {
            panic!("not too long: {tasks:?}");
        };
        let m = e.to_string();
        assert!(
            m.contains("answer to `tasks`") && m.contains("list of tasks"),
            "{m}"
        );
        assert!(
            !m.contains("credentials together") && !m.contains("--credential"),
            "{m}"
        );
        let Err(e @ ClientError::TooLong { .. }) = fetch else {
            panic!("not too long");
        };
        let m = e.to_string();
        assert!(
            m.contains("answer to `fetch`") && m.contains("--credential"),
            "{m}"
        );
    }

    /// A stand-in daemon at `path` whose `health` names `vault_id` (locked): it answers every
    /// other request `denied`, on as many connections as `connections`, and returns every line
    /// it was sent.
    fn stand_in_naming(
        path: &Path,
        vault_id: &'static str,
        connections: usize,
    ) -> std::thread::JoinHandle<Vec<String>> {
        use std::io::{BufRead, Write};
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..connections {
                let (s, _) = listener.accept().unwrap();
                let mut w = s.try_clone().unwrap();
                for line in std::io::BufReader::new(s).lines() {
                    let line = line.unwrap();
                    let reply = if line.contains(r#""op":"health""#) {
                        format!(
                            r#"{{"ok":true,"v":1,"version":"0.1.0","locked":true,"vault_id":"{vault_id}","generation":null,"credentials":0,"tasks":0,"enforce":null,"policy_digest":null,"audit_ok":true,"audit_anchor_ok":true,"loading":false,"log_lines_lost":0,"connections":1,"peer":{{"uid":0,"gid":0,"pid":1,"admin":true}}}}"#
                        )
                    } else {
                        r#"{"ok":false,"v":1,"error":{"code":"denied","message":"no"}}"#.to_owned()
                    };
                    seen.push(line);
                    if writeln!(w, "{reply}").is_err() {
                        break;
                    }
                }
            }
            seen
        })
    }

    /// Twenty-seventh pass (found by the twenty-sixth pass's review): the library's
    /// `Client::unlock*` sent the key to whatever daemon it trusted, though only the CLI's
    /// `unlock` asked `health` first and refused a daemon naming another vault. Every unlock
    /// of the library, a passphrase, an identity or none, now asks (or takes this
    /// connection's last `health`) and sends nothing to a daemon of another vault; to the
    /// vault it names, the unlock goes.
    #[test]
    fn regression_the_librarys_unlocks_send_nothing_to_a_daemon_naming_another_vault() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let daemon = stand_in_naming(&path, "vault-b", 4);
        let wait = Duration::from_secs(60);
        let secret = || SecretString::from("correct horse".to_owned());
        let mut c = Client::connect_within(&path, wait).unwrap();
        let by_pass = c.unlock(Some("vault-a"), secret());
        let by_identity = c.unlock_with_identity(Some("vault-a"), secret());
        let keyless = c.unlock_with_own_sources(Some("vault-a"));
        drop(c);
        // A `health` asked before on the connection is the one judged: no second one.
        let mut c = Client::connect_within(&path, wait).unwrap();
        c.health().unwrap();
        let after_health = c.unlock(Some("vault-a"), secret());
        drop(c);
        // The daemon's own vault, or a caller that cannot know the vault: sent.
        let mut c = Client::connect_within(&path, wait).unwrap();
        let to_its_vault = c.unlock(Some("vault-b"), secret());
        drop(c);
        let mut c = Client::connect_within(&path, wait).unwrap();
        let unknown = c.unlock_with_own_sources(None);
        drop(c);
        let seen = daemon.join().unwrap();
        for (what, answer) in [
            ("passphrase", by_pass),
            ("identity", by_identity),
            ("no key", keyless),
            ("after health", after_health),
        ] {
            let Err(e @ ClientError::OtherVault { .. }) = answer else {
                panic!("{what}: not refused as another vault's: {answer:?}");
            };
            let m = e.to_string();
            assert!(
                m.contains("serves another vault (vault vault-b), not vault vault-a")
                    && m.contains("no unlock request was sent"),
                "{what}: {m}"
            );
        }
        assert_eq!(to_its_vault.unwrap_err().code(), Some(ErrorCode::Denied));
        assert_eq!(unknown.unwrap_err().code(), Some(ErrorCode::Denied));
        let ops: Vec<&str> = seen
            .iter()
            .map(|l| {
                if l.contains(r#""op":"health""#) {
                    "health"
                } else if l.contains(r#""op":"unlock""#) {
                    "unlock"
                } else {
                    "other"
                }
            })
            .collect();
        assert_eq!(
            ops,
            ["health", "health", "health", "unlock", "unlock"],
            "{seen:?}"
        );
        // The key went once: to the daemon of its own vault.
        let keyed = seen.iter().filter(|l| l.contains("correct horse")).count();
        assert_eq!(keyed, 1, "{seen:?}");
    }
}
