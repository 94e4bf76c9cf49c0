//! Issue 15, item 4 (vault side): every file the CLI writes in the vault and state
//! directories is opened with O_NOFOLLOW through the directory, and a directory another user
//! could plant links in (group- or other-writable, or reached through another user's
//! symlink) is refused.

use crate::common::vault as common_vault;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common_vault::{files_under, Env};

fn mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

#[test]
fn a_planted_lock_file_link_does_not_make_init_create_a_file_elsewhere() {
    let e = Env::new();
    let vdir = e.vault().parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&vdir).unwrap();
    mode(&vdir, 0o700);
    std::fs::create_dir_all(e.path("elsewhere")).unwrap();
    let target = e.path("elsewhere/created-by-root");
    std::os::unix::fs::symlink(&target, vdir.join("vault.scopevault.lock")).unwrap();
    let err = e.fails(&["init", "--passphrase-file", &e.pf()], b"", 2);
    assert!(err.contains("cannot open the lock file"), "{err}");
    assert!(!target.exists(), "the link was followed: {target:?} exists");
    assert!(!e.vault().exists());
    assert!(files_under(&e.path("elsewhere")).is_empty());
}

#[test]
fn a_planted_rollback_record_link_is_not_followed() {
    let e = Env::new();
    e.init_with_cred();
    // Replace the rollback record by a link to a file of someone else's.
    let victim = e.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let rec = e.path("state/generations.json");
    std::fs::remove_file(&rec).unwrap();
    std::os::unix::fs::symlink(&victim, &rec).unwrap();
    let out = e.run(&["cred", "list", "--passphrase-file", &e.pf()], b"");
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the rollback record"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&rec)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn group_or_other_writable_vault_and_state_directories_are_refused() {
    let e = Env::new();
    e.init_with_cred();
    let vdir = e.vault().parent().unwrap().to_path_buf();
    let before = e.vault_bytes();
    for m in [0o770, 0o707] {
        mode(&vdir, m);
        let err = e.fails(
            &["cred", "rm", "shop-buyer", "--passphrase-file", &e.pf()],
            b"",
            2,
        );
        assert!(err.contains("refusing to write in the directory"), "{err}");
        assert!(err.contains("chmod go-w"), "{err}");
        assert_eq!(e.vault_bytes(), before, "mode {m:o}: nothing written");
    }
    mode(&vdir, 0o755);
    mode(&e.path("state"), 0o775);
    let err = e.fails(&["cred", "list", "--passphrase-file", &e.pf()], b"", 2);
    assert!(err.contains("writable by its group"), "{err}");
    mode(&e.path("state"), 0o700);
    assert_eq!(e.names(), ["shop-buyer"]);
}

#[test]
fn a_vault_directory_reached_through_another_users_symlink_is_refused() {
    if !rustix::process::geteuid().is_root() {
        return crate::common::skip::skip("needs root to make a symlink owned by another uid");
    }
    let e = Env::new();
    let real = e.path("real-vault-dir");
    std::fs::create_dir_all(&real).unwrap();
    mode(&real, 0o700);
    let link = e.path("vaults");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // Owned by nobody: another user planted it.
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let err = e.fails(&["init", "--passphrase-file", &e.pf()], b"", 2);
    assert!(err.contains("symbolic link owned by uid 65534"), "{err}");
    assert!(files_under(&real).is_empty(), "nothing was created");
    // The same link owned by us is ours to make: accepted.
    std::os::unix::fs::lchown(&link, Some(0), Some(0)).unwrap();
    e.ok(&["init", "--passphrase-file", &e.pf()], b"");
    assert!(real.join("vault.scopevault").exists());
}

