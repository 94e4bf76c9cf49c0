//! The binary's client (`get`, `totp`, `exec`) against a daemon whose answers docs/protocol.md
//! says a client refuses, or shows only escaped (twenty-first pass, found by attacking from
//! the documents; the example clients already refused them: example_clients.rs). The daemon
//! is a stand-in in this process: it answers `tasks` as a real one would, and every other
//! request with the answer under test.

use crate::common::daemon;
use crate::common::output_within;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// The secret the stand-in hands out: never printed from an answer that is refused.
const SECRET: &str = "Canary-FakeSecret-9999";

/// A stand-in daemon on `socket` that answers `tasks` with `tasks` and every other request
/// line with `answer` (written as it is, in one write), until the test ends.
fn stand_in(socket: &Path, tasks: String, answer: Vec<u8>) {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (tasks, answer) = (tasks.clone(), answer.clone());
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    let written = if line.contains(r#""op":"tasks""#) {
                        writeln!(w, "{tasks}")
                    } else {
                        w.write_all(&answer)
                    };
                    if written.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// `tasks` of a daemon whose task `t1` lists one credential, `c1`, of `kind`, with `fields`.
fn tasks(kind: &str, fields: &[&str]) -> String {
    serde_json::json!({"ok": true, "v": 1, "tasks": [{
        "name": "t1", "needs": [], "credentials": ["c1"], "kinds": {"c1": kind},
        "fields": {"c1": fields}, "origin": null
    }]})
    .to_string()
}

/// A `fetch` answer handing out `c1` as `credential` (its members but the name), as one line,
/// with `envelope`'s members (`ok`, `v`…) around it.
fn hand_out(envelope: serde_json::Value, credential: serde_json::Value) -> Vec<u8> {
    let mut c = serde_json::json!({
        "name": "c1", "kind": "login", "scopes": [], "origins": [],
        "fields": {"username": "u1"}, "secrets": {}, "warnings": []
    });
    for (k, v) in credential.as_object().unwrap() {
        c[k] = v.clone();
    }
    let mut r = serde_json::json!({"task": "t1", "audit_seq": 41, "credentials": [c]});
    for (k, v) in envelope.as_object().unwrap() {
        r[k] = v.clone();
    }
    format!("{r}\n").into_bytes()
}

/// A login's hand-out of [`SECRET`] in `envelope`.
fn login(envelope: serde_json::Value) -> Vec<u8> {
    hand_out(
        envelope,
        serde_json::json!({"secrets": {"password": SECRET}}),
    )
}

/// A place for the stand-in's sockets.
struct Place {
    dir: tempfile::TempDir,
    n: std::cell::Cell<u32>,
}

impl Place {
    fn new() -> Place {
        Place {
            dir: daemon::tempdir(),
            n: std::cell::Cell::new(0),
        }
    }

    /// A stand-in on a socket of its own, answering as [`stand_in`] does.
    fn stand_in(&self, tasks: String, answer: Vec<u8>) -> PathBuf {
        self.n.set(self.n.get() + 1);
        let socket = self.dir.path().join(format!("s{}.sock", self.n.get()));
        stand_in(&socket, tasks, answer);
        socket
    }

    /// `scopevault --socket SOCKET args…`; fails the test if it runs 60 s.
    fn run(&self, socket: &Path, args: &[&str]) -> Output {
        let child = daemon::cmd(self.dir.path())
            .arg("--socket")
            .arg(socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        output_within(child, 60, &format!("scopevault {args:?}"))
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const GET: &[&str] = &[
    "get",
    "--task",
    "t1",
    "--field",
    "password",
    "--timeout",
    "10",
];
const EXEC: &[&str] = &[
    "exec",
    "--task",
    "t1",
    "--timeout",
    "10",
    "--",
    "sh",
    "-c",
    "echo COMMAND RAN",
];

/// `get` printed the secret (exit 0) and `exec` ran its command from an answer whose `v` was
/// missing, `"1"`, `null` or `2`, and from two answer lines to one request, though
/// docs/protocol.md says a client uses nothing of such an answer. Each is now refused as not a
/// valid response, exit 5, before anything of it is printed or run; the same answer with
/// `"v": 1` on one line is taken (the control).
#[test]
fn the_client_refuses_an_answer_without_v_1_or_with_a_second_line() {
    let place = Place::new();
    let tasks = tasks("login", &["username", "password"]);
    let ok = serde_json::json!({"ok": true, "v": 1});
    let control = place.stand_in(tasks.clone(), login(ok.clone()));
    let out = place.run(&control, GET);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), SECRET);
    let out = place.run(&control, EXEC);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "COMMAND RAN\n");

    let mut no_v = serde_json::from_slice::<serde_json::Value>(&login(ok.clone())).unwrap();
    no_v.as_object_mut().unwrap().remove("v");
    let two_lines = [login(ok.clone()), login(ok)].concat();
    let cases = [
        ("no v", format!("{no_v}\n").into_bytes()),
        ("v \"1\"", login(serde_json::json!({"ok": true, "v": "1"}))),
        ("v null", login(serde_json::json!({"ok": true, "v": null}))),
        ("v 2", login(serde_json::json!({"ok": true, "v": 2}))),
        ("two lines", two_lines),
    ];
    for (what, answer) in cases {
        let socket = place.stand_in(tasks.clone(), answer);
        for args in [GET, EXEC] {
            let out = place.run(&socket, args);
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let case = format!("{what}, {}: {stdout}{stderr}", args[0]);
            assert_eq!(out.status.code(), Some(5), "{case}");
            assert!(
                stderr.contains("the daemon's answer is not a valid response"),
                "{case}"
            );
            assert!(!stdout.contains(SECRET), "{case}");
            assert!(!stdout.contains("COMMAND RAN"), "{case}");
        }
    }
}

/// The binary escaped `\r` and ESC in the daemon's error message but wrote a line break in
/// it raw: `"real\nscopevault: forged ok line"` made a second stderr line, though the README
/// says a line break in a value from another program is escaped, in an error as elsewhere.
/// The message is one line now, its line break written `\n`.
#[test]
fn the_client_escapes_a_line_break_in_the_daemons_error_message() {
    let place = Place::new();
    let socket = place.stand_in(
        tasks("login", &["username", "password"]),
        br#"{"ok":false,"v":1,"error":{"code":"denied","message":"real\nscopevault: forged ok line\r\u001b[2J"}}
"#
        .to_vec(),
    );
    for args in [GET, EXEC] {
        let out = place.run(&socket, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{}: {stderr}", args[0]);
        assert_eq!(stderr.lines().count(), 1, "{}: {stderr:?}", args[0]);
        assert!(
            stderr.contains(r"denied: real\nscopevault: forged ok line\r\u{1b}[2J"),
            "{}: {stderr:?}",
            args[0]
        );
    }
}

/// `scopevault totp` printed the code as the daemon sent it: ESC sequences (a window title, a
/// cleared screen) and a line break reached the terminal. A TOTP code is 6 to 10 ASCII
/// digits; an answer with anything else there is not a valid response (exit 5, nothing
/// printed), for `totp`, `get --field totp` and `exec` alike. Codes of 6 and 10 digits are
/// taken (the controls).
#[test]
fn the_client_refuses_a_totp_code_that_is_not_6_to_10_digits() {
    let place = Place::new();
    let totp = |code: &str| {
        hand_out(
            serde_json::json!({"ok": true, "v": 1}),
            serde_json::json!({"kind": "totp", "fields": {},
                "totp": {"code": code, "seconds_left": 5}}),
        )
    };
    let totp_args: &[&[&str]] = &[
        &["totp", "--task", "t1", "--timeout", "10"],
        &["get", "--task", "t1", "--field", "totp", "--timeout", "10"],
    ];
    for good in ["123456", "1234567890"] {
        let socket = place.stand_in(tasks("totp", &[]), totp(good));
        for args in totp_args {
            let out = place.run(&socket, args);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            // `totp` prints a line; `get --field` the value alone (to a pipe).
            let line = if args[0] == "get" { "" } else { "\n" };
            assert_eq!(text(&out.stdout), format!("{good}{line}"), "{args:?}");
        }
    }
    for bad in [
        "\u{1b}]0;PWN\u{7}\u{1b}[2J12\n34",
        "12345",
        "12345678901",
        "123 456",
        "12345\u{1b}",
        "\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}",
        "",
    ] {
        let socket = place.stand_in(tasks("totp", &[]), totp(bad));
        for args in totp_args.iter().copied().chain([EXEC]) {
            let out = place.run(&socket, args);
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let case = format!("{bad:?}, {}: {stdout:?} {stderr:?}", args[0]);
            assert_eq!(out.status.code(), Some(5), "{case}");
            assert!(
                stderr.contains("the daemon's answer is not a valid response"),
                "{case}"
            );
            assert!(stdout.is_empty(), "{case}");
            assert!(!stderr.contains('\u{1b}'), "{case}");
        }
    }
}

/// Twenty-second pass (found by an attacker forging signed bundles): a daemon serving a 17 MB
/// credential sent an answer over the 16 MiB a client reads, and `get` said "the daemon's
/// answer is not a valid response (is it the same scopevault version?)", sending the admin
/// after a version mismatch. `get`, `totp` and `exec` now say the answer is over their size
/// limit, naming it and what to do, exit 5, nothing printed or run.
#[test]
fn the_client_says_an_answer_over_its_size_limit_is_too_long() {
    let place = Place::new();
    // One line of 17 MiB, ended: a hand-out whose password fills it.
    let mut answer = hand_out(
        serde_json::json!({"ok": true, "v": 1}),
        serde_json::json!({"secrets": {"password": "p".repeat(17 << 20)}}),
    );
    assert!(answer.len() > 17 << 20 && answer.ends_with(b"\n"));
    answer.shrink_to_fit();
    let login = place.stand_in(tasks("login", &["username", "password"]), answer.clone());
    // `totp` asks for a task with a totp credential first; the answer is never parsed.
    let totp = place.stand_in(tasks("totp", &[]), answer);
    let totp_args: &[&str] = &["totp", "--task", "t1", "--timeout", "10"];
    for (socket, args) in [(&login, GET), (&login, EXEC), (&totp, totp_args)] {
        let out = place.run(socket, args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let case = format!("{}: {stdout:?} {stderr:?}", args[0]);
        assert_eq!(out.status.code(), Some(5), "{case}");
        assert!(
            stderr.contains("longer than 16 MiB (16777216 bytes), the most a client reads")
                && stderr.contains("--credential"),
            "{case}"
        );
        assert!(!stderr.contains("same scopevault version"), "{case}");
        assert!(stdout.is_empty(), "{case}");
    }
}

/// A stand-in for a daemon from before the twenty-second pass (docs/protocol.md, `tasks`): it
/// refuses `tasks` with a `task` member with `refusal` (such a daemon's words: the member is
/// not allowed in op `tasks`, `bad_request`), lists `tasks` for `tasks` without it, and
/// answers every `fetch` with `fetched`. Every request line it is sent is kept, in order.
fn old_stand_in(
    socket: &Path,
    refusal: String,
    tasks: String,
    fetched: Vec<u8>,
) -> std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = UnixListener::bind(socket).unwrap();
    let kept = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (refusal, tasks, fetched, kept) = (
                refusal.clone(),
                tasks.clone(),
                fetched.clone(),
                kept.clone(),
            );
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    let req: serde_json::Value = serde_json::from_str(&line).unwrap();
                    kept.lock().unwrap().push(req.clone());
                    let written = match req["op"].as_str() {
                        Some("tasks") if req.get("task").is_some() => writeln!(w, "{refusal}"),
                        Some("tasks") => writeln!(w, "{tasks}"),
                        _ => w.write_all(&fetched),
                    };
                    if written.is_err() {
                        return;
                    }
                }
            });
        }
    });
    seen
}

