//! What the daemon leaves of a secret in its memory once it no longer holds it: after `lock`,
//! and after a rotation has replaced it, read by root from `/proc/PID/mem` as an attacker
//! with root (or the daemon's uid) would (docs/security.md, "Limits", "Copies we cannot
//! reach").

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::daemon::{self, copies_in_memory_of_each, tempdir, Daemon};

/// A password whose JSON form needs escapes (`"` and `\`): serde_json unescapes such a string
/// in a scratch buffer of its own.
const ESCAPED_PASSWORD: &str = "Quo\"te\\Canary-Escaped-Pw-29";
/// The part of [`ESCAPED_PASSWORD`] searched for: long enough to be found only as a copy.
const ESCAPED_CANARY: &str = "Canary-Escaped-Pw-29";

/// A PEM private key of random base64 (26 lines of 64 characters, as an RSA-2048 key's
/// PKCS#8 PEM has): every line break is a `\n` in the vault's JSON payload.
fn pem_key() -> String {
    use rand::Rng;
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::thread_rng();
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for _ in 0..26 {
        pem.extend((0..64).map(|_| B64[rng.gen_range(0..64)] as char));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// The base64 lines of a key from [`pem_key`].
fn key_lines(pem: &str) -> Vec<&str> {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// How many of `needles` have a copy in the memory of process `pid`.
fn found(pid: u32, needles: &[&str]) -> usize {
    let bytes: Vec<&[u8]> = needles.iter().map(|n| n.as_bytes()).collect();
    copies_in_memory_of_each(pid, &bytes)
        .into_iter()
        .filter(|&n| n > 0)
        .count()
}

fn sv(d: &Daemon, args: &[&str]) -> Output {
    let out = daemon::cmd(&d.dir)
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scopevault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `cred set cert` storing the PEM `key` as its `private_key`, with the file `id`.
fn set_key(dir: &Path, d: Option<&Daemon>, id: &Path, key: &str) {
    let file = dir.join("key.pem");
    std::fs::write(&file, key).unwrap();
    let mut c = daemon::cmd(dir);
    if let Some(d) = d {
        c.arg("--socket").arg(&d.socket);
    }
    let arg = format!("private_key={}", file.display());
    let out = c
        .args(["--identity-file", id.to_str().unwrap()])
        .args(["cred", "set", "cert", "--secret-file", &arg])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&file).unwrap();
}

/// The private key the daemon hands out for `cert` to task `t`.
fn fetched_key(d: &Daemon) -> String {
    let v = d.request(r#"{"v":1,"op":"fetch","task":"t","credential":"cert"}"#);
    v["credentials"][0]["secrets"]["private_key"]
        .as_str()
        .unwrap_or_else(|| panic!("the key is handed out: {}", v["error"]))
        .to_owned()
}

/// Found by the twenty-ninth pass's code review (Finding A): every secret whose JSON form
/// needs an escape (every PEM private key, with its line breaks; a password with `"` or `\`)
/// stayed in the daemon's heap after `lock`, and a rotated-out key stayed while the daemon
/// served the new one and after `lock`: serde_json unescapes such a string in a scratch
/// buffer that it grows by reallocation and frees, neither zeroed, on each load of the vault.
/// 13 of the key's 26 lines were found after `lock` before the fix. The daemon's allocator
/// now zeroes every block it frees (`zeroizing-alloc`), so none is found after `lock`, and
/// none of the old key while the new one is served.
#[test]
fn a_private_key_leaves_no_copy_in_the_daemon_after_lock_or_after_its_rotation() {
    if !daemon::is_root() {
        return crate::common::skip::skip("reading the non-dumpable daemon's memory needs root");
    }
    let dir = tempdir();
    let dir = dir.path();
    let id = dir.join("identity.txt");
    let id_s = id.to_str().unwrap();
    daemon::ok(dir, &["init", "--identity-out", id_s], None);
    let me = Command::new("id").arg("-un").output().unwrap();
    let me = String::from_utf8_lossy(&me.stdout).trim().to_owned();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"version = 1
[settings]
enforce = "warn"
[credentials.esc]
kind = "login"
scopes = ["a:b"]
[credentials.cert]
kind = "certificate"
scopes = ["a:b"]
[tasks.t]
needs = ["a:b"]
credentials = ["esc", "cert"]
runners = {{ users = ["{me}"] }}
"#
        ),
    )
    .unwrap();
    daemon::ok(
        dir,
        &[
            "--identity-file",
            id_s,
            "policy",
            "apply",
            policy.to_str().unwrap(),
        ],
        None,
    );
    daemon::ok(
        dir,
        &[
            "--identity-file",
            id_s,
            "cred",
            "set",
            "esc",
            "--field",
            "username=u",
            "--secret",
            "password",
        ],
        Some(ESCAPED_PASSWORD),
    );
    let old = pem_key();
    set_key(dir, None, &id, &old);

    let d = Daemon::start(dir, &["--identity-file", id_s]);
    assert_eq!(fetched_key(&d), old.trim_end());
    let v = d.request(r#"{"v":1,"op":"fetch","task":"t","credential":"esc"}"#);
    assert_eq!(
        v["credentials"][0]["secrets"]["password"], ESCAPED_PASSWORD,
        "{v}"
    );
    let mut all = key_lines(&old);
    all.push(ESCAPED_CANARY);
    // The control: while unlocked, the loaded vault holds each value, so the search finds it.
    assert_eq!(found(d.pid(), &all), all.len(), "the values while unlocked");

    sv(&d, &["lock"]);
    assert_eq!(
        found(d.pid(), &all),
        0,
        "copies of the key's 26 lines and of the escaped password left after lock"
    );

    // Rotation: unlocked again, the key replaced while the daemon runs (it follows the file).
    sv(&d, &["unlock", "--identity-file", id_s]);
    let new = pem_key();
    set_key(dir, Some(&d), &id, &new);
    assert_eq!(
        fetched_key(&d),
        new.trim_end(),
        "the daemon serves the new key"
    );
    assert_eq!(
        found(d.pid(), &key_lines(&old)),
        0,
        "copies of the rotated-out key left while the new one is served"
    );
    sv(&d, &["lock"]);
    let mut both = key_lines(&old);
    both.extend(key_lines(&new));
    assert_eq!(
        found(d.pid(), &both),
        0,
        "copies of the old and the new key left after lock"
    );
}
