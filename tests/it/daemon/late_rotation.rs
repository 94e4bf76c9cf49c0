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

/// A rename of the log to `name` and an empty log made in its place (logrotate with `create`).
fn rotate_to(audit: &Path, name: &str) -> PathBuf {
    let moved = audit.with_file_name(name);
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

/// A daemon with 3 fetches, stopped cleanly, then a rotation to `name`: the audit_seqs given.
fn stopped_then_rotated(dir: &Path, idarg: &[&str], name: &str) -> (Vec<u64>, PathBuf) {
    let d = Daemon::start(dir, idarg);
    let given = fetch(&d, 3);
    let audit = d.audit.clone();
    assert!(d.stop().success());
    (given, rotate_to(&audit, name))
}

/// A file beside the log whose one line claims seq 2^64-1 (a record with its seq edited, its
/// hash unchecked) is not a chain: `--accept-audit-gap` does not take its seq (it took it and
/// wrapped to 0, handing out seqs 1, 2, ... again); a file whose records do verify but end at
/// a seq too close to the largest to continue after is refused, naming the seq, never used.
#[test]
fn an_accepted_gap_never_takes_a_forged_sibling_seq_and_never_wraps() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let (mut given, moved) = stopped_then_rotated(dir.path(), &idarg, "audit.jsonl.1");
    let last = std::fs::read_to_string(&moved)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let forged: serde_json::Value = serde_json::from_str(&last).unwrap();
    let seq = forged["seq"].as_u64().unwrap();
    let forged_line = last.replacen(
        &format!("\"seq\":{seq},"),
        &format!("\"seq\":{},", u64::MAX),
        1,
    );
    std::fs::remove_file(&moved).unwrap();
    let old = dir.path().join("audit.jsonl.old");
    std::fs::write(&old, format!("{forged_line}\n")).unwrap();
    let mut args = idarg.to_vec();
    args.push("--accept-audit-gap");
    let d = Daemon::start(dir.path(), &args);
    given.extend(fetch(&d, 2));
    assert!(d.stop().success());
    let audit = dir.path().join("audit.jsonl");
    let live = records(&audit);
    assert_eq!(live[0]["op"], "audit.gap", "{}", live[0]);
    let gap_seq = live[0]["seq"].as_u64().unwrap();
    assert!(
        gap_seq > *given[..3].iter().max().unwrap() && gap_seq < u64::MAX / 2,
        "the gap record takes seq {gap_seq}"
    );
    assert!(verify(dir.path(), &[&audit]).status.success());
    each_seq_once_and_names_its_fetch(&[&audit], &given[3..]);
    // A sibling that verifies (one `audit.rotate` line: a later segment) at seq 2^64-1.
    assert!(Daemon::start(dir.path(), &idarg).stop().success());
    let audit_lines = std::fs::read_to_string(&audit).unwrap();
    std::fs::remove_file(&old).unwrap();
    rotate_to(&audit, "audit.jsonl.2");
    let rotate_line = audit_lines.lines().next().unwrap().replacen(
        &format!("\"seq\":{gap_seq},\"time\""),
        &format!("\"seq\":{},\"time\"", u64::MAX),
        1,
    );
    let rotate_line = rotate_line.replacen("\"op\":\"audit.gap\"", "\"op\":\"audit.rotate\"", 1);
    assert!(rotate_line.contains(&u64::MAX.to_string()), "{rotate_line}");
    std::fs::remove_file(dir.path().join("audit.jsonl.2")).unwrap();
    std::fs::write(&old, format!("{rotate_line}\n")).unwrap();
    let out = verify(dir.path(), &[&old]);
    assert!(out.status.success(), "the forged file is a chain: {out:?}");
    let err = serve_refused(dir.path(), &args);
    assert!(err.contains("too close to the largest seq"), "{err}");
    let anchor = std::fs::read_to_string(anchor_file(dir.path())).unwrap();
    assert!(!anchor.contains(&u64::MAX.to_string()), "{anchor}");
}

