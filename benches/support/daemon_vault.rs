//! The daemon's handler over a real one-credential vault, shared by `benches/daemon.rs` and
//! `examples/daemon_work.rs`.

use scopevault::agent::authz::AccessConfig;
use scopevault::agent::handler::Handler;
use scopevault::agent::peer::PeerIdentity;
use scopevault::audit::AuditLog;
use scopevault::policy::{CredentialKind, Policy};
use scopevault::secret::SecretString;
use scopevault::vault::{self, Credential, NewSlot, OpenOptions, Vault, WriteLock};

/// A runner's `fetch` of the one task.
pub const FETCH: &[u8] = br#"{"v":1,"op":"fetch","task":"shop-login"}"#;

/// A handler over a vault made in `dir`, audit sync off (`XDG_STATE_HOME` must point into
/// `dir`: the vault's rollback record goes there).
pub fn handler(dir: &std::path::Path) -> Handler {
    let uid = scopevault::sys::current_uid();
    let policy = Policy::parse(
        &format!(
            "version = 1\n[credentials.shop-buyer]\nkind = \"login\"\nscopes = [\"shop:login\", \"orders:read\"]\n[tasks.shop-login]\nneeds = [\"shop:login\"]\ncredentials = [\"shop-buyer\"]\norigin = \"https://shop.example\"\nrunners = {{ users = [\"{uid}\"] }}\n"
        ),
        "bench.toml",
    )
    .unwrap();
    let path = dir.join("vault.scopevault");
    let (mut v, _id) = Vault::create(&path, NewSlot::IdentityFile).unwrap();
    let mut c = Credential::new(CredentialKind::Login, vault::timestamp());
    c.scopes = vec!["shop:login".into(), "orders:read".into()];
    c.fields
        .insert("username".into(), "buyer@example.com".into());
    c.secrets.insert(
        "password".into(),
        SecretString::from("correct-horse-battery-staple-42".to_owned()),
    );
    v.add_credential("shop-buyer", c).unwrap();
    v.set_policy(policy);
    let lock = WriteLock::acquire(&path).unwrap();
    v.save(&lock).unwrap();
    drop(lock);
    let access = AccessConfig {
        daemon_uid: uid,
        ..AccessConfig::default()
    };
    let audit = AuditLog::open(&dir.join("audit.jsonl"), false).unwrap();
    Handler::unlocked(access, audit, v, OpenOptions::default())
}

/// This process as the task's runner.
pub fn runner() -> PeerIdentity {
    let me = scopevault::sys::current_uid();
    PeerIdentity::with_groups(me, me, std::process::id() as i32, Vec::new())
}
