//! A runner admitted only through a real supplementary group (issue 16, item 7).
//!
//! The daemon takes the peer's uid and gid from the kernel (SO_PEERCRED) but the user's
//! supplementary groups from /etc/passwd and /etc/group (`accounts::user_groups`), looked up again
//! after those files change (the `live` tests below: on open connections too). This test creates a real user and group (`useradd`, `groupadd`), lets only that
//! group run a task, and runs the client as the user with **no** supplementary groups in the
//! kernel (std's `Command::uid` drops them): refused while the user is not in the group's
//! member list, handed out once `usermod -a -G` adds it, refused again once `gpasswd -d`
//! removes it — with the same daemon, no reload. Needs root (a skip otherwise, a failure under
//! `CI=true`).

use crate::common::daemon;
use crate::common::skip;
use crate::common::users;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const GROUP: &str = "scopevault-tg";

#[test]
fn a_runner_admitted_only_through_a_supplementary_group_in_etc_group() {
    let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
        Ok(ids) => ids,
        Err(why) => return skip::skip(&why),
    };
    let group_gid = users::ensure_group(GROUP).expect("groupadd");
    assert_ne!(gid, group_gid, "the group is not the user's primary group");
    users::remove_from_group(users::OTHER_USER, GROUP).expect("gpasswd -d");

    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    // checkout-flow may be run by members of GROUP only.
    let example = daemon::example_policy();
    let policy = example.replacen(
        "runners = { users = [\"checkpoint\", \"root\"], groups = [] }",
        &format!("runners = {{ groups = [\"{GROUP}\"] }}"),
        1,
    );
    assert_ne!(
        policy, example,
        "examples/policy.toml changed its checkout-flow runners"
    );
    let file = dir.path().join("groups.toml");
    std::fs::write(&file, policy).unwrap();
    daemon::ok(
        dir.path(),
        &[
            "--identity-file",
            id.to_str().unwrap(),
            "policy",
            "apply",
            file.to_str().unwrap(),
        ],
        None,
    );
    let d = daemon::Daemon::start(dir.path(), &["--identity-file", id.to_str().unwrap()]);
    let exe = users::shared_binary(dir.path());
    std::fs::set_permissions(
        d.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o711),
    )
    .unwrap();
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let get = || {
        users::run_as(
            uid,
            gid,
            &exe,
            &d.socket,
            &["get", "--task", "checkout-flow", "--field", "password"],
        )
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // Not a member: refused.
    let out = get();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("denied"), "{}", text(&out));
    daemon::assert_no_secret(&text(&out), "a refusal");

    // A member per /etc/group (the client process itself has no supplementary groups).
    users::add_to_group(users::OTHER_USER, GROUP).expect("usermod -a -G");
    let out = get();
    let _cleanup = Cleanup;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        daemon::secret_of("shop-buyer")
    );

    // Removed from the group: refused again, by the same daemon.
    users::remove_from_group(users::OTHER_USER, GROUP).expect("gpasswd -d");
    // Refusals of one uid are written in full once a second, the rest counted into a
    // `denials` record (docs/audit.md): wait out the first refusal's second so this one is
    // recorded as its own `deny` line.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = get();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));

    let audit = d.audit_text();
    let mine: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains(&format!("\"uid\":{uid},")) && l.contains("checkout-flow"))
        .collect();
    let decisions: Vec<&str> = mine
        .iter()
        .map(|l| {
            if l.contains("\"decision\":\"allow\"") {
                "allow"
            } else if l.contains("\"decision\":\"deny\"") {
                "deny"
            } else {
                "other"
            }
        })
        .collect();
    assert_eq!(decisions, ["deny", "allow", "deny"], "{audit}");
    d.assert_alive();
}

/// Leaves the test user out of the group even when an assertion fails.
struct Cleanup;
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = users::remove_from_group(users::OTHER_USER, GROUP);
    }
}

