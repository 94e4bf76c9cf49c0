//! Helpers for vault integration tests: a fresh temp directory per test, the real binary, and
//! environment isolation (HOME, XDG dirs, rollback state, cheap test KDF).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::io::Write;

pub const PASS: &str = "correct horse battery staple";

pub struct Env {
    pub dir: tempfile::TempDir,
    /// Every stdout/stderr seen, for leak scans.
    pub transcript: std::cell::RefCell<Vec<u8>>,
}

/// A `scopevault serve` started by [`Env::serve`]; killed and reaped on drop.
pub struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Env {
    /// A fresh environment whose vault is a copy of the file `vault` (a test vector).
    pub fn with_vault(vault: &Path) -> Env {
        let e = Env::new();
        std::fs::create_dir_all(e.vault().parent().unwrap()).unwrap();
        std::fs::copy(vault, e.vault()).unwrap();
        e
    }

    /// `scopevault serve --socket SOCKET --audit audit.jsonl EXTRA…` in this environment,
    /// output discarded; returns once the socket exists (20 s at most). Killed on drop.
    pub fn serve(&self, socket: &Path, extra: &[&str]) -> Serving {
        let child = self
            .cmd()
            .arg("serve")
            .arg("--socket")
            .arg(socket)
            .arg("--audit")
            .arg(self.path("audit.jsonl"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Serving(child);
        let t0 = std::time::Instant::now();
        while !socket.exists() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "no daemon"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        d
    }

    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("sv-test-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        std::fs::write(dir.path().join("pass"), format!("{PASS}\n")).unwrap();
        Env {
            dir,
            transcript: Default::default(),
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn vault(&self) -> PathBuf {
        self.path("vaults/vault.scopevault")
    }

    /// The binary with an isolated environment; no session D-Bus (no keyring) unless asked.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_scopevault"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_DATA_HOME", self.path("home/data"))
            .env("XDG_STATE_HOME", self.path("home/state"))
            .env("XDG_RUNTIME_DIR", self.path("home/run"))
            .env("SCOPEVAULT_STATE_DIR", self.path("state"))
            .env("SCOPEVAULT_VAULT", self.vault())
            .env("SCOPEVAULT_TEST_ARGON2", "64,1,1")
            .env("NO_COLOR", "1");
        c
    }

    /// `program`, a wrapper that then runs the binary (a pty driver, `prlimit`), with the
    /// environment [`Env::cmd`] gives the binary, which the binary inherits from it.
    pub fn wrapper(&self, program: &str) -> Command {
        let base = self.cmd();
        let mut c = Command::new(program);
        c.env_clear()
            .envs(base.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
        c
    }

    /// Run with the given args and stdin; record output.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.run_cmd(self.cmd().args(args), stdin)
    }

    pub fn run_cmd(&self, cmd: &mut Command, stdin: &[u8]) -> Output {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn scopevault");
        // A command may exit before reading stdin: ignore EPIPE.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let out = child.wait_with_output().unwrap();
        let mut t = self.transcript.borrow_mut();
        t.extend_from_slice(&out.stdout);
        t.extend_from_slice(&out.stderr);
        out
    }

    /// Run and require success.
    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "scopevault {args:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run and require failure with `code`; returns stderr.
    pub fn fails(&self, args: &[&str], stdin: &[u8], code: i32) -> String {
        let out = self.run(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "scopevault {args:?}: expected exit {code}, got {}; stderr: {err}",
            out.status
        );
        assert!(
            err.lines().any(|l| l.starts_with("error: ")),
            "an error line starts with `error: `: {err}"
        );
        err
    }

    /// A passphrase vault with one login credential.
    pub fn init_with_cred(&self) {
        self.ok(
            &[
                "init",
                "--passphrase-file",
                self.path("pass").to_str().unwrap(),
            ],
            b"",
        );
        self.add_login("shop-buyer", b"s3cret-Password!");
    }

    pub fn pf(&self) -> String {
        self.path("pass").to_str().unwrap().to_owned()
    }

    pub fn add_login(&self, name: &str, secret: &[u8]) {
        self.ok(
            &[
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
                &self.pf(),
            ],
            secret,
        );
    }

    pub fn vault_bytes(&self) -> Vec<u8> {
        std::fs::read(self.vault()).unwrap()
    }

    /// The secret `field` of credential `name`, read in this process (no command prints a
    /// secret value): `None` when the credential or the field is not there.
    pub fn secret(&self, name: &str, field: &str) -> Option<String> {
        use scopevault::secret::SecretString;
        use scopevault::vault::{OpenOptions, Unlock, Vault};
        super::with_state_dir(&self.path("state"), || {
            let vault = Vault::open(
                &self.vault(),
                &Unlock::Passphrase(SecretString::from(PASS.to_owned())),
                &OpenOptions::default(),
            )
            .unwrap();
            vault
                .credentials()
                .get(name)
                .and_then(|c| c.secrets.get(field))
                .map(|v| v.expose().to_owned())
        })
    }

    /// Credential names as listed by the binary.
    pub fn names(&self) -> Vec<String> {
        let out = self.ok(
            &["cred", "list", "--json", "--passphrase-file", &self.pf()],
            b"",
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Split a vault file into (header JSON, payload) per vault-format.md.
pub fn split(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    assert_eq!(&bytes[..8], b"SCOPEVLT");
    let hl = u32::from_be_bytes(bytes[10..14].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[14..14 + hl]).unwrap();
    let pl = u64::from_be_bytes(bytes[14 + hl..22 + hl].try_into().unwrap()) as usize;
    (header, bytes[22 + hl..22 + hl + pl].to_vec())
}

/// Build a format-version-2 file from a header and payload with a given MAC (tests forge
/// files with this).
pub fn assemble(header: &serde_json::Value, payload: &[u8], mac: &[u8; 32]) -> Vec<u8> {
    assemble_version(2, header, payload, mac)
}

/// [`assemble`] with the given format version in the framing.
pub fn assemble_version(
    version: u16,
    header: &serde_json::Value,
    payload: &[u8],
    mac: &[u8; 32],
) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = b"SCOPEVLT".to_vec();
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(mac);
    out
}

/// `A` of vault-format.md: the payload's age header up to and including the "\n" ending its
/// "--- " line, plus the 16-byte nonce.
fn age_prefix(payload: &[u8]) -> usize {
    let mac_line = payload.windows(5).position(|w| w == b"\n--- ").unwrap() + 1;
    let end = payload[mac_line..]
        .iter()
        .position(|&b| b == b'\n')
        .unwrap()
        + mac_line
        + 1;
    end + 16
}

/// Frame `header` and `payload` and append the MAC keyed by `vault_identity` as
/// vault-format.md says for `version` (info `scopevault/v{version}/file-mac`), with the crates
/// directly, not through the scopevault library.
pub fn frame_and_mac(
    version: u16,
    header: &serde_json::Value,
    payload: &[u8],
    vault_identity: &str,
) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    let h = serde_json::to_vec(header).unwrap();
    let mut out = b"SCOPEVLT".to_vec();
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
    let vault_id = header["vault_id"].as_str().unwrap();
    let hk = hkdf::Hkdf::<Sha256>::new(Some(vault_id.as_bytes()), vault_identity.as_bytes());
    let mut key = [0u8; 32];
    hk.expand(
        format!("scopevault/v{version}/file-mac").as_bytes(),
        &mut key,
    )
    .unwrap();
    let auth = 22 + h.len() + age_prefix(payload);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(&out[..auth]);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out
}

/// Save the version-2 vault at `path` again with `edit` applied to its payload's JSON, as a
/// writer that knows only vault-format.md would, so that it can hold what today's writers
/// refuse and an older scopevault saved (a credential holding both TOTP seeds): the vault
/// identity unwrapped from an identity slot with the key of `identity_file`, the payload
/// decrypted, edited and encrypted again to the header's recipient, the generation raised by
/// one, the MAC computed anew.
pub fn rewrite_payload(
    path: &Path,
    identity_file: &Path,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    use std::str::FromStr;
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[8..10], &[0, 2], "a version-2 vault");
    let (mut header, payload) = split(&bytes);
    let vault_identity = vault_identity_via(&header, identity_file);
    let identity = age::x25519::Identity::from_str(&vault_identity).unwrap();
    let mut data: serde_json::Value =
        serde_json::from_slice(&age::decrypt(&identity, &payload).unwrap()).unwrap();
    edit(&mut data);
    let payload = age::encrypt(&identity.to_public(), &serde_json::to_vec(&data).unwrap()).unwrap();
    header["generation"] = serde_json::json!(header["generation"].as_u64().unwrap() + 1);
    std::fs::write(path, frame_and_mac(2, &header, &payload, &vault_identity)).unwrap();
}

/// Save the version-2 vault at `path` again with `edit` applied to its header's JSON (what a
/// newer scopevault may add: a member, a slot type, a slot member), as a writer that knows
/// only vault-format.md would: the vault identity unwrapped from an identity slot with the key
/// of `identity_file` (before the edit), the payload copied, the generation raised by one, the
/// MAC computed anew.
pub fn rewrite_header(
    path: &Path,
    identity_file: &Path,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[8..10], &[0, 2], "a version-2 vault");
    let (mut header, payload) = split(&bytes);
    let vault_identity = vault_identity_via(&header, identity_file);
    header["generation"] = serde_json::json!(header["generation"].as_u64().unwrap() + 1);
    edit(&mut header);
    std::fs::write(path, frame_and_mac(2, &header, &payload, &vault_identity)).unwrap();
}

/// Add a passphrase slot labelled `label` that takes `passphrase` to the version-2 vault at
/// `path`, as a writer that knows only vault-format.md would (Argon2id m = 64 KiB, t = 1,
/// p = 1), so that the file can hold what today's writers refuse and an older scopevault
/// wrote (two slots with one passphrase): the vault identity unwrapped from an identity slot
/// with the key of `identity_file`, the payload copied, the generation raised by one, the MAC
/// computed anew.
pub fn add_passphrase_slot_by_hand(
    path: &Path,
    identity_file: &Path,
    passphrase: &str,
    label: &str,
) {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
    use data_encoding::{BASE64, HEXLOWER};
    use rand::RngCore;
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[8..10], &[0, 2], "a version-2 vault");
    let (mut header, payload) = split(&bytes);
    let vault_identity = vault_identity_via(&header, identity_file);
    let vault_id = header["vault_id"].as_str().unwrap().to_owned();
    let mut rng = rand::rngs::OsRng;
    let (mut id, mut salt, mut nonce) = ([0u8; 8], [0u8; 16], [0u8; 12]);
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut nonce);
    let id = HEXLOWER.encode(&id);
    // K = Argon2id(passphrase, salt, m, t, p, version 0x13, 32 bytes).
    let params = argon2::Params::new(64, 1, 1, Some(32)).unwrap();
    let mut key = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), &salt, &mut key)
        .unwrap();
    let aad = [
        b"scopevault/v1/slot\0",
        vault_id.as_bytes(),
        b"\0",
        id.as_bytes(),
    ]
    .concat();
    let wrapped = ChaCha20Poly1305::new(Key::from_slice(&key))
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: vault_identity.as_bytes(),
                aad: &aad,
            },
        )
        .unwrap();
    header["slots"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "type": "passphrase",
            "id": id,
            "alg": "argon2id",
            "kdf": {"m_kib": 64, "t": 1, "p": 1},
            "salt": BASE64.encode(&salt),
            "nonce": BASE64.encode(&nonce),
            "wrapped": BASE64.encode(&wrapped),
            "label": label,
            "created": "2026-01-01T00:00:00Z",
        }));
    header["generation"] = serde_json::json!(header["generation"].as_u64().unwrap() + 1);
    std::fs::write(path, frame_and_mac(2, &header, &payload, &vault_identity)).unwrap();
}