/// logrotate with `dateext` (the default on RHEL and Fedora) names the moved file
/// `audit.jsonl-YYYYMMDD`: the start finds and continues it as it does `audit.jsonl.1`.
#[test]
fn a_start_continues_a_file_moved_by_logrotate_with_dateext() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let (mut given, moved) = stopped_then_rotated(dir.path(), &idarg, "audit.jsonl-20261202");
    let d = Daemon::start(dir.path(), &idarg);
    given.extend(fetch(&d, 1));
    let audit = d.audit.clone();
    assert!(d.stop().success());
    assert_eq!(records(&audit)[0]["op"], "audit.rotate");
    assert!(verify(dir.path(), &[&audit, &moved]).status.success());
    each_seq_once_and_names_its_fetch(&[&moved, &audit], &given);
}

/// A torn last line (a write a crash cut) in the moved file, after the anchored record: the
/// start continues after the last whole record, leaves the moved file as it is and says so,
/// as it repairs the same line in the live log. Where the torn line is the anchored record
/// itself, the refusal says how to complete it, and the start then continues.
#[test]
fn a_torn_last_line_in_the_moved_file_is_left_and_the_chain_continues() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let (mut given, moved) = stopped_then_rotated(dir.path(), &idarg, "audit.jsonl.1");
    let text = std::fs::read_to_string(&moved).unwrap();
    let torn = format!("{text}{}", &text.lines().last().unwrap()[..150]);
    std::fs::write(&moved, &torn).unwrap();
    let d = Daemon::start(dir.path(), &idarg);
    given.extend(fetch(&d, 1));
    let audit = d.audit.clone();
    assert!(d.stop().success());
    assert_eq!(std::fs::read_to_string(&moved).unwrap(), torn);
    let live = records(&audit);
    assert_eq!(live[0]["op"], "audit.rotate", "{}", live[0]);
    let last_whole: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(
        live[0]["seq"].as_u64(),
        last_whole["seq"].as_u64().map(|s| s + 1)
    );
    assert!(
        live[0]["reason"]
            .as_str()
            .unwrap()
            .contains("incomplete final line"),
        "{}",
        live[0]
    );
    // The anchored record torn: only its newline missing.
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let (_, moved) = stopped_then_rotated(dir.path(), &idarg, "audit.jsonl.1");
    let text = std::fs::read_to_string(&moved).unwrap();
    std::fs::write(&moved, text.trim_end_matches('\n')).unwrap();
    let err = serve_refused(dir.path(), &idarg);
    assert!(
        err.contains("whole but for its line end") && err.contains("add the newline"),
        "{err}"
    );
    // Only that fix: nothing is missing (twenty-third pass's review: the refusal went on
    // with the cut tail's advice, a restore or `--accept-audit-gap`).
    for wrong in [
        "put it back",
        "--accept-audit-gap",
        "restore the log",
        "are missing",
    ] {
        assert!(!err.contains(wrong), "{wrong}: {err}");
    }
    let doctor = daemon::cmd(dir.path())
        .args(["--identity-file", id.to_str().unwrap(), "doctor"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&doctor.stdout);
    let line = said
        .lines()
        .find(|l| l.starts_with("fail") && l.contains("audit "))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        line.contains("add the newline") && !line.contains("--accept-audit-gap"),
        "{line}"
    );
    std::fs::write(&moved, &text).unwrap();
    assert!(Daemon::start(dir.path(), &idarg).stop().success());
}

/// The file names beside the log in a refusal are escaped (a newline in one started a line
/// of its own on stderr) and listed up to a few, with how many more; a link named like a
/// moved file is said to be one, not "there is none".
#[test]
fn the_refusal_names_siblings_escaped_and_bounded() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let (_, moved) = stopped_then_rotated(dir.path(), &idarg, "audit.jsonl.1");
    let away = dir.path().join("shipped.jsonl");
    std::fs::rename(&moved, &away).unwrap();
    std::os::unix::fs::symlink(&away, &moved).unwrap();
    let err = serve_refused(dir.path(), &idarg);
    assert!(
        err.contains("audit.jsonl.1 (a symbolic link: not followed)"),
        "{err}"
    );
    assert!(!err.contains("there is none"), "{err}");
    std::fs::remove_file(&moved).unwrap();
    std::fs::write(dir.path().join("audit.jsonl.x\nscopevault: listening"), "").unwrap();
    for i in 0..20 {
        std::fs::write(dir.path().join(format!("audit.jsonl.{i}")), "").unwrap();
    }
    let err = serve_refused(dir.path(), &idarg);
    assert!(
        !err.lines().any(|l| l.starts_with("scopevault: listening")),
        "{err}"
    );
    assert!(err.contains("and 16 more"), "{err}");
    assert!(err.len() < 4000, "{err}");
}

