//! The example clients (examples/clients/client.py and client.js) against a daemon that
//! misbehaves: one that never answers or answers a byte at a time, one at its connection
//! limit, one whose answers are not valid, one whose error text would drive the terminal, and
//! a socket-activated one whose socket belongs to the service user (nineteenth pass, found by
//! attacking the clients from the documents). The daemon here is a fake listener in this
//! process: the real one behaves, and these are the answers a client must survive.

use crate::common::output_within;
use crate::common::skip;
use crate::common::users::is_root;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the fake daemon does with each connection it accepts.
type Answer = Arc<dyn Fn(UnixStream, &AtomicBool) + Send + Sync>;

/// Answer every request with `line`, then hold the connection.
fn line(line: &'static [u8]) -> Answer {
    Arc::new(move |s: UnixStream, stop: &AtomicBool| answer_with(s, stop, line))
}

/// A listener on a socket that runs `answer` for each connection, in a thread of its own,
/// until it is dropped.
struct Fake {
    stop: Arc<AtomicBool>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    fn at(socket: PathBuf, answer: Answer) -> Fake {
        let listener = UnixListener::bind(&socket).unwrap();
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accepting = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let (flag, answer) = (flag.clone(), answer.clone());
                        std::thread::spawn(move || answer(s, &flag));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Fake {
            stop,
            accepting: Some(accepting),
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accepting.take() {
            let _ = t.join();
        }
    }
}

/// Read the request line (or what arrives of it).
fn read_request(s: &mut UnixStream) {
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || buf[..n].contains(&b'\n') {
            break;
        }
    }
}

/// Keep the connection open, unanswered, until the fake is dropped.
fn hold(s: UnixStream, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
}

/// Answer the request with `line` (sent as it is, in one write), then hold the connection.
fn answer_with(mut s: UnixStream, stop: &AtomicBool, line: &[u8]) {
    read_request(&mut s);
    let _ = s.write_all(line);
    hold(s, stop);
}

/// A copy of the example clients in a directory every uid may read (a test may run them as
/// another uid), and a directory for sockets beside it.
struct Clients {
    dir: tempfile::TempDir,
}