/// A `bad_request` answer with `message`.
fn bad_request(message: &str) -> String {
    serde_json::json!({"ok": false, "v": 1, "error": {"code": "bad_request", "message": message}})
        .to_string()
}

/// What an older daemon answers `tasks` with a `task` member (its parser's words).
const OLD_REFUSAL: &str = "field `task` is not allowed in op `tasks`";

/// The ops and `task`/`credential` members of the requests a stand-in was sent.
fn requests(seen: &std::sync::Mutex<Vec<serde_json::Value>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|r| {
            let mut s = r["op"].as_str().unwrap_or("?").to_owned();
            for key in ["task", "credential"] {
                if let Some(v) = r.get(key).and_then(|v| v.as_str()) {
                    s.push_str(&format!(" {key}={v}"));
                }
            }
            s
        })
        .collect()
}

/// Twenty-third pass (found by the twenty-second pass's review): `get` and `totp` ask `tasks`
/// for their one task, and fall back to the whole list when a daemon from before refuses the
/// `task` member (`bad_request`); the fallback had no test. Against a stand-in answering as
/// such a daemon does, `get --field` and `totp` still print what they fetch, having asked the
/// whole list and then fetched only the one credential.
#[test]
fn get_and_totp_fall_back_to_the_whole_list_of_tasks_from_a_daemon_from_before() {
    let place = Place::new();
    let socket = place.dir.path().join("old-login.sock");
    let seen = old_stand_in(
        &socket,
        bad_request(OLD_REFUSAL),
        tasks("login", &["username", "password"]),
        login(serde_json::json!({"ok": true, "v": 1})),
    );
    let out = place.run(&socket, GET);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), SECRET);
    assert_eq!(
        requests(&seen),
        ["tasks task=t1", "tasks", "fetch task=t1 credential=c1"]
    );

    let socket = place.dir.path().join("old-totp.sock");
    let seen = old_stand_in(
        &socket,
        bad_request(OLD_REFUSAL),
        tasks("totp", &[]),
        hand_out(
            serde_json::json!({"ok": true, "v": 1}),
            serde_json::json!({"kind": "totp", "fields": {},
                "totp": {"code": "123456", "seconds_left": 5}}),
        ),
    );
    let out = place.run(&socket, &["totp", "--task", "t1", "--timeout", "10"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "123456\n");
    assert_eq!(
        requests(&seen),
        ["tasks task=t1", "tasks", "fetch task=t1 credential=c1"]
    );
}