#[test]
fn the_root_defaults_keep_the_rollback_record_out_of_the_vault_directory() {
    let vault_dir = Path::new(scopevault::paths::ROOT_VAULT).parent().unwrap();
    let state = Path::new(scopevault::paths::ROOT_STATE_DIR);
    assert!(
        !state.starts_with(vault_dir) && !vault_dir.starts_with(state),
        "{state:?} and {vault_dir:?} must not contain each other: a restore of one must not bring the other back"
    );
}

/// Issue 14, item 9: `init --identity-out /etc/credstore/…` on a system without that
/// directory. It is created (0700); and a failing `init` leaves no debris (no lone lock file,
/// no directory it made).
#[test]
fn init_identity_out_creates_its_private_directory_and_a_failure_leaves_no_debris() {
    let e = Env::new();
    let idf = e.path("etc/credstore/scopevault-identity");
    let out = e.run(&["init", "--identity-out", idf.to_str().unwrap()], b"");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("created the directory"), "{err}");
    let m = std::fs::metadata(idf.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(m, 0o700);
    e.ok(
        &["cred", "list", "--identity-file", idf.to_str().unwrap()],
        b"",
    );

    // A parent that cannot be made (a file is in the way): refused, and the vault's
    // directory `init` would have made is not left behind holding a lock file.
    let e = Env::new();
    std::fs::write(e.path("not-a-dir"), b"").unwrap();
    let idf = e.path("not-a-dir/sub/id");
    let out = e.run(&["init", "--identity-out", idf.to_str().unwrap()], b"");
    assert!(!out.status.success());
    assert!(!e.vault().parent().unwrap().exists(), "no debris");
    // And a failure after the lock was taken removes the lock file it created.
    let e = Env::new();
    let vdir = e.vault().parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&vdir).unwrap();
    mode(&vdir, 0o700);
    let idf = e.path("id");
    // The identity file's directory is fine, but a keyring is not available: init fails
    // after taking the lock.
    let out = e.run(
        &["init", "--identity-out", idf.to_str().unwrap(), "--keyring"],
        b"",
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(files_under(&vdir).is_empty(), "{:?}", files_under(&vdir));
    assert!(!idf.exists());
}

