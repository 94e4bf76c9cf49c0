//! Real users and groups for the tests that need a second uid (issue 16): as root the test
//! creates them (`useradd`, `groupadd`, `usermod`) instead of skipping; without root there is
//! no second uid to run a client as, and the caller reports a skip (tests/it/common/skip.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The second user the tests run clients as (created when missing, kept afterwards: a system
/// user with no home and no login shell).
pub const OTHER_USER: &str = "scopevault-t2";

/// The current uid.
pub fn current_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("id -u prints a number")
}

/// True when the tests run as root (`id -u` says 0; false when `id` cannot run).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn id_of(flag: &str, name: &str) -> Option<u32> {
    let o = Command::new("id").args([flag, name]).output().ok()?;
    if !o.status.success() {
        return None;
    }
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// Run an account tool (`useradd`, `groupadd`, `usermod`), retrying while another test holds
/// the /etc/passwd lock. `done` says whether the wanted state is already reached (so a
/// concurrent test that created the same account is not an error).
fn account_tool(program: &str, args: &[&str], done: impl Fn() -> bool) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..50 {
        if done() {
            return Ok(());
        }
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if out.status.success() || done() {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{program} {args:?} failed: {last}"))
}

/// The (uid, gid) of user `name`, created as a system user with its own group when missing.
/// `Err` says why not (not root, `useradd` refused).
pub fn ensure_user(name: &str) -> Result<(u32, u32), String> {
    if !is_root() {
        return Err(format!(
            "not root, so no second user ({name}) can be created or run as"
        ));
    }
    add_system_user(name, None)
}

/// `useradd` of a system user `name` with no home and no login shell, in its own new group
/// or with `group` as its primary group; its (uid, gid).
fn add_system_user(name: &str, group: Option<&str>) -> Result<(u32, u32), String> {
    let group_args: &[&str] = match &group {
        None => &["--user-group"],
        Some(g) => &["--no-user-group", "--gid", g],
    };
    let mut args = vec!["--system"];
    args.extend_from_slice(group_args);
    args.extend_from_slice(&[
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        name,
    ]);
    account_tool("useradd", &args, || id_of("-u", name).is_some())?;
    Ok((
        id_of("-u", name).ok_or("useradd left no uid")?,
        id_of("-g", name).ok_or("useradd left no gid")?,
    ))
}

/// The gid of group `name`, created (a system group) when missing. Needs root.
pub fn ensure_group(name: &str) -> Result<u32, String> {
    if !is_root() {
        return Err(format!("not root, so group {name} cannot be created"));
    }
    let gid = || {
        let o = Command::new("getent").args(["group", name]).output().ok()?;
        let line = String::from_utf8_lossy(&o.stdout).into_owned();
        line.split(':').nth(2)?.trim().parse::<u32>().ok()
    };
    account_tool("groupadd", &["--system", name], || gid().is_some())?;
    gid().ok_or_else(|| format!("groupadd left no group {name}"))
}

/// Whether `user` is listed as a member of `group` in /etc/group.
pub fn is_member(user: &str, group: &str) -> bool {
    Command::new("getent")
        .args(["group", group])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .rsplit(':')
                .next()
                .unwrap_or("")
                .split(',')
                .any(|m| m == user)
        })
        .unwrap_or(false)
}

/// The uid of user `name`, if it exists.
pub fn uid_of(name: &str) -> Option<u32> {
    id_of("-u", name)
}

/// Delete user `name` (`userdel --force`: even with processes running; its own group goes
/// with it). Missing already: done.
pub fn delete_user(name: &str) -> Result<(), String> {
    account_tool("userdel", &["--force", name], || {
        id_of("-u", name).is_none()
    })
}

/// Create user `name` as a system user with uid `uid` and its own group (`useradd -u`).
pub fn create_user_with_uid(name: &str, uid: u32) -> Result<(), String> {
    let uid = uid.to_string();
    account_tool(
        "useradd",
        &[
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--uid",
            &uid,
            name,
        ],
        || id_of("-u", name).is_some(),
    )
}

