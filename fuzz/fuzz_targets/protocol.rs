//! Arbitrary bytes as socket requests, answered by the real request handler over a real vault,
//! without a socket: the line parser (`Request::parse`) and the dispatcher
//! (`Handler::handle_line`: authorisation, scope enforcement, tickets, TOTP, admin ops, audit).
//!
//! Input: up to [`MAX_REQUESTS`] segments separated by `\n`; the first byte of a segment picks
//! the peer (see [`PEERS`]), the rest is the request line, in which `$TICKET` stands for the
//! last ticket issued by an earlier request of the same input (tickets are random; without
//! this the fuzzer could never redeem one). Invariants checked on every answer:
//!
//! - it is exactly one line (ends in `\n`, no other newline) holding one JSON object with a
//!   boolean `ok` and `"v": 1`, and a failure carries one of the stable error codes;
//! - it never holds a secret value the peer may not have: a failure holds none at all, a
//!   success only the values of credentials of tasks the peer runs, or of the task of the
//!   ticket it redeems; the TOTP seed, the over-scoped credential (`enforce = "deny"`, no
//!   exception) and the credential no task lists are never handed out to anyone;
//! - a ticket is redeemed at most once; only admins and the scheduler get tickets, the
//!   scheduler only for the tasks whose `schedulers` name it ([`SCHEDULED`]); only admins
//!   lock, unlock and reload;
//! - a `scrub_report` is taken only from a runner of its task ([`RUNS`]);
//! - the audit log never holds a secret value (checked at each rotation, which the target asks for as an admin every 4,096 inputs).
//!
//! The daemon state a request can change (lock, tickets) is put back after each input, so every
//! input starts from an unlocked daemon.
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scopevault::agent::authz::AccessConfig;
use scopevault::agent::handler::Handler;
use scopevault::agent::peer::PeerIdentity;
use scopevault::audit::AuditLog;
use scopevault::policy::{CredentialKind, Policy};
use scopevault::secret::SecretString;
use scopevault::vault::{timestamp, Credential, NewSlot, OpenOptions, Unlock, Vault, WriteLock};

/// More requests per input add little: the state they could build up is reset per input.
const MAX_REQUESTS: usize = 4;
/// The daemon's uid (an admin).
const DAEMON_UID: u32 = 2500;
/// The one passphrase slot's passphrase (the fuzzer may find it; an unlock with it is allowed).
const PASSPHRASE: &str = "fuzz passphrase";

const BUYER_PW: &str = "FzBuyerPw7731q";
const TOTP_SEED: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const BACKOFFICE_PW: &str = "FzBackofficePw4410q";
const API_TOKEN: &str = "FzApiToken9902q";
const UNUSED_SECRET: &str = "FzUnusedSecret5512q";
const ALL_SECRETS: [&str; 5] = [BUYER_PW, TOTP_SEED, BACKOFFICE_PW, API_TOKEN, UNUSED_SECRET];

const POLICY: &str = r#"
version = 1

[settings]
enforce = "deny"

[scopes."shop:admin"]
risk = "high"
implies = ["shop:orders:*"]

[credentials.buyer]
kind = "login"
scopes = ["shop:login", "shop:orders:create"]
origins = ["https://shop.example.com"]

[credentials.buyer-2fa]
kind = "totp"
scopes = ["shop:login"]

[credentials.backoffice]
kind = "login"
scopes = ["shop:login", "shop:admin"]

[credentials.api-token]
kind = "token"
scopes = ["api:read"]
origins = ["https://api.example.com"]

[credentials.unused]
kind = "generic"
scopes = ["ftp:read"]

[tasks.checkout]
needs = ["shop:login", "shop:orders:create"]
credentials = ["buyer", "buyer-2fa"]
runners = { users = ["2001"] }
origin = "https://shop.example.com"
schedulers = ["2600"]

[tasks.catalog]
needs = ["shop:login"]
credentials = ["buyer"]
runners = { users = ["2001"] }
origin = "https://shop.example.com"

[tasks.orders]
needs = ["shop:login", "shop:orders:read"]
credentials = ["backoffice"]
runners = { users = ["2002"] }

[tasks.api]
needs = ["api:read"]
credentials = ["api-token"]
runners = { groups = ["3000"] }
origin = "https://other.example.com"
schedulers = ["2600", "2009"]

[[exceptions]]
rule = "scope-exceeds-task"
credential = "buyer"
task = "catalog"
scopes = ["shop:orders:create"]
reason = "fuzz fixture: a reviewed exception in force"
expires = "2099-01-01"
"#;

/// The tasks whose `schedulers` name the scheduler (2600); `catalog` and `orders` have none.
/// (`api` also names 2009, which is no `--scheduler`: named alone gets no ticket.)
const SCHEDULED: [&str; 2] = ["checkout", "api"];