/// Twentieth pass (found by attacking who gets what): scopevault read `/etc/group` more
/// broadly than glibc. A member list `scopevault-t2\r` (a CRLF line end), `scopevault-t2:extra`
/// (a field too many) or `scopevault-t2 ,root` (a space before the comma) made the user a
/// member for scopevault, a runner of the group's task and an admin through `--admin-group`,
/// though `id` (glibc's `getgrouplist`) says it is none. Each line is tried on its own, in a
/// copy of the host's `/etc/group` that only the daemon sees (a mount namespace of its own:
/// the host's file is never edited), beside what glibc's `id -G` says of the same file:
/// scopevault admits the user only where glibc counts it a member, and refuses every odd line.
/// A gid written `0N` and a commented-out line (`#name:…`), which glibc's `getgrouplist`
/// still counts, scopevault does not: stricter, as docs/operations.md says.
#[test]
fn a_group_line_glibc_does_not_honour_makes_no_runner_and_no_admin() {
    let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
        Ok(ids) => ids,
        Err(why) => return skip::skip(&why),
    };
    let host = std::fs::read_to_string("/etc/group").unwrap();
    let used: Vec<u32> = host
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    let g = (3900..4900)
        .find(|g| !used.contains(g))
        .expect("a free gid");
    let user = users::OTHER_USER;
    // (the line, whether glibc counts the user a member of gid `g`, whether scopevault does)
    let cases = [
        (format!("scopevault-tq:x:{g}:root,{user}"), true, true),
        (format!("scopevault-tq:x:{g}:{user}\r"), false, false),
        (format!("scopevault-tq:x:{g}:{user}:extra"), false, false),
        (format!("scopevault-tq:x:{g}:{user} ,root"), false, false),
        (format!("scopevault-tq:x:0{g}:{user}"), true, false),
        (format!("#scopevault-tq:x:{g}:{user}"), true, false),
    ];

    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    // checkout-flow may be run by members of gid `g` only.
    let example = daemon::example_policy();
    let policy = example.replacen(
        "runners = { users = [\"checkpoint\", \"root\"], groups = [] }",
        &format!("runners = {{ groups = [\"{g}\"] }}"),
        1,
    );
    assert_ne!(policy, example, "examples/policy.toml changed its runners");
    let file = dir.path().join("groups.toml");
    std::fs::write(&file, policy).unwrap();
    let id_s = id.to_str().unwrap();
    daemon::ok(
        dir.path(),
        &[
            "--identity-file",
            id_s,
            "policy",
            "apply",
            file.to_str().unwrap(),
        ],
        None,
    );
    let exe = users::shared_binary(dir.path());
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    for (line, glibc, member) in &cases {
        let etc_group = dir.path().join("group");
        std::fs::write(&etc_group, format!("{host}{line}\n")).unwrap();
        // What glibc says of the same file.
        let scratch = tempfile::tempdir_in(dir.path()).unwrap();
        let id_out = users::seeing_etc_group(&etc_group, scratch.path(), Path::new("id"))
            .args(["-G", user])
            .output()
            .expect("unshare");
        assert!(id_out.status.success(), "{}", text(&id_out));
        let glibc_member = String::from_utf8_lossy(&id_out.stdout)
            .split_whitespace()
            .any(|n| n == g.to_string());
        assert_eq!(glibc_member, *glibc, "{line:?}: glibc's `id -G`");

        let d = daemon::Daemon::start_seeing_etc_group(
            dir.path(),
            &etc_group,
            &["--identity-file", id_s, "--admin-group", &g.to_string()],
        );
        std::fs::set_permissions(
            d.socket.parent().unwrap(),
            std::fs::Permissions::from_mode(0o711),
        )
        .unwrap();
        std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let run = |args: &[&str]| users::run_as(uid, gid, &exe, &d.socket, args);

        let out = run(&["get", "--task", "checkout-flow", "--field", "password"]);
        let handed_out = out.status.success();
        assert_eq!(handed_out, *member, "{line:?}: {}", text(&out));
        if handed_out {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                daemon::secret_of("shop-buyer")
            );
        } else {
            assert!(text(&out).contains("denied"), "{line:?}: {}", text(&out));
            daemon::assert_no_secret(&text(&out), "a refusal");
        }
        // `--admin-group g`: an admin exactly where a runner.
        let out = run(&["reload"]);
        let admin = out.status.success();
        assert_eq!(admin, *member, "{line:?}: reload: {}", text(&out));
        d.assert_alive();
    }
}

/// Twenty-eighth pass (found by the outside attacker): membership was judged once per
/// connection. A user removed from a group with `gpasswd -d` kept, on a connection opened
/// before, every right the group gave, for as long as it sent a request within the idle
/// timeout — across `reload`, `lock`/`unlock` and rotations. The daemon now notices a change of
/// `/etc/passwd` or `/etc/group` (about once a second) and an open connection's next decision
/// uses the new membership. Each test opens one connection as a real second user (no
/// supplementary groups in the kernel) and asks on it, polling with a deadline.
mod live {
    use super::*;
    use serde_json::Value;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
    use std::time::{Duration, Instant};

    /// One connection to the daemon held open by a process of `uid`: each line written is sent
    /// as a request, each answer comes back as a line.
    struct Conn {
        child: Child,
        to: ChildStdin,
        from: BufReader<ChildStdout>,
    }

    const RELAY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rwb")
while True:
    line = sys.stdin.readline()
    if not line: break
    f.write(line.encode()); f.flush()
    sys.stdout.write(f.readline().decode()); sys.stdout.flush()
"#;

    impl Conn {
        fn open(uid: u32, gid: u32, socket: &Path) -> Conn {
            use std::os::unix::process::CommandExt;
            let mut child = Command::new("python3")
                .args(["-c", RELAY])
                .arg(socket)
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .current_dir("/")
                .uid(uid)
                .gid(gid)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3");
            let to = child.stdin.take().unwrap();
            let from = BufReader::new(child.stdout.take().unwrap());
            Conn { child, to, from }
        }

        /// End the relay (SIGKILL) and reap it: the connection is closed.
        fn end(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }

        fn ask(&mut self, request: &str) -> Value {
            if let Err(e) = writeln!(self.to, "{request}") {
                let status = self.child.wait();
                panic!("the relay is gone ({e}): it ended with {status:?}");
            }
            let mut line = String::new();
            self.from.read_line(&mut line).unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
        }