/// A hard link of the moved file under another `<log>.*` name is the same file, not a second
/// copy of the anchored record: the start continues it.
#[test]
fn a_hard_link_of_the_moved_file_is_one_file() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let (given, moved) = stopped_then_rotated(dir.path(), &idarg, "audit.jsonl.1");
    std::fs::hard_link(&moved, dir.path().join("audit.jsonl.2")).unwrap();
    let d = Daemon::start(dir.path(), &idarg);
    let audit = d.audit.clone();
    assert!(d.stop().success());
    assert_eq!(records(&audit)[0]["op"], "audit.rotate");
    each_seq_once_and_names_its_fetch(&[&moved, &audit], &given);
}

/// `mv audit.jsonl audit.jsonl.1; gzip audit.jsonl.1; : > audit.jsonl`: gzip removes the
/// moved file, freeing its inode, which the new empty log takes (ext4 here does). Whether it
/// did.
fn rotate_compress_and_recreate(audit: &Path) -> bool {
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(audit).unwrap().ino();
    let moved = audit.with_file_name("audit.jsonl.1");
    std::fs::rename(audit, &moved).unwrap();
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&std::fs::read(&moved).unwrap()).unwrap();
    std::fs::write(
        audit.with_file_name("audit.jsonl.1.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    std::fs::remove_file(&moved).unwrap();
    std::fs::File::create(audit).unwrap();
    std::fs::metadata(audit).unwrap().ino() == ino
}

/// Found by the twenty-third pass's review: a daemon stopped (cleanly, or killed), then the
/// log moved, the moved file compressed and an empty log made, on the freed inode. The
/// journal's frames named that device and inode, so the start wrote the old file's records
/// into the new empty file: the same records in two files. A clean stop now leaves the
/// journal holding no frame (the log is synced and anchored), an empty log is never written
/// from frames of records its anchor names, and the start treats the compressed moved file as
/// the docs say: refused, naming it, the new log left empty. Put back uncompressed, it is
/// continued, and every seq stands once.
#[test]
fn a_compressed_moved_file_is_not_replayed_into_a_new_log_on_its_inode() {
    for killed in [false, true] {
        let dir = tempdir();
        let id = setup_vault(dir.path());
        let idarg = ["--identity-file", id.to_str().unwrap()];
        let mut d = Daemon::start(dir.path(), &idarg);
        let mut given = fetch(&d, 3);
        let audit = d.audit.clone();
        let journal = dir.path().join("audit.jsonl.journal");
        if killed {
            // Anchored by a clean stop first, then more fetches and `kill -9`.
            assert!(d.stop().success());
            d = Daemon::start(dir.path(), &idarg);
            given.extend(fetch(&d, 3));
            d.signal("KILL");
            drop(d);
        } else {
            assert!(d.stop().success());
            assert!(
                std::fs::read(&journal).unwrap().iter().all(|&b| b == 0),
                "a clean stop leaves no frame in the journal"
            );
        }
        let old = std::fs::read(&audit).unwrap();
        let reused = rotate_compress_and_recreate(&audit);
        let err = serve_refused(dir.path(), &idarg);
        assert!(
            err.contains("audit.jsonl.1.gz (compressed: not read)"),
            "killed: {killed}; inode reused: {reused}; {err}"
        );
        assert_eq!(
            std::fs::metadata(&audit).unwrap().len(),
            0,
            "killed: {killed}; inode reused: {reused}; nothing written into the new log"
        );
        // As the refusal says: put it back uncompressed under a new name.
        let restored = audit.with_file_name("audit.jsonl.restored");
        std::fs::write(&restored, &old).unwrap();
        let d = Daemon::start(dir.path(), &idarg);
        given.extend(fetch(&d, 1));
        assert!(d.stop().success());
        assert_eq!(records(&audit)[0]["op"], "audit.rotate", "killed: {killed}");
        let out = verify(dir.path(), &[&audit, &restored]);
        assert!(out.status.success(), "killed: {killed}; {out:?}");
        each_seq_once_and_names_its_fetch(&[&restored, &audit], &given);
    }
}

/// The anchor file of the test dir's log, if one is there yet.
fn anchor_if_any(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("state/scopevault"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("audit-anchor-") && n.ends_with(".json")
        })
}