/// The secrets a fetch for each task may hand out (`orders` is over-scoped: refused).
const TASK_SECRETS: [(&str, &[&str]); 4] = [
    ("checkout", &[BUYER_PW]),
    ("catalog", &[BUYER_PW]),
    ("orders", &[]),
    ("api", &[API_TOKEN]),
];

/// Who runs each task: (task, runner uids, runner groups), as in [`POLICY`].
const RUNS: [(&str, &[u32], &[u32]); 4] = [
    ("checkout", &[2001], &[]),
    ("catalog", &[2001], &[]),
    ("orders", &[2002], &[]),
    ("api", &[], &[3000]),
];

/// (uid, gid, supplementary groups, secrets a successful answer may hold).
type Peer = (u32, u32, &'static [u32], &'static [&'static str]);

/// Selected by the first byte of a segment, modulo the count.
const PEERS: [Peer; 8] = [
    // Runner of `checkout` and `catalog` (the TOTP seed is still never handed out).
    (2001, 2001, &[], &[BUYER_PW]),
    // Runner of `orders`, whose credential is over-scoped under enforce = "deny".
    (2002, 2002, &[], &[]),
    // Runner of `api` by primary group, and by supplementary group.
    (2003, 3000, &[], &[API_TOKEN]),
    (2010, 2010, &[3000], &[API_TOKEN]),
    // Nobody in particular.
    (2009, 2009, &[7], &[]),
    // Admins: the daemon's uid and root. Admins manage the vault; they are not runners.
    (DAEMON_UID, DAEMON_UID, &[], &[]),
    (0, 0, &[], &[]),
    // A scheduler: may ask for tickets, is no runner.
    (2600, 2600, &[], &[]),
];

const CODES: [&str; 9] = [
    "bad_request",
    "too_large",
    "denied",
    "not_found",
    "locked",
    "over_scoped",
    "audit_unavailable",
    "busy",
    "internal",
];

struct World {
    handler: Handler,
    audit_path: PathBuf,
    execs: AtomicU64,
    /// Bit i: a peer sent `ALL_SECRETS[i]` itself since the audit log was last cut (then it
    /// may be in the log as a task or credential name a peer asked for).
    sent: AtomicU64,
    _dir: tempfile::TempDir,
}

fn cred(kind: CredentialKind, scopes: &[&str], secret: (&str, &str)) -> Credential {
    let mut c = Credential::new(kind, timestamp());
    c.scopes = scopes.iter().map(|s| s.to_string()).collect();
    // As `policy apply` copies them; `api` works on another origin (a fetch warning).
    c.origins = match secret.1 {
        BUYER_PW => vec!["https://shop.example.com".into()],
        API_TOKEN => vec!["https://api.example.com".into()],
        _ => Vec::new(),
    };
    if kind != CredentialKind::Totp {
        c.fields.insert("username".into(), "monitor".into());
    }
    c.secrets
        .insert(secret.0.into(), SecretString::from(secret.1.to_owned()));
    c
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        // tmpfs when there is one: the vault, its rollback record and the audit log never
        // touch a disk.
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let dir = base.path().to_path_buf();
        // Set while single-threaded, before anything reads them: rollback state of this run
        // only, and a cheap passphrase slot (argon2 64 KiB, 1 pass) so `unlock` stays fast.
        std::env::set_var("SCOPEVAULT_STATE_DIR", dir.join("state"));
        std::env::set_var("SCOPEVAULT_TEST_ARGON2", "64,1,1");

        let vault_path = dir.join("vault/vault.scopevault");
        let (mut v, id_text) = Vault::create(&vault_path, NewSlot::IdentityFile).expect("create");
        let id_path = dir.join("identity.txt");
        std::fs::write(&id_path, id_text.expect("identity file text").as_bytes()).unwrap();
        v.add_passphrase_slot(&SecretString::from(PASSPHRASE.to_owned()))
            .expect("passphrase slot");
        let login = CredentialKind::Login;
        let creds = [
            (
                "buyer",
                cred(
                    login,
                    &["shop:login", "shop:orders:create"],
                    ("password", BUYER_PW),
                ),
            ),
            (
                "buyer-2fa",
                cred(
                    CredentialKind::Totp,
                    &["shop:login"],
                    ("totp_seed", TOTP_SEED),
                ),
            ),
            (
                "backoffice",
                cred(
                    login,
                    &["shop:login", "shop:admin"],
                    ("password", BACKOFFICE_PW),
                ),
            ),
            (
                "api-token",
                cred(CredentialKind::Token, &["api:read"], ("token", API_TOKEN)),
            ),
            (
                "unused",
                cred(
                    CredentialKind::Generic,
                    &["ftp:read"],
                    ("secret", UNUSED_SECRET),
                ),
            ),
        ];
        for (name, c) in creds {
            v.add_credential(name, c).expect("add credential");
        }
        v.set_policy(Policy::parse(POLICY, "policy.toml").expect("fixture policy parses"));
        let lock = WriteLock::acquire(&vault_path).expect("write lock");
        v.save(&lock).expect("save");
        drop(lock);
        drop(v);
        // Opened from the file, as `serve --identity-file` does.
        let opts = OpenOptions::default();
        let v = Vault::open(&vault_path, &Unlock::IdentityFile(id_path), &opts).expect("open");
        let audit_path = dir.join("audit/audit.log");
        // Sync off (as `serve --no-audit-sync`): no fdatasync per request.
        let audit = AuditLog::open(&audit_path, false).expect("audit log");
        let access = AccessConfig {
            daemon_uid: DAEMON_UID,
            admin_group: None,
            schedulers: vec!["2600".into()],
        };
        World {
            handler: Handler::unlocked(access, audit, v, opts),
            audit_path,
            execs: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            _dir: base,
        }
    })
}