impl Clients {
    fn new() -> Clients {
        let dir = crate::common::daemon::tempdir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/clients");
        for name in ["client.py", "client.js"] {
            std::fs::copy(examples.join(name), dir.path().join(name)).unwrap();
            std::fs::set_permissions(
                dir.path().join(name),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap();
        }
        Clients { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `interpreter client args…`, as `uid` when given; fails the test if it runs 60 s.
    fn run(&self, interpreter: &str, args: &[&str], uid: Option<u32>) -> Output {
        self.run_fed(interpreter, args, uid, None)
    }

    /// [`Clients::run`] with `input` on stdin (none: stdin is `/dev/null`).
    fn run_fed(
        &self,
        interpreter: &str,
        args: &[&str],
        uid: Option<u32>,
        input: Option<&[u8]>,
    ) -> Output {
        use std::os::unix::process::CommandExt;
        let client = if interpreter == "node" {
            "client.js"
        } else {
            "client.py"
        };
        let mut c = Command::new(interpreter);
        c.arg(self.path(client))
            .args(args)
            .current_dir("/")
            .env_remove("SCOPEVAULT_SOCKET")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(u) = uid {
            c.uid(u).gid(u).env("HOME", "/");
        }
        let mut child = c.spawn().unwrap();
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A client that exits without reading it closes the pipe: not an error here.
            let _ = stdin.write_all(input);
        }
        output_within(child, 60, &format!("{interpreter} {client} {args:?}"))
    }
}

/// The interpreters that are installed (a missing one is a skip, a failure under CI).
fn interpreters() -> Vec<&'static str> {
    let mut found = Vec::new();
    for i in ["python3", "node"] {
        if Command::new(i).arg("--version").output().is_ok() {
            found.push(i);
        } else {
            skip::skip(&format!("{i} is not installed"));
        }
    }
    found
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A daemon that takes the connection and the request and never answers, and one that
/// answers a byte every 100 ms without ever ending the line: client.js waited for ever on
/// both, client.py for ever on the second (it bounded each read, not the exchange). Both now
/// give up after `--timeout` for the whole exchange, exit 5, saying so, as the binary does.
#[test]
fn the_example_clients_give_up_on_a_daemon_that_never_answers_or_drips() {
    fn drip(mut s: UnixStream, stop: &AtomicBool) {
        read_request(&mut s);
        let answer = br#"{"ok":true,"v":1,"version":"x""#;
        for b in answer.iter().chain(std::iter::repeat(&b' ')) {
            if stop.load(Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn never(mut s: UnixStream, stop: &AtomicBool) {
        read_request(&mut s);
        hold(s, stop);
    }
    let clients = Clients::new();
    let answers: [(&str, Answer); 2] = [("hang", Arc::new(never)), ("drip", Arc::new(drip))];
    for (name, answer) in answers {
        let socket = clients.path(&format!("{name}.sock"));
        let _fake = Fake::at(socket.clone(), answer);
        let socket = socket.to_str().unwrap();
        for i in interpreters() {
            let out = clients.run(i, &["--socket", socket, "--timeout", "2", "health"], None);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(5), "{name}, {i}: {err}");
            assert!(
                err.contains(&format!(
                    "the daemon at {socket} accepted the connection but did not answer within 2 s"
                )),
                "{name}, {i}: {err}"
            );
            assert!(out.stdout.is_empty(), "{name}, {i}: {out:?}");
        }
    }
}

/// A timeout that is not 1 to 3600 whole seconds is a usage error, as the binary's is.
#[test]
fn the_example_clients_refuse_a_timeout_that_is_no_bound() {
    let clients = Clients::new();
    for i in interpreters() {
        for bad in ["0", "3601", "1.5", "soon"] {
            let out = clients.run(
                i,
                &["--socket", "/nonexistent.sock", "--timeout", bad, "health"],
                None,
            );
            assert_eq!(out.status.code(), Some(2), "{i} --timeout {bad}: {out:?}");
            assert!(
                text(&out.stderr).contains("--timeout"),
                "{i} --timeout {bad}: {out:?}"
            );
        }
    }
}

/// Twenty-first pass (found by attacking from the documents): the example clients took the
/// ticket as an argument (`redeem TICKET`), and another uid polling /proc/*/cmdline read it and
/// redeemed it first: it got the secret, and the real client "possible interception". A ticket
/// given as an argument is now refused before anything is sent, without quoting it, saying to
/// give it on stdin; the daemon here (which would hand out `Canary-SecretPW`) sees no
/// connection at all.
#[test]
fn the_example_clients_refuse_a_ticket_given_as_an_argument() {
    const TICKET: &str = "svt1_Canary-Ticket-0123456789";
    let connected = Arc::new(AtomicBool::new(false));
    let seen = connected.clone();
    let clients = Clients::new();
    let socket = clients.path("ticket.sock");
    let _fake = Fake::at(
        socket.clone(),
        Arc::new(move |s: UnixStream, stop: &AtomicBool| {
            seen.store(true, Ordering::SeqCst);
            answer_with(s, stop, HAND_OUT);
        }),
    );
    for i in interpreters() {
        let out = clients.run_fed(
            i,
            &["--socket", socket.to_str().unwrap(), "redeem", TICKET],
            None,
            Some(format!("{TICKET}\n").as_bytes()),
        );
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let case = format!("{i}: {stdout}{stderr}");
        assert_eq!(out.status.code(), Some(2), "{case}");
        assert!(
            stderr.contains("redeem takes no argument: it reads the ticket from stdin")
                && stderr.contains("nothing was sent")
                && stderr.contains("consider it exposed"),
            "{case}"
        );
        assert!(!case.contains("Canary"), "{case}");
        assert!(!connected.load(Ordering::SeqCst), "{case}: it connected");
    }
}

/// A hand-out of `Canary-SecretPW`, as a daemon answers a redeemed ticket.
const HAND_OUT: &[u8] = b"{\"ok\":true,\"v\":1,\"task\":\"t\",\"audit_seq\":1,\"credentials\":[{\"name\":\"b\",\"kind\":\"login\",\"scopes\":[],\"origins\":[],\"fields\":{},\"secrets\":{\"password\":\"Canary-SecretPW\"},\"warnings\":[]}]}\n";

const BUSY: &[u8] = br#"{"ok":false,"v":1,"error":{"code":"busy","message":"too many connections for uid 0; retry later"}}
"#;

/// A daemon at its connection limit answers `busy` and closes the connection before it reads
/// anything (docs/protocol.md, "Framing"). client.py reported the broken pipe of its write and
/// client.js "the daemon closed the connection": both lost the answer. They now read what the
/// daemon sent before giving up, and report `busy` (exit 5, "retry later"). The write is made
/// to fail for sure through each client's module: the request is sent only once the daemon
/// has closed; and the command line is run against the same daemon too.
#[test]
fn the_example_clients_report_busy_when_the_daemon_closes_before_reading() {
    fn busy_then_close(mut s: UnixStream, _stop: &AtomicBool) {
        let _ = s.write_all(BUSY);
        drop(s);
    }
    let clients = Clients::new();
    let socket = clients.path("busy.sock");
    {
        let _fake = Fake::at(socket.clone(), Arc::new(busy_then_close));
        for i in interpreters() {
            let out = clients.run(i, &["--socket", socket.to_str().unwrap(), "health"], None);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(5), "{i}: {err}");
            assert!(
                err.contains("busy: too many connections") && err.contains("retry"),
                "{i}: {err}"
            );
        }
    }
    std::fs::remove_file(&socket).unwrap();
    let mark = clients.path("closed.mark");
    // Told through a file: the module waits for it before it sends its request.
    let _fake = busy_then_mark(&socket, &mark);
    let py = format!(
        r#"
import os, sys, time
sys.path.insert(0, {dir:?})
from client import ScopevaultClient, ScopevaultError
sv = ScopevaultClient({socket:?})
while not os.path.exists({mark:?}):
    time.sleep(0.01)
try:
    sv.health()
    print("answered")
except ScopevaultError as e:
    print("refused", e.code)
"#,
        dir = clients.dir.path().to_str().unwrap(),
        socket = socket.to_str().unwrap(),
        mark = mark.to_str().unwrap(),
    );
    let js = format!(
        r#"
const fs = require('fs');
const {{ ScopevaultClient, ScopevaultError }} = require({client:?});
(async () => {{
  const sv = new ScopevaultClient({socket:?});
  await sv.connect();
  while (!fs.existsSync({mark:?})) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 200));
  try {{
    await sv.health();
    console.log('answered');
  }} catch (e) {{
    console.log(e instanceof ScopevaultError ? `refused ${{e.code}}` : `error ${{e.message}}`);
  }}
  sv.close();
}})();
"#,
        client = clients.path("client.js").to_str().unwrap(),
        socket = socket.to_str().unwrap(),
        mark = mark.to_str().unwrap(),
    );
    for i in interpreters() {
        let _ = std::fs::remove_file(&mark);
        let flag = if i == "node" { "-e" } else { "-c" };
        let script = if i == "node" { &js } else { &py };
        let child = Command::new(i)
            .args([flag, script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = output_within(child, 60, i);
        assert_eq!(
            text(&out.stdout).trim(),
            "refused busy",
            "{i}: {}",
            text(&out.stderr)
        );
    }
}

/// A fake daemon at `socket` that answers each connection `busy`, closes it unread, and then
/// writes the file `mark` (a client script waits for it before it writes its request).
fn busy_then_mark(socket: &Path, mark: &Path) -> Fake {
    let said = mark.to_owned();
    Fake::at(
        socket.to_owned(),
        Arc::new(move |mut s: UnixStream, _: &AtomicBool| {
            let _ = s.write_all(BUSY);
            drop(s);
            std::fs::write(&said, "closed").unwrap();
        }),
    )
}

/// Twentieth pass (a full-suite run under load): client.js's request written after the daemon
/// had sent `busy` and closed, but before Node had read that line, failed with `EPIPE`, and Node
/// discarded the unread `busy`: "cannot talk to the scopevault daemon: write EPIPE", exit 2,
/// where protocol.md promises `busy` (exit 5, retry). The race is made certain here: the script
/// spins without giving Node's event loop a turn until the fake daemon has answered `busy` and
/// closed, then writes its request. The failed write is now reported as `busy`.
#[test]
fn client_js_reports_busy_when_its_write_meets_the_closed_connection() {
    if !interpreters().contains(&"node") {
        return;
    }
    let clients = Clients::new();
    let socket = clients.path("busy.sock");
    let mark = clients.path("closed.mark");
    let _fake = busy_then_mark(&socket, &mark);
    let js = format!(
        r#"
const fs = require('fs');
const {{ ScopevaultClient, ScopevaultError }} = require({client:?});
(async () => {{
  const sv = new ScopevaultClient({socket:?});
  await sv.connect();
  // No turn of the event loop until the daemon has closed: Node has not read its `busy`.
  while (!fs.existsSync({mark:?})) {{}}
  try {{
    await sv.health();
    console.log('answered');
  }} catch (e) {{
    console.log(e instanceof ScopevaultError ? `refused ${{e.code}}: ${{e.message}}` : `error ${{e.message}}`);
  }}
  sv.close();
}})();
"#,
        client = clients.path("client.js").to_str().unwrap(),
        socket = socket.to_str().unwrap(),
        mark = mark.to_str().unwrap(),
    );
    let child = Command::new("node")
        .args(["-e", &js])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = output_within(child, 60, "node");
    let said = text(&out.stdout);
    assert!(
        said.starts_with("refused busy: busy: too many connections")
            && said.contains("retry later"),
        "{said}{}",
        text(&out.stderr)
    );
}

/// Answers that are not one valid version-1 response line: client.py ended in a Python
/// traceback (exit 1) on bytes that are not UTF-8, on JSON that is not an object, on `null`
/// and on bad JSON; both clients printed the secrets of an answer of protocol version 99 and
/// took the first of two answer lines. Each is now refused as not a valid response, exit 5,
/// as the binary refuses it, and nothing of it is printed.
#[test]
fn the_example_clients_refuse_answers_that_are_not_one_valid_v1_line() {
    let cases: [(&str, Answer); 11] = [
        (
            "not UTF-8",
            line(b"{\"ok\":false,\"v\":1,\"error\":{\"code\":\"denied\",\"message\":\"\xff\xfe bad\"}}\n"),
        ),
        ("not an object", line(b"[1,2]\n")),
        ("null", line(b"null\n")),
        (
            "bad JSON",
            line(b"{\"ok\":true,\"v\":1,\"secret\":\"Canary-SecretPW\" GARBAGE\n"),
        ),
        (
            "version 99",
            line(b"{\"ok\":true,\"v\":99,\"task\":\"t\",\"audit_seq\":1,\"credentials\":[{\"name\":\"b\",\"kind\":\"login\",\"scopes\":[],\"origins\":[],\"fields\":{},\"secrets\":{\"password\":\"Canary-SecretPW\"},\"warnings\":[]}]}\n"),
        ),
        ("no version", line(b"{\"ok\":true,\"version\":\"Canary-SecretPW\"}\n")),
        (
            "two lines",
            line(b"{\"ok\":true,\"v\":1,\"version\":\"first\"}\n{\"ok\":true,\"v\":1,\"version\":\"Canary-SecretPW\"}\n"),
        ),
        ("ok not a boolean", line(b"{\"ok\":1,\"v\":1,\"version\":\"Canary-SecretPW\"}\n")),
        ("a refusal without an error", line(b"{\"ok\":false,\"v\":1}\n")),
        (
            "an error that is not an object",
            line(b"{\"ok\":false,\"v\":1,\"error\":\"denied\"}\n"),
        ),
        (
            "an error code that is not a string",
            line(b"{\"ok\":false,\"v\":1,\"error\":{\"code\":7,\"message\":\"x\"}}\n"),
        ),
    ];
    let clients = Clients::new();
    let installed = interpreters();
    for (n, (what, answer)) in cases.into_iter().enumerate() {
        let socket = clients.path(&format!("m{n}.sock"));
        let _fake = Fake::at(socket.clone(), answer);
        for i in &installed {
            let out = clients.run(i, &["--socket", socket.to_str().unwrap(), "health"], None);
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let case = format!("{what}, {i}: {stdout}{stderr}");
            assert_eq!(out.status.code(), Some(5), "{case}");
            assert!(stderr.contains("not a valid response"), "{case}");
            assert!(!stderr.contains("Traceback"), "{case}");
            assert!(stdout.is_empty(), "{case}");
            assert!(!stderr.contains("Canary-SecretPW"), "{case}");
        }
    }
}

/// The example clients printed the daemon's error code and message raw: an ESC sequence, an
/// OSC title, a bell, U+202E and a line break with a forged `error:` line reached the
/// terminal. They now escape control, bidirectional and invisible characters in everything
/// they print from the daemon, as the binary does (README, "Exit codes"): an error is one
/// line, and a success's JSON carries them escaped, still parsing to the same values.
#[test]
fn the_example_clients_escape_what_they_print_from_the_daemon() {
    fn refusal(s: UnixStream, stop: &AtomicBool) {
        answer_with(
            s,
            stop,
            "{\"ok\":false,\"v\":1,\"error\":{\"code\":\"denied\\u001b[31m\",\"message\":\"\\u001b[2J\\u001b]0;pwned\\u0007 see\\nerror: forged line \\u202eevil\\u200b\\u009b1m\"}}\n".as_bytes(),
        )
    }
    fn success(s: UnixStream, stop: &AtomicBool) {
        answer_with(
            s,
            stop,
            "{\"ok\":true,\"v\":1,\"version\":\"a\\u001b]0;t\\u0007\\u009b31m\\u202eb\\u2028c\\u200bd\\u007f\"}\n"
                .as_bytes(),
        )
    }
    let clients = Clients::new();
    let installed = interpreters();
    let raw = |s: &str| {
        s.chars().any(|c| {
            matches!(
                c,
                '\u{1b}' | '\u{7}' | '\u{7f}' | '\u{9b}' | '\u{202e}' | '\u{200b}' | '\u{2028}'
            )
        })
    };
    let socket = clients.path("refusal.sock");
    {
        let _fake = Fake::at(socket.clone(), Arc::new(refusal));
        for i in &installed {
            let out = clients.run(i, &["--socket", socket.to_str().unwrap(), "health"], None);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(5), "{i}: {err:?}");
            assert!(!raw(&err), "{i}: {err:?}");
            assert_eq!(err.trim_end().lines().count(), 1, "{i}: {err:?}");
            assert!(
                err.contains(r"denied\u{1b}[31m")
                    && err.contains(r"see\nerror: forged line \u{202e}evil\u{200b}\u{9b}1m"),
                "{i}: {err:?}"
            );
        }
    }
    let socket = clients.path("success.sock");
    let _fake = Fake::at(socket.clone(), Arc::new(success));
    for i in &installed {
        let out = clients.run(i, &["--socket", socket.to_str().unwrap(), "health"], None);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{i}: {out:?}");
        assert!(!raw(&stdout), "{i}: {stdout:?}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            v["version"], "a\u{1b}]0;t\u{7}\u{9b}31m\u{202e}b\u{2028}c\u{200b}d\u{7f}",
            "{i}"
        );
    }
}

/// Socket activation before the service has ever run: systemd (root) made the directory
/// root:root 0755 and bound the socket, owned by the service user (`SocketUser=`). client.py
/// trusts it (the listener is root, by SO_PEERCRED), the binary too; client.js, which judges
/// the socket file's owner (Node has no SO_PEERCRED), refused it. It now trusts a socket that
/// only root could have put there, and still refuses one in a root-owned directory that
/// someone else could move away and replace (its parent writable by anyone).
#[test]
fn the_node_client_trusts_a_socket_activated_socket_only_root_could_have_placed() {
    if !is_root() {
        return skip::skip("needs root to make a socket owned by another uid");
    }
    let clients = Clients::new();
    let installed = interpreters();
    let place = |dir: &Path| {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.join("scopevault.sock");
        let fake = Fake::at(
            socket.clone(),
            line(b"{\"ok\":true,\"v\":1,\"version\":\"fake\"}\n"),
        );
        std::os::unix::fs::chown(&socket, Some(65534), Some(65534)).unwrap();
        (fake, socket)
    };
    // /run/scopevault as systemd makes it: root's, in root's directories only.
    let (fake, socket) = place(&clients.path("run-scopevault"));
    for i in &installed {
        let out = clients.run(
            i,
            &["--socket", socket.to_str().unwrap(), "health"],
            Some(65533),
        );
        assert_eq!(out.status.code(), Some(0), "{i}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("\"fake\""), "{i}: {out:?}");
    }
    drop(fake);
    // The same directory in one anyone may write: it could be renamed away and replaced
    // between client.js's check and its connection.
    let open = clients.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_fake, socket) = place(&open.join("run-scopevault"));
    if installed.contains(&"node") {
        let out = clients.run(
            "node",
            &["--socket", socket.to_str().unwrap(), "health"],
            Some(65533),
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("refusing to talk")
                && err.contains(&format!(
                    "{} is writable by group or others",
                    open.display()
                ))
                && err.contains("nothing was sent"),
            "{err}"
        );
    }
}