/// Issue 14, item 10: the XDG directories the user set are honoured even as root (CI runs as
/// root): the vault, the rollback record and the audit log go under them, never to `/var`.
/// `XDG_RUNTIME_DIR` is the exception for root (src/paths.rs says why).
#[test]
fn the_xdg_directories_the_user_set_are_honoured_even_as_root() {
    let e = Env::new();
    let data = e.path("xdg-data");
    let state = e.path("xdg-state");
    let run = |args: &[&str], stdin: &[u8]| {
        let mut c = e.cmd();
        c.env_remove("SCOPEVAULT_VAULT")
            .env_remove("SCOPEVAULT_STATE_DIR")
            .env("XDG_DATA_HOME", &data)
            .env("XDG_STATE_HOME", &state)
            .env("XDG_RUNTIME_DIR", e.path("xdg-run"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&["init", "--passphrase-file", &e.pf()], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(data.join("scopevault/vault.scopevault").is_file());
    assert!(state.join("scopevault/generations.json").is_file());
    // The audit log's default, as `audit verify` names it when there is none yet.
    let out = run(&["audit", "verify"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    let audit = state.join("scopevault/audit.jsonl");
    assert!(err.contains(&audit.display().to_string()), "{err}");
    // The socket: root's stays the system one; a user's is under XDG_RUNTIME_DIR.
    let out = run(&["status"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    let root = rustix::process::geteuid().is_root();
    let want = if root {
        "/run/scopevault/scopevault.sock".to_owned()
    } else {
        e.path("xdg-run/scopevault/scopevault.sock")
            .display()
            .to_string()
    };
    assert!(err.contains(&want), "{err}");
}

/// A caller other than root refuses a vault directory below a directory another user owns, and
/// a state directory another user owns: a directory's owner can rename or replace anything in
/// it whatever its mode (here: hand the caller a rollback record that allows a rollback).
/// Found by the fifteenth pass's monitoring attack; accepted before the fix.
#[test]
fn a_caller_other_than_root_refuses_directories_another_user_owns() {
    use crate::common::users;
    use std::os::unix::process::CommandExt;
    let ids = users::ensure_user(users::OTHER_USER)
        .and_then(|me| users::ensure_user("scopevault-t3").map(|other| (me, other)));
    let ((uid, gid), (other, other_gid)) = match ids {
        Ok(ids) => ids,
        Err(why) => return crate::common::skip::skip(&why),
    };
    let e = Env::new();
    mode(e.path("").as_path(), 0o711);
    let exe = users::shared_binary(&e.path("shared"));
    mode(&e.path("pass"), 0o644);
    let own = |p: &Path, u: u32, g: u32, m: u32| {
        std::fs::create_dir_all(p).unwrap();
        std::os::unix::fs::chown(p, Some(u), Some(g)).unwrap();
        mode(p, m);
    };
    // The caller's own state directory, and a directory of another user's holding one of
    // the caller's.
    own(&e.path("state-mine"), uid, gid, 0o700);
    own(&e.path("theirs"), other, other_gid, 0o755);
    own(&e.path("theirs/mine"), uid, gid, 0o700);
    own(&e.path("mine"), uid, gid, 0o700);
    let run = |vault: &Path, state: &Path, args: &[&str]| {
        let out = std::process::Command::new(&exe)
            .args(args)
            .arg("--passphrase-file")
            .arg(e.path("pass"))
            .env_clear()
            .env("HOME", "/")
            .env("SCOPEVAULT_VAULT", vault)
            .env("SCOPEVAULT_STATE_DIR", state)
            .env("SCOPEVAULT_TEST_ARGON2", "64,1,1")
            .current_dir("/")
            .uid(uid)
            .gid(gid)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&e.path("theirs/mine/v"), &e.path("state-mine"), &["init"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("owned by uid {other}, another user")),
        "{err}"
    );
    assert!(files_under(&e.path("theirs/mine")).is_empty());
    // Nor through a link of the caller's own that leads there (found by attacking that
    // pass's own change: the link was followed and the directories above where it led were
    // not judged).
    let link = e.path("mine/link");
    std::os::unix::fs::symlink(e.path("theirs/mine"), &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(uid), Some(gid)).unwrap();
    let (code, err) = run(&link.join("v"), &e.path("state-mine"), &["init"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("owned by uid {other}, another user")),
        "{err}"
    );
    assert!(files_under(&e.path("theirs/mine")).is_empty());
    // A state directory still to be made there is judged before it is made: not created.
    let (_, err) = run(&e.path("mine/v3"), &link.join("st"), &["init"]);
    assert!(
        err.contains(&format!("owned by uid {other}, another user")),
        "{err}"
    );
    assert!(!e.path("theirs/mine/st").exists(), "made in a refused tree");

    // Control: the caller's own directories are accepted.
    let vault = e.path("mine/v");
    let (code, err) = run(&vault, &e.path("state-mine"), &["init"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&vault, &e.path("state-mine"), &["cred", "list"]);
    assert_eq!(code, Some(0), "{err}");

    // The same rollback record in a state directory another user owns (readable by all, as
    // that user could make it): refused, not believed.
    own(&e.path("state-theirs"), other, other_gid, 0o755);
    std::fs::copy(
        e.path("state-mine/generations.json"),
        e.path("state-theirs/generations.json"),
    )
    .unwrap();
    mode(&e.path("state-theirs/generations.json"), 0o644);
    let (code, err) = run(&vault, &e.path("state-theirs"), &["cred", "list"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("owned by uid {other}, another user")),
        "{err}"
    );
}

/// Found by attacking the admin CLI from operations.md and vault-format.md (eighteenth pass):
/// a vault path that is a symbolic link of the caller's (`/etc/scopevault/vault` → the file)
/// was replaced by a regular file on the first save: the temporary file was renamed over the
/// link, the lock was beside the link, and the real file, left at the old generation, was then
/// refused by every command as a rollback. The link is now followed once, when the command
/// starts: the lock, the temporary file and the rename are beside the file it leads to, and
/// the link stays a link. One another user owns is refused (they would choose the file), and
/// `doctor` fails it.
#[test]
fn a_vault_path_that_is_a_link_of_ours_is_followed_and_stays_a_link() {
    use crate::common::users;
    use std::os::unix::fs::MetadataExt;
    let e = Env::new();
    e.init_with_cred();
    std::fs::create_dir_all(e.path("etc")).unwrap();
    mode(&e.path("etc"), 0o700);
    let link = e.path("etc/vault.sv");
    std::os::unix::fs::symlink("../vaults/vault.scopevault", &link).unwrap();
    let via = link.to_str().unwrap();
    let pf = e.pf();
    e.ok(
        &[
            "--vault",
            via,
            "cred",
            "add",
            "api",
            "--kind",
            "token",
            "--secret",
            "token",
            "--passphrase-file",
            &pf,
        ],
        b"tok-value",
    );
    assert!(
        std::fs::symlink_metadata(&link).unwrap().is_symlink(),
        "the link is still a link"
    );
    assert!(
        !e.path("etc/vault.sv.lock").exists(),
        "no lock beside the link"
    );
    assert!(e.path("vaults/vault.scopevault.lock").exists());
    // The file it leads to was saved: both paths open it, with the new credential.
    for path in [via, e.vault().to_str().unwrap()] {
        let list = e.ok(
            &["--vault", path, "cred", "list", "--passphrase-file", &pf],
            b"",
        );
        assert!(
            list.contains("api") && list.contains("shop-buyer"),
            "{path}: {list}"
        );
    }
    let doctor = |e: &Env| {
        let out = e.run(&["--vault", via, "doctor", "--passphrase-file", &pf], b"");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = doctor(&e);
    assert!(
        text.lines().any(|l| l.starts_with("ok")
            && l.contains("vault")
            && l.contains("a symbolic link to")
            && l.contains("vaults/vault.scopevault")),
        "{text}"
    );

    if !users::is_root() {
        return crate::common::skip::skip("root is needed to give the link to a second uid");
    }
    let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
        Ok(ids) => ids,
        Err(why) => return crate::common::skip::skip(&why),
    };
    std::os::unix::fs::lchown(&link, Some(uid), Some(gid)).unwrap();
    let before = e.vault_bytes();
    let err = e.fails(
        &[
            "--vault",
            via,
            "cred",
            "rm",
            "api",
            "--passphrase-file",
            &pf,
        ],
        b"",
        2,
    );
    assert!(
        err.contains(&format!("symbolic link owned by uid {uid}, another user")),
        "{err}"
    );
    assert_eq!(e.vault_bytes(), before, "nothing written");
    let text = doctor(&e);
    assert!(
        text.lines().any(|l| l.starts_with("fail")
            && l.contains("vault")
            && l.contains(&format!("owned by uid {uid}"))),
        "{text}"
    );
    assert_eq!(std::fs::symlink_metadata(&link).unwrap().uid(), uid);
}

/// Found by attacking this pass's fixes (eighteenth pass): root's link at the vault path sat
/// in a directory anyone could write, so another user swapped it (renameat2 RENAME_EXCHANGE)
/// with a link of their own between the owner check and the `readlink`, and root's commands,
/// `cred set` included, opened their file. The link's directory is now judged as a directory
/// above a vault is (the owner and target are also read from the one link opened, see
/// `store.rs`): writable by others without the sticky bit, it is refused and `doctor` fails
/// it; with the sticky bit (nobody else can rename our link) it is followed, and another
/// user's link beside it is still refused.
#[test]
fn a_vault_link_in_a_directory_others_may_write_is_refused() {
    use crate::common::users;
    let e = Env::new();
    e.init_with_cred();
    let lk = e.path("lk");
    std::fs::create_dir_all(&lk).unwrap();
    mode(&lk, 0o777);
    let link = e.path("lk/vault");
    std::os::unix::fs::symlink(e.vault(), &link).unwrap();
    let via = link.to_str().unwrap();
    let pf = e.pf();
    let before = e.vault_bytes();
    for args in [
        vec!["cred", "list"],
        vec!["cred", "set", "shop-buyer", "--secret", "password"],
    ] {
        let mut argv = vec!["--vault", via];
        argv.extend(args);
        argv.extend(["--passphrase-file", &pf]);
        let err = e.fails(&argv, b"new-value", 2);
        assert!(
            err.contains("refusing to use the vault path")
                && err.contains("writable by others without the sticky bit"),
            "{err}"
        );
    }
    assert_eq!(e.vault_bytes(), before, "nothing written");
    let doctor = |e: &Env| {
        let out = e.run(&["--vault", via, "doctor", "--passphrase-file", &pf], b"");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = doctor(&e);
    assert!(
        text.lines().any(|l| l.starts_with("fail")
            && l.contains("vault")
            && l.contains("writable by others without the sticky bit")),
        "{text}"
    );

    mode(&lk, 0o1777);
    let list = e.ok(
        &["--vault", via, "cred", "list", "--passphrase-file", &pf],
        b"",
    );
    assert!(list.contains("shop-buyer"), "{list}");
    let text = doctor(&e);
    assert!(
        text.lines().any(|l| l.starts_with("ok")
            && l.contains("vault")
            && l.contains("a symbolic link to")),
        "{text}"
    );

    if !users::is_root() {
        return crate::common::skip::skip("root is needed to give a link to a second uid");
    }
    let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
        Ok(ids) => ids,
        Err(why) => return crate::common::skip::skip(&why),
    };
    let theirs = e.path("lk/theirs");
    std::os::unix::fs::symlink(e.vault(), &theirs).unwrap();
    std::os::unix::fs::lchown(&theirs, Some(uid), Some(gid)).unwrap();
    let err = e.fails(
        &[
            "--vault",
            theirs.to_str().unwrap(),
            "cred",
            "list",
            "--passphrase-file",
            &pf,
        ],
        b"",
        2,
    );
    assert!(
        err.contains(&format!("symbolic link owned by uid {uid}, another user")),
        "{err}"
    );
}

/// `command` run in `e` with `stdin`, within 30 s (a command waiting on a FIFO fails the
/// test instead of blocking the run).
fn run_within(e: &Env, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = e
        .cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    crate::common::output_within(child, 30, &format!("scopevault {args:?}"))
}

/// Twentieth pass (found by the nineteenth pass's review): the rollback record was opened
/// `O_NONBLOCK` and judged afterwards, the vault's lock file (`<vault>.lock`) was opened for
/// reading and writing and used whatever it was, and the rollback record's lock
/// (`generations.lock`) was opened for writing only, which waits for ever for a reader when a
/// FIFO is there: a FIFO in any of these places was opened, and the last one hung every save.
/// Each is now judged through an `O_PATH` descriptor and opened only if it is a regular file:
/// the FIFO is named and never opened.
#[test]
fn a_fifo_in_place_of_the_rollback_record_or_a_lock_is_refused_without_being_opened() {
    let e = Env::new();
    e.init_with_cred();
    let pf = e.pf();
    let record = e.path("state/generations.json");
    let record_lock = e.path("state/generations.lock");
    let mut vault_lock = e.vault().into_os_string();
    vault_lock.push(".lock");
    let vault_lock = std::path::PathBuf::from(vault_lock);
    let add = |name: &'static str| {
        [
            "cred",
            "add",
            name,
            "--kind",
            "login",
            "--scope",
            "shop:login",
            "--field",
            "username=monitor",
            "--secret",
            "password",
            "--passphrase-file",
            &pf,
        ]
        .map(str::to_owned)
    };
    for (place, args, fails) in [
        (
            &record,
            ["cred", "list", "--passphrase-file", &pf]
                .map(str::to_owned)
                .to_vec(),
            true,
        ),
        (&vault_lock, add("second").to_vec(), true),
        // The save is in place before the record is updated: a warning, exit 0.
        (&record_lock, add("third").to_vec(), false),
    ] {
        let aside = place.with_extension("aside");
        if place.exists() {
            std::fs::rename(place, &aside).unwrap();
        }
        crate::common::mkfifo(place);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (out, opened) =
            crate::common::opened_while(&[place], || run_within(&e, &args, b"pw-1\n"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), !fails, "{}: {err}", place.display());
        assert!(
            err.contains(place.to_str().unwrap()) && err.contains("not a regular file (a FIFO)"),
            "{}: {err}",
            place.display()
        );
        assert_eq!(opened, [false], "{}: the FIFO was opened", place.display());
        std::fs::remove_file(place).unwrap();
        if aside.exists() {
            std::fs::rename(&aside, place).unwrap();
        }
    }
    // Everything back in place: the commands work again.
    e.ok(&["cred", "list", "--passphrase-file", &pf], b"");
}

/// Twenty-seventh pass (found by the attacker of multi-admin work and backups): after the
/// state directory was lost, root's documented check (`cred list`) recreated it as root's,
/// mode 0700. The daemon's user's `serve` then failed about an anchor that did not exist
/// ("leave it in place") and told the daemon's own user to "run this as the daemon's user",
/// and root's `doctor` said `ok state`. The start now names the directory, its owner and
/// mode, that whether an anchor is there is not known, and the `chown`; `doctor` warns that
/// the vault file's owner (the daemon's user) cannot use the state directory.
#[test]
fn a_state_directory_recreated_by_root_is_named_to_the_daemons_user_and_by_doctor() {
    use crate::common::users;
    use std::os::unix::process::CommandExt;
    let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
        Ok(ids) => ids,
        Err(why) => return crate::common::skip::skip(&why),
    };
    let e = Env::new();
    e.init_with_cred();
    mode(e.path("").as_path(), 0o711);
    let exe = users::shared_binary(&e.path("shared"));
    for d in ["vaults", "log", "run"] {
        std::fs::create_dir_all(e.path(d)).unwrap();
        std::os::unix::fs::chown(e.path(d), Some(uid), Some(gid)).unwrap();
    }
    std::os::unix::fs::chown(e.vault(), Some(uid), Some(gid)).unwrap();
    // Lost, then recreated by root's check.
    std::fs::remove_dir_all(e.path("state")).unwrap();
    e.ok(&["cred", "list", "--passphrase-file", &e.pf()], b"");
    let state = e.path("state");
    let out = std::process::Command::new(&exe)
        .args(["serve", "--audit"])
        .arg(e.path("log/audit.jsonl"))
        .arg("--socket")
        .arg(e.path("run/s.sock"))
        .arg("--passphrase-file")
        .arg("/dev/null")
        .env_clear()
        .env("HOME", "/")
        .env("SCOPEVAULT_VAULT", e.vault())
        .env("SCOPEVAULT_STATE_DIR", &state)
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "the state directory {} is uid 0's (mode 0700) and this user (uid {uid}) may not look in it, so whether an anchor is there is not known",
            state.display()
        )) && err.contains(&format!("`chown -R {uid} {}`", state.display()))
            && !err.contains("The anchor is not known to be bad: leave it in place"),
        "{err}"
    );
    let out = e.run(&["doctor", "--passphrase-file", &e.pf()], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("warn")
            && l.contains("state")
            && l.contains(&format!(
                "a daemon running as uid {uid} cannot use this state directory"
            ))),
        "{text}"
    );
}