/// `FUZZ_SHOW=1` prints every answer (to read what a replayed input does).
fn show() -> bool {
    static SHOW: OnceLock<bool> = OnceLock::new();
    *SHOW.get_or_init(|| std::env::var_os("FUZZ_SHOW").is_some())
}

fn peer(p: &Peer) -> PeerIdentity {
    PeerIdentity::with_groups(p.0, p.1, 4242, p.2.to_vec())
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    // First byte first: a slice comparison is a `bcmp` that libFuzzer intercepts and records,
    // and one per position was a sixth of the run time.
    hay.windows(n.len()).any(|w| w[0] == n[0] && w == n)
}

/// The line and every JSON string in it, unescaped: what the peer itself sent. A value the
/// peer sent may come back in an error message (`unknown op `…``); that is no leak. (The
/// fuzzer does learn the secrets, from this target's own comparisons.)
fn sent_by_peer(line: &[u8]) -> Vec<u8> {
    let mut out = line.to_vec();
    let mut i = 0;
    while let Some(start) = line[i..].iter().position(|&b| b == b'"').map(|p| p + i) {
        let mut end = start + 1;
        while end < line.len() && line[end] != b'"' {
            end += if line[end] == b'\\' { 2 } else { 1 };
        }
        let end = end.min(line.len() - 1);
        if let Ok(s) = serde_json::from_slice::<String>(&line[start..=end]) {
            out.push(0);
            out.extend_from_slice(s.as_bytes());
        }
        i = end + 1;
        if i >= line.len() {
            break;
        }
    }
    out
}

/// Tickets issued by the requests of one input, and which were redeemed.
#[derive(Default)]
struct Tickets {
    /// (ticket, task), in the order issued.
    issued: Vec<(String, String)>,
    redeemed: Vec<String>,
}

fn check_answer(w: &World, p: &Peer, line: &[u8], answer: &[u8], tickets: &mut Tickets) {
    let shown = || String::from_utf8_lossy(answer).into_owned();
    assert!(answer.ends_with(b"\n"), "no newline: {}", shown());
    assert!(
        !answer[..answer.len() - 1].contains(&b'\n'),
        "more than one line: {}",
        shown()
    );
    let v: serde_json::Value = serde_json::from_slice(answer).expect("the answer is JSON");
    let ok = v["ok"].as_bool().expect("`ok` is a boolean");
    assert_eq!(v["v"], 1, "`v` is 1: {}", shown());
    if !ok {
        let code = v["error"]["code"].as_str().expect("error.code is a string");
        assert!(CODES.contains(&code), "unknown code {code}");
        assert!(v["error"]["message"].is_string());
    }
    let admin = matches!(p.0, DAEMON_UID | 0);
    if ok && v.get("ticket").is_some() {
        assert!(admin || p.0 == 2600, "uid {} got a ticket", p.0);
        let task = v["task"].as_str().expect("task");
        assert!(
            admin || SCHEDULED.contains(&task),
            "the scheduler got a ticket for `{task}`, which does not name it"
        );
        tickets.issued.push((
            v["ticket"].as_str().expect("ticket").to_owned(),
            v["task"].as_str().expect("task").to_owned(),
        ));
    }
    if ok && v.get("locked").is_some() && v.get("version").is_none() {
        assert!(admin, "uid {} did an admin op: {}", p.0, shown());
    }
    if ok && v.get("audit_seq").is_some() && v.get("credentials").is_none() {
        // A scrub report taken: only from a runner of its task.
        let task = v["task"].as_str().expect("a scrub report names its task");
        let runs = RUNS.iter().any(|(t, uids, gids)| {
            *t == task && (uids.contains(&p.0) || gids.iter().any(|g| p.1 == *g || p.2.contains(g)))
        });
        assert!(
            runs,
            "uid {} reported a scrub for `{task}`, which it does not run",
            p.0
        );
    }
    let mut allowed: &[&str] = if ok { p.3 } else { &[] };
    if ok && v.get("credentials").is_some_and(|c| c.is_array()) {
        // A fetch. With a ticket of this input in the line, it is a redemption.
        let task = v["task"].as_str().expect("a fetch names its task");
        if let Some((t, for_task)) = tickets
            .issued
            .iter()
            .find(|(t, _)| contains(line, t.as_str()))
        {
            assert!(!tickets.redeemed.contains(t), "a ticket was redeemed twice");
            tickets.redeemed.push(t.clone());
            assert_eq!(task, for_task, "a ticket fetched another task");
            allowed = TASK_SECRETS
                .iter()
                .find(|(n, _)| n == for_task)
                .map_or(&[], |(_, s)| *s);
        }
    }
    let sent = sent_by_peer(line);
    for (i, s) in ALL_SECRETS.iter().enumerate() {
        if contains(&sent, s) {
            w.sent.fetch_or(1 << i, Ordering::Relaxed);
        }
    }
    for s in ALL_SECRETS {
        if !allowed.contains(&s) && !contains(&sent, s) {
            assert!(
                !contains(answer, s),
                "secret {s} leaked to uid {} for request {:?}: {}",
                p.0,
                String::from_utf8_lossy(line),
                shown()
            );
        }
    }
}