/// examples/checkpoint's check caught only the client's refusal and I/O errors: an answer that
/// is not a valid response, or a valid one without a credential it can read, ended in a
/// traceback. It now fails saying so, exit 1, and prints nothing of the answer.
#[test]
fn the_example_check_fails_without_a_traceback_on_an_answer_it_cannot_use() {
    if Command::new("python3").arg("--version").output().is_err() {
        return skip::skip("python3 is not installed");
    }
    let work = crate::common::daemon::tempdir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for (sub, file) in [("checkpoint", "check-login.py"), ("clients", "client.py")] {
        std::fs::create_dir_all(work.path().join(sub)).unwrap();
        std::fs::copy(root.join(sub).join(file), work.path().join(sub).join(file)).unwrap();
    }
    let cases: [(&str, Answer); 4] = [
        ("null", line(b"null\n")),
        (
            "version 99",
            line(b"{\"ok\":true,\"v\":99,\"task\":\"checkout-flow\",\"credentials\":[{\"name\":\"b\",\"fields\":{\"username\":\"u\"},\"secrets\":{\"password\":\"Canary-SecretPW\"},\"warnings\":[]}]}\n"),
        ),
        (
            "credentials not a list",
            line(b"{\"ok\":true,\"v\":1,\"task\":\"checkout-flow\",\"credentials\":\"Canary-SecretPW\"}\n"),
        ),
        (
            "secrets not an object",
            line(b"{\"ok\":true,\"v\":1,\"task\":\"checkout-flow\",\"credentials\":[{\"name\":\"b\",\"fields\":{},\"secrets\":[\"Canary-SecretPW\"]}]}\n"),
        ),
    ];
    for (n, (what, answer)) in cases.into_iter().enumerate() {
        let socket = work.path().join(format!("c{n}.sock"));
        let _fake = Fake::at(socket.clone(), answer);
        let child = Command::new("python3")
            .arg(work.path().join("checkpoint/check-login.py"))
            .env("CHECK_DRY_RUN", "1")
            .env("SCOPEVAULT_SOCKET", &socket)
            .env_remove("SCOPEVAULT_SHOP_BUYER_USERNAME")
            .env_remove("SCOPEVAULT_SHOP_BUYER_PASSWORD")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = output_within(child, 60, what);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let case = format!("{what}: {stdout}{stderr}");
        assert_eq!(out.status.code(), Some(1), "{case}");
        assert!(
            stderr.starts_with("check checkout-flow: scopevault: "),
            "{case}"
        );
        assert!(!stderr.contains("Traceback"), "{case}");
        assert!(!case.contains("Canary-SecretPW"), "{case}");
    }
}