/// The other half of the fallback above: a `bad_request` to `tasks` with a `task` member for
/// another reason than the member itself is the daemon's answer, reported as such; it is not
/// turned into a request for the whole list, nor into a fetch decided on that list.
#[test]
fn a_bad_request_to_tasks_for_another_reason_is_reported_not_turned_into_a_fetch() {
    let place = Place::new();
    let message = "field `task` must name a task of the policy in at most 128 bytes";
    for (i, args) in [GET, &["totp", "--task", "t1", "--timeout", "10"][..]]
        .into_iter()
        .enumerate()
    {
        let socket = place.dir.path().join(format!("other-{i}.sock"));
        let seen = old_stand_in(
            &socket,
            bad_request(message),
            tasks("totp", &[]),
            login(serde_json::json!({"ok": true, "v": 1})),
        );
        let out = place.run(&socket, args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_ne!(out.status.code(), Some(0), "{args:?}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(
            stderr.contains("bad_request") && stderr.contains(message),
            "{args:?}: {stderr}"
        );
        assert_eq!(requests(&seen), ["tasks task=t1"], "{args:?}: {stderr}");
    }
}

/// Found by the attacker of memory and versions (twenty-fifth pass): a refusal with a code
/// this client does not know (a newer daemon's `quota_exceeded`, `maintenance`) was "the
/// daemon's answer is not a valid response", its message dropped, though docs/protocol.md
/// says a refusal is any string `code` with a string `message` and clients branch on the
/// code. It is now shown as a known code is (`code: message`, both escaped), exit 5 (the
/// daemon refused), from `get`, `exec`, `lock` and `status --json`, whose `error.code` keeps
/// the string. A `code` that is not a string is still not a valid response (the control).
#[test]
fn a_refusal_with_an_unknown_error_code_shows_the_daemons_message_and_exits_5() {
    let place = Place::new();
    let tasks = tasks("login", &["username", "password"]);
    let socket = place.stand_in(
        tasks.clone(),
        br#"{"ok":false,"v":1,"error":{"code":"quota_exceeded","message":"uid 1001 used its fetch quota; retry at 18:00\n\u001b[2J"}}
"#
        .to_vec(),
    );
    for args in [GET, EXEC, &["lock"][..]] {
        let out = place.run(&socket, args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(5), "{}: {stderr}", args[0]);
        assert!(
            stderr.contains(
                r"quota_exceeded: uid 1001 used its fetch quota; retry at 18:00\n\u{1b}[2J"
            ),
            "{}: {stderr:?}",
            args[0]
        );
        assert!(!stderr.contains("not a valid response"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{}: {stderr:?}", args[0]);
        assert!(!stdout.contains("COMMAND RAN"), "{stdout}");
    }
    let out = place.run(&socket, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "quota_exceeded", "{v}");
    assert_eq!(v["error"]["exit_code"], 5, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry at 18:00"),
        "{v}"
    );
    let control = place.stand_in(
        tasks,
        br#"{"ok":false,"v":1,"error":{"code":7,"message":"m"}}
"#
        .to_vec(),
    );
    let out = place.run(&control, GET);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        text(&out.stderr).contains("not a valid response"),
        "{}",
        text(&out.stderr)
    );
}

/// Twenty-seventh pass (found by the twenty-seventh pass's attacker of the client side): a
/// daemon started with a benchmark build's `--no-audit-sync` said so nowhere. `status` of a
/// daemon whose `health` says `audit_sync: false` prints "audit sync: OFF"; of one that does
/// not say (every release build), nothing about it.
#[test]
fn status_says_audit_sync_is_off_when_health_says_so() {
    let place = Place::new();
    let health = |off: bool| {
        let mut h = serde_json::json!({"ok": true, "v": 1, "version": "0.1.0", "locked": true,
            "vault_id": null, "generation": null, "credentials": 0, "tasks": 0, "enforce": null,
            "policy_digest": null, "audit_ok": true, "audit_anchor_ok": true, "loading": false,
            "log_lines_lost": 0, "connections": 1,
            "peer": {"uid": 0, "gid": 0, "pid": 1, "admin": true}});
        if off {
            h["audit_sync"] = false.into();
        }
        format!("{h}\n").into_bytes()
    };
    for off in [true, false] {
        let socket = place.stand_in(tasks("login", &[]), health(off));
        let out = place.run(&socket, &["status"]);
        let stdout = text(&out.stdout);
        assert_eq!(
            stdout.contains("audit sync:  OFF"),
            off,
            "{stdout}{}",
            text(&out.stderr)
        );
    }
}

/// Twenty-seventh pass (found by the twenty-seventh pass's attacker of the client side): `get
/// --field F` wrote the value and a newline, though docs/operations.md calls it the value
/// channel, the value's bytes as they are: `get --field tok > file` then `curl --data-binary
/// @file` sent one byte more. To a pipe it now writes the value's bytes and nothing else, a
/// value that ends in a newline included (only a terminal gets a newline after the value).
#[test]
fn get_field_to_a_pipe_writes_the_value_s_bytes_exactly() {
    let place = Place::new();
    let tasks = tasks("login", &["username", "password"]);
    let ok = serde_json::json!({"ok": true, "v": 1});
    for value in [
        SECRET,
        "Canary-ends-in-a-newline\n",
        "Canary-two\nlines\n\n",
    ] {
        let answer = hand_out(
            ok.clone(),
            serde_json::json!({"secrets": {"password": value}}),
        );
        let socket = place.stand_in(tasks.clone(), answer);
        let out = place.run(&socket, GET);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(out.stdout, value.as_bytes(), "{value:?}");
    }
}

/// Twenty-seventh pass (found by the twenty-seventh pass's attacker of the client side): `get`
/// and `exec` did not check that an answer belonged to their request: a (trusted) daemon
/// answering `--task t1` with another task's credentials had them printed or put in the
/// command's environment, and after `tasks` listed `c1` for `t1`, an answer holding other
/// credentials (`identity`, whose variable is one scopevault reads) was used. The library
/// client now checks the answer's task, the credential named in the request, and the
/// credentials `tasks` listed: a mismatch is not a valid response, exit 5, nothing of it used.
#[test]
fn the_client_refuses_an_answer_for_another_task_or_credential() {
    let place = Place::new();
    let tasks = tasks("login", &["username", "password"]);
    let ok = serde_json::json!({"ok": true, "v": 1});
    let mut other_task: serde_json::Value = serde_json::from_slice(&login(ok.clone())).unwrap();
    other_task["task"] = "payments-health".into();
    let other_credential = hand_out(
        ok.clone(),
        serde_json::json!({"name": "identity", "fields": {"file": "/tmp/planted"},
            "secrets": {"password": SECRET}}),
    );
    let mut one_more: serde_json::Value = serde_json::from_slice(&login(ok.clone())).unwrap();
    let extra = serde_json::json!({"name": "state", "kind": "login", "scopes": [],
        "origins": [], "fields": {"dir": "/tmp/planted"}, "secrets": {}, "warnings": []});
    one_more["credentials"].as_array_mut().unwrap().push(extra);
    let cases = [
        (
            "another task",
            format!("{other_task}\n").into_bytes(),
            "payments-health",
        ),
        ("another credential", other_credential, "identity"),
        (
            "one credential more",
            format!("{one_more}\n").into_bytes(),
            "state",
        ),
    ];
    for (what, answer, named) in cases {
        let socket = place.stand_in(tasks.clone(), answer);
        for args in [GET, EXEC] {
            let out = place.run(&socket, args);
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let case = format!("{what}, {}: {stdout}{stderr}", args[0]);
            assert_eq!(out.status.code(), Some(5), "{case}");
            assert!(
                stderr.contains("the daemon's answer is not a valid response")
                    && stderr.contains("nothing of it was used")
                    && stderr.contains(named),
                "{case}"
            );
            assert!(!stdout.contains(SECRET), "{case}");
            assert!(!stdout.contains("COMMAND RAN"), "{case}");
        }
    }
}

/// A stand-in on `socket` whose `n`th `tasks` answer on a connection is `answers[n]` (the
/// last one from then on), and which answers every other request with `fetched`. Every
/// request line it is sent is kept, in order.
fn reloading_stand_in(
    socket: &Path,
    answers: Vec<String>,
    fetched: Vec<u8>,
) -> std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = UnixListener::bind(socket).unwrap();
    let kept = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (answers, fetched, kept) = (answers.clone(), fetched.clone(), kept.clone());
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut n = 0;
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    let req: serde_json::Value = serde_json::from_str(&line).unwrap();
                    kept.lock().unwrap().push(req.clone());
                    let written = if req["op"] == "tasks" {
                        n += 1;
                        writeln!(w, "{}", answers[(n - 1).min(answers.len() - 1)])
                    } else {
                        w.write_all(&fetched)
                    };
                    if written.is_err() {
                        return;
                    }
                }
            });
        }
    });
    seen
}

