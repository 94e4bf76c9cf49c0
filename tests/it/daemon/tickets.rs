//! Issue 15.12 over the real socket: a `--scheduler` user gets tickets only for the tasks whose
//! `schedulers` name it, as a real second uid (created with `useradd` as root), while admins
//! get them for every task.
//!
//! The scheduler is this test binary re-executed as the second uid (env [`CLIENT_ENV`] names
//! the socket): it asks for three tickets, redeems the one it got, and prints each answer on a
//! line of its own for the parent to judge.

use crate::common::daemon;
use crate::common::skip;
use crate::common::users;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use daemon::{assert_no_secret, code, ok, roundtrip, secret_of, setup_vault, tempdir, Daemon};

/// Set in the re-executed child: the socket to talk to.
const CLIENT_ENV: &str = "SCOPEVAULT_TEST_SCHEDULER_SOCKET";
/// Prefix of the child's answer lines.
const MARK: &str = "ANSWER ";
const TEST: &str = "a_scheduler_uid_gets_tickets_only_for_the_tasks_that_name_it";

/// The child: the scheduler's side. Each request on its own connection.
fn scheduler_client(socket: &str) {
    let ask = |line: &str| -> serde_json::Value {
        let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        roundtrip(&mut s, line).expect("an answer")
    };
    let mine = ask(r#"{"v":1,"op":"ticket","task":"search-api","ttl":600}"#);
    println!("{MARK}{mine}");
    for task in ["checkout-flow", "newsletter"] {
        let v = ask(&format!(
            r#"{{"v":1,"op":"ticket","task":"{task}","ttl":600}}"#
        ));
        println!("{MARK}{v}");
    }
    let ticket = mine["ticket"].as_str().unwrap_or("svt1_none");
    let v = ask(&format!(r#"{{"v":1,"op":"fetch","ticket":"{ticket}"}}"#));
    println!("{MARK}{v}");
}

#[test]
fn a_scheduler_uid_gets_tickets_only_for_the_tasks_that_name_it() {
    if let Ok(socket) = std::env::var(CLIENT_ENV) {
        scheduler_client(&socket);
        return;
    }
    let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
        Ok(ids) => ids,
        Err(why) => return skip::skip(&why),
    };
    let dir = tempdir();
    let id = setup_vault(dir.path());
    // search-api names the second user (by name, resolved by the daemon); checkout-flow names
    // another uid; newsletter names nobody.
    let policy = daemon::example_policy()
        .replace(
            "[tasks.search-api]\n",
            &format!(
                "[tasks.search-api]\nschedulers = [\"{}\"]\n",
                users::OTHER_USER
            ),
        )
        .replace(
            "[tasks.checkout-flow]\n",
            "[tasks.checkout-flow]\nschedulers = [\"4000000\"]\n",
        );
    assert_eq!(policy.matches("schedulers = ").count(), 2, "{policy}");
    let policy_file = dir.path().join("policy-schedulers.toml");
    std::fs::write(&policy_file, &policy).unwrap();
    ok(
        dir.path(),
        &[
            "--identity-file",
            id.to_str().unwrap(),
            "policy",
            "apply",
            policy_file.to_str().unwrap(),
        ],
        None,
    );
    let d = Daemon::start(
        dir.path(),
        &[
            "--identity-file",
            id.to_str().unwrap(),
            "--scheduler",
            users::OTHER_USER,
        ],
    );
    // A copy of this test binary the second uid can run, and a socket it can reach: the
    // daemon's checks must decide alone (modes are only defence in depth).
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let me = bin_dir.join("daemon_tickets");
    crate::common::copy_executable(&std::env::current_exe().unwrap(), &me);
    for (p, mode) in [
        (dir.path(), 0o711),
        (bin_dir.as_path(), 0o755),
        (me.as_path(), 0o755),
        (d.socket.parent().unwrap(), 0o711),
        (d.socket.as_path(), 0o666),
    ] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = std::process::Command::new(&me)
        .args([
            "--exact",
            &crate::common::test_path(module_path!(), TEST),
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env("HOME", "/")
        .env("PATH", "/usr/bin:/bin")
        .env(CLIENT_ENV, &d.socket)
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the scheduler child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| l.find(MARK).map(|i| &l[i + MARK.len()..]))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 4, "{stdout}");
    // Its own task: a ticket, which it redeems for that task's secret.
    assert_eq!(answers[0]["ok"], true, "{}", answers[0]);
    assert_eq!(answers[0]["task"], "search-api");
    assert_eq!(answers[3]["task"], "search-api", "{}", answers[3]);
    assert_eq!(
        answers[3]["credentials"][0]["secrets"]["token"],
        secret_of("search-token")
    );
    // Another scheduler's task, and a task naming none: refused, with the fix, nothing leaked.
    for (v, task) in [(&answers[1], "checkout-flow"), (&answers[2], "newsletter")] {
        assert_eq!(code(v), "denied", "{task}: {v}");
        assert!(v.get("ticket").is_none(), "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("`schedulers = [\"{uid}\"]`"))
                && msg.contains(&format!("[tasks.{task}]")),
            "the refusal names the fix: {msg}"
        );
        assert_no_secret(&v.to_string(), "a refused ticket");
    }
    // Admins (root, or the daemon's own uid when not root) get tickets for every task.
    for task in ["checkout-flow", "newsletter", "search-api"] {
        let v = d.request(&format!(
            r#"{{"v":1,"op":"ticket","task":"{task}","ttl":60}}"#
        ));
        assert_eq!(v["ok"], true, "admin ticket for {task}: {v}");
    }
    // Both refusals are audited as deny for the scheduler's uid (one by one, or counted into
    // a `denials` record once the second is over), without a secret.
    let audit = d.audit_after_refusals(uid, 2);
    assert_eq!(daemon::refusals_of(&audit, uid), 2, "{audit}");
    assert!(
        audit.lines().any(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            r["op"] == "ticket"
                && r["decision"] == "deny"
                && r["peer"]["uid"] == uid
                && r["reason"]
                    .as_str()
                    .is_some_and(|s| s.contains("does not name it"))
        }),
        "{audit}"
    );
    assert_no_secret(&audit, "the audit log");
    d.assert_alive();
}