/// client.js judged `path.resolve(socket)`, where `lnk/..` is dropped as text, and connected
/// to the path as given, where the kernel follows `lnk` before taking `..`: with `lnk` → a
/// directory of another uid's, `--socket r/lnk/../sv.sock` passed the check on root's
/// `r/sv.sock` and reached the other uid's socket beside that directory (nineteenth pass,
/// found by attacking this pass's fixes). A `..` in the socket path is now refused, and the
/// client connects to exactly the path it checked.
#[test]
fn the_node_client_refuses_a_dot_dot_that_a_link_before_it_would_turn_elsewhere() {
    if !is_root() {
        return skip::skip("needs root to make a socket owned by another uid");
    }
    if !interpreters().contains(&"node") {
        return;
    }
    let clients = Clients::new();
    let trusted = clients.path("r");
    std::fs::create_dir(&trusted).unwrap();
    std::fs::set_permissions(&trusted, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _root = Fake::at(
        trusted.join("sv.sock"),
        line(b"{\"ok\":true,\"v\":1,\"version\":\"root-daemon\"}\n"),
    );
    // Another uid's directory, holding its socket and the directory the link points to.
    let evil = clients.path("evil");
    std::fs::create_dir_all(evil.join("d")).unwrap();
    for d in [&evil, &evil.join("d")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
    }
    let _evil = Fake::at(
        evil.join("sv.sock"),
        line(b"{\"ok\":true,\"v\":1,\"version\":\"FAKE-other-uid\"}\n"),
    );
    std::os::unix::fs::chown(evil.join("sv.sock"), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::symlink(evil.join("d"), trusted.join("lnk")).unwrap();
    let through = trusted.join("lnk/../sv.sock");
    let out = clients.run(
        "node",
        &["--socket", through.to_str().unwrap(), "health"],
        Some(65533),
    );
    let (stdout, err) = (text(&out.stdout), text(&out.stderr));
    assert!(!stdout.contains("FAKE-other-uid"), "{stdout}");
    assert_eq!(out.status.code(), Some(2), "{stdout} {err}");
    assert!(
        err.contains("refusing to talk") && err.contains("..") && err.contains("nothing was sent"),
        "{err}"
    );
    // Without the `..`, the same socket is reached and trusted as before.
    let out = clients.run(
        "node",
        &[
            "--socket",
            trusted.join("./sv.sock").to_str().unwrap(),
            "health",
        ],
        Some(65533),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("root-daemon"), "{out:?}");
}

/// A fake daemon at `socket` that reads the request, answers `reply` (if any), and writes the
/// file `mark` when the client closes the connection (within 30 s).
fn mark_when_closed(socket: &Path, reply: Option<&'static [u8]>, mark: &Path) -> Fake {
    let mark = mark.to_owned();
    Fake::at(
        socket.to_owned(),
        Arc::new(move |mut s: UnixStream, stop: &AtomicBool| {
            read_request(&mut s);
            if let Some(reply) = reply {
                let _ = s.write_all(reply);
            }
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut buf = [0u8; 4096];
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                match s.read(&mut buf) {
                    Ok(0) => return std::fs::write(&mark, "closed").unwrap(),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        return std::fs::write(&mark, "closed").unwrap()
                    }
                    Err(_) => {}
                }
            }
        }),
    )
}

