//! A rotation the daemon did not live to notice (twenty-third pass, found by the attacker of the
//! state directory under crashes): logrotate (examples/logrotate/scopevault) renames the log to
//! `audit.jsonl.1` and creates an empty `audit.jsonl`, and the daemon is killed (`kill -9`: the
//! OOM killer, a watchdog, a power cut) before its next write, or was stopped cleanly when
//! logrotate ran. Its anchor may lag behind what it wrote to the moved file. The start used to
//! refuse it as a cut tail of every record, and `--accept-audit-gap` then gave again the seqs
//! the moved file holds, which clients had been given as `audit_seq`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::daemon::{self, setup_vault, tempdir, Daemon};

fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The anchor file of the test dir's log (the one in its state directory).
fn anchor_file(dir: &Path) -> PathBuf {
    let state = dir.join("state/scopevault");
    std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("audit-anchor-") && n.ends_with(".json")
        })
        .expect("the daemon anchors its log")
}

/// `n` fetches; the `audit_seq` of each.
fn fetch(d: &Daemon, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let v = d.request(r#"{"v":1,"op":"fetch","task":"search-api"}"#);
            assert_eq!(v["ok"], true, "{v}");
            v["audit_seq"].as_u64().expect("an audit_seq")
        })
        .collect()
}

/// What logrotate does with `create` and no `copytruncate`: rename, then a new empty file.
fn logrotate(audit: &Path) -> PathBuf {
    let moved = audit.with_file_name("audit.jsonl.1");
    std::fs::rename(audit, &moved).unwrap();
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(audit)
        .unwrap();
    moved
}

/// A daemon with a record anchored, then more fetches the anchor does not name yet (the
/// anchor is put back as it was: the ticker's next write never came), a rotation as logrotate
/// makes it, and `kill -9` before the daemon writes again. The seqs the clients were given.
fn rotated_then_killed(dir: &Path, idarg: &[&str]) -> Vec<u64> {
    let d = Daemon::start(dir, idarg);
    let mut given = fetch(&d, 3);
    assert!(d.stop().success());
    let lagging = std::fs::read(anchor_file(dir)).unwrap();
    let d = Daemon::start(dir, idarg);
    given.extend(fetch(&d, 4));
    logrotate(&d.audit);
    d.signal("KILL");
    drop(d);
    std::fs::write(anchor_file(dir), lagging).unwrap();
    given
}

/// `serve` expected to refuse to start: its stderr (a start that serves fails the test).
fn serve_refused(dir: &Path, args: &[&str]) -> String {
    let stderr = dir.join("refused.stderr");
    let mut child = daemon::cmd(dir)
        .arg("serve")
        .args(args)
        .arg("--socket")
        .arg(dir.join("run/s2.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline || dir.join("run/s2.sock").exists() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "serve started: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "{status}");
    std::fs::read_to_string(&stderr).unwrap()
}

/// `audit verify --audit` of `files`, as one chain.
fn verify(dir: &Path, files: &[&Path]) -> std::process::Output {
    daemon::cmd(dir)
        .args(["audit", "verify", "--audit"])
        .args(files)
        .output()
        .unwrap()
}

/// Every seq of `files` once, and each `audit_seq` in `given` names a fetch record.
fn each_seq_once_and_names_its_fetch(files: &[&Path], given: &[u64]) {
    let mut by_seq: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for f in files {
        for r in records(f) {
            by_seq
                .entry(r["seq"].as_u64().unwrap())
                .or_default()
                .push(r["op"].as_str().unwrap().to_owned());
        }
    }
    let twice: Vec<_> = by_seq.iter().filter(|(_, ops)| ops.len() > 1).collect();
    assert!(twice.is_empty(), "seqs held by two records: {twice:?}");
    let given_set: BTreeSet<u64> = given.iter().copied().collect();
    assert_eq!(given_set.len(), given.len(), "an audit_seq given twice");
    for s in given {
        assert_eq!(
            by_seq.get(s).map(|ops| ops[0].as_str()),
            Some("fetch"),
            "audit_seq {s} names {:?}",
            by_seq.get(s)
        );
    }
}

/// The restart after the crash completes the rotation: it starts without a word about a gap,
/// the new file begins with an `audit.rotate` record continuing the moved file's last record,
/// the two files verify as one chain, and no seq is held by two records.
#[test]
fn a_start_after_a_crash_during_logrotate_continues_the_moved_file() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let mut given = rotated_then_killed(dir.path(), &idarg);
    let audit = dir.path().join("audit.jsonl");
    let moved = dir.path().join("audit.jsonl.1");
    let moved_last = records(&moved).last().unwrap()["seq"].as_u64().unwrap();
    let d = Daemon::start(dir.path(), &idarg);
    given.extend(fetch(&d, 2));
    assert!(d.stop().success());
    let live = records(&audit);
    assert_eq!(live[0]["op"], "audit.rotate", "{}", live[0]);
    assert_eq!(live[0]["seq"].as_u64(), Some(moved_last + 1));
    assert!(live.iter().all(|r| r["op"] != "audit.gap"), "{live:?}");
    let out = verify(dir.path(), &[&audit, &moved]);
    assert!(out.status.success(), "{out:?}");
    each_seq_once_and_names_its_fetch(&[&moved, &audit], &given);
}

/// The same rotation while the daemon was stopped cleanly (postrotate's signal reached
/// nobody): the start continues the moved file, with no false gap recorded.
#[test]
fn a_start_after_logrotate_ran_while_the_daemon_was_stopped_continues_the_moved_file() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let d = Daemon::start(dir.path(), &idarg);
    let mut given = fetch(&d, 3);
    let audit = d.audit.clone();
    assert!(d.stop().success());
    let moved = logrotate(&audit);
    let d = Daemon::start(dir.path(), &idarg);
    given.extend(fetch(&d, 1));
    assert!(d.stop().success());
    assert_eq!(records(&audit)[0]["op"], "audit.rotate");
    let out = verify(dir.path(), &[&audit, &moved]);
    assert!(out.status.success(), "{out:?}");
    each_seq_once_and_names_its_fetch(&[&moved, &audit], &given);
}

/// With the moved file gone from the log's directory (shipped elsewhere, compressed), the
/// start is refused saying a rotation may have moved the log and what to do; accepted with
/// `--accept-audit-gap`, the gap record and every later record take seqs above every
/// `audit_seq` handed out, though the anchor lags behind them (the journal knows them).
#[test]
fn an_accepted_gap_after_a_lost_rotation_never_gives_a_seq_again() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let mut given = rotated_then_killed(dir.path(), &idarg);
    let moved = dir.path().join("audit.jsonl.1");
    let away = dir.path().join("shipped.jsonl");
    std::fs::rename(&moved, &away).unwrap();
    let err = serve_refused(dir.path(), &idarg);
    assert!(
        err.contains("a rotation may have moved the log away") && err.contains("put it back"),
        "{err}"
    );
    let highest = *given.iter().max().unwrap();
    let mut args = idarg.to_vec();
    args.push("--accept-audit-gap");
    let d = Daemon::start(dir.path(), &args);
    given.extend(fetch(&d, 2));
    assert!(d.stop().success());
    let audit = dir.path().join("audit.jsonl");
    let live = records(&audit);
    assert_eq!(live[0]["op"], "audit.gap", "{}", live[0]);
    assert!(
        live[0]["seq"].as_u64().unwrap() > highest,
        "the gap record takes seq {} though audit_seq {highest} was handed out",
        live[0]["seq"]
    );
    each_seq_once_and_names_its_fetch(&[&away, &audit], &given);
    assert!(verify(dir.path(), &[&audit]).status.success());
}