/// A daemon killed (`kill -9`) right after the answers of a run that began a file: the anchor
/// is put back as it was when the daemon began to serve (or taken away, if there was none),
/// as if the ticker's next write never came. The `audit_seq`s the clients were given.
fn served_then_killed_before_the_ticker(dir: &Path, idarg: &[&str], n: usize) -> Vec<u64> {
    let d = Daemon::start(dir, idarg);
    let at_start = anchor_if_any(dir).map(|p| (std::fs::read(&p).unwrap(), p));
    let given = fetch(&d, n);
    d.signal("KILL");
    drop(d);
    match at_start {
        Some((bytes, p)) => std::fs::write(p, bytes).unwrap(),
        None => {
            if let Some(p) = anchor_if_any(dir) {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    given
}

/// Found by the twenty-fourth pass's attacker of this pass's fixes: a start that continued a
/// moved file anchored the moved file's last record as "a new file is to begin" until the
/// ticker's next write; killed before it, with `audit.rotate`, `vault.load` and three fetches
/// in the new file, then logrotate again (the new file to `.1`, a new empty log), the next
/// start took the empty log for that new file still empty and wrote a second, different
/// record at the same seq (a fork; doctor said ok). A file's first batch is now anchored
/// before any answer, so the next start looks for the file holding it and continues it; with
/// that file compressed it is refused, naming it.
#[test]
fn a_start_killed_before_its_first_anchor_then_rotated_again_does_not_fork_the_chain() {
    for compressed in [false, true] {
        let dir = tempdir();
        let id = setup_vault(dir.path());
        let idarg = ["--identity-file", id.to_str().unwrap()];
        let d = Daemon::start(dir.path(), &idarg);
        let mut given = fetch(&d, 3);
        let audit = d.audit.clone();
        assert!(d.stop().success());
        let first = logrotate(&audit);
        given.extend(served_then_killed_before_the_ticker(dir.path(), &idarg, 3));
        let branch = records(&audit);
        assert_eq!(branch[0]["op"], "audit.rotate", "{branch:?}");
        // logrotate again: `.1` to `.2`, the log to `.1`, a new empty log.
        let older = dir.path().join("audit.jsonl.2");
        std::fs::rename(&first, &older).unwrap();
        if compressed {
            let moved_bytes = std::fs::read(&audit).unwrap();
            let _ = rotate_compress_and_recreate(&audit);
            let err = serve_refused(dir.path(), &idarg);
            assert!(
                err.contains("audit.jsonl.1.gz (compressed: not read)"),
                "{err}"
            );
            assert_eq!(std::fs::metadata(&audit).unwrap().len(), 0, "{err}");
            // Put back uncompressed, as the refusal says.
            std::fs::write(audit.with_file_name("audit.jsonl.1"), moved_bytes).unwrap();
            std::fs::remove_file(audit.with_file_name("audit.jsonl.1.gz")).unwrap();
        } else {
            logrotate(&audit);
        }
        let moved = dir.path().join("audit.jsonl.1");
        let d = Daemon::start(dir.path(), &idarg);
        given.extend(fetch(&d, 1));
        assert!(d.stop().success());
        let live = records(&audit);
        let moved_last = records(&moved).last().unwrap()["seq"].as_u64().unwrap();
        assert_eq!(
            live[0]["op"], "audit.rotate",
            "compressed: {compressed}; {}",
            live[0]
        );
        assert_eq!(live[0]["seq"].as_u64(), Some(moved_last + 1), "{}", live[0]);
        let out = verify(dir.path(), &[&audit, &moved, &older]);
        assert!(out.status.success(), "compressed: {compressed}; {out:?}");
        each_seq_once_and_names_its_fetch(&[&older, &moved, &audit], &given);
    }
}

/// Found by the twenty-fourth pass's attacker of this pass's fixes: a log's very first start,
/// killed (`kill -9`) after handing out `audit_seq`s but before its first anchor, then
/// logrotate (rename, create): the next start found an empty log and no anchor, and began a
/// second chain at seq 1 with the same key, the hand-outs outside it (doctor: "no anchor
/// yet"). The first batch is now anchored before any answer: the start continues the moved
/// file.
#[test]
fn a_first_start_killed_before_its_first_anchor_then_rotated_is_continued() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let audit = dir.path().join("audit.jsonl");
    assert!(!audit.exists());
    let mut given = served_then_killed_before_the_ticker(dir.path(), &idarg, 3);
    let moved = logrotate(&audit);
    let d = Daemon::start(dir.path(), &idarg);
    given.extend(fetch(&d, 1));
    assert!(d.stop().success());
    let live = records(&audit);
    assert_eq!(live[0]["op"], "audit.rotate", "{}", live[0]);
    let out = verify(dir.path(), &[&audit, &moved]);
    assert!(out.status.success(), "{out:?}");
    each_seq_once_and_names_its_fetch(&[&moved, &audit], &given);
}

/// Found by the twenty-fourth pass's attacker of this pass's fixes: an empty log whose
/// anchored record is in two files beside it, or in a compressed one only, was refused as a
/// cut tail ("records 1..=N are missing") advising `serve --accept-audit-gap`, which then
/// recorded a gap though every record was there. Each refusal now gives its own fix (move the
/// extra copy away; decompress the file in place), `doctor` the same, and once it is followed
/// the start continues the chain with no gap.
#[test]
fn a_copy_or_a_compressed_moved_file_is_refused_with_its_own_fix_not_a_gap() {
    for compressed in [false, true] {
        let dir = tempdir();
        let id = setup_vault(dir.path());
        let idarg = ["--identity-file", id.to_str().unwrap()];
        let d = Daemon::start(dir.path(), &idarg);
        let mut given = fetch(&d, 3);
        let audit = d.audit.clone();
        assert!(d.stop().success());
        let old = std::fs::read(&audit).unwrap();
        let extra = dir.path().join("audit.jsonl-20261202");
        if compressed {
            rotate_compress_and_recreate(&audit);
        } else {
            let moved = logrotate(&audit);
            std::fs::copy(&moved, &extra).unwrap();
        }
        let err = serve_refused(dir.path(), &idarg);
        let doctor = daemon::cmd(dir.path())
            .args(idarg)
            .arg("doctor")
            .output()
            .unwrap();
        let doctor = String::from_utf8_lossy(&doctor.stdout).into_owned();
        let line = doctor
            .lines()
            .find(|l| l.contains("audit") && l.contains("refuses to start"))
            .unwrap_or_else(|| panic!("{doctor}"))
            .to_owned();
        for text in [&err, &line] {
            let fix = if compressed {
                "decompress audit.jsonl.1.gz in place"
            } else {
                "move the other copies out of its directory"
            };
            assert!(text.contains(fix), "compressed: {compressed}; {text}");
            for wrong in [
                "are missing",
                "restore the log from backup",
                "or start with",
            ] {
                assert!(!text.contains(wrong), "compressed: {compressed}; {text}");
            }
            if !compressed {
                assert!(!text.contains("--accept-audit-gap"), "{text}");
            }
        }
        // The fix followed: the chain is continued, no gap recorded.
        let moved = dir.path().join("audit.jsonl.1");
        if compressed {
            std::fs::write(&moved, &old).unwrap();
            std::fs::remove_file(dir.path().join("audit.jsonl.1.gz")).unwrap();
        } else {
            std::fs::remove_file(&extra).unwrap();
        }
        let d = Daemon::start(dir.path(), &idarg);
        given.extend(fetch(&d, 1));
        assert!(d.stop().success());
        let live = records(&audit);
        assert_eq!(live[0]["op"], "audit.rotate", "{}", live[0]);
        assert!(live.iter().all(|r| r["op"] != "audit.gap"), "{live:?}");
        each_seq_once_and_names_its_fetch(&[&moved, &audit], &given);
    }
}

/// Found by the twenty-fourth pass's review: a crash between a new file's first batch
/// reaching the log and the anchor written right after it (no answer of that batch given
/// yet) left the anchor saying the file was still to be begun (`begins`, `next`); logrotate
/// before the next start (that file to `.1`, a new empty log) made that start take the empty
/// log for the daemon's own new file still empty and write a second, different `audit.rotate`
/// at the seq `.1` begins with: a fork. The start now looks beside the log for the file that
/// begins with the line the anchor names (`next`), and continues it.
#[test]
fn a_crash_before_a_new_file_s_first_anchor_then_logrotate_does_not_fork_the_chain() {
    use sha2::Digest;
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let d = Daemon::start(dir.path(), &idarg);
    let mut given = fetch(&d, 3);
    let audit = d.audit.clone();
    assert!(d.stop().success());
    // What the crash point leaves, besides the log: the anchor of the clean stop, with the
    // new file's first record pending, and the journal as the clean stop cleared it (a file's
    // first batch is never framed).
    let anchor = anchor_file(dir.path());
    let before = std::fs::read(&anchor).unwrap();
    let journal = audit.with_file_name("audit.jsonl.journal");
    let journal_before = std::fs::read(&journal).unwrap();
    let first = logrotate(&audit);
    // The start continues `.1` in a new file, whose first batch is its `audit.rotate`.
    let d = Daemon::start(dir.path(), &idarg);
    d.signal("KILL");
    drop(d);
    let text = std::fs::read_to_string(&audit).unwrap();
    let line = text.lines().next().unwrap().to_owned();
    let rotate: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(rotate["op"], "audit.rotate", "{rotate}");
    std::fs::write(&audit, format!("{line}\n")).unwrap();
    let mut a: serde_json::Value = serde_json::from_slice(&before).unwrap();
    a["begins"] = rotate["reason"].clone();
    a["next"] = format!("{:x}", sha2::Sha256::digest(line.as_bytes())).into();
    std::fs::write(&anchor, serde_json::to_vec(&a).unwrap()).unwrap();
    std::fs::write(&journal, journal_before).unwrap();
    // logrotate again: `.1` to `.2`, the log to `.1`, a new empty log.
    let older = dir.path().join("audit.jsonl.2");
    std::fs::rename(&first, &older).unwrap();
    let moved = logrotate(&audit);
    // `doctor` says what the start does.
    let doctor = daemon::cmd(dir.path())
        .args(["--identity-file", id.to_str().unwrap(), "doctor"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&doctor.stdout);
    let line = said
        .lines()
        .find(|l| l.contains("audit ") && l.contains("audit.jsonl"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        line.starts_with("ok") && line.contains("audit.jsonl.1, which the next start continues"),
        "{line}"
    );
    let d = Daemon::start(dir.path(), &idarg);
    given.extend(fetch(&d, 1));
    assert!(d.stop().success());
    let live = records(&audit);
    let moved_last = records(&moved).last().unwrap()["seq"].as_u64().unwrap();
    assert_eq!(live[0]["op"], "audit.rotate", "{}", live[0]);
    assert_eq!(live[0]["seq"].as_u64(), Some(moved_last + 1), "{}", live[0]);
    let out = verify(dir.path(), &[&audit, &moved, &older]);
    assert!(out.status.success(), "{out:?}");
    each_seq_once_and_names_its_fetch(&[&older, &moved, &audit], &given);
}

/// Found by the twenty-fourth pass's review: a log's very first start, killed between its
/// first batch reaching the log and the anchor written right after it (no answer of that
/// batch given), then logrotate: there was no anchor at all, and the next start began a
/// second chain at seq 1 with the same key beside `.1` holding seq 1. The writer now anchors
/// a new log's first line (`next`, at seq 0) before it writes it; the start finds the file
/// that begins with that line and continues it. The crash point is rebuilt: the log cut to
/// its first batch (the start's `vault.load`), the journal as it was then, and the anchor as
/// the writer leaves it before that batch.
#[test]
fn a_first_start_killed_right_after_its_first_batch_then_rotated_is_continued() {
    use sha2::Digest;
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let audit = dir.path().join("audit.jsonl");
    assert!(!audit.exists());
    let d = Daemon::start(dir.path(), &idarg);
    let journal = audit.with_file_name("audit.jsonl.journal");
    let journal_then = std::fs::read(&journal).unwrap();
    d.signal("KILL");
    drop(d);
    let text = std::fs::read_to_string(&audit).unwrap();
    let line = text.lines().next().unwrap().to_owned();
    let first: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (first["seq"].as_u64(), first["op"].as_str()),
        (Some(1), Some("vault.load")),
        "{first}"
    );
    std::fs::write(&audit, format!("{line}\n")).unwrap();
    std::fs::write(&journal, journal_then).unwrap();
    let anchor = anchor_file(dir.path());
    let mut a: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&anchor).unwrap()).unwrap();
    a["seq"] = 0.into();
    a["head"] = "0".repeat(64).into();
    a["next"] = format!("{:x}", sha2::Sha256::digest(line.as_bytes())).into();
    std::fs::write(&anchor, serde_json::to_vec(&a).unwrap()).unwrap();
    let moved = logrotate(&audit);
    let d = Daemon::start(dir.path(), &idarg);
    let given = fetch(&d, 1);
    assert!(d.stop().success());
    let live = records(&audit);
    assert_eq!(live[0]["op"], "audit.rotate", "{}", live[0]);
    assert_eq!(live[0]["seq"], 2, "{}", live[0]);
    let out = verify(dir.path(), &[&audit, &moved]);
    assert!(out.status.success(), "{out:?}");
    each_seq_once_and_names_its_fetch(&[&moved, &audit], &given);
}

/// Regression (twenty-fifth pass, found by the attacker of advice): the log rotated away while
/// the daemon was stopped and its key lost; doctor said `ok` ("which the next start
/// continues") and `serve` continued the chain with a new key made silently, no
/// `audit.new_key` record, so `audit hash` no longer matched the moved file's records. The
/// start is now refused as for a log that holds records (doctor fails the same way, with the
/// restore-from-backup advice), and `--new-audit-key` continues the chain with its record.
#[test]
fn a_lost_key_after_an_unseen_rotation_is_refused_and_a_new_one_recorded() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let (given, moved) = stopped_then_rotated(dir.path(), &idarg, "audit.jsonl.1");
    let audit = dir.path().join("audit.jsonl");
    // As the attacker's repro: the file moved, none made in its place.
    std::fs::remove_file(&audit).unwrap();
    let key = scopevault::audit::key_path(&audit);
    std::fs::remove_file(&key).unwrap();
    let out = daemon::cmd(dir.path()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("fail") && l.contains("audit"))
        .unwrap_or_else(|| panic!("doctor does not fail the audit line: {text}"));
    assert!(
        line.contains("is missing")
            && line.contains("restore the key from backup")
            && line.contains("--new-audit-key"),
        "{line}"
    );
    let err = serve_refused(dir.path(), &idarg);
    assert!(
        err.contains("is missing") && err.contains("--new-audit-key"),
        "{err}"
    );
    assert!(
        !key.exists() && !audit.exists(),
        "the refused start made a file"
    );
    let mut args = idarg.to_vec();
    args.push("--new-audit-key");
    let d = Daemon::start(dir.path(), &args);
    assert!(d.stop().success());
    let ops: Vec<String> = records(&audit)
        .iter()
        .map(|r| r["op"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ops[..2], ["audit.rotate", "audit.new_key"], "{ops:?}");
    let out = verify(dir.path(), &[&audit, &moved]);
    assert!(out.status.success(), "{out:?}");
    each_seq_once_and_names_its_fetch(&[&moved, &audit], &given);
}

/// `status` of the log after a rotation the daemon has not noticed yet: `audit_head` as JSON
/// and the metrics.
fn status_head(dir: &Path, socket: &Path) -> (serde_json::Value, String) {
    let status = |format: &str| {
        let out = daemon::cmd(dir)
            .args(["status", "--format", format, "--socket"])
            .arg(socket)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&status("json")).unwrap();
    (json["audit_head"].clone(), status("prometheus"))
}

/// Twenty-seventh pass (found by the twenty-seventh pass's attacker of monitoring and time):
/// after logrotate moved the log and `create` left an empty one, before the daemon noticed
/// (no signal yet, or the daemon stopped), `status` called the empty log a cut tail
/// ("records 1..=N are missing", `scopevault_audit_head_ok 0`, the documented
/// ScopevaultAuditHeadBad and CutTail alerts firing) where `doctor` and `audit verify` said ok.
/// It now finds the moved file as they do (`crate::audit::moved_log_under`): the head is the
/// moved file's last record, named with it, with the daemon running and stopped.
#[test]
fn status_reports_the_head_of_a_log_moved_by_a_rotation_the_daemon_has_not_noticed() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let d = Daemon::start(dir.path(), &idarg);
    fetch(&d, 3);
    let moved = logrotate(&d.audit);
    let last = records(&moved).last().unwrap()["seq"].as_u64().unwrap();
    let socket = d.socket.clone();
    let check = |running: bool| {
        let anchor: serde_json::Value =
            serde_json::from_slice(&std::fs::read(anchor_file(dir.path())).unwrap()).unwrap();
        let anchored = anchor["seq"].as_u64().unwrap();
        let (head, prom) = status_head(dir.path(), &socket);
        assert!(head.get("error").is_none(), "running {running}: {head}");
        assert_eq!(head["seq"].as_u64(), Some(last), "{head}");
        assert_eq!(head["moved"].as_str(), moved.to_str(), "{head}");
        assert!(prom.contains("\nscopevault_audit_head_ok 1\n"), "{prom}");
        assert!(
            prom.contains(&format!("\nscopevault_audit_seq {last}\n"))
                && prom.contains(&format!("\nscopevault_audit_anchor_seq {anchored}\n"))
                && anchored <= last,
            "{prom}"
        );
    };
    check(true);
    assert!(d.stop().success());
    check(false);
}