        /// Ask `request` on this connection until `done` holds of the answer (then that
        /// answer), or panic after 10 s: the change is expected within about a second.
        fn ask_until(&mut self, request: &str, done: impl Fn(&Value) -> bool, what: &str) -> Value {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let v = self.ask(request);
                if done(&v) {
                    return v;
                }
                assert!(Instant::now() < deadline, "{what}: still {v} after 10 s");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    impl Drop for Conn {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Leaves the test user out of `group` even when an assertion fails.
    struct Out(&'static str);
    impl Drop for Out {
        fn drop(&mut self) {
            let _ = users::remove_from_group(users::OTHER_USER, self.0);
        }
    }

    /// A daemon whose task checkout-flow is run by members of `runners` only, with `args`
    /// added to `serve`, its socket open to every uid; the test user's uid and gid, out of
    /// `runners`.
    fn daemon_for(
        dir: &Path,
        runners: &'static str,
        args: &[&str],
    ) -> Option<(daemon::Daemon, u32, u32, Out)> {
        let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
            Ok(ids) => ids,
            Err(why) => {
                skip::skip(&why);
                return None;
            }
        };
        users::ensure_group(runners).expect("groupadd");
        users::remove_from_group(users::OTHER_USER, runners).expect("gpasswd -d");
        let d = daemon_with_runners(dir, &format!("{{ groups = [\"{runners}\"] }}"), args);
        Some((d, uid, gid, Out(runners)))
    }

    /// A daemon whose task checkout-flow has `runners` (a TOML inline table), with `args`
    /// added to `serve`, its socket open to every uid.
    /// `ticket`, issued by uid `issuer`, redeemed by root, then again: refused each time as
    /// revoked, saying who issued it, nothing handed out.
    fn assert_revoked_ticket_refused_twice(d: &daemon::Daemon, ticket: &str, issuer: u32) {
        for attempt in ["first", "second"] {
            let v = d.request(&format!(r#"{{"v":1,"op":"fetch","ticket":"{ticket}"}}"#));
            assert_eq!(
                daemon::code(&v),
                "denied",
                "{attempt} redemption of uid {issuer}'s ticket: {v}"
            );
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!("issued by uid {issuer}"))
                    && message.contains("ask for a new ticket"),
                "{v}"
            );
            daemon::assert_no_secret(&v.to_string(), "a refusal");
        }
    }

    /// At least one `deny` record of a fetch naming a ticket issued by each of `issuers`, and
    /// no secret in the log.
    fn assert_ticket_refusals_audited(d: &daemon::Daemon, issuers: &[u32]) {
        let audit = d.audit_text();
        for issuer in issuers {
            let refused = audit
                .lines()
                .filter(|l| {
                    l.contains(r#""op":"fetch""#)
                        && l.contains(r#""decision":"deny""#)
                        && l.contains(&format!("issued by uid {issuer}"))
                })
                .count();
            assert!(
                refused >= 1,
                "no deny record of uid {issuer}'s ticket: {audit}"
            );
        }
        daemon::assert_no_secret(&audit, "the audit log");
    }

    fn daemon_with_runners(dir: &Path, runners: &str, args: &[&str]) -> daemon::Daemon {
        daemon_with_policy(dir, &policy_with_runners(runners), args)
    }

    /// The example policy with `runners` (a TOML inline table, and any line to add after
    /// it) in place of checkout-flow's.
    fn policy_with_runners(runners: &str) -> String {
        let example = daemon::example_policy();
        let policy = example.replacen(
            "runners = { users = [\"checkpoint\", \"root\"], groups = [] }",
            &format!("runners = {runners}"),
            1,
        );
        assert_ne!(policy, example, "examples/policy.toml changed its runners");
        policy
    }

    /// A daemon serving `policy`, with `args` added to `serve`, its socket open to every uid.
    fn daemon_with_policy(dir: &Path, policy: &str, args: &[&str]) -> daemon::Daemon {
        let id = daemon::setup_vault(dir);
        let file = dir.join("live.toml");
        std::fs::write(&file, policy).unwrap();
        let id = id.to_str().unwrap();
        daemon::ok(
            dir,
            &[
                "--identity-file",
                id,
                "policy",
                "apply",
                file.to_str().unwrap(),
            ],
            None,
        );
        let mut all = vec!["--identity-file", id];
        all.extend_from_slice(args);
        let d = daemon::Daemon::start(dir, &all);
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(
            d.socket.parent().unwrap(),
            std::fs::Permissions::from_mode(0o711),
        )
        .unwrap();
        std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        d
    }

    const FETCH: &str = r#"{"v":1,"op":"fetch","task":"checkout-flow"}"#;

    #[test]
    fn an_open_connection_of_a_runner_removed_from_its_group_is_denied_its_next_fetch() {
        const G: &str = "scopevault-tl1";
        let dir = daemon::tempdir();
        let Some((d, uid, gid, _out)) = daemon_for(dir.path(), G, &[]) else {
            return;
        };
        users::add_to_group(users::OTHER_USER, G).expect("usermod -a -G");
        let mut c = Conn::open(uid, gid, &d.socket);
        let v = c.ask(FETCH);
        assert_eq!(v["ok"], true, "a member fetches: {v}");

        users::remove_from_group(users::OTHER_USER, G).expect("gpasswd -d");
        let v = c.ask_until(FETCH, |v| v["ok"] == false, "fetch after gpasswd -d");
        assert_eq!(daemon::code(&v), "denied", "{v}");
        daemon::assert_no_secret(&v.to_string(), "a refusal");
        // The refusal is recorded as it is decided.
        let audit = d.audit_after_refusals(uid, 1);
        assert!(daemon::refusals_of(&audit, uid) >= 1, "{audit}");
        d.assert_alive();
    }

    #[test]
    fn an_open_connection_of_an_admin_removed_from_the_admin_group_loses_admin_rights() {
        const G: &str = "scopevault-tl2";
        let dir = daemon::tempdir();
        let Some((d, uid, gid, _out)) = daemon_for(dir.path(), G, &["--admin-group", G]) else {
            return;
        };
        users::add_to_group(users::OTHER_USER, G).expect("usermod -a -G");
        let mut c = Conn::open(uid, gid, &d.socket);
        let health = r#"{"v":1,"op":"health"}"#;
        let ticket = r#"{"v":1,"op":"ticket","task":"checkout-flow","ttl":60}"#;
        let v = c.ask(health);
        assert_eq!(v["peer"]["admin"], true, "a member of --admin-group: {v}");
        let v = c.ask(ticket);
        assert_eq!(v["ok"], true, "an admin gets a ticket: {v}");

        users::remove_from_group(users::OTHER_USER, G).expect("gpasswd -d");
        c.ask_until(
            health,
            |v| v["peer"]["admin"] == false,
            "health.peer.admin after gpasswd -d",
        );
        let v = c.ask(ticket);
        assert_eq!(daemon::code(&v), "denied", "a ticket after removal: {v}");
        let v = c.ask(r#"{"v":1,"op":"lock"}"#);
        assert_eq!(daemon::code(&v), "denied", "lock after removal: {v}");
        let v = d.request(health);
        assert_eq!(v["locked"], false, "still unlocked: {v}");
        d.assert_alive();
    }

    #[test]
    fn an_open_connection_of_a_user_added_to_a_runner_group_gets_its_rights() {
        const G: &str = "scopevault-tl3";
        let dir = daemon::tempdir();
        let Some((d, uid, gid, _out)) = daemon_for(dir.path(), G, &[]) else {
            return;
        };
        let mut c = Conn::open(uid, gid, &d.socket);
        let v = c.ask(FETCH);
        assert_eq!(daemon::code(&v), "denied", "not a member yet: {v}");

        users::add_to_group(users::OTHER_USER, G).expect("usermod -a -G");
        let v = c.ask_until(FETCH, |v| v["ok"] == true, "fetch after usermod -a -G");
        assert!(
            v.to_string().contains(&daemon::secret_of("shop-buyer")),
            "{v}"
        );
        d.assert_alive();
    }

    /// Deletes the test's users even when an assertion fails.
    struct Gone(&'static [&'static str]);
    impl Drop for Gone {
        fn drop(&mut self) {
            for u in self.0 {
                let _ = users::delete_user(u);
            }
        }
    }

    /// Twenty-eighth pass (found by the re-attacker of its fixes): a runner named in
    /// `runners.users` kept the uid its name resolved to at the load. After `userdel` of that
    /// user and `useradd` of another, given the same uid, the new user fetched the old one's
    /// secrets until a `reload`. A change of /etc/passwd now has every name resolved again, as
    /// a reload does (with its warnings), on open connections too; and a name created after
    /// the load is a runner without a reload.
    #[test]
    fn a_runner_name_is_resolved_again_when_etc_passwd_changes() {
        const OLD: &str = "scopevault-tl4a";
        const NEW: &str = "scopevault-tl4b";
        if let Err(why) = users::ensure_user(users::OTHER_USER) {
            skip::skip(&why);
            return;
        }
        let _gone = Gone(&[OLD, NEW]);
        users::delete_user(NEW).expect("userdel");
        let (uid, gid) = users::ensure_user(OLD).expect("useradd");
        let dir = daemon::tempdir();
        let d = daemon_with_runners(dir.path(), &format!("{{ users = [\"{OLD}\"] }}"), &[]);
        let mut c = Conn::open(uid, gid, &d.socket);
        let v = c.ask(FETCH);
        assert_eq!(v["ok"], true, "the named runner fetches: {v}");

        // Another user given the old one's uid: not the runner the policy names.
        users::delete_user(OLD).expect("userdel");
        users::create_user_with_uid(NEW, uid).expect("useradd -u");
        let v = c.ask_until(FETCH, |v| v["ok"] == false, "fetch after userdel, useradd");
        assert_eq!(daemon::code(&v), "denied", "{v}");
        daemon::assert_no_secret(&v.to_string(), "a refusal");
        let v = Conn::open(uid, gid, &d.socket).ask(FETCH);
        assert_eq!(
            daemon::code(&v),
            "denied",
            "a new connection of the uid: {v}"
        );
        // Said in the daemon's log, as a reload says it.
        let warning = format!("runner user `{OLD}` does not exist on this host");
        let log = d.stderr_text();
        assert!(log.contains(&warning), "{log}");

        // The name created again, with another uid: that uid is the runner, no reload.
        users::ensure_user(OLD).expect("useradd");
        let again = users::uid_of(OLD).expect("a uid");
        assert_ne!(again, uid);
        let mut c2 = Conn::open(again, gid, &d.socket);
        let v = c2.ask_until(
            FETCH,
            |v| v["ok"] == true,
            "fetch of the name created again",
        );
        assert!(
            v.to_string().contains(&daemon::secret_of("shop-buyer")),
            "{v}"
        );
        d.assert_alive();
    }

    /// Deletes the test's groups even when an assertion fails.
    struct GroupsGone(&'static [&'static str]);
    impl Drop for GroupsGone {
        fn drop(&mut self) {
            for g in self.0 {
                let _ = users::delete_group(g);
            }
        }
    }

    const HEALTH: &str = r#"{"v":1,"op":"health"}"#;
    const TICKET: &str = r#"{"v":1,"op":"ticket","task":"checkout-flow","ttl":600}"#;

    /// Twenty-ninth pass (left by the twenty-eighth's closing note): `serve --admin-group` was
    /// resolved to a gid once, at start. After `groupdel` of the admin group and `groupadd` of
    /// another group given its freed gid, that other group's members were admins (`lock`,
    /// `unlock`, tickets for every task), and the admin group made again under its name gave
    /// its members nothing, until a restart. The name is now resolved again at each change of
    /// /etc/group, as the policy's names are, and decided on open connections too.
    #[test]
    fn the_admin_group_name_is_resolved_again_when_etc_group_changes() {
        const ADMINS: &str = "scopevault-tl5a";
        const OTHERS: &str = "scopevault-tl5b";
        let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
            Ok(ids) => ids,
            Err(why) => return skip::skip(&why),
        };
        let _gone = GroupsGone(&[ADMINS, OTHERS]);
        users::delete_group(OTHERS).expect("groupdel");
        let old = users::ensure_group(ADMINS).expect("groupadd");
        users::remove_from_group(users::OTHER_USER, ADMINS).expect("gpasswd -d");
        let dir = daemon::tempdir();
        // checkout-flow is run by OTHERS, which does not exist yet: the user's fetch handed out
        // once it does is the sign that the daemon read the new /etc/group.
        let d = daemon_with_runners(
            dir.path(),
            &format!("{{ groups = [\"{OTHERS}\"] }}"),
            &["--admin-group", ADMINS],
        );
        let mut c = Conn::open(uid, gid, &d.socket);
        assert_eq!(c.ask(HEALTH)["peer"]["admin"], false);
        assert_eq!(daemon::code(&c.ask(FETCH)), "denied");

        // The admin group deleted, its gid given to another group, which the user is in.
        users::delete_group(ADMINS).expect("groupdel");
        users::create_group_with_gid(OTHERS, old).expect("groupadd -g");
        users::add_to_group(users::OTHER_USER, OTHERS).expect("usermod -a -G");
        c.ask_until(FETCH, |v| v["ok"] == true, "fetch as a member of OTHERS");
        let v = c.ask(HEALTH);
        assert_eq!(
            v["peer"]["admin"], false,
            "a member of the group given the admin group's gid is no admin: {v}"
        );
        let v = c.ask(TICKET);
        assert_eq!(daemon::code(&v), "denied", "a ticket: {v}");
        let v = c.ask(r#"{"v":1,"op":"lock"}"#);
        assert_eq!(daemon::code(&v), "denied", "lock: {v}");
        let warning = format!("--admin-group `{ADMINS}` does not exist on this host");
        let log = d.stderr_text();
        assert!(log.contains(&warning), "{log}");

        // The admin group made again (another gid), with the user in it: an admin, no restart.
        let again = users::ensure_group(ADMINS).expect("groupadd");
        assert_ne!(again, old);
        users::add_to_group(users::OTHER_USER, ADMINS).expect("usermod -a -G");
        c.ask_until(
            HEALTH,
            |v| v["peer"]["admin"] == true,
            "health.peer.admin in the admin group made again",
        );
        d.assert_alive();
    }

    /// Twenty-ninth pass (left by the twenty-eighth's closing note): `serve --scheduler` was
    /// resolved to a uid once, at start. After `userdel` of the scheduler and `useradd` of
    /// another user given its uid, that user got tickets for every task naming the uid, and
    /// the scheduler made again (another uid) got none, until a restart. The name is now
    /// resolved again at each change of /etc/passwd.
    #[test]
    fn a_scheduler_name_is_resolved_again_when_etc_passwd_changes() {
        const SCHED: &str = "scopevault-tl6a";
        const NEXT: &str = "scopevault-tl6b";
        if let Err(why) = users::ensure_user(users::OTHER_USER) {
            return skip::skip(&why);
        }
        let _gone = Gone(&[SCHED, NEXT]);
        users::delete_user(NEXT).expect("userdel");
        let (uid, gid) = users::ensure_user(SCHED).expect("useradd");
        // checkout-flow names the scheduler by its uid (taken as it is: only `--scheduler`
        // decides) and is run by it by name (its fetch refused once the name is gone is the
        // sign that the daemon read the new /etc/passwd); search-api names it by name.
        let policy = policy_with_runners(&format!(
            "{{ users = [\"{SCHED}\"] }}\nschedulers = [\"{uid}\"]"
        ))
        .replacen(
            "[tasks.search-api]\n",
            &format!("[tasks.search-api]\nschedulers = [\"{SCHED}\"]\n"),
            1,
        );
        assert_eq!(policy.matches("schedulers = ").count(), 2, "{policy}");
        let dir = daemon::tempdir();
        let d = daemon_with_policy(dir.path(), &policy, &["--scheduler", SCHED]);
        let mut c = Conn::open(uid, gid, &d.socket);
        let v = c.ask(TICKET);
        assert_eq!(v["ok"], true, "the scheduler gets a ticket: {v}");

        // Another user given the scheduler's uid: no scheduler.
        users::delete_user(SCHED).expect("userdel");
        users::create_user_with_uid(NEXT, uid).expect("useradd -u");
        c.ask_until(FETCH, |v| v["ok"] == false, "fetch after userdel, useradd");
        let v = c.ask(TICKET);
        assert_eq!(
            daemon::code(&v),
            "denied",
            "a ticket for the new user of the scheduler's uid: {v}"
        );
        let warning = format!("--scheduler `{SCHED}` does not exist on this host");
        let log = d.stderr_text();
        assert!(log.contains(&warning), "{log}");

        // The scheduler made again, with another uid: a scheduler, no restart.
        let (again, again_gid) = users::ensure_user(SCHED).expect("useradd");
        assert_ne!(again, uid);
        let mut c2 = Conn::open(again, again_gid, &d.socket);
        c2.ask_until(
            r#"{"v":1,"op":"ticket","task":"search-api","ttl":60}"#,
            |v| v["ok"] == true,
            "a ticket for the scheduler made again",
        );
        d.assert_alive();
    }

    /// Twenty-ninth pass (left by the twenty-eighth's closing note): a ticket outlived the
    /// removal of the right it was issued under. A member of `--admin-group` removed with
    /// `gpasswd -d`, or a `--scheduler` deleted with `userdel`, lost the right to ask for
    /// tickets, but the tickets it had been issued were still handed out to whoever redeemed
    /// them until their ttl (audited `allow`). Its redemption now asks whether the issuer may
    /// still have it, and is refused `denied`, saying why, and audited.
    #[test]
    fn a_ticket_outlives_no_removal_of_its_issuers_right() {
        const ADMINS: &str = "scopevault-tl7a";
        const SCHED: &str = "scopevault-tl7b";
        let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
            Ok(ids) => ids,
            Err(why) => return skip::skip(&why),
        };
        let _gone = Gone(&[SCHED]);
        let _out = Out(ADMINS);
        users::ensure_group(ADMINS).expect("groupadd");
        users::add_to_group(users::OTHER_USER, ADMINS).expect("usermod -a -G");
        let (suid, sgid) = users::ensure_user(SCHED).expect("useradd");
        let policy = policy_with_runners(&format!(
            "{{ users = [\"root\"] }}\nschedulers = [\"{SCHED}\"]"
        ));
        let dir = daemon::tempdir();
        let d = daemon_with_policy(
            dir.path(),
            &policy,
            &["--admin-group", ADMINS, "--scheduler", SCHED],
        );
        let mut admin = Conn::open(uid, gid, &d.socket);
        let mut sched = Conn::open(suid, sgid, &d.socket);
        let ticket = |v: Value| {
            assert_eq!(v["ok"], true, "{v}");
            v["ticket"].as_str().unwrap().to_owned()
        };
        let of_admin = ticket(admin.ask(TICKET));
        let of_sched = ticket(sched.ask(TICKET));
        // Root's right is not taken away: its ticket stays good.
        let of_root = ticket(d.request(TICKET));
        let redeem = |t: &str| format!(r#"{{"v":1,"op":"fetch","ticket":"{t}"}}"#);

        users::delete_user(SCHED).expect("userdel");
        users::remove_from_group(users::OTHER_USER, ADMINS).expect("gpasswd -d");
        admin.ask_until(
            HEALTH,
            |v| v["peer"]["admin"] == false,
            "health.peer.admin after gpasswd -d",
        );
        for (t, issuer) in [(&of_admin, uid), (&of_sched, suid)] {
            assert_revoked_ticket_refused_twice(&d, t, issuer);
        }
        let v = d.request(&redeem(&of_root));
        assert_eq!(v["ok"], true, "root's ticket: {v}");

        // Each refusal is audited as a `deny` of the fetch naming the ticket.
        assert_ticket_refusals_audited(&d, &[uid, suid]);
        d.assert_alive();
    }

    /// Thirtieth pass (found by the re-attacker of the twenty-ninth pass's fixes): a ticket
    /// issued through an admin *primary* group still redeemed after operations.md's removal
    /// of such a group (`usermod -g OTHER USER`, then ending every process of the user), and
    /// after `userdel` too, until its ttl: the redemption judged the issuer with the kernel gid
    /// its process had when it asked, kept in the ticket. It now judges it by the primary group
    /// `/etc/passwd` gives its uid now (none for a deleted uid); an issuer whose line still
    /// gives it keeps its ticket. A ticket asked for after `usermod -g` by a process still
    /// running with the old gid would rest on that gid alone: it is not issued, and the
    /// refusal says why (re-attack of this pass's fixes).
    #[test]
    fn a_ticket_issued_through_an_admin_primary_group_is_revoked_by_usermod_g() {
        const ADMINS: &str = "scopevault-tl9a";
        const OTHERS: &str = "scopevault-tl9b";
        const MOVED: &str = "scopevault-tl9m";
        const DELETED: &str = "scopevault-tl9d";
        const KEPT: &str = "scopevault-tl9k";
        let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
            Ok(ids) => ids,
            Err(why) => return skip::skip(&why),
        };
        // Dropped in reverse: the users go before their primary groups.
        let _groups = GroupsGone(&[ADMINS, OTHERS]);
        let _out = Out(OTHERS);
        let _gone = Gone(&[MOVED, DELETED, KEPT]);
        for u in [MOVED, DELETED, KEPT] {
            users::delete_user(u).expect("userdel");
        }
        let admins = users::ensure_group(ADMINS).expect("groupadd");
        users::ensure_group(OTHERS).expect("groupadd");
        users::remove_from_group(users::OTHER_USER, OTHERS).expect("gpasswd -d");
        let issuers = [MOVED, DELETED, KEPT].map(|u| {
            let (u_uid, u_gid) = users::create_user_in_group(u, ADMINS).expect("useradd -g");
            assert_eq!(u_gid, admins, "{u}: its primary group is the admin group");
            u_uid
        });
        // checkout-flow is run by OTHERS, which the test user joins last: its fetch handed out
        // on a connection opened before is the sign that the daemon read the databases after
        // every change below.
        let dir = daemon::tempdir();
        let d = daemon_with_runners(
            dir.path(),
            &format!("{{ groups = [\"{OTHERS}\"] }}"),
            &["--admin-group", ADMINS],
        );
        let mut sign = Conn::open(uid, gid, &d.socket);
        assert_eq!(daemon::code(&sign.ask(FETCH)), "denied");
        // Each issuer's process stays connected until the removal ends it.
        let (tickets, mut processes): (Vec<String>, Vec<Conn>) = issuers
            .iter()
            .map(|&issuer| {
                // The kernel gid of the issuing process is the admin group, as a login's is.
                let mut c = Conn::open(issuer, admins, &d.socket);
                let v = c.ask(HEALTH);
                assert_eq!(v["peer"]["admin"], true, "uid {issuer}: {v}");
                let v = c.ask(TICKET);
                assert_eq!(v["ok"], true, "uid {issuer} gets a ticket: {v}");
                (v["ticket"].as_str().unwrap().to_owned(), c)
            })
            .unzip();
        let [moved, deleted, kept] = issuers;
        let redeem = |t: &str| format!(r#"{{"v":1,"op":"fetch","ticket":"{t}"}}"#);

        // operations.md, "A runner group that is the user's primary group": another primary
        // group, then every process of the user ended; and a user deleted.
        users::set_primary_group(MOVED, OTHERS).expect("usermod -g");
        // The user's processes are this test's relays, ended one by one, never by a
        // `pkill -u` of the uid: a uid another test frees for a moment (`userdel`, then
        // `useradd -u` of the same uid) may have been given to one of these users meanwhile,
        // and a `pkill -u` then ended that test's relay (a broken pipe in
        // `a_runner_name_is_resolved_again_when_etc_passwd_changes` and
        // `a_scheduler_name_is_resolved_again_when_etc_passwd_changes`, its relay killed by
        // SIGKILL).
        processes[1].end();
        users::delete_user(DELETED).expect("userdel");
        users::add_to_group(users::OTHER_USER, OTHERS).expect("usermod -a -G");
        sign.ask_until(FETCH, |v| v["ok"] == true, "fetch as a member of OTHERS");
        // Before it is ended, the process left with the old gid is still an admin on its
        // connection (the kernel's credentials) and asks for another ticket: it would rest on
        // that gid alone, not on the databases, so none is issued, and the refusal says so
        // (thirtieth pass, re-attack: it was issued, then refused at its redemption as if the
        // user had been removed from the admin group).
        assert_eq!(processes[0].ask(HEALTH)["peer"]["admin"], true);
        let v = processes[0].ask(TICKET);
        assert_eq!(
            daemon::code(&v),
            "denied",
            "uid {moved}'s process left with the old gid: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("its process's group id {admins}"))
                && message.contains("/etc/passwd and /etc/group do not give the user")
                && !message.contains("removed"),
            "{message}"
        );
        processes[0].end();

        for (t, issuer) in [(&tickets[0], moved), (&tickets[1], deleted)] {
            assert_revoked_ticket_refused_twice(&d, t, issuer);
        }
        // Its /etc/passwd line still gives the admin group: its ticket redeems.
        let v = d.request(&redeem(&tickets[2]));
        assert_eq!(v["ok"], true, "uid {kept}'s ticket: {v}");

        // Each refusal is audited as the revocation path audits it: a `deny` of the fetch.
        assert_ticket_refusals_audited(&d, &[moved, deleted]);
        d.assert_alive();
    }

    /// Twenty-ninth pass (left by the twenty-eighth's closing note): when a connection's
    /// rights changed with /etc/group, no audit record said so: the log showed an `allow` and
    /// then a `deny` for the same connection, and nothing between them. Now the first request
    /// after the change writes one `peer.rights` record naming the uid and what changed
    /// (admin, runner groups), which `audit verify` and `audit show` take as any record.
    #[test]
    fn a_change_of_a_connections_rights_is_audited_once() {
        const G: &str = "scopevault-tl8";
        let dir = daemon::tempdir();
        // G is both a runner group of checkout-flow and `--admin-group`.
        let Some((d, uid, gid, _out)) = daemon_for(dir.path(), G, &["--admin-group", G]) else {
            return;
        };
        let g = users::gid_of(G).expect("the group's gid");
        let mut c = Conn::open(uid, gid, &d.socket);
        assert_eq!(c.ask(HEALTH)["peer"]["admin"], false);
        assert_eq!(daemon::code(&c.ask(FETCH)), "denied");

        users::add_to_group(users::OTHER_USER, G).expect("usermod -a -G");
        c.ask_until(FETCH, |v| v["ok"] == true, "fetch after usermod -a -G");
        assert_eq!(c.ask(HEALTH)["peer"]["admin"], true);
        users::remove_from_group(users::OTHER_USER, G).expect("gpasswd -d");
        c.ask_until(FETCH, |v| v["ok"] == false, "fetch after gpasswd -d");
        assert_eq!(c.ask(HEALTH)["peer"]["admin"], false);

        let audit = d.audit_text();
        let changes: Vec<Value> = audit
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["op"] == "peer.rights")
            .collect();
        assert_eq!(changes.len(), 2, "one record per change: {audit}");
        for (r, decision, how) in [
            (&changes[0], "allow", "gained"),
            (&changes[1], "deny", "lost"),
        ] {
            assert_eq!(r["decision"], decision, "{r}");
            assert_eq!(r["peer"]["uid"], uid, "{r}");
            let reason = r["reason"].as_str().unwrap();
            assert!(reason.contains(&format!("admin {how}")), "{r}");
            assert!(reason.contains(&format!("runner groups {how}: {g}")), "{r}");
        }
        // The change is recorded before the decision that used it.
        let seq = |r: &Value| r["seq"].as_u64().unwrap();
        let first_allow = audit
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|r| r["op"] == "fetch" && r["decision"] == "allow" && r["peer"]["uid"] == uid)
            .expect("the allowed fetch");
        assert!(seq(&changes[0]) < seq(&first_allow), "{audit}");

        let verify = daemon::cmd(dir.path())
            .args(["audit", "verify"])
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        let show = daemon::cmd(dir.path())
            .args(["audit", "show"])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&show.stdout);
        assert!(show.status.success(), "{shown}");
        assert_eq!(
            shown
                .lines()
                .filter(|l| l.contains(" peer.rights "))
                .count(),
            2,
            "{shown}"
        );
        d.assert_alive();
    }

