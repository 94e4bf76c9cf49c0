//! The daemon under load and faults (issue 5, item 3): 64 runner clients fetch over the real
//! Unix socket while hostile clients of every kind in tests/it/daemon/hostile.rs run the whole
//! time, a client of another uid is refused, and an admin reloads (by request and by SIGHUP),
//! locks and unlocks periodically. The audit log is durable (fdatasync on).
//!
//! Asserted: every fetch gets the right secret (or TOTP code) or a well-formed error; every
//! answer the clients saw is exactly one audit record of the right op and decision, and the log
//! holds nothing else (equality, per op and decision); every hand-out's record sits at the
//! `audit_seq` it was given, with the HMAC of the value handed out; `scopevault audit verify`
//! passes; the daemon's RSS grows less than 8 MiB from the post-warm-up sample to the end; the
//! daemon still answers `health` and exits 0 on SIGTERM.
//!
//! CI size by default (100,000 fetches). The full run of issue 5:
//!
//! ```text
//! SCOPEVAULT_SOAK_FETCHES=1000000 cargo test --release --test it daemon::soak:: -- --nocapture
//! ```
//!
//! `SCOPEVAULT_SOAK_CLIENTS` changes the number of runner clients (default 64).

use crate::common::daemon;
use crate::common::skip;
use crate::common::soak;
use crate::common::users;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scopevault::agent::totp::Totp;
use scopevault::audit::AuditKey;
use scopevault::secret::SecretString;
use serde_json::Value;

use daemon::{code, secret_of, setup_vault, tempdir, Daemon, TOTP_SEED};
use soak::{audited_decision, is_well_formed_error, vm_rss_kib, Conn, Tally};

/// The passphrase of the slot `unlock` uses (weak test KDF parameters: this is a test vault).
const PASSPHRASE: &str = "soak passphrase for the unlock op";
/// Allowed RSS growth from the post-warm-up sample to the end.
const RSS_BOUND_KIB: u64 = 8 * 1024;
/// Connections the daemon accepts at once; a burst opens more than that.
const MAX_CONNECTIONS: usize = 256;

