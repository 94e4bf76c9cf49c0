//! Durability order, seen in the syscalls (issue 16, item 6). A SIGKILL leaves the page cache
//! intact, so the crash loops cannot notice a missing sync; these tests watch the real
//! binaries under `strace -f` instead:
//!
//! - the daemon makes the audit record of a hand-out durable — a synchronous write of it to
//!   the log's journal (opened `O_DSYNC`), or an `fdatasync` of the log — **before** the
//!   answer carrying the secret is written to the client's socket (and the same trace with
//!   the syncs taken out fails the same check: the positive control; in a benchmark build,
//!   cargo feature `bench-no-audit-sync`, a daemon started `--no-audit-sync` fails it too);
//! - a vault save writes and `fsync`s the temp file, then renames it over the vault, then
//!   `fsync`s the directory.
//!
//! strace comes from Debian's package (`scripts/setup/strace`); without it the tests report a
//! skip (a failure under `CI=true`).

use crate::common::daemon;
use crate::common::skip;
use crate::common::vault as common_vault;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TRACED: &str =
    "trace=openat,write,writev,pwrite64,sendto,sendmsg,recvfrom,fsync,fdatasync,rename,renameat,renameat2";

fn have_strace() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `strace -f -yy` (fds annotated with their paths) writing to `log`, with the syscalls of
/// [`TRACED`] and strings long enough to hold a whole answer.
fn strace(log: &Path) -> Command {
    let mut c = Command::new("strace");
    c.args(["-f", "-yy", "-qq", "-s", "65536", "-e", TRACED, "-o"])
        .arg(log);
    c
}

/// One traced syscall: where (line index in the log) it started and ended, its name, the path
/// strace gave its first (fd) argument, and the text of its arguments.
#[derive(Debug, Clone)]
struct Call {
    start: usize,
    end: usize,
    name: String,
    /// The first argument when it is a file descriptor (the digits before `<`, or the whole
    /// argument when strace could not name the file).
    fd: String,
    fd_path: String,
    args: String,
}

/// Parse `strace -f -yy -o` output: `PID name(args) = ret`, or a call split by another
/// thread's into `PID name(args <unfinished ...>` and `PID <... name resumed>) = ret`.
fn parse(log: &str) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    let mut pending: std::collections::HashMap<String, usize> = Default::default();
    for (i, line) in log.lines().enumerate() {
        let (pid, rest) = match line.split_once(' ') {
            Some((p, r)) if p.chars().all(|c| c.is_ascii_digit()) => (p.to_owned(), r.trim_start()),
            _ => (String::new(), line),
        };
        if let Some(r) = rest.strip_prefix("<... ") {
            if let Some((_, tail)) = r.split_once(" resumed>") {
                if let Some(k) = pending.remove(&pid) {
                    calls[k].end = i;
                    // What a call returns into its buffers (a `recvfrom`'s data) is printed
                    // when it resumes.
                    calls[k].args.push_str(tail);
                }
            }
            continue;
        }
        let Some(open) = rest.find('(') else { continue };
        let name = rest[..open].to_owned();
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // signals, exits
        }
        let args = rest[open + 1..].to_owned();
        let fd_path = args
            .find('<')
            .filter(|&lt| args[..lt].chars().all(|c| c.is_ascii_digit()))
            .and_then(|lt| {
                let tail = &args[lt + 1..];
                let gt = [">,", ">)"].iter().filter_map(|m| tail.find(m)).min()?;
                Some(tail[..gt].to_owned())
            })
            .unwrap_or_default();
        let unfinished = rest.ends_with("<unfinished ...>");
        let fd: String = args.chars().take_while(char::is_ascii_digit).collect();
        calls.push(Call {
            start: i,
            end: i,
            name,
            fd,
            fd_path,
            args,
        });
        if unfinished {
            pending.insert(pid, calls.len() - 1);
        }
    }
    calls
}

