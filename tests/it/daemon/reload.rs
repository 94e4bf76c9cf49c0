//! The daemon's loads of its vault file after its start (`reload`, SIGHUP, a changed file
//! followed before a request): what each refuses, and how a refusal reaches the client
//! (nineteenth pass, found by attacking from the documents).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Output, Stdio};

use crate::common::daemon::{self, code, ok, secret_of, setup_vault, tempdir, Daemon};

fn sv(d: &Daemon, args: &[&str]) -> Output {
    daemon::cmd(&d.dir)
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `cred set search-token` with the test identity file and `extra` options, `value` on stdin.
fn set_search_token(dir: &Path, value: &str, extra: &[&str]) {
    let id = dir.join("identity.txt");
    let mut args = vec!["--identity-file", id.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend(["cred", "set", "search-token", "--secret", "token"]);
    ok(dir, &args, Some(value));
}

/// Put `bytes` at the vault path as a save does: a new file renamed over it.
fn put_back(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join(".put-back");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join("vault.scopevault")).unwrap();
}

/// The `search-token` the daemon serves now (a request: a changed vault file is followed first).
fn served_token(d: &Daemon) -> String {
    let v = d.request(r#"{"v":1,"op":"fetch","task":"search-api"}"#);
    v["credentials"][0]["secrets"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token served: {v}"))
        .to_owned()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `serve --allow-rollback` accepts the file found at its start, "for that run only" — and
/// turned rollback detection off for every later load of the run: with generations g1 < g2 <
/// g3 written and g2 served on purpose, a genuine g1 put back was loaded by `reload` and by the
/// next request, silently; and still after the admin adopted the restore (a save above the
/// record). Now every load after the start is held to the checks of a daemon started without
/// the flag: nothing below the generation loaded, nor below the rollback record.
#[test]
fn serve_allow_rollback_accepts_the_file_found_at_start_and_no_older_file_on_reload() {
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let vault = dir.join("vault.scopevault");
    let g1 = std::fs::read(&vault).unwrap();
    set_search_token(dir, "value-of-g2", &[]);
    let g2 = std::fs::read(&vault).unwrap();
    set_search_token(dir, "value-of-g3", &[]);
    // The admin restores g2 on purpose and serves it for this run only.
    put_back(dir, &g2);
    let d = Daemon::start(
        dir,
        &["--identity-file", id.to_str().unwrap(), "--allow-rollback"],
    );
    assert_eq!(served_token(&d), "value-of-g2");
    // Someone who can write the vault file puts back an even older genuine copy: neither the
    // next request's follow of the changed file nor `reload` loads it.
    put_back(dir, &g1);
    assert_eq!(served_token(&d), "value-of-g2");
    let out = sv(&d, &["reload"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr_of(&out).contains("rollback"), "{out:?}");
    assert_eq!(served_token(&d), "value-of-g2");
    assert!(
        d.stderr_text().contains("was not loaded"),
        "{}",
        d.stderr_text()
    );
    // The admin adopts the restore (a save above the record) and the daemon follows it; g1
    // put back after that is refused the same way.
    put_back(dir, &g2);
    set_search_token(dir, "value-adopted", &["--allow-rollback"]);
    assert_eq!(served_token(&d), "value-adopted");
    put_back(dir, &g1);
    assert_eq!(served_token(&d), "value-adopted");
    let out = sv(&d, &["reload"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(stderr_of(&out).contains("rollback"), "{out:?}");
    assert_eq!(served_token(&d), "value-adopted");
    assert!(d.stop().success());
}

/// vault-format.md: "The daemon keeps the file it found at its start: to serve another file,
/// restart it", and a link at the vault path owned by another user is refused. The daemon's
/// reload followed whatever link was put at its vault path after its start: a link owned by
/// another user, pointing into a directory anyone may write, that `cred list` refuses, was
/// loaded by `reload` (exit 0) and by the next request. Now a load after the start opens the
/// file found at start by its name without following a link (`O_NOFOLLOW`): a link put there,
/// anybody's, is refused, and the file itself put back is loaded again.
#[test]
fn the_daemon_refuses_a_link_put_at_its_vault_path_after_its_start() {
    use std::os::unix::fs::{lchown, symlink, PermissionsExt};
    if !rustix::process::geteuid().is_root() {
        return crate::common::skip::skip(
            "needs root to make a symbolic link owned by another uid",
        );
    }
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let vault = dir.join("vault.scopevault");
    let d = Daemon::start(dir, &["--identity-file", id.to_str().unwrap()]);
    assert_eq!(served_token(&d), secret_of("search-token"));
    // A newer genuine generation, left in a directory anyone may write (no request to the
    // daemon meanwhile: it has not loaded it).
    set_search_token(dir, "value-behind-the-link", &[]);
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let newer = open.join("newer.scopevault");
    std::fs::copy(&vault, &newer).unwrap();
    for owner in [65534, 0] {
        let link = dir.join(".link");
        symlink(&newer, &link).unwrap();
        lchown(&link, Some(owner), Some(owner)).unwrap();
        std::fs::rename(&link, &vault).unwrap();
        if owner != 0 {
            // Every command refuses this link.
            let out = daemon::cmd(dir)
                .args(["--identity-file", id.to_str().unwrap(), "cred", "list"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(!out.status.success(), "{out:?}");
            assert!(stderr_of(&out).contains("owned by uid 65534"), "{out:?}");
        }
        // Neither the next request's follow nor `reload` takes the file it leads to.
        assert_eq!(served_token(&d), secret_of("search-token"), "owner {owner}");
        let out = sv(&d, &["reload"]);
        assert!(!out.status.success(), "owner {owner}: {out:?}");
        assert!(stderr_of(&out).contains("symbolic link"), "{out:?}");
        assert_eq!(served_token(&d), secret_of("search-token"), "owner {owner}");
    }
    // The file itself back at the path is loaded.
    put_back(dir, &std::fs::read(&newer).unwrap());
    assert_eq!(served_token(&d), "value-behind-the-link");
    assert!(d.stop().success());
}

/// A vault file the daemon refuses on `reload` (forged, rolled back, a link put at its path)
/// was answered `internal` ("a daemon bug or unexpected I/O error") and the client exited 5,
/// where a command refusing the same file exits 4 (README, "Exit codes"). Now the answer is
/// `vault_refused`, the client exits 4, and the audit records the refusal as `deny` with that
/// code.
#[test]
fn a_vault_file_the_daemon_refuses_is_vault_refused_exit_4_not_internal() {
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let vault = dir.join("vault.scopevault");
    let older = std::fs::read(&vault).unwrap();
    set_search_token(dir, "value-newest", &[]);
    let newest = std::fs::read(&vault).unwrap();
    let d = Daemon::start(dir, &["--identity-file", id.to_str().unwrap()]);
    let mut forged = newest.clone();
    *forged.last_mut().unwrap() ^= 1;
    for (what, bytes, says) in [
        ("forged", &forged, "failed authentication"),
        ("rolled back", &older, "rollback"),
    ] {
        put_back(dir, bytes);
        let v = d.request(r#"{"v":1,"op":"reload"}"#);
        assert_eq!(code(&v), "vault_refused", "{what}: {v}");
        let out = sv(&d, &["reload"]);
        assert_eq!(out.status.code(), Some(4), "{what}: {out:?}");
        let err = stderr_of(&out);
        assert!(
            err.contains("vault_refused") && err.contains(says),
            "{what}: {err}"
        );
        let audit = d.audit_text();
        let last = audit
            .lines()
            .rfind(|l| l.contains(r#""op":"reload""#))
            .unwrap();
        assert!(
            last.contains(r#""decision":"deny""#) && last.contains("vault_refused: "),
            "{what}: {last}"
        );
        assert_eq!(served_token(&d), "value-newest", "{what}");
    }
    assert!(d.stop().success());
}

const PASS: &str = "correct horse battery staple orbits quietly\n";

/// The vault id the daemon serves (`None`: locked; a locked daemon names the vault its
/// `unlock` loads, twenty-sixth pass).
fn served_id(d: &Daemon) -> Option<String> {
    let v = d.request(r#"{"v":1,"op":"health"}"#);
    if v["locked"] == true {
        return None;
    }
    v["vault_id"].as_str().map(str::to_owned)
}

/// "The daemon keeps the file it found at its start: to serve another file, restart it", and
/// "its reload refuses a file with another id". A passphrase daemon serving vault A, locked,
/// with a genuine vault B sharing the passphrase (a newer generation) renamed over its path,
/// loaded B at the next `unlock` and went on serving it; its `reload` of B said the file was
/// forged ("written by someone without the vault key"), though B is genuine. Now every load
/// after the first, an unlock after a lock too, refuses a file of another vault id, naming
/// both ids and saying to restart the daemon, before the file is authenticated.
#[test]
fn the_daemon_serves_the_vault_it_loaded_first_and_names_another_vaults_file() {
    let dir = tempdir();
    let dir = dir.path();
    let pass = dir.join("pass");
    std::fs::write(&pass, PASS).unwrap();
    let p = pass.to_str().unwrap();
    ok(dir, &["--passphrase-file", p, "init", "--no-keyring"], None);
    let a = std::fs::read(dir.join("vault.scopevault")).unwrap();
    // Vault B: the same passphrase, a higher generation than A's.
    let other = dir.join("other.scopevault");
    let o = other.to_str().unwrap();
    ok(
        dir,
        &["--passphrase-file", p, "--vault", o, "init", "--no-keyring"],
        None,
    );
    ok(
        dir,
        &[
            "--passphrase-file",
            p,
            "--vault",
            o,
            "cred",
            "add",
            "b",
            "--kind",
            "generic",
            "--secret",
            "token",
        ],
        Some("value-of-b"),
    );
    let b = std::fs::read(&other).unwrap();
    let d = Daemon::start(dir, &["--no-keyring"]);
    let out = sv(&d, &["unlock", "--passphrase-file", p]);
    assert!(out.status.success(), "{out:?}");
    let a_id = served_id(&d).unwrap();
    put_back(dir, &b);
    let b_id = crate::common::vault::split(&b).0["vault_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let says_other_vault = |out: &Output, what: &str| {
        let err = stderr_of(out);
        assert_eq!(out.status.code(), Some(4), "{what}: {err}");
        assert!(
            err.contains("vault_refused")
                && err.contains("another vault")
                && err.contains(&a_id)
                && err.contains(&b_id)
                && err.contains("restart the daemon")
                && !err.contains("failed authentication")
                && !err.contains("rollback"),
            "{what}: {err}"
        );
    };
    says_other_vault(&sv(&d, &["reload"]), "reload");
    assert_eq!(served_id(&d).as_deref(), Some(a_id.as_str()));
    assert!(sv(&d, &["lock"]).status.success());
    // The daemon refuses B at an unlock after the lock. `scopevault unlock` no longer sends
    // it the passphrase (twenty-sixth pass): the locked daemon names vault A as the one it
    // loads, and B as the file at its path, so the client says B's file replaced A's, exit 5.
    let refused = d.request(&format!(
        r#"{{"v":1,"op":"unlock","passphrase":"{}"}}"#,
        PASS.trim_end()
    ));
    assert_eq!(code(&refused), "vault_refused", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("another vault")
            && message.contains(&a_id)
            && message.contains(&b_id)
            && message.contains("restart the daemon"),
        "{message}"
    );
    let out = sv(&d, &["unlock", "--passphrase-file", p]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("has replaced the daemon's")
            && err.contains(&a_id)
            && err.contains(&b_id)
            && err.contains("No unlock request was sent"),
        "{err}"
    );
    assert_eq!(served_id(&d), None, "still locked");
    // A's file back: the unlock loads it.
    put_back(dir, &a);
    let out = sv(&d, &["unlock", "--passphrase-file", p]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(served_id(&d).as_deref(), Some(a_id.as_str()));
    assert!(d.stop().success());
}

/// `serve --allow-rollback` on a restored generation (the record and the audit chain at a
/// newer one): `reload` of the very file being served, untouched, was refused as "an older
/// copy replaced it (rollback)", exit 4, and so was an unlock after a lock. Now the run keeps
/// serving its restore: a later load accepts the restore's generation and up, refuses below
/// it, and is checked against the record again once the restore is adopted.
#[test]
fn serve_allow_rollback_keeps_serving_its_restore_on_reload_and_unlock_until_it_is_adopted() {
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let pass = dir.join("pass");
    std::fs::write(&pass, PASS).unwrap();
    let p = pass.to_str().unwrap();
    let i = id.to_str().unwrap();
    ok(
        dir,
        &[
            "--identity-file",
            i,
            "key",
            "add",
            "--passphrase",
            "--new-passphrase-file",
            p,
        ],
        None,
    );
    let vault = dir.join("vault.scopevault");
    let g1 = std::fs::read(&vault).unwrap();
    set_search_token(dir, "value-of-g2", &[]);
    let g2 = std::fs::read(&vault).unwrap();
    set_search_token(dir, "value-of-g3", &[]);
    // A daemon served g3: the audit chain has recorded it, as the rollback record has.
    let d = Daemon::start(dir, &["--identity-file", i]);
    assert_eq!(served_token(&d), "value-of-g3");
    assert!(d.stop().success());
    put_back(dir, &g2);
    let d = Daemon::start(dir, &["--identity-file", i, "--allow-rollback"]);
    assert_eq!(served_token(&d), "value-of-g2");
    let out = sv(&d, &["reload"]);
    assert!(out.status.success(), "reload of the restore: {out:?}");
    assert_eq!(served_token(&d), "value-of-g2");
    assert!(sv(&d, &["lock"]).status.success());
    let out = sv(&d, &["unlock", "--passphrase-file", p]);
    assert!(out.status.success(), "unlock of the restore: {out:?}");
    assert_eq!(served_token(&d), "value-of-g2");
    // Below the restore: refused, by reload and by an unlock after a lock.
    put_back(dir, &g1);
    let out = sv(&d, &["reload"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(stderr_of(&out).contains("rollback"), "{out:?}");
    assert!(sv(&d, &["lock"]).status.success());
    let out = sv(&d, &["unlock", "--passphrase-file", p]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    // The restore adopted (a save above the record): served, and checked as usual after.
    put_back(dir, &g2);
    assert!(sv(&d, &["unlock", "--passphrase-file", p]).status.success());
    set_search_token(dir, "value-adopted", &["--allow-rollback"]);
    assert_eq!(served_token(&d), "value-adopted");
    put_back(dir, &g2);
    let out = sv(&d, &["reload"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(served_token(&d), "value-adopted");
    assert!(d.stop().success());
}

/// Twentieth pass (found by the nineteenth pass's review): the daemon's load opened its vault
/// path `O_NONBLOCK` and judged the descriptor afterwards, so a FIFO put at the path was opened
/// by the daemon (as a tty or `/dev/ptmx` there would have been) before it was refused. The
/// path is now judged through an `O_PATH` descriptor: `reload` refuses the FIFO, naming it,
/// and the daemon never opens it.
#[test]
fn the_daemon_never_opens_a_fifo_at_its_vault_path() {
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let vault = dir.join("vault.scopevault");
    let saved = std::fs::read(&vault).unwrap();
    let d = Daemon::start(dir, &["--identity-file", id.to_str().unwrap()]);
    std::fs::remove_file(&vault).unwrap();
    crate::common::mkfifo(&vault);
    let (out, opened) = crate::common::opened_while(&[&vault], || sv(&d, &["reload"]));
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(vault.to_str().unwrap()) && err.contains("not a regular file (a FIFO)"),
        "{err}"
    );
    assert_eq!(opened, [false], "the daemon opened the FIFO: {err}");
    std::fs::remove_file(&vault).unwrap();
    put_back(dir, &saved);
    assert_eq!(served_token(&d), secret_of("search-token"));
    assert!(d.stop().success());
}

/// Nothing, or a FIFO, at the daemon's vault path: `reload` answered `internal` ("a daemon
/// bug or unexpected I/O error", exit 5), the missing file with "create one with `scopevault
/// init`, or point --vault at it", which a client cannot do for the daemon. Now both are
/// `vault_refused` (exit 4) saying to put the file back at the path or restart the daemon,
/// audited as `deny`, and the loaded vault stays in service.
#[test]
fn nothing_or_no_regular_file_at_the_daemon_vault_path_is_vault_refused() {
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let vault = dir.join("vault.scopevault");
    let saved = std::fs::read(&vault).unwrap();
    let d = Daemon::start(dir, &["--identity-file", id.to_str().unwrap()]);
    for what in ["missing", "fifo"] {
        std::fs::remove_file(&vault).unwrap();
        if what == "fifo" {
            let made = std::process::Command::new("mkfifo").arg(&vault).status();
            assert!(made.unwrap().success());
        }
        let v = d.request(r#"{"v":1,"op":"reload"}"#);
        assert_eq!(code(&v), "vault_refused", "{what}: {v}");
        let out = sv(&d, &["reload"]);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(4), "{what}: {err}");
        assert!(
            err.contains(vault.to_str().unwrap())
                && err.contains("Put the vault file back at this path")
                && err.contains("restart the daemon")
                && !err.contains("scopevault init"),
            "{what}: {err}"
        );
        let audit = d.audit_text();
        let last = audit
            .lines()
            .rfind(|l| l.contains(r#""op":"reload""#))
            .unwrap();
        assert!(last.contains(r#""decision":"deny""#), "{what}: {last}");
        assert_eq!(served_token(&d), secret_of("search-token"), "{what}");
        let _ = std::fs::remove_file(&vault);
        put_back(dir, &saved);
    }
    assert!(d.stop().success());
}

/// A process holding the state directory's `generations.lock` (the rollback record's lock),
/// as an admin command stopped (Ctrl-Z, SIGSTOP) while it holds it: `flock -x LOCK sleep`,
/// as the attacker of races held it. Killed when dropped.
struct RecordLockHolder(std::process::Child);

impl RecordLockHolder {
    fn hold(dir: &Path) -> RecordLockHolder {
        let state = dir.join("state/scopevault");
        let lock = state.join("generations.lock");
        // In a process group of its own: the `sleep` holds the lock too (it inherits the
        // descriptor), so both are killed.
        let child = std::process::Command::new("flock")
            .arg("-x")
            .arg(&lock)
            .args(["sleep", "600"])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("flock(1) runs");
        // Held once a lock of our own on the file would block.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let f = std::fs::OpenOptions::new().write(true).open(&lock).unwrap();
            if matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)) {
                break;
            }
            drop(f);
            assert!(
                std::time::Instant::now() < deadline,
                "flock never took {lock:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        RecordLockHolder(child)
    }
}

impl Drop for RecordLockHolder {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{}", self.0.id()))
            .status();
        let _ = self.0.wait();
    }
}

/// Twenty-fifth pass, found by the attacker of races: a vault file saved since the load whose
/// generation is not recorded yet, while another process holds the rollback record's lock
/// (a command stopped after renaming its file into place): the daemon's load waited for that
/// lock without a bound, and every fetch with it (`get` failed after its timeout). Now the
/// load gives up on the lock, the daemon keeps serving the generation it has and says why in
/// `health` and `status`, and loads the saved file once the lock is free.
#[test]
fn a_held_rollback_record_lock_leaves_fetches_answered_and_the_file_loaded_once_free() {
    let dir = tempdir();
    let dir = dir.path();
    setup_vault(dir);
    let vault = dir.join("vault.scopevault");
    let record = dir.join("state/scopevault/generations.json");
    let (old_file, old_record) = (
        std::fs::read(&vault).unwrap(),
        std::fs::read(&record).unwrap(),
    );
    // A save the record has not caught up with: the saved file, the record from before it.
    let nowhere = dir.join("nowhere.sock");
    set_search_token(
        dir,
        "rotated-under-lock",
        &["--socket", nowhere.to_str().unwrap()],
    );
    let saved = std::fs::read(&vault).unwrap();
    put_back(dir, &old_file);
    std::fs::write(&record, &old_record).unwrap();
    let id = dir.join("identity.txt");
    let d = Daemon::start(dir, &["--identity-file", id.to_str().unwrap()]);
    assert_eq!(served_token(&d), secret_of("search-token"));
    let holder = RecordLockHolder::hold(dir);
    put_back(dir, &saved);
    // Answered (within the request's own 60 s read timeout), from the generation loaded.
    assert_eq!(served_token(&d), secret_of("search-token"));
    let h = d.request(r#"{"v":1,"op":"health"}"#);
    let why = h["load_waits"].as_str().unwrap_or_else(|| panic!("{h}"));
    assert!(
        why.contains("generations.lock") && why.contains("flock"),
        "{h}"
    );
    let status = sv(&d, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("waits for the rollback record's lock"),
        "{text}"
    );
    assert!(
        d.stderr_text()
            .contains("it waits for the rollback record's lock"),
        "{}",
        d.stderr_text()
    );
    drop(holder);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while served_token(&d) != "rotated-under-lock" {
        assert!(
            std::time::Instant::now() < deadline,
            "the saved file was never loaded once the lock was free: {}",
            d.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(d.request(r#"{"v":1,"op":"health"}"#)["load_waits"].is_null());
    d.assert_alive();
}

/// Twenty-fifth pass, found by the attacker of races: a writer waited for the rollback
/// record's lock without a bound (114 s seen) after renaming its file into place, which made
/// the daemon's load wait too. Now it takes the lock before the rename, gives up after 30 s
/// as it does on the vault's lock, names the lock and its holder, and changes nothing; the
/// daemon answers every fetch meanwhile.
#[test]
fn a_writer_gives_up_on_a_held_rollback_record_lock_naming_its_holder() {
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let d = Daemon::start(dir, &["--identity-file", id.to_str().unwrap()]);
    let before = std::fs::read(dir.join("vault.scopevault")).unwrap();
    let _holder = RecordLockHolder::hold(dir);
    let mut writer = daemon::cmd(dir)
        .arg("--socket")
        .arg(&d.socket)
        .args(["--identity-file", id.to_str().unwrap()])
        .args(["cred", "set", "search-token", "--secret", "token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writer
            .stdin
            .take()
            .unwrap()
            .write_all(b"never-stored")
            .unwrap();
    }
    // Every fetch while the writer waits is answered, with what was stored before.
    while writer.try_wait().unwrap().is_none() {
        assert_eq!(served_token(&d), secret_of("search-token"));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = writer.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("generations.lock") && err.contains("flock"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(std::fs::read(dir.join("vault.scopevault")).unwrap(), before);
    assert_eq!(served_token(&d), secret_of("search-token"));
    d.assert_alive();
}

/// A vault file saved since the daemon's start (`cred set` with no daemon to reach), then the
/// file and the rollback record from before it put back: the saved files, oldest first, for a
/// test to put in place one by one.
fn saves_not_loaded(dir: &Path, values: &[&str]) -> Vec<Vec<u8>> {
    let vault = dir.join("vault.scopevault");
    let record = dir.join("state/scopevault/generations.json");
    let (old_file, old_record) = (
        std::fs::read(&vault).unwrap(),
        std::fs::read(&record).unwrap(),
    );
    let nowhere = dir.join("nowhere.sock");
    let saved = values
        .iter()
        .map(|v| {
            set_search_token(dir, v, &["--socket", nowhere.to_str().unwrap()]);
            std::fs::read(&vault).unwrap()
        })
        .collect();
    put_back(dir, &old_file);
    std::fs::write(&record, &old_record).unwrap();
    saved
}

/// Twenty-sixth pass, found by the attacker of observability and many daemons: a file that
/// waited for the rollback record's lock, replaced by a newer save once the lock was free and
/// before any request reached the daemon, left `load_waits` set for good ("held by pid N …
/// end it", N long gone) while the daemon served the newest file and `reload` succeeded.
/// Now the message goes with the wait: once the file it describes is no longer at the path,
/// and on any successful load.
#[test]
fn load_waits_is_gone_once_the_newest_file_is_loaded_after_the_lock_is_free() {
    let dir = tempdir();
    let dir = dir.path();
    setup_vault(dir);
    let saved = saves_not_loaded(dir, &["first-save", "second-save"]);
    let id = dir.join("identity.txt");
    let d = Daemon::start(dir, &["--identity-file", id.to_str().unwrap()]);
    let holder = RecordLockHolder::hold(dir);
    let holder_pid = holder.0.id();
    put_back(dir, &saved[0]);
    assert_eq!(served_token(&d), secret_of("search-token"));
    let h = d.request(r#"{"v":1,"op":"health"}"#);
    assert!(h["load_waits"].is_string(), "{h}");
    drop(holder);
    // The next save is in place before any request reaches the daemon.
    put_back(dir, &saved[1]);
    assert_eq!(served_token(&d), "second-save");
    let h = d.request(r#"{"v":1,"op":"health"}"#);
    assert!(h["load_waits"].is_null(), "stale after the load: {h}");
    assert_eq!(h["loading"], false, "{h}");
    let status = sv(&d, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(!text.contains("not loaded yet"), "{text}");
    assert!(!text.contains(&format!("pid {holder_pid}")), "{text}");
    let reload = sv(&d, &["reload"]);
    assert!(reload.status.success(), "{}", stderr_of(&reload));
    assert!(d.request(r#"{"v":1,"op":"health"}"#)["load_waits"].is_null());
    d.assert_alive();
}

/// Twenty-sixth pass, found by the attacker of observability and many daemons: `load_waits`
/// named the lock's holder (pid, command) to any uid that could connect, a uid in no task
/// too. Now only admins (root and the daemon's uid) are told who holds it.
#[test]
fn load_waits_names_the_lock_holder_to_admins_only() {
    use crate::common::{skip, users};
    let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
        Ok(ids) => ids,
        Err(why) => return skip::skip(&why),
    };
    let dir = tempdir();
    let dir = dir.path();
    setup_vault(dir);
    let saved = saves_not_loaded(dir, &["first-save"]);
    let id = dir.join("identity.txt");
    let d = Daemon::start(dir, &["--identity-file", id.to_str().unwrap()]);
    let exe = crate::common::users::shared_binary(dir);
    use std::os::unix::fs::PermissionsExt;
    let perms = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    perms(d.socket.parent().unwrap(), 0o711);
    perms(&d.socket, 0o666);
    let _holder = RecordLockHolder::hold(dir);
    put_back(dir, &saved[0]);
    assert_eq!(served_token(&d), secret_of("search-token"));
    let admin = d.request(r#"{"v":1,"op":"health"}"#);
    let why = admin["load_waits"]
        .as_str()
        .unwrap_or_else(|| panic!("{admin}"));
    assert!(why.contains("pid ") && why.contains("flock"), "{admin}");
    let out = users::run_as(uid, gid, &exe, &d.socket, &["status", "--json"]);
    let other: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(other["peer"]["admin"], false, "{other}");
    let why = other["load_waits"]
        .as_str()
        .unwrap_or_else(|| panic!("{other}"));
    assert!(why.contains("generations.lock"), "{other}");
    assert!(!why.contains("pid ") && !why.contains("flock"), "{other}");
    d.assert_alive();
}

/// `status --format prometheus` against the daemon `d`, its audit log given.
fn metrics(d: &Daemon) -> String {
    let audit = d.dir.join("audit.jsonl");
    let out = sv(
        d,
        &[
            "status",
            "--format",
            "prometheus",
            "--audit",
            audit.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Twenty-sixth pass, found by the attacker of observability and many daemons: a reload that
/// refused the file at the vault path (an older copy put back) showed in neither `status` nor
/// any metric, and `doctor`'s daemon line said nothing of it. Now `health`'s `load_refused`
/// carries the refusal while that file is there, `status` prints it,
/// `scopevault_vault_load_refused` is 1 (the alert `ScopevaultVaultRefused`), `doctor` names
/// it; putting the right file back ends it.
#[test]
fn a_refused_reload_shows_in_health_status_metrics_and_doctor_until_the_file_is_fixed() {
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let vault = dir.join("vault.scopevault");
    let older = std::fs::read(&vault).unwrap();
    set_search_token(dir, "value-newest", &[]);
    let newest = std::fs::read(&vault).unwrap();
    let d = Daemon::start(dir, &["--identity-file", id.to_str().unwrap()]);
    assert!(metrics(&d).contains("\nscopevault_vault_load_refused 0\n"));
    put_back(dir, &older);
    assert_eq!(
        code(&d.request(r#"{"v":1,"op":"reload"}"#)),
        "vault_refused"
    );
    let h = d.request(r#"{"v":1,"op":"health"}"#);
    let why = h["load_refused"].as_str().unwrap_or_else(|| panic!("{h}"));
    assert!(why.contains("rollback"), "{h}");
    let status = sv(&d, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("REFUSED by the daemon's last load") && text.contains("rollback"),
        "{text}"
    );
    assert!(metrics(&d).contains("\nscopevault_vault_load_refused 1\n"));
    let doctor = sv(&d, &["--identity-file", id.to_str().unwrap(), "doctor"]);
    let report = String::from_utf8_lossy(&doctor.stdout);
    let line = report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("daemon"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        line.contains("REFUSED") && line.contains("rollback"),
        "{report}"
    );
    // A refused file followed before a request (no `reload`) is reported the same way.
    put_back(dir, &newest);
    assert_eq!(served_token(&d), "value-newest");
    assert!(d.request(r#"{"v":1,"op":"health"}"#)["load_refused"].is_null());
    assert!(metrics(&d).contains("\nscopevault_vault_load_refused 0\n"));
    put_back(dir, &older);
    assert_eq!(served_token(&d), "value-newest");
    let h = d.request(r#"{"v":1,"op":"health"}"#);
    assert!(h["load_refused"].is_string(), "{h}");
    put_back(dir, &newest);
    let reload = sv(&d, &["reload"]);
    assert!(reload.status.success(), "{}", stderr_of(&reload));
    assert!(d.request(r#"{"v":1,"op":"health"}"#)["load_refused"].is_null());
    d.assert_alive();
}

/// Twenty-sixth pass, found by the attacker of observability and many daemons: the reason a
/// load refused the vault file (its path, generations, another vault's id) is an admin's to
/// read; any other uid that may connect is told only that the file was refused.
#[test]
fn load_refused_gives_its_reason_to_admins_only() {
    use crate::common::{skip, users};
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
        Ok(ids) => ids,
        Err(why) => return skip::skip(&why),
    };
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let vault = dir.join("vault.scopevault");
    let older = std::fs::read(&vault).unwrap();
    set_search_token(dir, "value-newest", &[]);
    let d = Daemon::start(dir, &["--identity-file", id.to_str().unwrap()]);
    let exe = users::shared_binary(dir);
    let perms = |p: &Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    perms(d.socket.parent().unwrap(), 0o711);
    perms(&d.socket, 0o666);
    put_back(dir, &older);
    assert_eq!(
        code(&d.request(r#"{"v":1,"op":"reload"}"#)),
        "vault_refused"
    );
    let admin = d.request(r#"{"v":1,"op":"health"}"#);
    let why = admin["load_refused"]
        .as_str()
        .unwrap_or_else(|| panic!("{admin}"));
    assert!(why.contains("rollback"), "{admin}");
    let out = users::run_as(uid, gid, &exe, &d.socket, &["status", "--json"]);
    let other: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(other["peer"]["admin"], false, "{other}");
    let why = other["load_refused"]
        .as_str()
        .unwrap_or_else(|| panic!("{other}"));
    assert!(
        why.contains("refused") && why.contains("admins only"),
        "{other}"
    );
    assert!(
        !why.contains("rollback") && !why.contains(vault.to_str().unwrap()),
        "{other}"
    );
    d.assert_alive();
}

/// The value of the unlabelled metric `name` in `status --format prometheus` output.
fn metric_value(metrics: &str, name: &str) -> Option<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Found by the twenty-sixth pass's review (twenty-seventh pass): the alert
/// `ScopevaultLocked` (`scopevault_locked == 1`) had no test of a real `lock`. A real daemon,
/// locked with `scopevault lock`: the metric is 1 (while `scopevault_up` stays 1) and the text
/// says locked; unlocked again, the metric is 0.
#[test]
fn scopevault_locked_is_1_after_lock_and_0_after_unlock() {
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let id = id.to_str().unwrap();
    let d = Daemon::start(dir, &["--identity-file", id]);
    let m = metrics(&d);
    assert_eq!(
        metric_value(&m, "scopevault_locked").as_deref(),
        Some("0"),
        "{m}"
    );
    let out = sv(&d, &["lock"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let m = metrics(&d);
    assert_eq!(
        metric_value(&m, "scopevault_up").as_deref(),
        Some("1"),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "scopevault_locked").as_deref(),
        Some("1"),
        "{m}"
    );
    let status = sv(&d, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("vault:       locked"), "{text}");
    let out = sv(&d, &["unlock", "--identity-file", id]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let m = metrics(&d);
    assert_eq!(
        metric_value(&m, "scopevault_locked").as_deref(),
        Some("0"),
        "{m}"
    );
    assert!(d.stop().success());
}

/// Twenty-eighth pass (found by the twenty-seventh pass's review): with a real daemon, a
/// policy applied and reloaded between a client's `tasks` and its `fetch` on one connection,
/// adding `search-token` to task `checkout-flow`, made that fetch "not a valid response"
/// (exit 5 from `exec`; a retry worked): the library refused every credential the earlier
/// `tasks` answer had not listed. The client now asks `tasks` once more on that refusal, and
/// the fresh answer lists the credential, so the hand-out is taken, both credentials in it.
#[test]
fn a_fetch_after_a_reload_that_added_a_credential_to_the_task_is_taken() {
    use scopevault::client::Client;
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let d = Daemon::start(dir.path(), &["--identity-file", id.to_str().unwrap()]);
    let mut c = Client::connect_within(&d.socket, std::time::Duration::from_secs(60)).unwrap();
    let listed = c.task_info("checkout-flow").unwrap();
    assert_eq!(listed.tasks[0].credentials, ["shop-buyer"]);
    // Between the two requests: a policy that adds a credential to the task, applied, and
    // the daemon reloaded.
    let policy = daemon::example_policy().replacen(
        "credentials = [\"shop-buyer\"]",
        "credentials = [\"shop-buyer\", \"search-token\"]",
        1,
    );
    let file = dir.path().join("added.toml");
    std::fs::write(&file, policy).unwrap();
    let (id_s, file_s) = (id.to_str().unwrap(), file.to_str().unwrap());
    ok(
        dir.path(),
        &["--identity-file", id_s, "policy", "apply", file_s],
        None,
    );
    let reloaded = d.request(r#"{"v":1,"op":"reload"}"#);
    assert_eq!(reloaded["ok"], true, "{reloaded}");
    let fetched = c.fetch("checkout-flow", None).unwrap();
    let names: Vec<&str> = fetched
        .credentials
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"search-token"), "{names:?}");
    let token = fetched
        .credentials
        .iter()
        .find(|c| c.name == "search-token");
    assert_eq!(
        token.unwrap().secrets.get("token").unwrap().expose(),
        secret_of("search-token")
    );
}

/// The datagrams the daemon sends to `NOTIFY_SOCKET` (systemd's `sd_notify`), received on a
/// socket of the test's.
struct Notified(std::os::unix::net::UnixDatagram);

impl Notified {
    fn bind(path: &Path) -> Notified {
        let rx = std::os::unix::net::UnixDatagram::bind(path).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        Notified(rx)
    }

    /// The next datagram (60 s at most).
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.0.recv(&mut buf).expect("a datagram on NOTIFY_SOCKET");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The next two datagrams, which must be a reload's: `RELOADING=1` with the time it began
    /// (`MONOTONIC_USEC=`, microseconds, as systemd's `Type=notify-reload` asks), then
    /// `READY=1` with its outcome. Returns that time and the `STATUS=` of the second.
    fn reload(&self) -> (u64, String) {
        let first = self.next();
        let mut lines = first.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"), "{first:?}");
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC=: {first:?}"));
        let second = self.next();
        assert!(second.starts_with("READY=1\n"), "{second:?}");
        let status = second
            .lines()
            .find_map(|l| l.strip_prefix("STATUS="))
            .unwrap_or_else(|| panic!("no STATUS=: {second:?}"))
            .to_owned();
        (usec, status)
    }
}

/// Regression (twenty-ninth pass, found by the systemd attacker): the unit's
/// `ExecReload=/bin/kill -HUP $MAINPID` made `systemctl reload scopevault` succeed while the
/// daemon refused the file (a rollback) and kept serving the old generation, and the daemon
/// told systemd nothing of a reload. The unit's `ExecReload=` now runs `scopevault reload`,
/// which exits with the daemon's verdict (0 when loaded, 4 when the file is refused), and
/// every reload asked (`reload`, SIGHUP) is announced with `RELOADING=1` and
/// `MONOTONIC_USEC=`, then `READY=1` with its outcome in `STATUS=`. Run here: the unit's own
/// `ExecReload=` line, its paths made the test's.
#[test]
fn the_units_exec_reload_fails_when_the_daemon_refuses_and_each_reload_is_told_to_systemd() {
    let dir = tempdir();
    let dir = dir.path();
    let id = setup_vault(dir);
    let vault = dir.join("vault.scopevault");
    let older = std::fs::read(&vault).unwrap();
    set_search_token(dir, "newer-value", &[]);
    let notify = Notified::bind(&dir.join("notify.sock"));
    let mut c = std::process::Command::new(daemon::bin());
    c.env("NOTIFY_SOCKET", dir.join("notify.sock"));
    let d = Daemon::start_command(dir, c, &["--identity-file", id.to_str().unwrap()]);
    assert!(notify.next().starts_with("READY=1"));

    // The unit's ExecReload=, with the binary, socket, vault and state directory of the test.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/systemd/scopevault.service"
    ))
    .unwrap();
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
            .collect()
    };
    let reload_line = value("ExecReload");
    assert_eq!(reload_line.len(), 1, "{reload_line:?}");
    let state = dir.join("state/scopevault");
    let subst = |s: &str| {
        s.replace("/usr/local/bin/scopevault", daemon::bin())
            .replace(
                "/run/scopevault/scopevault.sock",
                d.socket.to_str().unwrap(),
            )
            .replace(
                "/var/lib/scopevault/vault.scopevault",
                vault.to_str().unwrap(),
            )
            .replace("/var/lib/scopevault-state", state.to_str().unwrap())
    };
    let argv: Vec<String> = subst(&reload_line[0])
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        argv[0],
        daemon::bin(),
        "ExecReload= runs scopevault: {argv:?}"
    );
    let exec_reload = || {
        let mut c = std::process::Command::new(&argv[0]);
        c.args(&argv[1..]).env_clear().env("PATH", "/usr/bin:/bin");
        for e in value("Environment") {
            let (k, v) = e.split_once('=').unwrap();
            c.env(k, subst(v));
        }
        c.stdin(Stdio::null()).output().unwrap()
    };

    // A reload the daemon does: exit 0, no warning, and systemd told.
    let out = exec_reload();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("warning"), "{}", stderr_of(&out));
    let (began, status) = notify.reload();
    assert!(status.contains("reloaded"), "{status}");
    // SIGHUP too, later on the same clock.
    d.signal("HUP");
    let (later, status) = notify.reload();
    assert!(later > began, "{later} after {began}");
    assert!(status.contains("reloaded"), "{status}");

    // An older copy put back: the reload is refused, ExecReload= fails (exit 4), and the
    // status says so; the newer generation stays in service.
    put_back(dir, &older);
    let out = exec_reload();
    assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
    let (_, status) = notify.reload();
    assert!(status.contains("refused"), "{status}");
    d.signal("HUP");
    let (_, status) = notify.reload();
    assert!(status.contains("refused"), "{status}");
    d.assert_alive();
}

/// Regression (twenty-ninth pass, found by the systemd attacker): under the shipped unit's
/// `ProcSubset=pid` (`/proc` mounted with `subset=pid`: no `/proc/locks`), the daemon's wait
/// for the rollback record's lock said the holder was "another process (not named in
/// /proc/locks)", a file it never read. Now it says the holder cannot be named from there and
/// why, and gives the command that names it from outside the sandbox, which does name the
/// holder here. The daemon runs in a mount namespace of its own with such a `/proc`.
#[test]
fn under_a_proc_without_locks_the_record_lock_holder_is_said_unnameable_and_how_to_name_it() {
    use crate::common::skip;
    if !daemon::is_root() {
        return skip::skip("needs root to mount a /proc of subset=pid in a namespace");
    }
    let dir = tempdir();
    let dir = dir.path();
    setup_vault(dir);
    let saved = saves_not_loaded(dir, &["saved-under-lock"]);
    let id = dir.join("identity.txt");
    let mut c = std::process::Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t proc -o hidepid=invisible,subset=pid proc /proc && exec "$@""#)
        .arg("sh")
        .arg(daemon::bin());
    let d = Daemon::start_command(dir, c, &["--identity-file", id.to_str().unwrap()]);
    let holder = RecordLockHolder::hold(dir);
    put_back(dir, &saved[0]);
    assert_eq!(served_token(&d), secret_of("search-token"));
    let h = d.request(r#"{"v":1,"op":"health"}"#);
    let why = h["load_waits"]
        .as_str()
        .unwrap_or_else(|| panic!("{h}"))
        .to_owned();
    assert!(why.contains("generations.lock"), "{why}");
    assert!(!why.contains("not named in /proc/locks"), "{why}");
    assert!(
        why.contains("cannot be named from here") && why.contains("subset=pid"),
        "{why}"
    );
    // The command it gives, run here (outside the daemon's namespace), names the holder.
    let grep = why
        .split("`grep '")
        .nth(1)
        .and_then(|r| r.split("' /proc/locks`").next())
        .unwrap_or_else(|| panic!("no grep command: {why}"));
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    let line = locks
        .lines()
        .find(|l| l.contains(grep) && !l.contains("->"))
        .unwrap_or_else(|| panic!("{grep:?} is not in /proc/locks: {locks}"));
    assert_eq!(
        line.split_whitespace().nth(4),
        Some(holder.0.id().to_string().as_str()),
        "{line}"
    );
    drop(holder);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while served_token(&d) != "saved-under-lock" {
        assert!(
            std::time::Instant::now() < deadline,
            "not loaded once the lock was free: {}",
            d.stderr_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