/// What a fetch must return.
#[derive(Clone, Copy)]
enum Want {
    /// The credential, its secret field's value and its username (if it has one).
    Secret {
        credential: &'static str,
        field: &'static str,
        username: Option<&'static str>,
        warns: bool,
    },
    /// A TOTP code of the seed, never the seed.
    Totp,
    /// A refusal with this error code.
    Refused(&'static str),
}

/// One kind of fetch request and what it must get.
struct Kind {
    line: &'static str,
    task: &'static str,
    want: Want,
}

const fn secret(
    line: &'static str,
    task: &'static str,
    credential: &'static str,
    field: &'static str,
    username: Option<&'static str>,
    warns: bool,
) -> Kind {
    Kind {
        line,
        task,
        want: Want::Secret {
            credential,
            field,
            username,
            warns,
        },
    }
}

/// The fetch mix: 28 allowed out of 32, 4 refused (another task's credential, a task this
/// uid does not run, an unknown task).
fn kinds() -> Vec<Kind> {
    let checkout = secret(
        r#"{"v":1,"op":"fetch","task":"checkout-flow"}"#,
        "checkout-flow",
        "shop-buyer",
        "password",
        Some("buyer"),
        false,
    );
    let browse = secret(
        r#"{"v":1,"op":"fetch","task":"browse-catalog","credential":"shop-buyer"}"#,
        "browse-catalog",
        "shop-buyer",
        "password",
        Some("buyer"),
        true,
    );
    let orders = secret(
        r#"{"v":1,"op":"fetch","task":"order-status"}"#,
        "order-status",
        "shop-backoffice",
        "password",
        Some("backoffice"),
        true,
    );
    let search = secret(
        r#"{"v":1,"op":"fetch","task":"search-api"}"#,
        "search-api",
        "search-token",
        "token",
        None,
        false,
    );
    let payments = secret(
        r#"{"v":1,"op":"fetch","task":"payments-health"}"#,
        "payments-health",
        "payments-token",
        "token",
        None,
        true,
    );
    let totp = || Kind {
        line: r#"{"v":1,"op":"fetch","task":"two-factor-login"}"#,
        task: "two-factor-login",
        want: Want::Totp,
    };
    let mut v = Vec::new();
    for _ in 0..6 {
        v.push(Kind { ..checkout });
    }
    for _ in 0..4 {
        v.push(Kind { ..browse });
        v.push(Kind { ..orders });
        v.push(totp());
    }
    for _ in 0..5 {
        v.push(Kind { ..search });
        v.push(Kind { ..payments });
    }
    for (line, task, code) in [
        (
            r#"{"v":1,"op":"fetch","task":"checkout-flow","credential":"shop-backoffice"}"#,
            "checkout-flow",
            "denied",
        ),
        (
            r#"{"v":1,"op":"fetch","task":"search-api","credential":"payments-token"}"#,
            "search-api",
            "denied",
        ),
        (
            r#"{"v":1,"op":"fetch","task":"newsletter"}"#,
            "newsletter",
            "denied",
        ),
        (
            r#"{"v":1,"op":"fetch","task":"no-such-task"}"#,
            "no-such-task",
            "not_found",
        ),
    ] {
        v.push(Kind {
            line,
            task,
            want: Want::Refused(code),
        });
    }
    assert_eq!(v.len(), 32);
    v
}

/// Progress and lock state shared by the client, admin, hostile and sampler threads.
#[derive(Default)]
struct Shared {
    /// Runner clients connected (and served once).
    connected: AtomicU64,
    /// Fetch answers the runner clients have received.
    done: AtomicU64,
    /// Of those, `locked` answers.
    locked_seen: AtomicU64,
    /// Lock requests sent by the admin thread (incremented before sending).
    locks_started: AtomicU64,
    /// Unlocks answered `ok` (incremented after the answer).
    unlocks_done: AtomicU64,
    /// The runner clients are done: everyone else winds down.
    stop: AtomicBool,
    /// A thread hit a broken contract it cannot continue past.
    abort: AtomicBool,
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?}: {e}")),
        Err(_) => default,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A hand-out to find in the audit log: its `audit_seq` and which kind it was.
type HandOut = (u64, u8);

/// One runner client: `quota` fetches over one long-lived connection (re-established only if
/// the daemon closes it between requests), each answer checked.
fn runner(
    socket: PathBuf,
    id: usize,
    quota: usize,
    shared: Arc<Shared>,
    totp: Arc<Totp>,
) -> (Tally, Vec<HandOut>) {
    let kinds = kinds();
    let mut t = Tally::default();
    let mut handouts = Vec::with_capacity(quota);
    let mut conn = Conn::established(&socket, &mut t);
    shared.connected.fetch_add(1, Ordering::SeqCst);
    for i in 0..quota {
        if shared.abort.load(Ordering::Relaxed) {
            break;
        }
        let k_index = (id * 5 + i) % kinds.len();
        let k = &kinds[k_index];
        let unlocks_before = shared.unlocks_done.load(Ordering::SeqCst);
        let locks_before = shared.locks_started.load(Ordering::SeqCst);
        let t0 = unix_now();
        let (v, raw) = loop {
            match conn.call(k.line) {
                Ok((v, raw)) => break (v, raw.to_owned()),
                // Closed unanswered (a timeout under CPU starvation): the request was never
                // read, so never decided (soak::closed_unanswered). Reconnect and ask again.
                Err(e) if soak::closed_unanswered(&e) => {
                    t.count(soak::CLOSED_UNANSWERED);
                    conn = Conn::established(&socket, &mut t);
                }
                Err(e) => {
                    t.problem(format!("client {id}: fetch {}: no answer: {e}", k.task));
                    shared.abort.store(true, Ordering::SeqCst);
                    return (t, handouts);
                }
            }
        };
        let t1 = unix_now();
        let locks_after = shared.locks_started.load(Ordering::SeqCst);
        shared.done.fetch_add(1, Ordering::SeqCst);
        match audited_decision("fetch", &v) {
            Some(d) => t.expect("fetch", d),
            None => t.problem(format!("fetch answered without a decision: {raw}")),
        }
        if raw.contains("S3cret-") && !matches!(k.want, Want::Secret { .. }) {
            t.problem(format!(
                "a refused or TOTP fetch carries a secret: {}",
                k.task
            ));
        }
        if raw.contains(TOTP_SEED) {
            t.problem("the TOTP seed left the daemon".into());
        }
        if v["ok"] != true {
            if !is_well_formed_error(&v) {
                t.problem(format!("malformed error: {raw}"));
                continue;
            }
            let c = code(&v);
            t.count(&format!("fetch error: {c}"));
            if c == "locked" {
                shared.locked_seen.fetch_add(1, Ordering::SeqCst);
                // Only while a lock was in force at some point of this request.
                if !(locks_before > unlocks_before || locks_after > locks_before) {
                    t.problem(format!("`locked` outside any lock window: {raw}"));
                }
            } else if !matches!(k.want, Want::Refused(want) if want == c) {
                t.problem(format!("fetch {}: unexpected refusal {raw}", k.line));
            }
            continue;
        }
        let cred = &v["credentials"][0];
        let shape_ok = v["task"] == k.task
            && v["credentials"].as_array().map(Vec::len) == Some(1)
            && v["audit_seq"].as_u64().is_some();
        let value_ok = match k.want {
            Want::Refused(_) => false,
            Want::Secret {
                credential,
                field,
                username,
                warns,
            } => {
                cred["name"] == credential
                    && cred["secrets"][field].as_str() == Some(&secret_of(credential))
                    && cred["secrets"].as_object().map(|m| m.len()) == Some(1)
                    && username.is_none_or(|u| cred["fields"]["username"] == u)
                    && cred["warnings"]
                        .as_array()
                        .is_some_and(|w| w.is_empty() != warns)
            }
            Want::Totp => {
                let got = cred["totp"]["code"].as_str().unwrap_or("");
                cred["name"] == "shop-2fa"
                    && (got == totp.code_at(t0).0 || got == totp.code_at(t1).0)
                    && cred["secrets"].as_object().is_some_and(|m| m.is_empty())
            }
        };
        if shape_ok && value_ok {
            t.count("fetch ok");
            handouts.push((v["audit_seq"].as_u64().unwrap(), k_index as u8));
        } else {
            t.problem(format!("fetch {}: wrong answer {raw}", k.line));
        }
    }
    (t, handouts)
}

/// The admin: every `every` fetches one cycle of reload (request), lock + refused fetches +
/// reload while locked + a wrong passphrase + unlock, reload (SIGHUP), reload (request).
fn admin(d: &Daemon, total: u64, every: u64, shared: &Shared) -> Tally {
    let mut t = Tally::default();
    let call = |t: &mut Tally, op: &str, line: &str| -> Value {
        loop {
            let mut c = Conn::established(&d.socket, t);
            return match c.call(line) {
                Ok((v, raw)) => {
                    match audited_decision(op, &v) {
                        Some(dec) => t.expect(op, dec),
                        None => t.problem(format!("{op}: unaudited answer {raw}")),
                    }
                    v
                }
                // Never decided (soak::closed_unanswered): ask again, as the runners do.
                Err(e) if soak::closed_unanswered(&e) => {
                    t.count(soak::CLOSED_UNANSWERED);
                    continue;
                }
                Err(e) => {
                    t.problem(format!("{op}: no answer: {e}"));
                    Value::Null
                }
            };
        }
    };
    let reload = |t: &mut Tally, why: &str| {
        let v = call(t, "reload", r#"{"v":1,"op":"reload"}"#);
        if v["ok"] == true && v["locked"] == false {
            t.count(&format!("admin reload ({why})"));
        } else {
            t.problem(format!("reload: {v}"));
        }
    };
    let mut cycle = 1u64;
    while cycle * every < total {
        while shared.done.load(Ordering::SeqCst) < cycle * every {
            if shared.stop.load(Ordering::SeqCst) || shared.abort.load(Ordering::SeqCst) {
                return t;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match cycle % 4 {
            1 => {
                shared.locks_started.fetch_add(1, Ordering::SeqCst);
                let seen = shared.locked_seen.load(Ordering::SeqCst);
                let v = call(&mut t, "lock", r#"{"v":1,"op":"lock"}"#);
                if v["ok"] == true && v["locked"] == true {
                    t.count("admin lock");
                } else {
                    t.problem(format!("lock: {v}"));
                }
                // Let the runners meet the lock: 64 `locked` answers (or the end of the run).
                let deadline = Instant::now() + soak::ANSWER_TIMEOUT;
                while shared.locked_seen.load(Ordering::SeqCst) < seen + 64
                    && !shared.stop.load(Ordering::SeqCst)
                    && !shared.abort.load(Ordering::SeqCst)
                {
                    if Instant::now() > deadline {
                        t.problem("no fetch was refused as locked during a lock".into());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let v = call(&mut t, "reload", r#"{"v":1,"op":"reload"}"#);
                if code(&v) == "locked" {
                    t.count("admin reload while locked (refused)");
                } else {
                    t.problem(format!("reload while locked: {v}"));
                }
                let v = call(
                    &mut t,
                    "unlock",
                    r#"{"v":1,"op":"unlock","passphrase":"not the passphrase"}"#,
                );
                if code(&v) == "denied" {
                    t.count("admin unlock with a wrong passphrase (refused)");
                } else {
                    t.problem(format!("unlock with a wrong passphrase: {v}"));
                }
                let v = call(
                    &mut t,
                    "unlock",
                    &format!(r#"{{"v":1,"op":"unlock","passphrase":"{PASSPHRASE}"}}"#),
                );
                if v["ok"] == true && v["locked"] == false {
                    t.count("admin unlock");
                } else {
                    t.problem(format!("unlock: {v}"));
                    shared.abort.store(true, Ordering::SeqCst);
                }
                shared.unlocks_done.fetch_add(1, Ordering::SeqCst);
            }
            2 => {
                let before = d.stderr_text().matches("SIGHUP:").count();
                d.signal("HUP");
                let deadline = Instant::now() + soak::ANSWER_TIMEOUT;
                loop {
                    let text = d.stderr_text();
                    if text.matches("SIGHUP:").count() > before {
                        if text.contains("reload failed") {
                            t.problem(format!("SIGHUP reload failed: {text}"));
                        }
                        t.count("admin reload (SIGHUP)");
                        t.expect("reload", "allow");
                        break;
                    }
                    if Instant::now() > deadline {
                        t.problem("SIGHUP was not acted on".into());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            _ => reload(&mut t, "request"),
        }
        cycle += 1;
    }
    t
}

/// Run one hostile kind against `socket` until the runners are done (at least once), `pace`
/// apart.
fn hostile(
    shared: &Arc<Shared>,
    socket: &Path,
    pace: Duration,
    mut act: impl FnMut(&Path, &mut Tally) + Send + 'static,
) -> std::thread::JoinHandle<Tally> {
    let (shared, socket) = (shared.clone(), socket.to_owned());
    std::thread::spawn(move || {
        let mut t = Tally::default();
        loop {
            act(&socket, &mut t);
            if shared.stop.load(Ordering::SeqCst) || shared.abort.load(Ordering::SeqCst) {
                return t;
            }
            std::thread::sleep(pace);
        }
    })
}

/// Everything read back from the audit log after the run.
struct AuditFacts {
    lines: u64,
    by_op: BTreeMap<(String, String), u64>,
    /// Decisions recorded: one per line, `count` per `denials` line.
    decisions: u64,
    problems: Vec<String>,
}

/// Read the log once: count records by (op, decision); check that sequence numbers follow on
/// from `first_seq`, that no secret appears, and that each hand-out's record is at its
/// `audit_seq` with the HMAC of the value handed out.
fn read_audit(path: &Path, first_seq: u64, mut handouts: Vec<HandOut>) -> AuditFacts {
    let key = AuditKey::load(path).expect("the audit key");
    let kinds = kinds();
    let hmacs: Vec<Option<String>> = kinds
        .iter()
        .map(|k| match k.want {
            Want::Secret {
                credential, field, ..
            } => Some(format!(
                "\"{field}\":\"{}\"",
                key.hmac_value(&secret_of(credential))
            )),
            Want::Totp => Some("\"totp_code\":\"hmac-sha256:".to_owned()),
            Want::Refused(_) => None,
        })
        .collect();
    handouts.sort_unstable();
    let mut next_handout = handouts.iter().peekable();
    let mut facts = AuditFacts {
        lines: 0,
        by_op: BTreeMap::new(),
        decisions: 0,
        problems: Vec::new(),
    };
    let problem = |facts: &mut AuditFacts, p: String| {
        if facts.problems.len() < 20 {
            facts.problems.push(p);
        }
    };
    let file = std::fs::File::open(path).unwrap();
    let lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
    for (expect_seq, line) in (first_seq..).zip(lines) {
        let line = line.expect("the audit log is UTF-8 text");
        let seq = soak::seq(&line);
        if seq != Some(expect_seq) {
            problem(
                &mut facts,
                format!("seq {seq:?} where {expect_seq} was expected"),
            );
        }
        facts.lines += 1;
        if line.contains("S3cret-") || line.contains(TOTP_SEED) || line.contains(PASSPHRASE) {
            problem(&mut facts, format!("a secret in audit line {seq:?}"));
        }
        let op = soak::field(&line, "op").unwrap_or("?").to_owned();
        let decision = soak::field(&line, "decision").unwrap_or("?").to_owned();
        if let Some(&&(hseq, k)) = next_handout.peek() {
            if Some(hseq) == seq {
                next_handout.next();
                let kind = &kinds[k as usize];
                let hmac = hmacs[k as usize].as_deref().unwrap_or("\u{0}");
                if op != "fetch"
                    || decision != "allow"
                    || soak::field(&line, "task") != Some(kind.task)
                    || !line.contains(hmac)
                {
                    problem(
                        &mut facts,
                        format!("hand-out {hseq} ({}) is not the record {line}", kind.task),
                    );
                }
            }
        }
        if op == "vault.load" {
            // The daemon's own record of each vault it loads (start, unlock, reload): not an
            // answer to a client's request.
        } else if op == "denials" {
            // Refusals of a non-admin uid beyond one a second, counted into one record
            // (docs/audit.md, "Growth"): each still counts as the decision it was.
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let mut sum = 0;
            for (k, n) in v["by_op"].as_object().into_iter().flatten() {
                let (op, decision) = k.split_once(' ').unwrap_or((k, "?"));
                let n = n.as_u64().unwrap_or(0);
                *facts
                    .by_op
                    .entry((op.to_owned(), decision.to_owned()))
                    .or_default() += n;
                sum += n;
            }
            if Some(sum) != v["count"].as_u64() {
                problem(
                    &mut facts,
                    format!("a denials record that does not add up: {line}"),
                );
            }
            facts.decisions += sum;
        } else {
            *facts.by_op.entry((op, decision)).or_default() += 1;
            facts.decisions += 1;
        }
    }
    if let Some(missing) = next_handout.next() {
        problem(
            &mut facts,
            format!(
                "hand-out at audit_seq {} has no record ({} missing)",
                missing.0,
                handouts.len() - handouts.partition_point(|h| h < missing)
            ),
        );
    }
    facts
}

#[test]
fn soak_fetches_with_hostile_clients_admin_cycles_durable_audit_and_flat_memory() {
    let total = env_usize("SCOPEVAULT_SOAK_FETCHES", 100_000) as u64;
    let clients = env_usize("SCOPEVAULT_SOAK_CLIENTS", 64).clamp(1, 128);
    assert!(total >= clients as u64, "SCOPEVAULT_SOAK_FETCHES < clients");
    let started = Instant::now();
    let dir = tempdir();
    let id = setup_vault(dir.path());
    // A passphrase slot for the `unlock` op (weak test parameters keep unlock cheap).
    let pass_file = dir.path().join("pass.txt");
    std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
    let out = daemon::cmd(dir.path())
        .env("SCOPEVAULT_TEST_ARGON2", "64,1,1")
        .arg("--identity-file")
        .arg(&id)
        .args(["key", "add", "--passphrase", "--new-passphrase-file"])
        .arg(&pass_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "key add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit_path = dir.path().join("audit.jsonl");
    let baseline = std::fs::read_to_string(&audit_path)
        .map(|s| s.lines().count() as u64)
        .unwrap_or(0);

    let d = Daemon::start(
        dir.path(),
        &[
            "--identity-file",
            id.to_str().unwrap(),
            "--max-connections",
            &MAX_CONNECTIONS.to_string(),
            "--read-timeout",
            "1",
            "--idle-timeout",
            "3",
        ],
    );
    // A real second user (created as root): only the kernel's peer credentials refuse it, so
    // open the modes enough for it to reach the socket.
    let nobody = users::ensure_user(users::OTHER_USER).map(|(uid, gid)| soak::OtherUid {
        uid,
        gid,
        exe: users::shared_binary(dir.path()),
    });
    for p in [dir.path(), d.socket.parent().unwrap()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    match &nobody {
        Err(why) => skip::skip(&format!("the other-uid client: {why}")),
        Ok(other) => {
            // As root the second uid must work: the exact outcome is an answer naming it.
            let out = other.run(&d.socket, &["status", "--json"]);
            let text = String::from_utf8_lossy(&out.stdout);
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            assert!(
                out.status.success() && v["peer"]["uid"] == other.uid,
                "uid {} could not reach the daemon: {text}{}",
                other.uid,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    let pid = d.pid();
    let rss_start = vm_rss_kib(pid);
    let shared = Arc::new(Shared::default());
    let totp = Arc::new(
        Totp::from_field("totp_seed", &SecretString::from(TOTP_SEED.to_string())).unwrap(),
    );

    // The runners connect first (a burst of hostile connections could only delay them: they
    // retry on `busy`).
    let runners: Vec<_> = (0..clients)
        .map(|c| {
            let quota = total / clients as u64 + u64::from((c as u64) < total % clients as u64);
            let (socket, shared, totp) = (d.socket.clone(), shared.clone(), totp.clone());
            std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || runner(socket, c, quota as usize, shared, totp))
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + soak::ANSWER_TIMEOUT;
    while shared.connected.load(Ordering::SeqCst) < clients as u64 {
        assert!(Instant::now() < deadline, "the runners could not connect");
        std::thread::sleep(Duration::from_millis(5));
    }

    let ms = Duration::from_millis;
    let sock = &d.socket;
    let mut hostiles = vec![
        hostile(&shared, sock, ms(20), soak::malformed),
        hostile(&shared, sock, ms(100), |s, t| soak::oversized(s, 2, t)),
        hostile(&shared, sock, ms(10), soak::slowloris),
        hostile(&shared, sock, ms(10), soak::idle),
        hostile(&shared, sock, ms(20), |s, t| {
            soak::hang_up_pipelined(s, t);
            soak::hang_up_mid_answer(s, t);
        }),
        hostile(&shared, sock, ms(100), |s, t| {
            soak::never_reads(s, Duration::from_millis(1500), t)
        }),
        hostile(&shared, sock, Duration::from_secs(2), |s, t| {
            soak::burst(s, MAX_CONNECTIONS + 64, t)
        }),
        hostile(&shared, sock, ms(20), |s, t| {
            soak::tickets(&mut Conn::established(s, t), t)
        }),
    ];
    if let Ok(other) = nobody.clone() {
        let mut n = 0u64;
        hostiles.push(hostile(&shared, sock, ms(100), move |s, t| {
            n += 1;
            soak::wrong_uid(&other, s, n.is_multiple_of(4), t)
        }));
    }

    // RSS every `total / 40` fetches; the sample at a quarter of the run is the post-warm-up
    // baseline.
    let sampler = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let step = (total / 40).max(1);
            let mut samples = vec![(0u64, vm_rss_kib(pid))];
            let mut next = step;
            while !shared.stop.load(Ordering::SeqCst) && !shared.abort.load(Ordering::SeqCst) {
                let done = shared.done.load(Ordering::SeqCst);
                if done >= next {
                    samples.push((done, vm_rss_kib(pid)));
                    next += step;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            samples
        })
    };

    let every = (total / (total / 2000).clamp(8, 1000)).max(1);
    let admin_tally = std::thread::scope(|sc| {
        let a = sc.spawn(|| admin(&d, total, every, &shared));
        let mut tally = Tally::default();
        let mut handouts = Vec::new();
        for r in runners {
            let (t, h) = r.join().expect("a runner client panicked");
            tally.merge(t);
            handouts.extend(h);
        }
        shared.stop.store(true, Ordering::SeqCst);
        tally.merge(a.join().expect("the admin thread panicked"));
        (tally, handouts)
    });
    let (mut tally, handouts) = admin_tally;
    let load_time = started.elapsed();
    for h in hostiles {
        tally.merge(h.join().expect("a hostile client panicked"));
    }
    let mut samples = sampler.join().unwrap();

    // Quiet: every connection but ours gone, then the last sample.
    let deadline = Instant::now() + soak::ANSWER_TIMEOUT;
    let health = loop {
        let h = d.request(r#"{"v":1,"op":"health"}"#);
        if h["connections"] == 1 || Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let rss_end = vm_rss_kib(pid);
    samples.push((shared.done.load(Ordering::SeqCst), rss_end));
    assert_eq!(health["ok"], true, "health at the end: {health}");
    assert_eq!(health["locked"], false, "{health}");
    assert_eq!(health["audit_ok"], true, "{health}");
    assert_eq!(
        health["connections"], 1,
        "connections never drained: {health}"
    );

    let socket = d.socket.clone();
    let stderr = d.stderr_text();
    let status = d.stop();

    let verify = daemon::cmd(dir.path())
        .args(["audit", "verify", "--audit"])
        .arg(&audit_path)
        .output()
        .unwrap();
    let verify_out = String::from_utf8_lossy(&verify.stdout).into_owned();
    let facts = read_audit(&audit_path, baseline + 1, handouts);
    let wall = started.elapsed();

    // The summary.
    let warm = samples
        .iter()
        .find(|(done, _)| *done >= total / 4)
        .copied()
        .unwrap_or(samples[0]);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    println!("== daemon soak: {total} fetches from {clients} clients, audit sync on ==");
    println!(
        "fetches: {} answered, {} ok (value verified)",
        shared.done.load(Ordering::SeqCst),
        tally.get("fetch ok")
    );
    for (k, v) in tally.counts.iter().filter(|(k, _)| k.starts_with("fetch ")) {
        if k != "fetch ok" {
            println!("  {k}: {v}");
        }
    }
    for (k, v) in tally.counts.iter().filter(|(k, _)| k.starts_with("admin")) {
        println!("{k}: {v}");
    }
    let hostile_conns: u64 = tally
        .counts
        .iter()
        .filter(|(k, _)| k.starts_with("hostile") && !k.ends_with(": bursts"))
        .map(|(_, v)| v)
        .sum();
    println!("hostile connections and exchanges: {hostile_conns}");
    for (k, v) in tally
        .counts
        .iter()
        .filter(|(k, _)| k.starts_with("hostile"))
    {
        println!("  {k}: {v}");
    }
    for (k, v) in tally
        .counts
        .iter()
        .filter(|(k, _)| k.starts_with("connect"))
    {
        println!("{k}: {v}");
    }
    println!(
        "audit lines: {} new, standing for {} decisions ({} expected from the answers seen); by op and decision:",
        facts.lines,
        facts.decisions,
        tally.audit_total()
    );
    for ((op, dec), n) in &facts.by_op {
        let want = tally.audit.get(&(op.clone(), dec.clone())).copied();
        println!("  {op:<8} {dec:<6} {n:>9} (expected {})", want.unwrap_or(0));
    }
    println!("audit verify: {}", verify_out.trim());
    println!("RSS samples (fetches answered: KiB):");
    for (done, kib) in &samples {
        println!("  {done:>9}: {kib}");
    }
    println!(
        "RSS KiB: at start {rss_start}, post-warm-up {} (at {} fetches), peak {peak}, end {rss_end}; growth {} KiB (bound {RSS_BOUND_KIB})",
        warm.1,
        warm.0,
        rss_end as i64 - warm.1 as i64
    );
    println!(
        "wall time: {:.1} s ({:.1} s of load, {:.0} fetches/s); daemon exit: {status}",
        wall.as_secs_f64(),
        load_time.as_secs_f64(),
        total as f64 / load_time.as_secs_f64()
    );

    // The verdict.
    assert!(
        tally.problem_count == 0,
        "{} broken answers, e.g.:\n{}",
        tally.problem_count,
        tally.problems.join("\n")
    );
    assert_eq!(shared.done.load(Ordering::SeqCst), total);
    assert!(
        facts.problems.is_empty(),
        "audit log:\n{}",
        facts.problems.join("\n")
    );
    assert_eq!(
        facts.by_op, tally.audit,
        "audit records by (op, decision) differ from the answers the clients saw"
    );
    assert_eq!(facts.decisions, tally.audit_total());
    assert!(
        verify.status.success()
            && verify_out.contains(&format!("ok, {} record", baseline + facts.lines)),
        "audit verify: {verify_out}"
    );
    assert!(
        status.success(),
        "daemon exit on SIGTERM: {status}; {stderr}"
    );
    assert!(!socket.exists(), "the socket is removed on exit");
    assert!(
        rss_end <= warm.1 + RSS_BOUND_KIB,
        "RSS grew from {} KiB to {rss_end} KiB after warm-up",
        warm.1
    );
    // Every kind of client ran (each hostile kind at least once, whatever the size) ...
    let mut kinds_ran = vec![
        "fetch ok",
        "fetch error: denied",
        "fetch error: not_found",
        "admin lock",
        "admin unlock",
        "admin reload (request)",
        "hostile malformed",
        "hostile oversized",
        "hostile slowloris",
        "hostile idle",
        "hostile hang-up",
        "hostile never-reads",
        "hostile burst: busy",
        "hostile ticket",
    ];
    if nobody.is_ok() {
        kinds_ran.push("hostile wrong uid");
    }
    for what in kinds_ran {
        assert!(tally.sum_prefix(what) > 0, "never happened: {what}");
    }
    // ... and at CI size and above, each met the daemon (not only its `busy`).
    if total >= 20_000 {
        let mut met = vec![
            "admin reload (SIGHUP)",
            "fetch error: locked",
            "hostile malformed: served",
            "hostile oversized: too_large",
            "hostile slowloris: closed",
            "hostile idle: closed",
            "hostile hang-up: mid-answer (fetch ok)",
            "hostile ticket: replay refused",
            "hostile ticket: forged refused",
        ];
        if nobody.is_ok() {
            met.extend([
                "hostile wrong uid: fetch denied",
                "hostile wrong uid: lock denied",
            ]);
        }
        for what in met {
            assert!(tally.get(what) > 0, "never happened: {what}");
        }
    }
    daemon::assert_no_secret(&stderr, "the daemon's stderr");
}

/// Regression (found by the soak): a daemon at its connection limit answers `busy` and closes
/// before reading anything, so a client that writes its request after that close got EPIPE and
/// reported "lost the connection to the daemon: Broken pipe" instead of the daemon's `busy`,
/// which tells it to retry.
#[test]
fn regression_client_reports_busy_when_its_write_meets_the_busy_closed_socket() {
    use scopevault::client::Client;
    use scopevault::protocol::ErrorCode;
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &["--max-connections", "1"]);
    // Hold the one slot (the readiness probe's connection may still be in it for a moment).
    let mut held = loop {
        let mut s = d.connect();
        // Busy, or closed as busy before our write (EPIPE): try again.
        match daemon::roundtrip(&mut s, r#"{"v":1,"op":"health"}"#) {
            Ok(v) if v["ok"] == true => break s,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // This process runs as the daemon's uid, which has ADMIN_RESERVE slots above the cap
    // (issue 15.7: an admin always gets in): take those too, so the next ones are refused.
    let mut reserve = Vec::new();
    while reserve.len() < scopevault::agent::server::ADMIN_RESERVE {
        let mut s = d.connect();
        match daemon::roundtrip(&mut s, r#"{"v":1,"op":"health"}"#) {
            Ok(v) if v["ok"] == true => reserve.push(s),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut client = Client::connect(&d.socket).unwrap();
    // The accept loop refuses in order: once a later probe is refused and closed, so is the
    // client's connection, and its request will meet a closed socket.
    let mut probe = d.connect();
    assert_eq!(code(&daemon::read_json(&mut probe).unwrap()), "busy");
    let e = client.health().unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Busy), "{e}");
    assert!(e.to_string().contains("retry"), "{e}");
    // The held connection is still served.
    let v = daemon::roundtrip(&mut held, r#"{"v":1,"op":"health"}"#).unwrap();
    assert_eq!(v["ok"], true);
}
