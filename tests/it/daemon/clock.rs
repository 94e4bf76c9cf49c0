//! The clock against the audit log's newest record (twenty-fourth pass, found by the attacker
//! of evidence from the audit trail): `serve` started without a word with its clock 35 days
//! behind its log's last record, and `doctor`'s `clock` line said `ok` for it. A record dated
//! ahead of the clock stands in for the clock stepped back: the daemon dates each record by
//! its clock, so the two are the same disagreement.

use crate::common::daemon;

use daemon::{setup_vault, tempdir, Daemon};

/// SHA-256 hex of a line, as docs/audit.md defines `prev`.
fn sha256_hex(line: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(line.as_bytes()))
}

/// Run a daemon on `dir` once, then continue its log with one record dated `time` (and no
/// journal, which would not hold it).
fn log_whose_newest_record_is_dated(dir: &std::path::Path, idarg: &[&str], time: &str) {
    let d = Daemon::start(dir, idarg);
    let audit = d.audit.clone();
    assert!(d.stop().success());
    let text = std::fs::read_to_string(&audit).unwrap();
    let last = text.lines().last().unwrap();
    let seq = serde_json::from_str::<serde_json::Value>(last).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let line = format!(
        r#"{{"seq":{},"time":"{time}","peer":null,"op":"lock","task":null,"credential":null,"decision":"allow","reason":null,"warnings":[],"values":{{}},"prev":"{}"}}"#,
        seq + 1,
        sha256_hex(last)
    );
    std::fs::write(&audit, format!("{text}{line}\n")).unwrap();
    let _ = std::fs::remove_file(scopevault::audit::journal_path(&audit));
}

/// `doctor`'s `clock` line.
fn doctor_clock_line(dir: &std::path::Path, idarg: &[&str]) -> String {
    let out = daemon::cmd(dir).args(idarg).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.get(6..11) == Some("clock"))
        .unwrap_or_else(|| panic!("no clock line: {text}"))
        .to_owned()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn serve_warns_and_still_serves_and_doctor_warns_when_the_clock_is_behind_the_log() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let ahead = time::OffsetDateTime::now_utc() + time::Duration::days(35);
    log_whose_newest_record_is_dated(dir.path(), &idarg, &rfc3339(ahead));
    let line = doctor_clock_line(dir.path(), &idarg);
    assert!(
        line.starts_with("warn  clock")
            && line.contains("behind the newest record of the audit log")
            && line.contains("sync the clock"),
        "{line}"
    );
    let d = Daemon::start(dir.path(), &idarg);
    let v = d.request(r#"{"v":1,"op":"fetch","task":"search-api"}"#);
    assert_eq!(v["ok"], true, "a checkpoint still serves: {v}");
    let err = d.stderr_text();
    assert!(
        err.lines()
            .any(|l| l.starts_with("scopevault: warning: audit log ")
                && l.contains("behind the newest record of the audit log")
                && l.contains("sync the clock")),
        "{err}"
    );
    assert!(d.stop().success());
    // The records written since are dated by the clock: the next start follows them.
    assert_eq!(doctor_clock_line(dir.path(), &idarg).get(..4), Some("ok  "));
}

#[test]
fn doctor_warns_when_the_clock_is_far_past_the_logs_newest_record_and_serve_says_so() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    log_whose_newest_record_is_dated(dir.path(), &idarg, &rfc3339(long_ago));
    let line = doctor_clock_line(dir.path(), &idarg);
    assert!(
        line.starts_with("warn  clock") && line.contains("past the newest record"),
        "{line}"
    );
    let d = Daemon::start(dir.path(), &idarg);
    assert!(
        d.stderr_text().contains("past the newest record"),
        "{}",
        d.stderr_text()
    );
    assert!(d.stop().success());
}

/// Twenty-fourth pass, found by its attacker of this pass's fixes
/// (`repro_clock_after_rotation.sh`): with the log moved away by a rotation the daemon did
/// not see (rename, then an empty file at its path), `doctor` said a plain `ok clock` and
/// `serve`, which continues the moved file from its last record, warned nothing, though the
/// clock was 35 days behind that record. Both now compare with the moved file the start
/// continues.
#[test]
fn regression_the_clock_is_compared_with_the_moved_file_a_start_continues() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let idarg = ["--identity-file", id.to_str().unwrap()];
    let ahead = time::OffsetDateTime::now_utc() + time::Duration::days(35);
    log_whose_newest_record_is_dated(dir.path(), &idarg, &rfc3339(ahead));
    let log = dir.path().join("audit.jsonl");
    let moved = dir.path().join("audit.jsonl.1");
    std::fs::rename(&log, &moved).unwrap();
    std::fs::write(&log, "").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let line = doctor_clock_line(dir.path(), &idarg);
    assert!(
        line.starts_with("warn  clock") && line.contains("behind the newest record"),
        "{line}"
    );
    let d = Daemon::start(dir.path(), &idarg);
    let err = d.stderr_text();
    assert!(
        err.lines()
            .any(|l| l.starts_with("scopevault: warning: audit log ")
                && l.contains("behind the newest record of the audit log")),
        "{err}"
    );
    assert!(d.stop().success());
}