/// Twenty-eighth pass (found by the twenty-seventh pass's review): a policy reload that adds
/// a credential to a task between `exec`'s `tasks` and its `fetch` made that `exec` fail,
/// exit 5 (a retry worked): the hand-out held a credential the `tasks` answer had not
/// listed. On exactly that refusal the client now asks `tasks` once more on the connection
/// and takes the answer when the fresh list names every credential handed out for the task.
/// A fresh list that still does not name it, or no longer lists the task, is refused as
/// before (exit 5, the command not run), and `tasks` is asked once, not again and again.
#[test]
fn a_credential_added_by_a_reload_between_tasks_and_fetch_is_taken_once_tasks_lists_it() {
    let place = Place::new();
    let listing = |creds: &[&str]| {
        let mut t: serde_json::Value =
            serde_json::from_str(&tasks("login", &["username"])).unwrap();
        t["tasks"][0]["credentials"] = serde_json::json!(creds);
        t.to_string()
    };
    let no_task = serde_json::json!({"ok": true, "v": 1, "tasks": []}).to_string();
    let mut both: serde_json::Value =
        serde_json::from_slice(&login(serde_json::json!({"ok": true, "v": 1}))).unwrap();
    let added = serde_json::json!({"name": "c2", "kind": "token", "scopes": [], "origins": [],
        "fields": {}, "secrets": {"token": "Added-By-Reload-1234"}, "warnings": []});
    both["credentials"].as_array_mut().unwrap().push(added);
    let both = format!("{both}\n").into_bytes();
    let cases = [
        ("listed after the reload", listing(&["c1", "c2"]), Some(0)),
        ("still not listed", listing(&["c1"]), Some(5)),
        ("the task no longer listed", no_task, Some(5)),
    ];
    for (i, (what, second, code)) in cases.into_iter().enumerate() {
        let socket = place.dir.path().join(format!("reload-{i}.sock"));
        let seen = reloading_stand_in(&socket, vec![listing(&["c1"]), second], both.clone());
        let out = place.run(&socket, EXEC);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        let case = format!("{what}: {stdout}{stderr}");
        assert_eq!(out.status.code(), code, "{case}");
        assert_eq!(
            requests(&seen),
            ["tasks task=t1", "fetch task=t1", "tasks task=t1"],
            "{case}"
        );
        if code == Some(0) {
            assert!(stdout.contains("COMMAND RAN"), "{case}");
        } else {
            assert!(!stdout.contains("COMMAND RAN"), "{case}");
            assert!(
                stderr.contains("not a valid response")
                    && stderr.contains("nothing of it was used")
                    && stderr.contains("`c2`"),
                "{case}"
            );
        }
    }
}