/// Twenty-eighth pass (found by the outside attacker): docs/audit.md advised `scopevault audit
/// rotate` from cron and shipped a logrotate configuration (`rotate 52`); with both, logrotate's
/// pruning deletes a numbered file in the middle of the chain and `audit verify` fails for good.
/// `doctor` warns once files of both lie beside the log, and not while only one made them.
#[test]
fn doctor_warns_when_both_audit_rotate_and_logrotate_rotated_the_log() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let d = Daemon::start(dir.path(), &idarg);
    let doctor = || {
        let out = daemon::cmd(dir.path())
            .env("SCOPEVAULT_SOCKET", &d.socket)
            .args(idarg)
            .arg("doctor")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let both = |said: &str| {
        said.lines()
            .find(|l| l.starts_with("warn") && l.contains("files of both"))
            .map(str::to_owned)
    };
    let out = daemon::cmd(dir.path())
        .env("SCOPEVAULT_SOCKET", &d.socket)
        .args(idarg)
        .args(["audit", "rotate"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = doctor();
    assert_eq!(both(&said), None, "`audit rotate` alone: {said}");

    fetch(&d, 1);
    let moved = logrotate(&dir.path().join("audit.jsonl"));
    d.signal("USR1");
    let said = doctor();
    let line = both(&said).unwrap_or_else(|| panic!("no warning: {said}"));
    assert!(line.contains("audit.jsonl.1"), "{line}");
    assert!(line.contains("audit.jsonl.20"), "{line}");
    assert!(line.contains("docs/audit.md"), "{line}");
    assert!(moved.exists());
    assert!(d.stop().success());
}
