//! examples/fleet/systemd/scopevault-pull.service run for real, as far as it can be without
//! systemd (twenty-ninth pass, found by the systemd attacker): its `ExecStart=` as its own
//! user, with its `Environment=`, `WorkingDirectory=` and `UMask=`, in a directory made as its
//! `StateDirectory=` makes it, against a local bare repository (`file://`: no ssh server runs
//! here); the first run clones, the next pulls. The ssh its `GIT_SSH_COMMAND` runs is asked
//! for the configuration it would use (`ssh -G`): the deploy key from the credentials
//! directory, the pinned known hosts, no prompt. The apply's user reads the clone through the
//! group `scopevault-bundle.service` is given, and cannot write it.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::daemon::tempdir;
use crate::common::skip::skip;
use crate::common::users;

fn units() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/fleet/systemd"
    ))
}

/// The `KEY=` values of a unit file, in order (a continued line is not used by these units).
fn values(unit: &str, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(units().join(unit)).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

/// The one `KEY=` value of a unit file.
fn value(unit: &str, key: &str) -> String {
    let v = values(unit, key);
    assert_eq!(v.len(), 1, "{unit}: {key}= {v:?}");
    v[0].clone()
}

/// Run `git ARGS` in `dir` as root (the repository's publisher here); it must succeed.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=publisher",
            "-c",
            "user.email=p@example.org",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let ok = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn the_pull_unit_clones_then_pulls_as_its_own_user_and_the_apply_user_only_reads_the_clone() {
    for tool in ["git", "ssh", "setpriv"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            return skip(&format!("{tool} is not installed"));
        }
    }
    let (uid, gid) = match users::ensure_user("svpull") {
        Ok(ids) => ids,
        Err(why) => return skip(&why),
    };
    let (apply_uid, apply_gid) = match users::ensure_user("svapply") {
        Ok(ids) => ids,
        Err(why) => return skip(&why),
    };
    let unit = "scopevault-pull.service";
    // The three units agree: the clone is the pull's working directory, the path unit watches
    // it, the apply reads it through the group the pull writes it with.
    let state = value(unit, "StateDirectory");
    let workdir = value(unit, "WorkingDirectory");
    assert_eq!(workdir, format!("/var/lib/{state}"));
    assert_eq!(value(unit, "User"), "scopevault-pull");
    let group = value(unit, "Group");
    assert_eq!(
        value("scopevault-bundle.service", "SupplementaryGroups"),
        group
    );
    assert!(value("scopevault-bundle.service", "ExecStart")
        .contains(&format!(" {workdir}/checkpoint.svbundle ")));
    assert_eq!(
        value("scopevault-bundle.path", "PathChanged"),
        format!("{workdir}/checkpoint.svbundle.sig")
    );
    assert_ne!(value(unit, "User"), "scopevault", "not the vault's user");

    let base = tempdir();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The state directory as systemd makes it: User:Group, StateDirectoryMode=.
    let clone = base.path().join("state").join(&state);
    std::fs::create_dir_all(&clone).unwrap();
    std::fs::set_permissions(
        base.path().join("state"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let dir_mode = u32::from_str_radix(&value(unit, "StateDirectoryMode"), 8).unwrap();
    std::os::unix::fs::chown(&clone, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&clone, std::fs::Permissions::from_mode(dir_mode)).unwrap();
    // The credential (LoadCredential=NAME:PATH) as systemd gives it, and the known hosts.
    let (cred_name, _) = value(unit, "LoadCredential")
        .split_once(':')
        .map(|(n, p)| (n.to_owned(), p.to_owned()))
        .unwrap();
    let creds = base.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    let key = creds.join(&cred_name);
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    chown_tree(&creds, uid, gid);
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o500)).unwrap();
    let known_hosts = base.path().join("pull-known_hosts");
    std::fs::write(&known_hosts, "").unwrap();

    // The bundles repository, published to by root, read by the pull's user as a server's
    // repository would be (`file://`: git refuses another user's repository on this host).
    let bare = base.path().join("bundles.git");
    let work = base.path().join("publisher");
    git(base.path(), &["init", "-q", "--bare", "bundles.git"]);
    git(base.path(), &["clone", "-q", "bundles.git", "publisher"]);
    let publish = |content: &str| {
        chown_tree(&bare, 0, 0);
        std::fs::write(work.join("checkpoint.svbundle"), content).unwrap();
        std::fs::write(
            work.join("checkpoint.svbundle.sig"),
            format!("sig of {content}"),
        )
        .unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "-q", "-m", content]);
        git(&work, &["push", "-q", "origin", "HEAD"]);
        chown_tree(&bare, uid, gid);
    };
    publish("generation 1");

    let subst = |s: &str| {
        s.replace(&workdir, clone.to_str().unwrap())
            .replace("%d", creds.to_str().unwrap())
            .replace(
                "/etc/scopevault/pull-known_hosts",
                known_hosts.to_str().unwrap(),
            )
    };
    let mut env = BTreeMap::new();
    for e in values(unit, "Environment") {
        let e = e.trim_matches('"');
        let (k, v) = e.split_once('=').unwrap();
        env.insert(k.to_owned(), subst(v));
    }
    assert!(env.contains_key("SCOPEVAULT_BUNDLES_URL"), "{env:?}");
    env.insert(
        "SCOPEVAULT_BUNDLES_URL".into(),
        format!("file://{}", bare.display()),
    );
    // As systemd runs it: User=, Group= (no other group), the unit's environment and HOME
    // (the user's, /nonexistent), the working directory, the umask.
    let as_pull_user = |script: &str| -> Output {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("umask {}; {script}", value(unit, "UMask")))
            .env_clear()
            .envs(&env)
            .env("HOME", "/nonexistent")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .current_dir(&clone)
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // systemd's `$$` is a `$`; the rest of the line is the shell's quoting.
    let exec_start = value(unit, "ExecStart").replace("$$", "$");
    let pull = || {
        let out = as_pull_user(&exec_start);
        assert!(out.status.success(), "{exec_start}: {out:?}");
    };
    pull();
    let bundle = clone.join("checkpoint.svbundle");
    assert_eq!(std::fs::read_to_string(&bundle).unwrap(), "generation 1");
    publish("generation 2");
    pull();
    assert_eq!(std::fs::read_to_string(&bundle).unwrap(), "generation 2");
    assert_eq!(
        std::fs::read_to_string(clone.join("checkpoint.svbundle.sig")).unwrap(),
        "sig of generation 2"
    );
    // Made by the pull's user, readable by its group, nothing for others.
    for f in [&bundle, &clone.join(".git")] {
        let m = std::fs::metadata(f).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "{}", f.display());
        assert_eq!(m.mode() & 0o047, 0o040, "{}: {:o}", f.display(), m.mode());
    }

    // The ssh git would run: the deploy key from the credential, the pinned known hosts,
    // nothing asked.
    let out = as_pull_user(r#"$GIT_SSH_COMMAND -G git.example.org"#);
    assert!(out.status.success(), "{out:?}");
    let config = String::from_utf8_lossy(&out.stdout);
    for want in [
        format!("identityfile {}", key.display()),
        format!("userknownhostsfile {}", known_hosts.display()),
        "stricthostkeychecking true".to_owned(),
        "batchmode yes".to_owned(),
    ] {
        assert!(config.lines().any(|l| l == want), "{want}: {config}");
    }

    // The apply's user: reads the clone with the pull's group (SupplementaryGroups=), not
    // without it, and writes nothing in it.
    let as_apply_user = |groups: &str, script: &str| -> Output {
        Command::new("setpriv")
            .arg(format!("--reuid={apply_uid}"))
            .arg(format!("--regid={apply_gid}"))
            .arg(groups)
            .args(["sh", "-c", script, "sh"])
            .arg(&bundle)
            .output()
            .unwrap()
    };
    let with_group = format!("--groups={gid}");
    let out = as_apply_user(&with_group, r#"cat "$1""#);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "generation 2");
    let out = as_apply_user("--clear-groups", r#"cat "$1""#);
    assert!(!out.status.success(), "read without the group: {out:?}");
    let out = as_apply_user(&with_group, r#"echo x >> "$1""#);
    assert!(
        !out.status.success(),
        "written by the apply's user: {out:?}"
    );
    let out = as_apply_user(&with_group, r#"touch "$(dirname "$1")/new""#);
    assert!(
        !out.status.success(),
        "written by the apply's user: {out:?}"
    );
}