    /// Regression (twenty-ninth pass, found by the re-attacker of this pass's fixes): a
    /// `policy apply` that moved a user from one task's `runners.users` to another's changed
    /// no flag and no group, and no `peer.rights` record said so: the log showed an `allow`
    /// of checkout-flow and then a `deny` for the same connection, nothing between. The
    /// compared rights include the tasks the connection runs now, and the record names those
    /// lost and gained.
    #[test]
    fn a_move_from_one_tasks_runners_to_anothers_is_audited() {
        let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
            Ok(ids) => ids,
            Err(why) => return skip::skip(&why),
        };
        let dir = daemon::tempdir();
        let user = users::OTHER_USER;
        let d = daemon_with_runners(
            dir.path(),
            &format!("{{ users = [\"{user}\"], groups = [] }}"),
            &[],
        );
        let mut c = Conn::open(uid, gid, &d.socket);
        assert_eq!(c.ask(FETCH)["ok"], true);

        // checkout-flow back to the example's runners, browse-catalog to the user.
        let example = daemon::example_policy();
        let at = example
            .find("[tasks.browse-catalog]")
            .expect("browse-catalog");
        let (head, tail) = example.split_at(at);
        let tail = tail.replacen(
            "runners = { users = [\"checkpoint\", \"root\"] }",
            &format!("runners = {{ users = [\"{user}\"] }}"),
            1,
        );
        let file = dir.path().join("moved.toml");
        std::fs::write(&file, format!("{head}{tail}")).unwrap();
        let id = dir.path().join("identity.txt");
        daemon::ok(
            dir.path(),
            &[
                "--identity-file",
                id.to_str().unwrap(),
                "policy",
                "apply",
                file.to_str().unwrap(),
            ],
            None,
        );
        c.ask_until(
            FETCH,
            |v| v["ok"] == false,
            "fetch of checkout-flow after the move",
        );
        assert_eq!(
            c.ask(r#"{"v":1,"op":"fetch","task":"browse-catalog"}"#)["ok"],
            true
        );

        let audit = d.audit_text();
        let changes: Vec<Value> = audit
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["op"] == "peer.rights" && r["peer"]["uid"] == uid)
            .collect();
        assert_eq!(changes.len(), 1, "one record for the move: {audit}");
        let r = &changes[0];
        assert_eq!(r["decision"], "deny", "{r}");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            reason.ends_with(
                ": runner tasks lost: checkout-flow; runner tasks gained: browse-catalog"
            ),
            "{r}"
        );
        d.assert_alive();
    }
}