/// Put back what a request may have changed: an unlocked daemon with no outstanding tickets,
/// and now and then an empty audit log (after checking it holds no secret).
fn restore(w: &World, tickets: &Tickets) {
    let n = w.execs.fetch_add(1, Ordering::Relaxed);
    let admin = peer(&PEERS[5]);
    let unlock = format!(r#"{{"v":1,"op":"unlock","passphrase":"{PASSPHRASE}"}}"#);
    if !tickets.issued.is_empty() {
        // `lock` forgets every ticket. Tickets left outstanding would also make every input
        // that issues one look like a leak to libFuzzer (more mallocs than frees), which
        // costs a full LeakSanitizer scan each time.
        w.handler.handle_line(&admin, br#"{"v":1,"op":"lock"}"#);
    }
    if w.handler.is_locked() {
        let a = w.handler.handle_line(&admin, unlock.as_bytes());
        assert!(
            !w.handler.is_locked(),
            "re-unlock: {}",
            String::from_utf8_lossy(&a)
        );
    }
    if n % 4096 == 4095 {
        // Rotate the log as an admin would (`audit rotate`), then check every moved file
        // (inputs may have rotated too) for secrets and delete it: the live log keeps only
        // its `audit.rotate` record.
        let a = w
            .handler
            .handle_line(&admin, br#"{"v":1,"op":"audit_rotate"}"#);
        assert!(
            contains(&a, r#""ok":true"#),
            "audit_rotate: {}",
            String::from_utf8_lossy(&a)
        );
        let sent = w.sent.swap(0, Ordering::Relaxed);
        let dir = w.audit_path.parent().expect("the log is in a directory");
        for entry in std::fs::read_dir(dir).expect("list the audit directory") {
            let path = entry.expect("a directory entry").path();
            if path == w.audit_path || path.extension().is_some_and(|e| e == "key") {
                continue;
            }
            let log = std::fs::read(&path).expect("read a moved audit log");
            for (i, s) in ALL_SECRETS.iter().enumerate() {
                if sent & (1 << i) == 0 {
                    let line = log
                        .split(|&b| b == b'\n')
                        .find(|l| contains(l, s))
                        .map(String::from_utf8_lossy);
                    assert!(line.is_none(), "secret {s} in the audit log: {line:?}");
                }
            }
            std::fs::remove_file(&path).expect("remove a moved audit log");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let mut tickets = Tickets::default();
    for seg in data.split(|&b| b == b'\n').take(MAX_REQUESTS) {
        let Some((&sel, line)) = seg.split_first() else {
            continue;
        };
        let p = &PEERS[sel as usize % PEERS.len()];
        let line = match tickets.issued.last() {
            Some((t, _)) => replace(line, b"$TICKET", t.as_bytes()),
            None => line.to_vec(),
        };
        let line = &line[..];
        let answer = w.handler.handle_line(&peer(p), line);
        if show() {
            eprint!("uid {} <- {}", p.0, String::from_utf8_lossy(&answer));
        }
        check_answer(w, p, line, &answer, &mut tickets);
    }
    restore(w, &tickets);
});