/// Create user `name` as a system user whose primary group is `group` (`useradd -g`), with no
/// group of its own; its (uid, gid). Needs root.
pub fn create_user_in_group(name: &str, group: &str) -> Result<(u32, u32), String> {
    add_system_user(name, Some(group))
}

/// Give `user` another primary group (`usermod -g`): only new logins get it.
pub fn set_primary_group(user: &str, group: &str) -> Result<(), String> {
    let want = gid_of(group).ok_or_else(|| format!("no group {group}"))?;
    account_tool("usermod", &["-g", group, user], || {
        id_of("-g", user) == Some(want)
    })
}

/// The gid of group `name`, if it exists.
pub fn gid_of(name: &str) -> Option<u32> {
    let o = Command::new("getent").args(["group", name]).output().ok()?;
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    line.split(':').nth(2)?.trim().parse::<u32>().ok()
}

/// Delete group `name` (`groupdel`). Missing already: done.
pub fn delete_group(name: &str) -> Result<(), String> {
    account_tool("groupdel", &[name], || gid_of(name).is_none())
}

/// Create group `name` as a system group with gid `gid` (`groupadd -g`).
pub fn create_group_with_gid(name: &str, gid: u32) -> Result<(), String> {
    let g = gid.to_string();
    account_tool("groupadd", &["--system", "--gid", &g, name], || {
        gid_of(name) == Some(gid)
    })
}

/// Add `user` to `group`'s member list (`usermod -a -G`).
pub fn add_to_group(user: &str, group: &str) -> Result<(), String> {
    account_tool("usermod", &["-a", "-G", group, user], || {
        is_member(user, group)
    })
}

/// Remove `user` from `group`'s member list (`gpasswd -d`).
pub fn remove_from_group(user: &str, group: &str) -> Result<(), String> {
    account_tool("gpasswd", &["-d", user, group], || !is_member(user, group))
}

/// A copy of the scopevault binary that any uid can execute: `dir/bin/scopevault`, with
/// `dir` opened to 0711 and `dir/bin` to 0755 (the build's own target dir may be private).
pub fn shared_binary(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin_dir = dir.join("bin");
    let exe = bin_dir.join("scopevault");
    if !exe.exists() {
        std::fs::create_dir_all(&bin_dir).unwrap();
        super::copy_executable(Path::new(env!("CARGO_BIN_EXE_scopevault")), &exe);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

/// Run `exe --socket socket args…` as `uid`/`gid` (root only) with a clean environment, `/`
/// as home and working directory, and no supplementary groups in the kernel (std's `uid()`
/// drops them): whatever groups the daemon sees, it must read from /etc/group.
pub fn run_as(uid: u32, gid: u32, exe: &Path, socket: &Path, args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    Command::new(exe)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_clear()
        .env("HOME", "/")
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {} as uid {uid}: {e}", exe.display()))
}

/// A command running `program` (root only) in a mount namespace of its own in which
/// `/etc/group` is `etc_group`: an overlay on `/etc` whose upper layer, on a tmpfs mounted at
/// the empty directory `scratch` (in that namespace only), holds a copy of `etc_group`. The
/// host's `/etc/group` is never changed, and every other process goes on seeing it. An
/// overlay on the directory rather than a bind mount on the file: the kernel detaches a
/// mount whose mount point is renamed over in another namespace, which every `usermod` and
/// `groupadd` of a test running alongside does to `/etc/group`.
pub fn seeing_etc_group(etc_group: &Path, scratch: &Path, program: &Path) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(concat!(
            r#"mount -t tmpfs scopevault-test "$0" && mkdir "$0/upper" "$0/work""#,
            r#" && cp "$1" "$0/upper/group" && chmod 644 "$0/upper/group""#,
            r#" && mount -t overlay scopevault-test"#,
            r#" -o "lowerdir=/etc,upperdir=$0/upper,workdir=$0/work" /etc"#,
            r#" && shift && exec "$@""#
        ))
        .arg(scratch)
        .arg(etc_group)
        .arg(program);
    c
}