/// The daemon under strace, with the test vault.
struct Traced {
    strace: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Traced {
    fn start(dir: &Path, extra: &[&str]) -> Traced {
        let id = daemon::setup_vault(dir);
        let socket = dir.join("run/scopevault.sock");
        let log = dir.join(format!("strace{}.log", extra.len()));
        let base = daemon::cmd(dir);
        let mut c = strace(&log);
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.arg(daemon::bin())
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--identity-file")
            .arg(&id)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.stderr")).unwrap());
        let mut t = Traced {
            strace: c.spawn().expect("spawn strace"),
            socket,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = t.strace.try_wait().unwrap() {
                panic!(
                    "the traced daemon exited ({st}): {}",
                    std::fs::read_to_string(dir.join("daemon.stderr")).unwrap_or_default()
                );
            }
            if let Ok(mut s) = UnixStream::connect(&t.socket) {
                if daemon::roundtrip(&mut s, r#"{"v":1,"op":"health"}"#)
                    .is_ok_and(|v| v["ok"] == true)
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the traced daemon never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    /// SIGTERM to the daemon (strace's child), wait for strace to finish its log.
    fn stop(mut self) -> String {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.strace.id()))
                .unwrap();
        let pid = children
            .split_whitespace()
            .next()
            .expect("the daemon under strace");
        assert!(Command::new("kill")
            .args(["-TERM", pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.strace.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the traced daemon did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}

/// In a trace of the daemon: the audit record with sequence number `seq` is written to
/// `audit`, then made durable (the sync returns): an `fdatasync` of that fd, or a `pwrite64`
/// of the same record to `<audit>.journal` through an fd opened with `O_DSYNC` (or `O_SYNC`);
/// and only then does the write of the answer carrying `audit_seq` `seq` to a Unix socket
/// begin. `Err` says which step is missing or out of order.
///
/// Where strace names the files (`-yy`) the record must go to `audit` and the answer to a
/// Unix socket; where it gives only fd numbers, the record is the write of a chained line
/// (`"seq":N,` and `"prev"`) and the sync must be on that same fd.
fn audit_synced_before_answer(calls: &[Call], audit: &str, seq: u64) -> Result<String, String> {
    let is_write = |c: &Call| {
        matches!(
            c.name.as_str(),
            "write" | "writev" | "pwrite64" | "sendto" | "sendmsg"
        )
    };
    let has_record = |c: &Call| {
        c.args.contains(&format!("\\\"seq\\\":{seq},")) && c.args.contains("\\\"prev\\\"")
    };
    let record = calls
        .iter()
        .find(|c| is_write(c) && (c.fd_path == audit || c.fd_path.is_empty()) && has_record(c))
        .ok_or(format!("no write of audit record {seq} to {audit}"))?;
    let answer = calls
        .iter()
        .find(|c| {
            is_write(c)
                && (c.fd_path.starts_with("UNIX") || c.fd_path.is_empty())
                && c.fd != record.fd
                && c.args.contains(&format!("\\\"audit_seq\\\":{seq}"))
        })
        .ok_or(format!(
            "no answer with audit_seq {seq} written to a socket"
        ))?;
    if record.end >= answer.start {
        return Err(format!(
            "the answer (line {}) was written before audit record {seq} (line {})",
            answer.start, record.end
        ));
    }
    // The journal, opened for synchronous writes (its fd is named by the path strace gives
    // the returned descriptor).
    let journal = format!("{audit}.journal");
    let journal_synchronous = calls.iter().any(|c| {
        c.name == "openat"
            && c.args.contains(&format!("<{journal}>"))
            && (c.args.contains("O_DSYNC") || c.args.contains("O_SYNC"))
    });
    let sync = calls
        .iter()
        .find(|c| {
            c.start > record.end
                && ((c.name == "fdatasync"
                    && c.fd == record.fd
                    && (c.fd_path == audit || c.fd_path.is_empty()))
                    || (c.name == "pwrite64"
                        && c.fd_path == journal
                        && journal_synchronous
                        && has_record(c)))
        })
        .ok_or(format!(
            "no sync of record {seq}: no fdatasync of {audit} and no synchronous write of the \
             record to {journal} after it"
        ))?;
    if sync.end >= answer.start {
        return Err(format!(
            "the answer (line {}) was written before the {} of record {seq} returned (line {})",
            answer.start, sync.name, sync.end
        ));
    }
    Ok(format!(
        "record {seq} written at line {}, its {} returned at line {}, answer written at line {}",
        record.end, sync.name, sync.end, answer.start
    ))
}

fn fetch_under_strace(extra: &[&str]) -> (Vec<Call>, String, u64) {
    let dir = daemon::tempdir();
    let t = Traced::start(dir.path(), extra);
    let mut s = UnixStream::connect(&t.socket).unwrap();
    let v = daemon::roundtrip(&mut s, r#"{"v":1,"op":"fetch","task":"checkout-flow"}"#).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let seq = v["audit_seq"]
        .as_u64()
        .expect("the answer names its audit record");
    drop(s);
    let log = t.stop();
    let audit = std::fs::canonicalize(dir.path().join("audit.jsonl")).unwrap();
    (parse(&log), audit.to_str().unwrap().to_owned(), seq)
}

/// Whether `strace` can read the daemon's syscalls here; if not, the skip is recorded (a
/// failure under `CI=true`).
fn can_trace_the_daemon() -> bool {
    if !have_strace() {
        skip::skip("strace is not installed (scripts/setup/strace installs it)");
        return false;
    }
    if !daemon::is_root() {
        // The daemon makes itself non-dumpable: a tracer without CAP_SYS_PTRACE can then
        // read neither its memory (the strings written) nor /proc/PID/fd (the paths).
        skip::skip("strace needs root to read the arguments of the non-dumpable daemon's syscalls");
        return false;
    }
    true
}

#[test]
fn the_audit_record_is_durable_before_the_answer_reaches_the_socket() {
    if !can_trace_the_daemon() {
        return;
    }
    let (calls, audit, seq) = fetch_under_strace(&[]);
    let order = audit_synced_before_answer(&calls, &audit, seq)
        .unwrap_or_else(|e| panic!("{e}\n{calls:#?}"));
    println!("durability: {order}");

    // Positive control: the same trace without the syncs (the journal's writes, the
    // `fdatasync`s) fails the check, as a daemon that does not sync would.
    let journal = format!("{audit}.journal");
    let unsynced: Vec<Call> = calls
        .iter()
        .filter(|c| c.name != "fdatasync" && !(c.name == "pwrite64" && c.fd_path == journal))
        .cloned()
        .collect();
    let err = audit_synced_before_answer(&unsynced, &audit, seq)
        .expect_err("a trace without the sync must fail the check");
    assert!(err.contains("no sync of record"), "{err}");

    // A daemon that really does not sync is a benchmark build's only (`serve
    // --no-audit-sync`, cargo feature `bench-no-audit-sync`, which the test suite's binary
    // and releases lack: tests/it/cli/serve.rs): it fails the same check.
    if cfg!(feature = "bench-no-audit-sync") {
        let (calls, audit, seq) = fetch_under_strace(&["--no-audit-sync"]);
        let err = audit_synced_before_answer(&calls, &audit, seq)
            .expect_err("an unsynced daemon must fail the check");
        assert!(err.contains("no sync of record"), "{err}");
    }
}

/// A request is peeked, and read off the socket only after its answer was written: reading
/// it earlier frees the client's send buffer, and Linux then wakes a client already asleep
/// for the answer, for nothing (docs/security.md, "Daemon throughput").
#[test]
fn a_request_is_read_off_the_socket_only_after_its_answer_was_written() {
    if !can_trace_the_daemon() {
        return;
    }
    let (calls, _audit, seq) = fetch_under_strace(&[]);
    let answer = calls
        .iter()
        .find(|c| c.name == "sendto" && c.args.contains(&format!("\\\"audit_seq\\\":{seq}")))
        .unwrap_or_else(|| panic!("the answer is written to the socket: {calls:#?}"));
    let request = "\\\"task\\\":\\\"checkout-flow\\\"";
    let reads: Vec<&Call> = calls
        .iter()
        .filter(|c| c.name == "recvfrom" && c.fd == answer.fd && c.args.contains(request))
        .collect();
    let peeks: Vec<&Call> = reads
        .iter()
        .copied()
        .filter(|c| c.args.contains("MSG_PEEK"))
        .collect();
    let taken: Vec<&Call> = reads
        .iter()
        .copied()
        .filter(|c| !c.args.contains("MSG_PEEK"))
        .collect();
    assert!(
        peeks.first().is_some_and(|p| p.end < answer.start),
        "the request is peeked before the answer (line {}): {reads:#?}",
        answer.start
    );
    assert_eq!(taken.len(), 1, "the request is read off once: {reads:#?}");
    assert!(
        taken[0].start > answer.end,
        "the request is read off (line {}) after the answer was written (line {})",
        taken[0].start,
        answer.end
    );
    println!(
        "peeked at line {}, answered at line {}, read off at line {}",
        peeks[0].end, answer.start, taken[0].start
    );
}

#[test]
fn a_vault_save_fsyncs_the_temp_file_before_the_rename_and_the_directory_after() {
    if !have_strace() {
        return skip::skip("strace is not installed (scripts/setup/strace installs it)");
    }
    let e = common_vault::Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    let log = e.path("strace.log");
    let mut c = e.wrapper("strace");
    c.args(["-f", "-yy", "-qq", "-s", "64", "-e", TRACED, "-o"])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_scopevault"))
        .args([
            "cred",
            "add",
            "second",
            "--kind",
            "token",
            "--scope",
            "shop:login",
            "--secret",
            "token",
            "--passphrase-file",
            &e.pf(),
        ]);
    let out = e.run_cmd(&mut c, b"second-token-value");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(e.vault_bytes(), before, "the vault was saved");
    let calls = parse(&std::fs::read_to_string(&log).unwrap());
    let vault = std::fs::canonicalize(e.vault()).unwrap();
    let vault = vault.to_str().unwrap();
    let dir = Path::new(vault).parent().unwrap().to_str().unwrap();

    // The rename of a temp file in the vault's directory over the vault.
    // By path (`rename`) or relative to the directory's fd (`renameat`, as the store does it
    // through the directory it checked).
    let vault_name = Path::new(vault).file_name().unwrap().to_str().unwrap();
    let renames: Vec<&Call> = calls
        .iter()
        .filter(|c| {
            c.name.starts_with("rename")
                && (c.args.contains(&format!("\"{vault}\""))
                    || (c.fd_path == dir && c.args.contains(&format!("\"{vault_name}\")"))))
        })
        .collect();
    assert_eq!(renames.len(), 1, "one rename onto the vault: {calls:#?}");
    let rename = renames[0];
    let tmp = rename
        .args
        .split('"')
        .skip(1)
        .step_by(2)
        .find(|a| *a != vault && *a != vault_name)
        .map(|a| {
            if a.starts_with('/') {
                a.to_owned()
            } else {
                format!("{dir}/{a}")
            }
        })
        .unwrap_or_else(|| panic!("the renamed temp file: {rename:?}"));
    // Every write of the new file, then its fsync, then the rename.
    let writes: Vec<&Call> = calls
        .iter()
        .filter(|c| c.name.starts_with("write") && c.fd_path == tmp)
        .collect();
    assert!(
        !writes.is_empty(),
        "the temp file {tmp} is written: {calls:#?}"
    );
    let last_write = writes.iter().map(|c| c.end).max().unwrap();
    let fsync = calls
        .iter()
        .find(|c| matches!(c.name.as_str(), "fsync" | "fdatasync") && c.fd_path == tmp)
        .unwrap_or_else(|| panic!("no fsync of the temp file {tmp}: {calls:#?}"));
    assert!(
        last_write < fsync.start,
        "the temp file is fsynced after its last write"
    );
    assert!(
        fsync.end < rename.start,
        "the temp file is fsynced before the rename: fsync ends at line {}, rename at {}",
        fsync.end,
        rename.start
    );
    // The directory is fsynced after the rename (so the rename itself is durable).
    let dir_sync = calls
        .iter()
        .find(|c| c.name == "fsync" && c.fd_path == dir && c.start > rename.end)
        .unwrap_or_else(|| panic!("no fsync of {dir} after the rename: {calls:#?}"));
    println!(
        "durability: vault save: last write line {last_write}, fsync(temp) line {}, rename \
         line {}, fsync(dir) line {}",
        fsync.end, rename.start, dir_sync.start
    );
}
