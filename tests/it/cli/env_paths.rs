//! The environment the default paths come from (twenty-sixth pass, found by the attacker of
//! hostile process environments): an empty `HOME` made the default vault, state directory and
//! audit log relative to the current directory, a relative `SCOPEVAULT_STATE_DIR` put the
//! rollback record there too (a rolled-back vault was refused from one directory and accepted
//! from another), and an empty `SCOPEVAULT_*` path variable was reported as an `--option`
//! "in argv".

use std::process::{Command, Output, Stdio};

use crate::common::daemon::tempdir;
use crate::common::skip;
use crate::common::users;
use crate::common::vault::Env;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `SCOPEVAULT_STATE_DIR=rel` (or blanks) from two current directories named two rollback
/// records; now refused, naming the variable, and nothing is created in the current directory.
#[test]
fn a_relative_or_blank_state_dir_is_refused_naming_the_variable() {
    let e = Env::new();
    e.init_with_cred();
    let cwd = tempdir();
    for value in ["rel", "  ", "./state"] {
        let out = e.run_cmd(
            e.cmd()
                .env("SCOPEVAULT_STATE_DIR", value)
                .current_dir(cwd.path())
                .args(["cred", "list", "--passphrase-file", &e.pf()]),
            b"",
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{value:?}: {err}");
        assert!(
            err.contains("SCOPEVAULT_STATE_DIR") && err.contains("absolute"),
            "{value:?}: {err}"
        );
        assert!(
            std::fs::read_dir(cwd.path()).unwrap().next().is_none(),
            "{value:?}: something was created in the current directory"
        );
    }
}

/// Each `SCOPEVAULT_*` path variable set but empty: the error names the variable (not
/// `--vault <PATH>`) and does not speak of argv, where the value never was; an empty
/// `SCOPEVAULT_STATE_DIR` no longer quietly means the default. A relative one is refused too.
#[test]
fn an_empty_or_relative_path_variable_is_named_and_not_called_argv() {
    let e = Env::new();
    e.init_with_cred();
    for var in [
        "SCOPEVAULT_VAULT",
        "SCOPEVAULT_AUDIT",
        "SCOPEVAULT_SOCKET",
        "SCOPEVAULT_IDENTITY_FILE",
        "SCOPEVAULT_STATE_DIR",
    ] {
        for value in ["", "relative/path"] {
            let out = e.run_cmd(
                e.cmd()
                    .env(var, value)
                    .args(["cred", "list", "--passphrase-file", &e.pf()]),
                b"",
            );
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{var}={value:?}: {err}");
            assert!(err.contains(var), "{var}={value:?}: {err}");
            assert!(
                !err.contains("argv") && !err.contains("<PATH>"),
                "{var}={value:?}: {err}"
            );
        }
    }
}

/// As a user other than root, an empty or unset `HOME` takes the home directory of the
/// user's `/etc/passwd` line (`/nonexistent` for the test user), not the current directory
/// (`.local/share/…`) nor `/`.
#[test]
fn an_empty_or_unset_home_takes_the_passwd_home_not_the_current_directory() {
    use std::os::unix::process::CommandExt;
    let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
        Ok(ids) => ids,
        Err(why) => return skip::skip(&why),
    };
    let base = tempdir();
    let exe = users::shared_binary(base.path());
    for home in [Some(""), None, Some("relative")] {
        let mut c = Command::new(&exe);
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/tmp")
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .arg("doctor");
        if let Some(h) = home {
            c.env("HOME", h);
        }
        let text = String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned();
        assert!(
            text.contains("/nonexistent/.local/share/scopevault/vault.scopevault"),
            "HOME={home:?}: {text}"
        );
        assert!(
            text.contains("/nonexistent/.local/state/scopevault"),
            "HOME={home:?}: {text}"
        );
        assert!(!text.contains(" .local/"), "HOME={home:?}: {text}");
    }
}

/// A uid with no `/etc/passwd` line and no `HOME`: a clear error, not defaults under `/`.
#[test]
fn no_home_and_no_passwd_home_is_a_clear_error() {
    use std::os::unix::process::CommandExt;
    if !users::is_root() {
        return skip::skip("not root: cannot run as a uid without a passwd line");
    }
    let base = tempdir();
    let exe = users::shared_binary(base.path());
    let out = Command::new(&exe)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .uid(2_999_999)
        .gid(2_999_999)
        .stdin(Stdio::null())
        .args(["cred", "list"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("HOME is not set")
            && err.contains("uid 2999999")
            && err.contains("set HOME to an absolute path"),
        "{err}"
    );
}