/// Two values of one credential that would be the same `--files` entry (a TOTP credential
/// holding a secret named `totp_code` as well as its current code): `exec --files` refuses,
/// naming both, as env mode does for two fields sharing a variable (found by attacking
/// `exec` as a check author, sixteenth pass: a bare "File exists (os error 17)"). A daemon
/// of this version hands out no secret of a `totp` credential (twenty-eighth pass), so the
/// answer is an older daemon's, from the stand-in.
#[test]
fn exec_files_refuses_two_values_that_would_share_one_entry_naming_both() {
    let place = Place::new();
    let answer = hand_out(
        serde_json::json!({"ok": true, "v": 1}),
        serde_json::json!({"kind": "totp", "fields": {},
            "secrets": {"totp_code": "a-stored-totp-code-value"},
            "totp": {"code": "123456", "seconds_left": 5}}),
    );
    let socket = place.stand_in(tasks("totp", &["totp_code"]), answer);
    let out = place.run(
        &socket,
        &[
            "exec",
            "--files",
            "--task",
            "t1",
            "--timeout",
            "10",
            "--",
            "true",
        ],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("c1.totp_code")
            && err.contains("current TOTP code")
            && !err.contains("os error"),
        "{err}"
    );
    assert!(!err.contains("a-stored-totp-code-value"), "{err}");
}