/// Twenty-seventh pass (found by the twenty-seventh pass's attacker of the client side):
/// client.py used as a module without `with` left the connection open when it raised NoAnswer
/// (and client.js when an answer was not valid), so a daemon that was only slow still took
/// the request, decided it and wrote a hand-out the check had given up on into the socket,
/// though both say they close the connection when they give up. Each module now closes it on
/// any failure but a refusal: the fake daemon sees the end of the connection while the
/// script that gave up is still running.
#[test]
fn the_example_client_modules_close_the_connection_when_they_give_up() {
    let clients = Clients::new();
    // `tasks` checked its answer outside the request, so a `tasks` that is not a list left
    // the connection open (twenty-seventh pass, found by the twenty-seventh pass's
    // re-attacker of its fixes).
    let cases: [(&str, Option<&'static [u8]>, &str, &str); 3] = [
        (
            "no answer",
            None,
            "fetch(\"checkout-flow\")",
            "fetch('checkout-flow')",
        ),
        (
            "not JSON",
            Some(b"{\"ok\":true,\"v\":1 GARBAGE\n"),
            "fetch(\"checkout-flow\")",
            "fetch('checkout-flow')",
        ),
        (
            "`tasks` not a list",
            Some(b"{\"ok\":true,\"v\":1,\"tasks\":{}}\n"),
            "tasks()",
            "tasks()",
        ),
    ];
    for (n, (what, reply, py_call, js_call)) in cases.into_iter().enumerate() {
        let socket = clients.path(&format!("gave-up-{n}.sock"));
        let mark = clients.path(&format!("gave-up-{n}.mark"));
        let _fake = mark_when_closed(&socket, reply, &mark);
        // Each script gives up (1 s), then waits up to 20 s for the fake to see the close,
        // still holding its client object as a check going on with other work would.
        let py = format!(
            r#"
import os, sys, time
sys.path.insert(0, {dir:?})
from client import ScopevaultClient
sv = ScopevaultClient({socket:?}, timeout=1)
try:
    sv.{py_call}
    print("answered")
except Exception as e:
    print("gave up:", type(e).__name__)
until = time.monotonic() + 20
while not os.path.exists({mark:?}) and time.monotonic() < until:
    time.sleep(0.05)
print("closed" if os.path.exists({mark:?}) else "still open")
"#,
            dir = clients.dir.path().to_str().unwrap(),
            socket = socket.to_str().unwrap(),
            mark = mark.to_str().unwrap(),
        );
        let js = format!(
            r#"
const fs = require('fs');
const {{ ScopevaultClient }} = require({client:?});
(async () => {{
  const sv = new ScopevaultClient({socket:?}, {{ timeout: 1 }});
  await sv.connect();
  try {{
    await sv.{js_call};
    console.log('answered');
  }} catch (e) {{
    console.log(`gave up: ${{e.constructor.name}}`);
  }}
  const until = Date.now() + 20000;
  while (!fs.existsSync({mark:?}) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  console.log(fs.existsSync({mark:?}) ? 'closed' : 'still open');
  process.exit(0);
}})();
"#,
            client = clients.path("client.js").to_str().unwrap(),
            socket = socket.to_str().unwrap(),
            mark = mark.to_str().unwrap(),
        );
        for i in interpreters() {
            let _ = std::fs::remove_file(&mark);
            let (flag, script) = if i == "node" {
                ("-e", &js)
            } else {
                ("-c", &py)
            };
            let child = Command::new(i)
                .args([flag, script])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let out = output_within(child, 60, i);
            let said = text(&out.stdout);
            let gave_up = if reply.is_none() {
                "gave up: NoAnswer"
            } else {
                "gave up: InvalidResponse"
            };
            assert_eq!(
                said.lines().collect::<Vec<_>>(),
                [gave_up, "closed"],
                "{what}, {i}: {said}{}",
                text(&out.stderr)
            );
        }
    }
}

/// A copy of examples/checkpoint/check-login.py and the client it imports.
fn check_login_copy() -> tempfile::TempDir {
    let work = crate::common::daemon::tempdir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for (sub, file) in [("checkpoint", "check-login.py"), ("clients", "client.py")] {
        std::fs::create_dir_all(work.path().join(sub)).unwrap();
        std::fs::copy(root.join(sub).join(file), work.path().join(sub).join(file)).unwrap();
    }
    work
}

/// Run the copy of check-login.py in `work` with `env` (and no credentials in its environment
/// unless `env` sets them).
fn run_check(work: &Path, env: &[(&str, &str)], what: &str) -> Output {
    let mut c = Command::new("python3");
    c.arg(work.join("checkpoint/check-login.py"))
        .env_remove("SCOPEVAULT_SHOP_BUYER_USERNAME")
        .env_remove("SCOPEVAULT_SHOP_BUYER_PASSWORD")
        .env_remove("CHECK_DRY_RUN")
        .env_remove("CHECK_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    output_within(c.spawn().unwrap(), 60, what)
}

/// An HTTP server on 127.0.0.1 that records every request it gets and answers 200.
fn http_sink() -> (String, Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/login",
        listener.local_addr().unwrap().port()
    );
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if seen.lock().unwrap().ends_with(b"Canary-SecretPW") {
                    break;
                }
            }
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (url, got)
}

/// Twenty-seventh pass (found by the twenty-seventh pass's attacker of the client side): the
/// example check posted the password to whatever CHECK_URL said, plain http included, and
/// ignored the `origins` of the credential it fetched, though a task origin outside them is
/// what lint's `origin-mismatch` calls sending the credential to a site it was not issued for.
/// It now refuses (exit 1, nothing sent, no traceback) plain http, a URL with a user name
/// before its host, and, when the credential declares origins, a URL at none of them; a URL
/// at one of them, written in another case or with its default port, is still signed in to.
#[test]
fn the_example_check_sends_the_password_only_over_https_to_the_credentials_origins() {
    if Command::new("python3").arg("--version").output().is_err() {
        return skip::skip("python3 is not installed");
    }
    const ANSWER: &[u8] = b"{\"ok\":true,\"v\":1,\"task\":\"checkout-flow\",\"audit_seq\":1,\"credentials\":[{\"name\":\"shop-buyer\",\"kind\":\"login\",\"scopes\":[],\"origins\":[\"https://shop.example.com\"],\"fields\":{\"username\":\"buyer\"},\"secrets\":{\"password\":\"Canary-SecretPW\"},\"warnings\":[]}]}\n";
    const NO_ORIGINS: &[u8] = b"{\"ok\":true,\"v\":1,\"task\":\"checkout-flow\",\"audit_seq\":1,\"credentials\":[{\"name\":\"shop-buyer\",\"kind\":\"login\",\"scopes\":[],\"origins\":[],\"fields\":{\"username\":\"buyer\"},\"secrets\":{\"password\":\"Canary-SecretPW\"},\"warnings\":[]}]}\n";
    let work = check_login_copy();
    let (sink, got) = http_sink();
    let with = work.path().join("origins.sock");
    let without = work.path().join("no-origins.sock");
    let _with = Fake::at(with.clone(), line(ANSWER));
    let _without = Fake::at(without.clone(), line(NO_ORIGINS));
    let (with, without) = (with.to_str().unwrap(), without.to_str().unwrap());
    let exec_env = [
        ("SCOPEVAULT_SHOP_BUYER_USERNAME", "buyer"),
        ("SCOPEVAULT_SHOP_BUYER_PASSWORD", "Canary-SecretPW"),
    ];
    // Refused: (what, socket or exec's environment, CHECK_URL, dry run, the reason given).
    let refused: [(&str, Option<&str>, &str, bool, &str); 6] = [
        ("plain http, no origins", Some(without), &sink, false, "plain http"),
        ("plain http, under exec", None, &sink, false, "plain http"),
        (
            "another site",
            Some(with),
            "https://evil.example/login",
            true,
            "its origin https://evil.example is not among the origins the credential was issued for (https://shop.example.com)",
        ),
        (
            "another port",
            Some(with),
            "https://shop.example.com:8443/login",
            true,
            "is not among the origins",
        ),
        (
            "a user name before the host",
            Some(with),
            "https://shop.example.com@evil.example/login",
            true,
            "a user name or password before its host",
        ),
        (
            "plain http to the origin's host",
            Some(with),
            "http://shop.example.com/login",
            true,
            "plain http",
        ),
    ];
    for (what, socket, url, dry, why) in refused {
        let mut env = vec![("CHECK_URL", url)];
        match socket {
            Some(s) => env.push(("SCOPEVAULT_SOCKET", s)),
            None => env.extend(exec_env),
        }
        if dry {
            env.push(("CHECK_DRY_RUN", "1"));
        }
        let out = run_check(work.path(), &env, what);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let case = format!("{what}: {stdout}{stderr}");
        assert_eq!(out.status.code(), Some(1), "{case}");
        assert!(
            stderr.starts_with(
                "check checkout-flow: refusing to send the password of shop-buyer to CHECK_URL"
            ) && stderr.contains(why)
                && stderr.contains("nothing was sent"),
            "{case}"
        );
        assert!(!stderr.contains("Traceback"), "{case}");
        assert!(!case.contains("Canary-SecretPW"), "{case}");
        assert!(
            got.lock().unwrap().is_empty(),
            "{case}: the sink got {:?}",
            text(&got.lock().unwrap())
        );
    }
    // The credential's origin, as written or normalised, and any https URL when it declares
    // none: signed in to (a dry run: there is no such site here).
    for (what, socket, url) in [
        ("the origin", with, "https://shop.example.com/login"),
        (
            "case and default port",
            with,
            "HTTPS://Shop.Example.COM:443/login",
        ),
        (
            "no origins declared",
            without,
            "https://elsewhere.example/login",
        ),
    ] {
        let out = run_check(
            work.path(),
            &[
                ("CHECK_URL", url),
                ("SCOPEVAULT_SOCKET", socket),
                ("CHECK_DRY_RUN", "1"),
            ],
            what,
        );
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: {stdout}{}",
            text(&out.stderr)
        );
        assert_eq!(
            stdout,
            format!("check checkout-flow: would sign in to {url} as buyer\n"),
            "{what}"
        );
    }
}