/// The vault identity (`AGE-SECRET-KEY-1…`) of the version-2 vault whose header is `header`,
/// unwrapped from one of its identity slots with the key of `identity_file`, as vault-format.md
/// says, with the crates directly: the test plays the key holder.
pub fn vault_identity_via(header: &serde_json::Value, identity_file: &Path) -> String {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
    use data_encoding::BASE64;
    let vault_id = header["vault_id"].as_str().unwrap().to_owned();
    let key_file = std::fs::read_to_string(identity_file).unwrap();
    let secret = key_file
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap();
    // "type": "identity": K = HKDF-SHA256(ikm = S, salt = vault_id, info =
    // "scopevault/v2/identity-slot" 0x00 slot id); ChaCha20-Poly1305 with aad
    // "scopevault/v1/slot" 0x00 vault_id 0x00 slot id.
    header["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "identity")
        .find_map(|slot| {
            let id = slot["id"].as_str()?;
            let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(vault_id.as_bytes()), secret.as_bytes());
            let mut key = [0u8; 32];
            hk.expand(
                &[b"scopevault/v2/identity-slot\0", id.as_bytes()].concat(),
                &mut key,
            )
            .ok()?;
            let aad = [
                b"scopevault/v1/slot\0",
                vault_id.as_bytes(),
                b"\0",
                id.as_bytes(),
            ]
            .concat();
            let nonce = BASE64.decode(slot["nonce"].as_str()?.as_bytes()).ok()?;
            let wrapped = BASE64.decode(slot["wrapped"].as_str()?.as_bytes()).ok()?;
            let plain = ChaCha20Poly1305::new(Key::from_slice(&key))
                .decrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &wrapped,
                        aad: &aad,
                    },
                )
                .ok()?;
            String::from_utf8(plain).ok()
        })
        .expect("an identity slot opens with the identity file")
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every entry under `dir` that is not a directory (regular files, symlinks, sockets, …), with
/// its type, sorted by path. Symlinks are not followed; a directory that cannot be read
/// (gone, or `dir` itself missing) contributes nothing.
pub fn entries_under(dir: &Path) -> Vec<(PathBuf, std::fs::FileType)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else {
                out.push((p, ft));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every regular file under `dir`, sorted (sockets and fifos, which cannot be scanned, and
/// symlinks are left out).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    entries_under(dir)
        .into_iter()
        .filter(|(_, ft)| ft.is_file())
        .map(|(p, _)| p)
        .collect()
}

/// The test vectors' credential (vault-format.md, Test vectors): `cred show shop-buyer --json`
/// with the `unlock` options shows a login for user `monitor` with one secret field, `password`.
pub fn shows_the_vector_credential(e: &Env, unlock: &[&str]) {
    let mut args = vec!["cred", "show", "shop-buyer", "--json"];
    args.extend_from_slice(unlock);
    let v: serde_json::Value = serde_json::from_str(&e.ok(&args, b"")).unwrap();
    assert_eq!(v["kind"], "login");
    assert_eq!(v["fields"]["username"], "monitor");
    assert_eq!(v["secret_fields"], serde_json::json!(["password"]));
}