/// Twenty-seventh pass (found by the twenty-seventh pass's attacker of the client side): the
/// example clients checked answers more loosely than the binary. 200,000 nested arrays ended
/// client.py and the example check in a RecursionError traceback (exit 1) and client.js in
/// "Maximum call stack size exceeded" (exit 2); a lone surrogate (`\ud800`) was accepted by
/// both, and then ended the check in a UnicodeEncodeError traceback; `1e999` was printed as
/// `Infinity` (no JSON) by client.py and `null` by client.js. Each is now refused as not a
/// valid response (exit 5; the check: exit 1, saying so), as the binary refuses it (its parser
/// takes 127 levels of nesting), while an answer nested within that bound and a surrogate
/// pair (one character) are still taken.
#[test]
fn the_example_clients_refuse_deep_nesting_lone_surrogates_and_numbers_out_of_range() {
    fn deep(depth: usize) -> Vec<u8> {
        let mut b =
            br#"{"ok":true,"v":1,"task":"checkout-flow","audit_seq":1,"credentials":[],"x":"#
                .to_vec();
        b.extend(std::iter::repeat_n(b'[', depth));
        b.extend(std::iter::repeat_n(b']', depth));
        b.extend_from_slice(b"}\n");
        b
    }
    fn hand_out(username: &str, password: &str, audit_seq: &str) -> Vec<u8> {
        format!("{{\"ok\":true,\"v\":1,\"task\":\"checkout-flow\",\"audit_seq\":{audit_seq},\"credentials\":[{{\"name\":\"shop-buyer\",\"kind\":\"login\",\"scopes\":[],\"origins\":[],\"fields\":{{\"username\":\"{username}\"}},\"secrets\":{{\"password\":\"{password}\"}},\"warnings\":[\"w\"]}}]}}\n").into_bytes()
    }
    let leak = |b: Vec<u8>| -> &'static [u8] { Box::leak(b.into_boxed_slice()) };
    let big = format!("1{}", "0".repeat(400));
    let refused: [(&str, &'static [u8], &str); 7] = [
        ("200,000 nested arrays", leak(deep(200_000)), "nested deeper than 127"),
        ("128 levels of nesting", leak(deep(127)), "nested deeper than 127"),
        (
            "a lone surrogate",
            leak(hand_out(r"a\ud800b", r"p\udfffq", "1")),
            "lone surrogate",
        ),
        (
            "a lone surrogate in a key",
            b"{\"ok\":true,\"v\":1,\"task\":\"checkout-flow\",\"audit_seq\":1,\"credentials\":[],\"k\\udc00\":1}\n",
            "lone surrogate",
        ),
        ("1e999", leak(hand_out("u", "Canary-SecretPW", "1e999")), "a number out of range"),
        ("-1e999", leak(hand_out("u", "Canary-SecretPW", "-1e999")), "a number out of range"),
        // Python reads an integer exactly: client.py took 1 and 400 zeros, which the binary
        // and client.js refuse (twenty-seventh pass, found by the twenty-seventh pass's
        // re-attacker of its fixes).
        (
            "a 401-digit integer",
            leak(hand_out("u", "Canary-SecretPW", &big)),
            "a number out of range",
        ),
    ];
    let clients = Clients::new();
    let check = check_login_copy();
    let installed = interpreters();
    for (n, (what, answer, why)) in refused.into_iter().enumerate() {
        let socket = clients.path(&format!("p{n}.sock"));
        let _fake = Fake::at(socket.clone(), line(answer));
        for i in &installed {
            let out = clients.run(
                i,
                &[
                    "--socket",
                    socket.to_str().unwrap(),
                    "fetch",
                    "checkout-flow",
                ],
                None,
            );
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let case = format!("{what}, {i}: {stdout}{}", &stderr[..stderr.len().min(2000)]);
            assert_eq!(out.status.code(), Some(5), "{case}");
            assert!(
                stderr.contains("not a valid response") && stderr.contains(why),
                "{case}"
            );
            assert!(stdout.is_empty() && !stderr.contains("Traceback"), "{case}");
        }
        if installed.contains(&"python3") {
            let s = socket.to_str().unwrap();
            let out = run_check(
                check.path(),
                &[("SCOPEVAULT_SOCKET", s), ("CHECK_DRY_RUN", "1")],
                what,
            );
            let stderr = text(&out.stderr);
            let case = format!(
                "{what}, check-login.py: {}",
                &stderr[..stderr.len().min(2000)]
            );
            assert_eq!(out.status.code(), Some(1), "{case}");
            assert!(
                stderr.starts_with("check checkout-flow: scopevault: ") && stderr.contains(why),
                "{case}"
            );
            assert!(!stderr.contains("Traceback"), "{case}");
        }
    }
    // Within the bound, and a surrogate pair: taken, printed as the same JSON.
    let taken: [(&str, &'static [u8]); 2] = [
        ("127 levels of nesting", leak(deep(126))),
        (
            "a surrogate pair",
            leak(hand_out(r"\ud83d\ude00", "pw", "1")),
        ),
    ];
    for (n, (what, answer)) in taken.into_iter().enumerate() {
        let socket = clients.path(&format!("t{n}.sock"));
        let _fake = Fake::at(socket.clone(), line(answer));
        for i in &installed {
            let out = clients.run(
                i,
                &[
                    "--socket",
                    socket.to_str().unwrap(),
                    "fetch",
                    "checkout-flow",
                ],
                None,
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "{what}, {i}: {}",
                text(&out.stderr)
            );
            let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let sent: serde_json::Value = serde_json::from_slice(answer).unwrap();
            assert_eq!(printed, sent, "{what}, {i}");
        }
    }
}

/// Twenty-seventh pass (found by the twenty-seventh pass's attacker of the client side):
/// `client.js redeem` read all of stdin before it applied its 4096-byte limit to the ticket
/// (300 MB of zeros: 678 MB resident). Both clients now read at most the limit and a few
/// bytes: fed 64 MiB, they refuse the ticket (exit 2, nothing sent) and close their stdin
/// while most of it is still unwritten.
#[test]
fn the_example_clients_stop_reading_stdin_past_the_ticket_limit() {
    const FED: usize = 64 << 20;
    let clients = Clients::new();
    for i in interpreters() {
        let client = if i == "node" {
            "client.js"
        } else {
            "client.py"
        };
        let mut child = Command::new(i)
            .arg(clients.path(client))
            .args(["--socket", "/nonexistent.sock", "redeem"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0;
        // Until the client closes its stdin (EPIPE), or all of it is written.
        while written < FED && stdin.write_all(&chunk).is_ok() {
            written += chunk.len();
        }
        drop(stdin);
        let out = output_within(child, 60, i);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{i}: {err}");
        assert!(
            err.contains("the ticket on stdin is longer than 4096 bytes; nothing was sent"),
            "{i}: {err}"
        );
        assert!(
            written < 8 << 20,
            "{i} read {written} bytes of stdin before refusing a ticket over 4096 bytes"
        );
    }
}

/// Twenty-seventh pass (found by the twenty-seventh pass's attacker of the client side): the
/// example clients and the example check did not check that an answer belongs to the request:
/// asked for `checkout-flow`, they printed (the check: used) a hand-out of task
/// `payments-health` with its `payments-token`. A `fetch` answer for another task, or holding
/// another credential than the one asked for, is now refused as not a valid response (exit
/// 5; the check: exit 1, saying so), and nothing of it is printed.
#[test]
fn the_example_clients_refuse_an_answer_for_another_task_or_credential() {
    const OTHER: &[u8] = b"{\"ok\":true,\"v\":1,\"task\":\"payments-health\",\"audit_seq\":7,\"credentials\":[{\"name\":\"payments-token\",\"kind\":\"login\",\"scopes\":[],\"origins\":[],\"fields\":{\"username\":\"u\"},\"secrets\":{\"password\":\"Canary-SecretPW\"},\"warnings\":[]}]}\n";
    let clients = Clients::new();
    let socket = clients.path("other.sock");
    let _fake = Fake::at(socket.clone(), line(OTHER));
    let s = socket.to_str().unwrap();
    for i in interpreters() {
        for (args, why) in [
            (
                vec!["--socket", s, "fetch", "checkout-flow"],
                "an answer for another task than checkout-flow, the one asked for",
            ),
            (
                vec!["--socket", s, "fetch", "payments-health", "payments-admin"],
                "an answer holding another credential than payments-admin, the one asked for",
            ),
        ] {
            let out = clients.run(i, &args, None);
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let case = format!("{i} {args:?}: {stdout}{stderr}");
            assert_eq!(out.status.code(), Some(5), "{case}");
            assert!(
                stderr.contains("not a valid response") && stderr.contains(why),
                "{case}"
            );
            assert!(
                stdout.is_empty() && !case.contains("Canary-SecretPW"),
                "{case}"
            );
        }
    }
    if Command::new("python3").arg("--version").output().is_ok() {
        let check = check_login_copy();
        let out = run_check(
            check.path(),
            &[("SCOPEVAULT_SOCKET", s), ("CHECK_DRY_RUN", "1")],
            "check-login.py",
        );
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stderr.starts_with("check checkout-flow: scopevault: ")
                && stderr.contains("an answer for another task than checkout-flow"),
            "{stdout}{stderr}"
        );
        assert!(!stdout.contains("would sign in"), "{stdout}");
    }
}
