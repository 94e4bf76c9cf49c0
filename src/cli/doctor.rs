//! `scopevault doctor`: check the set-up one item at a time. Each line is `ok`, `warn` or
//! `fail`, and every `warn`/`fail` says what to do. Exit 1 when any line fails.
//!
//! Nothing here prompts: the vault is opened only with what needs no input (the identity file
//! or passphrase file given, a keyring slot), and the vault line says whether the generation
//! it shows was authenticated so.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use super::args::{AuditPathArgs, GlobalArgs};
use crate::vault::{self, OpenOptions, Unlock, Vault};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

/// The lines, each detail escaped as it is added ([`crate::text::escape_for_terminal`]): a
/// detail quotes paths from options and the environment, a vault header nobody has
/// authenticated yet and the daemon's answer, and a control character in any of them
/// (`x\rok  `) must not turn a `fail` line into what looks like an `ok` one on a terminal.
struct Report {
    lines: Vec<(Level, String, String)>,
    /// The line of a vault file this user may not `stat` (`EACCES`): a `warn` once a daemon
    /// of another user is known to serve it (`run`).
    vault_denied: Option<usize>,
}

impl Report {
    fn push(&mut self, level: Level, what: &str, detail: String) {
        let detail = crate::text::escape_for_terminal(&detail);
        self.lines.push((level, what.to_owned(), detail));
    }
    /// Change line `i` (the vault line, once the unlock says what its header is worth).
    fn set(&mut self, i: usize, level: Level, detail: &str) {
        self.lines[i].0 = level;
        self.lines[i].2 = crate::text::escape_for_terminal(detail);
    }
    fn ok(&mut self, what: &str, detail: impl Into<String>) {
        self.push(Level::Ok, what, detail.into());
    }
    fn warn(&mut self, what: &str, detail: impl Into<String>) {
        self.push(Level::Warn, what, detail.into());
    }
    fn fail(&mut self, what: &str, detail: impl Into<String>) {
        self.push(Level::Fail, what, detail.into());
    }
}

pub(crate) fn run(g: &GlobalArgs, a: &AuditPathArgs) -> anyhow::Result<ExitCode> {
    let mut r = Report {
        lines: Vec::new(),
        vault_denied: None,
    };
    // The commands follow a symbolic link at the vault path (root's or the caller's) and
    // refuse another user's: doctor judges the file they would open, and says so.
    let given = super::unlock::vault_path(g);
    let (vault_path, file) = match crate::vault::resolve_link(&given) {
        Ok(path) => {
            let file = check_vault(&mut r, &path, &given);
            (path, file)
        }
        Err(e) => {
            r.fail(
                "vault",
                format!("{e}; every command that opens the vault refuses it"),
            );
            (given, None)
        }
    };
    let mut other_vault = false;
    if let Some(file) = &file {
        match check_unlock(&mut r, g, &vault_path) {
            Checked::Opened(vault) => {
                file.authenticated(&mut r, &format!("generation {}, authenticated", vault.generation()));
                // Every save of it is refused (vault-format.md): a `fail`.
                if file.last_generation {
                    r.fail(
                        "vault",
                        format!("{}: {}", vault_path.display(), crate::vault::VaultError::LastGeneration),
                    );
                }
                check_credentials(&mut r, &vault);
                check_sizes(&mut r, &vault);
                check_declarations(&mut r, &vault);
            }
            Checked::Refused(e, other) => {
                other_vault = other;
                file.refused(&mut r, &e);
            }
            Checked::NotOpened if file.last_generation => file.unauthenticated_last(&mut r),
            Checked::NotOpened => file.authenticated(
                &mut r,
                &format!(
                    "generation {}, not authenticated: the header says so, and it is checked only when doctor can open the vault without a prompt (--identity-file, --passphrase-file/--passphrase-fd, or a keyring slot)",
                    file.generation
                ),
            ),
        }
    }
    let state_at = r.lines.len();
    let (daemon, health) = check_daemon(&mut r, g, &vault_path, file.as_ref());
    // A daemon of another user answered (its process known): the state directory and the
    // audit log are judged for its uid, as it opens them; a file this user may not read is a
    // `warn` to run doctor as that user. A second admin's doctor failed both on a healthy
    // set-up, "owned by uid N, another user", N the daemon serving that very log
    // (twenty-seventh pass, found by its attacker of multi-admin work and backups). The state
    // line keeps its place before the daemon's.
    let me = rustix::process::geteuid().as_raw();
    let daemon_uid =
        (health.is_some() && daemon.pid.is_some() && daemon.uid != me).then_some(daemon.uid);
    let mut state = Report {
        lines: Vec::new(),
        vault_denied: None,
    };
    check_state(
        &mut state,
        file.as_ref(),
        other_vault,
        &vault_path,
        daemon_uid,
    );
    if let (Some(file), false) = (&file, other_vault) {
        check_locations(&mut state, &vault_path, file);
    }
    r.lines.splice(state_at..state_at, state.lines);
    if let (Some(uid), Some(at)) = (daemon_uid, r.vault_denied) {
        if let Some(line) = r.lines.get_mut(at) {
            line.0 = Level::Warn;
            line.2.push_str(&format!(
                ": this user may not reach the file; the daemon answering runs as uid {uid}: run doctor as the daemon's user or root to check it"
            ));
        }
    }
    // The log the daemon names to an admin, with its anchor, as `status` checks it: root's
    // doctor against another uid's daemon judged its own default log, `ok … does not exist
    // yet`, beside `status`'s BAD cut tail (twenty-sixth pass, found by the re-attacker of
    // this pass's fixes).
    // When they are this user's own default log and its anchor, the full check below judges
    // the same files.
    let own = |h: &crate::protocol::Health| {
        let log = crate::audit::default_audit_path();
        let same = |a: &Path, b: &Path| std::path::absolute(a).ok() == std::path::absolute(b).ok();
        h.audit_log
            .as_deref()
            .is_some_and(|l| same(Path::new(l), &log))
            && h.audit_anchor
                .as_deref()
                .is_some_and(|f| same(Path::new(f), &crate::audit::anchor_path(&log)))
    };
    let named = match (&a.audit, &health) {
        (None, Some(h)) if h.audit_log.is_some() && !own(h) => {
            Some(super::status::daemon_audit_head(
                None,
                Some((
                    h,
                    if daemon.guessed {
                        Err(daemon.how.clone())
                    } else {
                        Ok(daemon.uid)
                    },
                )),
            ))
        }
        _ => None,
    };
    let audit_path = match &named {
        Some(head) => head.log.clone(),
        None => a
            .audit
            .clone()
            .unwrap_or_else(crate::audit::default_audit_path),
    };
    match &named {
        Some(head) => report_audit_head(&mut r, head),
        None => check_audit(&mut r, &audit_path, daemon_uid),
    }
    check_rotation_schemes(&mut r, &audit_path);
    // A file the daemon does not own is not read at all.
    if named.as_ref().is_none_or(|h| h.unchecked.is_none()) {
        if !other_vault {
            check_chain_generation(&mut r, &audit_path, file.as_ref());
        }
        check_clock(&mut r, &audit_path);
    }
    check_mlock(&mut r, &daemon);

    let mut out = String::new();
    for (level, what, detail) in &r.lines {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        out.push_str(&format!("{tag}  {what:<10} {detail}\n"));
    }
    let worst = r.lines.iter().map(|l| l.0).max().unwrap_or(Level::Ok);
    let fails = r.lines.iter().filter(|l| l.0 == Level::Fail).count();
    let warns = r.lines.iter().filter(|l| l.0 == Level::Warn).count();
    out.push_str(&format!(
        "{} check(s): {fails} failed, {warns} warning(s)\n",
        r.lines.len()
    ));
    // A path given by the operator (`--vault '/tmp/##[add-mask]x/v.sv'`) or an error quoting
    // one must not write a workflow command into a CI log (nineteenth pass).
    super::write_stdout(crate::text::defused(&out).as_bytes())?;
    Ok(if worst == Level::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What doctor reads of a vault file's header (vault-format.md: magic, version, header length,
/// JSON header), unauthenticated: enough to compare with what the daemon serves.
struct FileHeader {
    vault_id: String,
    generation: u64,
    /// The `ok` vault line and its text up to the generation, completed once the unlock says
    /// whether the generation is authentic (it showed a forged one as `ok`, nineteenth pass).
    line: Option<(usize, String)>,
    /// The header says [`crate::vault::LAST_GENERATION`].
    last_generation: bool,
}

impl FileHeader {
    /// Complete the vault line with what is known of the generation.
    fn authenticated(&self, r: &mut Report, generation: &str) {
        if let Some((i, start)) = &self.line {
            r.set(*i, Level::Ok, &format!("{start}, {generation})"));
        }
    }

    /// The header says the last generation and nothing checked it: one `fail` line saying
    /// so, and how to tell a key holder's file (no save can follow it) from a forged header.
    fn unauthenticated_last(&self, r: &mut Report) {
        let detail = format!(
            "the header says generation {}, the last one a save writes, but the header is not authenticated (anyone who can write the file can edit it): check it with an unlock source (--identity-file, --passphrase-file/--passphrase-fd, or a keyring slot); if it fails authentication, restore the file from a backup",
            self.generation
        );
        match &self.line {
            Some((i, start)) => r.set(*i, Level::Fail, &format!("{start}): {detail}")),
            None => r.fail("vault", detail),
        }
    }

    /// The vault line fails: the header is not what the vault's key wrote.
    fn refused(&self, r: &mut Report, e: &str) {
        let detail = format!(
            "the header says generation {}, but the file is refused: {e}",
            self.generation
        );
        match &self.line {
            Some((i, start)) => r.set(*i, Level::Fail, &format!("{start}): {detail}")),
            None => r.fail("vault", detail),
        }
    }
}

/// What [`check_unlock`] made of the vault.
enum Checked {
    /// Opened (and so authenticated) with a source that needs no input.
    Opened(Box<Vault>),
    /// A source was tried and the file refused (forged, corrupt, rolled back): the error,
    /// and whether it is another vault than the one the rollback record binds its id to
    /// (then the record's generation is not this file's to compare).
    Refused(String, bool),
    /// Nothing opened it (no such source, or none that works).
    NotOpened,
}

/// The vault file: present, readable, private; returns what its header says.
fn check_vault(r: &mut Report, path: &Path, given: &Path) -> Option<FileHeader> {
    let shown = path.display();
    // `given` is a link to `path`: named in the lines that describe the file.
    let named = if given == path {
        shown.to_string()
    } else {
        format!("{} (a symbolic link to {shown})", given.display())
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.fail(
                "vault",
                format!(
                    "{named} does not exist: create it with `{}` (or give --vault / SCOPEVAULT_VAULT)",
                    crate::advice::command("init")
                ),
            );
            return None;
        }
        Err(e) => {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                r.vault_denied = Some(r.lines.len());
            }
            r.fail("vault", format!("cannot inspect {shown}: {e}"));
            return None;
        }
    };
    // A FIFO, a device or a directory at the path: named, never opened as a file (a FIFO
    // made doctor wait for ever for a writer, seventeenth pass; it never prompts nor waits).
    if !meta.is_file() {
        r.fail(
            "vault",
            format!(
                "{shown} is {}: every command refuses it; put the vault file there, or give --vault / SCOPEVAULT_VAULT its path",
                crate::sys::not_a_regular_file_of(&meta)
            ),
        );
        return None;
    }
    let mut head = Vec::new();
    // Opened non-blocking and checked again on the descriptor: the path may have changed
    // since the `stat` above.
    if let Err(e) =
        crate::sys::open_regular(path, false).and_then(|f| f.take(1 << 20).read_to_end(&mut head))
    {
        r.fail(
            "vault",
            format!(
                "cannot read {shown}: {e}: run as the vault's owner (uid {})",
                meta.uid()
            ),
        );
        return None;
    }
    let Some(mut header) = header_of(&head) else {
        r.fail(
            "vault",
            format!("{shown} is not a scopevault vault (bad header): restore it from a backup"),
        );
        return None;
    };
    // Every save of a file at the last generation is refused (vault-format.md): a `fail`,
    // whatever the file's authentication says (it was `ok`, nineteenth pass). One above it is
    // refused as corrupt when the header is read: the unlock check fails the vault line then.
    // Judged once the unlock check says whether the header is authentic: "no save can follow
    // it, make a new vault" was said of a header anyone can edit (nineteenth pass, found by
    // attacking this pass's fixes).
    header.last_generation = header.generation == crate::vault::LAST_GENERATION;
    // The writers (`cred set`, `policy apply`, `bundle apply`…) save only in a directory
    // nobody else can plant files or links in, reached without another user's link.
    if let Err(e) = crate::vault::SafeDir::open(&crate::paths::dir_of(path), false) {
        r.fail(
            "vault",
            format!("the commands that save the vault refuse its directory: {e}"),
        );
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        r.warn(
            "vault",
            format!("{shown} has mode {mode:04o}: others can read the encrypted file; run `chmod 0600 {shown}`"),
        );
    } else {
        let start = format!(
            "{named} (mode {mode:04o}, uid {}, vault {}",
            meta.uid(),
            short_id(&header.vault_id)
        );
        r.ok(
            "vault",
            format!("{start}, generation {})", header.generation),
        );
        header.line = Some((r.lines.len() - 1, start));
    }
    Some(header)
}

fn header_of(bytes: &[u8]) -> Option<FileHeader> {
    if bytes.get(..8)? != b"SCOPEVLT" {
        return None;
    }
    let len = u32::from_be_bytes(bytes.get(10..14)?.try_into().ok()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(bytes.get(14..14 + len)?).ok()?;
    Some(FileHeader {
        vault_id: header["vault_id"].as_str()?.to_owned(),
        generation: header["generation"].as_u64()?,
        line: None,
        last_generation: false,
    })
}

/// A vault id as people compare them: its first 8 characters.
fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Which unlock sources exist, and whether the keyring slot, the identity file and the
/// passphrase file given open the vault (each tried: none needs input).
fn check_unlock(r: &mut Report, g: &GlobalArgs, path: &Path) -> Checked {
    let slots = match vault::read_slots(path) {
        Ok(s) => s,
        Err(e) => {
            r.fail("unlock", format!("cannot read the key slots: {e}"));
            return Checked::Refused(e.to_string(), false);
        }
    };
    let mut opened = None;
    let mut refused = None;
    let mut judge = |e: vault::VaultError| {
        if e.is_refusal() {
            let other = matches!(e, vault::VaultError::OtherVaultRecorded { .. });
            refused.get_or_insert((e.to_string(), other));
        }
        e
    };
    let kinds: Vec<&str> = slots.iter().map(|s| s.kind()).collect();
    r.ok("unlock", format!("key slots: {}", kinds.join(", ")));
    let identity_file = g.unlock.identity_file.as_ref().filter(|id| {
        // Judged by its type before it is opened: a FIFO would wait for a writer.
        match std::fs::metadata(id) {
            Ok(m) if !m.is_file() => {
                r.fail(
                    "identity",
                    format!(
                        "{} is {}: doctor does not read it (a FIFO would wait for a writer); give the identity file's own path",
                        id.display(),
                        crate::sys::not_a_regular_file_of(&m)
                    ),
                );
                false
            }
            _ => true,
        }
    });
    if let Some(id) = identity_file {
        // Its mode is judged below, in the report: opening it does not warn on stderr too.
        vault::identity_mode_reported_by_caller(id);
        match Vault::open(
            path,
            &Unlock::IdentityFile(id.clone()),
            &OpenOptions::default(),
        ) {
            Ok(v) => {
                r.ok("identity", format!("{} opens the vault", id.display()));
                opened = Some(v);
            }
            Err(e) => r.fail("identity", format!("{}: {}", id.display(), judge(e))),
        }
        // It is the vault's key: as private as an SSH key (ssh refuses a 0644 one).
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(id) {
            let me = crate::sys::current_uid();
            if m.mode() & 0o077 != 0 {
                r.warn(
                    "identity",
                    format!(
                        "{} has mode {:04o}: other users can read the vault's key; run `chmod 600 {}`",
                        id.display(),
                        m.mode() & 0o7777,
                        id.display()
                    ),
                );
            } else if m.uid() != me && m.uid() != 0 {
                r.warn(
                    "identity",
                    format!(
                        "{} belongs to uid {}, another user: whoever owns it holds the vault's key",
                        id.display(),
                        m.uid()
                    ),
                );
            }
        }
    }
    if kinds.contains(&"keyring") {
        match Vault::open(path, &Unlock::Keyring, &OpenOptions::default()) {
            Ok(v) => {
                r.ok("keyring", "the keyring slot opens the vault");
                opened.get_or_insert(v);
            }
            Err(e) => {
                let e = judge(e);
                let fix = keyring_fix(&e);
                r.fail(
                    "keyring",
                    format!("the keyring slot does not open the vault: {e}{fix}"),
                )
            }
        }
    } else {
        r.ok(
            "keyring",
            format!(
                "no keyring slot enrolled (optional: `{}`)",
                crate::advice::command("key add --keyring")
            ),
        );
    }
    if kinds.iter().all(|k| *k == "passphrase") && !super::unlock::have_tty() {
        r.warn(
            "unlock",
            format!(
                "only passphrase slots and no terminal: unattended commands need --passphrase-file/--passphrase-fd; a daemon needs `scopevault unlock` after each start, or an identity file (`{}`)",
                crate::advice::command("key add --identity-out FILE")
            ),
        );
    }
    // A passphrase given in a file or on a descriptor is tried too (it needs no prompt).
    match super::unlock::passphrase_from_args(g) {
        Ok(None) => {}
        Ok(Some(p)) => match Vault::open(path, &Unlock::Passphrase(p), &OpenOptions::default()) {
            Ok(v) => {
                r.ok("passphrase", "the passphrase given opens the vault");
                opened.get_or_insert(v);
            }
            Err(e) => r.fail("passphrase", judge(e).to_string()),
        },
        Err(e) => r.fail("passphrase", format!("{e:#}")),
    }
    // An identity slot with no identity file given, and nothing else that opened the vault:
    // the lines above were all `ok`, and said nothing of it (twenty-sixth pass, found by the
    // twenty-fifth pass's review). A passphrase slot with a terminal is left to its prompt.
    let typed = kinds.contains(&"passphrase") && super::unlock::have_tty();
    if opened.is_none()
        && refused.is_none()
        && g.unlock.identity_file.is_none()
        && kinds.contains(&"identity")
        && !typed
    {
        let or_passphrase = if kinds.contains(&"passphrase") {
            " (or its passphrase with --passphrase-file/--passphrase-fd)"
        } else {
            ""
        };
        r.warn(
            "unlock",
            format!(
                "nothing doctor can find opens the vault: it has an identity-file slot and no identity file was given; give it with --identity-file FILE (or SCOPEVAULT_IDENTITY_FILE){or_passphrase}, as `serve` and `unlock` need it, so that doctor checks that it opens the vault and the header it authenticates"
            ),
        );
    }
    match (opened, refused) {
        (_, Some((e, other))) => Checked::Refused(e, other),
        (Some(v), None) => Checked::Opened(Box::new(v)),
        (None, None) => Checked::NotOpened,
    }
}

/// What to add to the keyring slot's `fail` line, by why the slot did not open the vault.
/// Starting a Secret Service fits a store that could not be reached, and no other failure:
/// it followed an entry holding the wrong key and two items for one entry too (twenty-first
/// pass), whose messages say what to do.
fn keyring_fix(e: &vault::VaultError) -> String {
    match e {
        vault::VaultError::KeyringUnavailable(_) => "; start the Secret Service (gnome-keyring, KeePassXC) in this session, or use a passphrase or identity file".into(),
        // The store answered and holds no entry for the slot.
        vault::VaultError::Keyring(_) => format!(
            "; a slot made on another host or in another login session opens only there (here, use a passphrase or identity file); if its entry was deleted, enrol this keyring again: `{}`, then `{}` of this slot",
            crate::advice::command("key add --keyring"),
            crate::advice::command("key remove ID")
        ),
        _ => String::new(),
    }
}

/// What the daemon would refuse to hand out of an open vault: a credential holding both TOTP
/// seed fields, a `totp` credential holding a secret beside its seed, or a TOTP seed that
/// gives no code (an otpauth URI with an `encoder`
/// parameter, twenty-first pass), both of which a vault saved by an older scopevault may
/// hold: a fetch of it fails, and `publish` and `bundle apply` refuse it. Names and fields
/// only, never a value.
fn check_credentials(r: &mut Report, vault: &Vault) {
    let both: Vec<_> = vault
        .credentials()
        .iter()
        .filter(|(_, c)| vault::holds_both_totp_seeds(c.secrets.keys().map(String::as_str)))
        .collect();
    for (name, c) in &both {
        // The daemon makes codes for `totp` credentials only; of any other kind the writers
        // still refuse a change of secrets that keeps both.
        let so = if c.kind == crate::policy::CredentialKind::Totp {
            "a fetch of it fails rather than make a code from either"
        } else {
            "a change of its other secrets is refused until one is kept"
        };
        r.fail(
            "totp",
            format!(
                "credential `{name}` holds both `totp_seed` and `otpauth` (saved by an older scopevault): two TOTP seeds, so {so}; keep the one in use with `{}` (or `--secret totp_seed`), which removes the other",
                crate::advice::command(&format!("cred set {name} --secret otpauth"))
            ),
        );
    }
    // A field name held both as a plain field and as a secret: the daemon does not hand the
    // credential out (twenty-fourth pass). A `fail` line only when one is held, so that the
    // report of a sound vault is as it was.
    for (name, c) in vault.credentials() {
        if let Some(field) = vault::field_in_both(&c.fields, &c.secrets) {
            r.fail(
                "fields",
                format!(
                    "{} (saved by an older scopevault); until then a fetch of it fails",
                    vault::field_in_both_message(name, field)
                ),
            );
        }
    }
    // A `totp` credential (declared so, else stored so) holding a secret other than its seed:
    // never handed out, refused by every writer, `publish` and `bundle apply` (twenty-eighth
    // pass: an older scopevault handed it to every runner beside the code).
    let mut beside = 0;
    for (name, c) in vault.credentials() {
        let kind = vault
            .policy()
            .and_then(|p| p.credential(name))
            .map_or(c.kind, |d| d.kind());
        if kind != crate::policy::CredentialKind::Totp {
            continue;
        }
        let names: Vec<String> = c
            .secrets
            .keys()
            .filter(|k| !vault::TOTP_SEED_FIELDS.contains(&k.as_str()))
            .map(|k| format!("`{k}`"))
            .collect();
        if names.is_empty() {
            continue;
        }
        beside += 1;
        r.fail(
            "totp",
            format!(
                "credential `{name}` is a totp credential holding secret(s) other than its seed: {} (saved by an older scopevault, which handed them to its runners beside the code). A totp credential holds only its seed, so the daemon hands none of them out, and `publish` and `bundle apply` refuse it; store the seed with `{}` (or `--secret otpauth`), which removes every other secret of it",
                names.join(", "),
                crate::advice::command(&format!("cred set {name} --secret totp_seed"))
            ),
        );
    }
    let mut unusable = 0;
    for (name, c) in vault.credentials() {
        // TotpError never quotes the seed.
        let Some((field, e)) = crate::agent::totp::unusable_seed(&c.secrets) else {
            continue;
        };
        unusable += 1;
        let so = if c.kind == crate::policy::CredentialKind::Totp {
            "a fetch of it fails, "
        } else {
            ""
        };
        r.fail(
            "totp",
            format!(
                "credential `{name}` holds a TOTP seed in `{field}` that gives no code (saved by an older scopevault): {e}. So {so}`publish` refuses to put it in a bundle and a checkpoint's `bundle apply` refuses it; store a usable seed with `{}` (or `--secret totp_seed`), which replaces it",
                crate::advice::command(&format!("cred set {name} --secret otpauth"))
            ),
        );
    }
    // A seed under RFC 4226's 128 bits (section 4) keeps making codes; one under 80 bits,
    // which writers refuse since the twenty-fifth pass, was stored before. Said, not failed.
    for (name, c) in vault.credentials() {
        let Some((field, bytes)) = crate::agent::totp::short_seed(&c.secrets) else {
            continue;
        };
        let older = if bytes < crate::agent::totp::MIN_SEED {
            format!(
                " (saved by an older scopevault: under the {} bits a writer stores now, so codes are still made from it, but a short seed is easier to guess)",
                crate::agent::totp::MIN_SEED * 8
            )
        } else {
            String::new()
        };
        r.warn(
            "totp",
            format!(
                "credential `{name}`: secret field `{field}`: {}{older}; store the longer seed with `{}`",
                crate::agent::totp::short_seed_warning(bytes),
                crate::advice::command(&format!("cred set {name} --secret {field}"))
            ),
        );
    }
    if both.is_empty() && unusable == 0 && beside == 0 {
        r.ok(
            "totp",
            "no credential holds two TOTP seeds, a TOTP seed that gives no code, or a secret beside its TOTP seed",
        );
    }
}

/// A credential over the bound on one credential (more than 64 fields or 1 MiB of values,
/// vault-format.md, "Payload"), which a vault saved by an older scopevault may hold: the
/// daemon refuses its fetch (the rest of the vault is served), `publish` and `bundle apply`
/// refuse it, and every writer refuses it to grow. A `fail` per such credential, naming it and
/// the bound, never a value; `ok` when there is none.
fn check_sizes(r: &mut Report, vault: &Vault) {
    let mut over = 0;
    for (name, c) in vault.credentials() {
        let Some(why) = c.over_bound() else {
            continue;
        };
        over += 1;
        r.fail(
            "size",
            format!(
                "credential `{name}` is over the bound on one credential: {why} (saved by an older scopevault). The daemon refuses its fetch, and `publish` and `bundle apply` refuse it; split it: `{}`, then `{}` of each part under its own name",
                crate::advice::command(&format!("cred rm {name}")),
                crate::advice::command("cred add NAME")
            ),
        );
    }
    if over == 0 {
        r.ok(
            "size",
            format!(
                "every credential is within the bound on one credential ({} fields, 1 MiB of values)",
                vault::MAX_CREDENTIAL_FIELDS
            ),
        );
    }
}

/// What the vault shows otherwise than the daemon hands it out: a credential whose entry is
/// stored with another kind, scopes or origins than the applied policy declares (the daemon
/// goes by the declaration; the lint's `vault-differs-from-policy`). A `warn` per such
/// credential, naming it and the entry's kind, never a scope, origin or value of the entry.
/// No line when no policy is applied.
fn check_declarations(r: &mut Report, vault: &Vault) {
    let Some(policy) = vault.policy() else {
        return;
    };
    let mut differ = 0;
    for (name, decl) in policy.credentials() {
        let Some(c) = vault.credentials().get(name) else {
            continue;
        };
        let d = decl.stored_differences(c.kind, &c.scopes, &c.origins);
        if d.is_empty() {
            continue;
        }
        differ += 1;
        r.warn(
            "declared",
            format!(
                "the vault entry of credential `{name}` differs from the applied policy's declaration in {} (lint rule `vault-differs-from-policy`): the daemon hands it out as declared (kind `{}`), `cred show` shows the entry; apply the policy again (`{}`), which stores the declaration in the entry",
                d.describe(),
                decl.kind(),
                crate::advice::command("policy apply POLICY")
            ),
        );
    }
    if differ == 0 {
        r.ok(
            "declared",
            "every credential the applied policy declares is stored with its declared kind, scopes and origins",
        );
    }
}

/// The socket's directory, the daemon, the vault it serves and its generation against the
/// file's.
fn check_daemon(
    r: &mut Report,
    g: &GlobalArgs,
    vault_path: &Path,
    file: Option<&FileHeader>,
) -> (DaemonProc, Option<crate::protocol::Health>) {
    let socket = g
        .socket
        .clone()
        .unwrap_or_else(crate::agent::server::default_socket_path);
    // A vault file saved since the daemon loaded it is loaded now, and `health` says so
    // meanwhile: the generation is compared once that load is done.
    let answer = super::client_cmds::health_and_peer_after_load(&socket);
    let stopped = answer
        .as_ref()
        .err()
        .and_then(|e| no_daemon_runs(&socket, e));
    let denied = answer.as_ref().err().and_then(connect_denied);
    let daemon = daemon_proc(
        &socket,
        answer.as_ref().ok().map(|(_, peer)| *peer),
        stopped,
        denied.is_some(),
    );
    check_socket_dir(r, &socket, &daemon);
    // The directory may be right for the daemon and still shut this user out: every client
    // command of this user fails so (twenty-sixth pass, found by the attacker of the
    // newcomer's first day: after `su -`, root's /run/scopevault was `ok … no daemon answers`).
    if let Some(e) = &denied {
        let hint = if g.socket.is_none()
            && std::env::var_os("XDG_RUNTIME_DIR").is_none_or(|d| d.is_empty())
        {
            "; XDG_RUNTIME_DIR is not set (e.g. after `su -`), so this is the default under /run: for a daemon of your own set XDG_RUNTIME_DIR=/run/user/$(id -u) or give its --socket PATH; for root's daemon, run the clients as root or let them in with `serve --socket-group GROUP` (docs/operations.md, \"Who gets what\")"
        } else {
            "; give the socket of a daemon this user may reach with --socket PATH, or let this user in with `serve --socket-group GROUP` (docs/operations.md, \"Who gets what\")"
        };
        r.fail(
            "socket",
            format!(
                "this user (uid {}) cannot reach the socket {}: {e}; every client command of this user fails so{hint}",
                crate::sys::current_uid(),
                crate::text::shown(&socket)
            ),
        );
    }
    // A binary installed over the daemon's without a restart (twenty-sixth pass, found by the
    // attacker of the newcomer's first day: `ok daemon` while /proc/PID/exe said "(deleted)").
    // The daemon says so in `health`; one that does not (older) is looked at in /proc (root).
    let replaced = match &answer {
        Ok((h, _)) => h.exe_replaced.clone().or_else(|| {
            let exe = crate::sys::RunningExe::of(Some(daemon.pid?)).ok()?;
            Some(exe.replaced()?.to_string_lossy().into_owned())
        }),
        Err(_) => None,
    };
    let health = answer.as_ref().ok().map(|(h, _)| h.clone());
    match answer.map(|(h, _)| h) {
        Err(crate::client::ClientError::Connect { .. }) if denied.is_some() => r.warn(
            "daemon",
            "not known whether one runs: this user may not connect to its socket (the `socket` line says why)",
        ),
        // A daemon stopped (`kill -STOP`) or hung holds its socket: doctor waited for it once,
        // for a bounded time; every fetch waits on it for its `--timeout`, then fails.
        Err(e @ crate::client::ClientError::NoAnswer { .. }) => r.fail(
            "daemon",
            format!(
                "{e}; until it answers, every check that fetches from it fails after waiting its `--timeout` ({} s by default)",
                super::args::DEFAULT_FETCH_TIMEOUT
            ),
        ),
        Err(e) => r.warn("daemon", format!("not reachable ({e})")),
        // Another vault than the file's: no generation compares, and no reload changes the
        // file a daemon serves. When the file at the daemon's own vault path is the file's
        // vault (`vault_file_id`), that file replaced the daemon's: "start the daemon with
        // --vault PATH" would serve the planted vault (twenty-sixth pass, found by the
        // attacker of observability and many daemons).
        Ok(h)
            if h.vault_id
                .as_deref()
                .zip(file)
                .is_some_and(|(d, f)| d != f.vault_id) =>
        {
            let (d, f) = (
                h.vault_id.as_deref().unwrap_or(""),
                file.map_or("", |f| &f.vault_id),
            );
            let locked = if h.locked { " (locked)" } else { "" };
            r.fail(
                "daemon",
                if h.vault_file_id.as_deref() == Some(f) {
                    format!(
                        "serves vault {}…{locked}, but the file at its own vault path is now vault {}…, the one at {}: another vault's file has replaced the daemon's. The daemon keeps serving vault {}…, and a restart would serve the file put there: do not restart it; check who put that file there (its owner, its time, the audit log), and put the daemon's vault file (vault {}…) back from a backup (docs/security.md, \"A vault file of another vault\")",
                        short_id(d),
                        short_id(f),
                        vault_path.display(),
                        short_id(d),
                        short_id(d)
                    )
                } else {
                    format!(
                        "serves another vault{locked}: vault {}…, not vault {}… of {}; doctor and the daemon were given different vault files: give doctor the daemon's --vault, or start the daemon with --vault {}",
                        short_id(d),
                        short_id(f),
                        vault_path.display(),
                        vault_path.display()
                    )
                },
            );
        }
        // Every hand-out is refused meanwhile, whatever else is right.
        Ok(h) if !h.audit_ok => r.fail(
            "daemon",
            format!(
                "scopevault {} ({}) says its audit log is failing: it refuses every fetch (audit_unavailable) until it can write the log again; the answer carries no reason: the daemon's own log names the write error (`journalctl -u scopevault`, or its stderr): a full disk, permissions, a file put in the log's place",
                h.version,
                if h.locked {
                    "locked".to_owned()
                } else {
                    format!("unlocked, generation {}", h.generation.unwrap_or(0))
                }
            ),
        ),
        Ok(h) if !h.audit_anchor_ok => r.fail(
            "daemon",
            format!(
                "scopevault {} cannot write its audit anchor in the state directory: it refuses every fetch (audit_unavailable) until it can, because records cut from the log's end would go unnoticed; the daemon's own log names the error (`journalctl -u scopevault`, or its stderr): a full disk, permissions, a read-only file system",
                h.version
            ),
        ),
        Ok(h) if h.load_refused.is_some() => r.warn(
            "daemon",
            format!(
                "serves generation {}: its last load REFUSED the vault file at its path (it keeps serving what it has): {}",
                h.generation.unwrap_or(0),
                crate::text::escape_for_terminal(&crate::advice::in_daemon_text(
                    h.load_refused.as_deref().unwrap_or("")
                ))
            ),
        ),
        Ok(h) if h.load_waits.is_some() => r.warn(
            "daemon",
            format!(
                "serves generation {}: the vault file saved since waits for the rollback record's lock, and is loaded once the lock is free: {}",
                h.generation.unwrap_or(0),
                crate::text::escape_for_terminal(&crate::advice::in_daemon_text(
                    h.load_waits.as_deref().unwrap_or("")
                ))
            ),
        ),
        Ok(h) if h.loading => r.warn(
            "daemon",
            format!(
                "still loading the saved vault file after {} s; it serves generation {} until then",
                super::client_cmds::PICKUP_WAIT.as_secs(),
                h.generation.unwrap_or(0)
            ),
        ),
        Ok(h) if h.locked => r.warn(
            "daemon",
            format!(
                "scopevault {} is running but locked: run `{}`",
                h.version,
                crate::advice::daemon_command("unlock")
            ),
        ),
        Ok(h) => match (h.generation, file.map(|f| f.generation)) {
            (Some(d), Some(f)) if d < f => r.warn(
                "daemon",
                format!(
                    "serves generation {d}, the file is at {f}: run `{}`",
                    crate::advice::daemon_command("reload")
                ),
            ),
            (d, _) => r.ok(
                "daemon",
                format!(
                    "scopevault {} unlocked, generation {}",
                    h.version,
                    d.unwrap_or(0)
                ),
            ),
        },
    }
    if let Some(path) = replaced {
        r.warn(
            "daemon",
            format!(
                "runs a binary that was replaced or removed since it started: the file at {} is not the one it runs (another was installed there, or it was removed), and it runs the old one until it is restarted; restart it (`systemctl restart scopevault`, or stop `scopevault serve` and start it again) so that it runs the version installed, the clients' (docs/operations.md, \"Upgrading\")",
                crate::text::escape_for_terminal(&path)
            ),
        );
    }
    (daemon, health)
}

/// What the socket says when no daemon runs: nothing at its path, or a socket nothing listens
/// on (the connection is refused: a daemon that was killed leaves its socket, which `serve`
/// replaces). `None` for every other failure: a daemon that takes the connection and does not
/// answer (stopped with `kill -STOP`, hung) still runs, as may one the client refused to talk to.
fn no_daemon_runs(socket: &Path, e: &crate::client::ClientError) -> Option<String> {
    let crate::client::ClientError::Connect { source, .. } = e else {
        return None;
    };
    let shown = crate::text::shown(socket);
    match source.kind() {
        std::io::ErrorKind::NotFound => Some(format!("no socket at {shown}")),
        std::io::ErrorKind::ConnectionRefused => Some(format!(
            "nothing listens on {shown}, a socket left by a daemon that did not stop cleanly (`serve` replaces it)"
        )),
        _ => None,
    }
}

/// The connection's refusal when this user may not reach the socket (EACCES: a directory on
/// the way it may not search, a socket it may not write to).
fn connect_denied(e: &crate::client::ClientError) -> Option<String> {
    match e {
        crate::client::ClientError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Some(source.to_string())
        }
        _ => None,
    }
}

/// The daemon as doctor can tell it: the uid the socket directory and the memory-lock limit
/// are judged for, its process when known, and how that was learnt (said on those lines).
struct DaemonProc {
    uid: u32,
    pid: Option<i32>,
    how: String,
    /// Why no daemon runs ([`no_daemon_runs`]), when the socket says none does.
    stopped: Option<String>,
    /// A daemon answered on a socket another process made (socket activation) and its own
    /// process is not visible to this user: `uid` is only the socket directory's owner (root's
    /// under systemd), so nothing is judged for it.
    guessed: bool,
}

/// The uid of the daemon that answered on `socket`, its connection's peer credentials `peer`,
/// as [`daemon_proc`] finds it: under systemd's socket activation the peer is systemd (root),
/// not the daemon. `status` judges the audit files the daemon names for this uid, as doctor
/// does ([`super::status::daemon_audit_head`]).
/// `Err` says why it is not known (the daemon's process is not visible to this user): the
/// socket directory's owner is no more than a guess, root's under systemd.
pub(super) fn daemon_uid(socket: &Path, peer: crate::sys::PeerCred) -> Result<u32, String> {
    let d = daemon_proc(socket, Some(peer), None, false);
    if d.guessed {
        Err(d.how)
    } else {
        Ok(d.uid)
    }
}

/// Who the daemon on `socket` is. `peer` is what the kernel said of the process that made the
/// listening socket (`SO_PEERCRED`, when the daemon answered): the daemon itself when it bound
/// the socket (a process of this same program), else (systemd's socket activation) the process
/// that passed the socket on, and the daemon is the other process holding it, seen in `/proc`
/// by root. Failing that the daemon's uid is not known (`guessed`: an admin that is not root
/// sees no other user's process). With no answer, the owner of the socket's directory
/// (systemd's `RuntimeDirectory=` gives it the service's `User=`), else this user.
fn daemon_proc(
    socket: &Path,
    peer: Option<crate::sys::PeerCred>,
    stopped: Option<String>,
    denied: bool,
) -> DaemonProc {
    use crate::sys::{process_comm, process_uid, socket_listeners};
    let ours = process_comm(None);
    let same_program = |pid: i32| ours.is_some() && process_comm(Some(pid)) == ours;
    let dir_owner = std::fs::symlink_metadata(crate::paths::dir_of(socket))
        .ok()
        .filter(std::fs::Metadata::is_dir)
        .map(|m| m.uid());
    if let Some(p) = peer {
        if same_program(p.pid) {
            return DaemonProc {
                uid: p.uid,
                pid: Some(p.pid),
                how: format!(
                    "the daemon's, pid {}, from the socket's peer credentials",
                    p.pid
                ),
                stopped: None,
                guessed: false,
            };
        }
        let holders: Vec<i32> = match &ours {
            Some(ours) => socket_listeners(socket, ours),
            None => Vec::new(),
        }
        .into_iter()
        .filter(|&q| q != p.pid)
        .collect();
        if let [q] = holders[..] {
            if let Some(uid) = process_uid(q) {
                return DaemonProc {
                    uid,
                    pid: Some(q),
                    how: format!(
                        "the daemon's, pid {q}, which holds the socket pid {} made: socket activation",
                        p.pid
                    ),
                    stopped: None,
                    guessed: false,
                };
            }
        }
        // Its uid is not known: the socket directory's owner is root's under systemd, and
        // root's files were judged as the daemon's (twenty-seventh pass, found by the
        // twenty-seventh pass's re-attacker of its fixes).
        return DaemonProc {
            uid: dir_owner.unwrap_or_else(crate::sys::current_uid),
            pid: None,
            how: format!(
                "not known: the socket was made by pid {} (uid {}), not by the daemon, whose process is not visible to this user",
                p.pid, p.uid
            ),
            stopped: None,
            guessed: true,
        };
    }
    // With no daemon running, say so and why (no socket, nothing listening); "no daemon
    // answers" is for one that holds its socket and does not answer, or that the client
    // would not talk to (it said so of a stopped daemon too, eighteenth pass).
    let none = match &stopped {
        Some(why) => format!("no daemon runs: {why}"),
        None if denied => "this user may not connect to the socket".to_owned(),
        None => "no daemon answers".to_owned(),
    };
    match dir_owner {
        Some(uid) => DaemonProc {
            uid,
            pid: None,
            how: format!("the socket directory's owner; {none}"),
            stopped,
            guessed: false,
        },
        None => DaemonProc {
            uid: crate::sys::current_uid(),
            pid: None,
            how: match std::fs::symlink_metadata(crate::paths::dir_of(socket)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => format!(
                    "this user's; {none}, and the socket directory cannot be looked up by this user"
                ),
                _ => format!("this user's; {none}, and the socket directory does not exist yet"),
            },
            stopped,
            guessed: false,
        },
    }
}

/// The socket's directory as `serve` checks it before it binds
/// ([`crate::agent::server::check_socket_dir`]), for the daemon's uid (not this user's: root
/// checking a daemon that runs as its own user). One that does not exist yet is created by
/// `serve` (0700) through the components that exist, which must not be symbolic links.
fn check_socket_dir(r: &mut Report, socket: &Path, daemon: &DaemonProc) {
    let dir = crate::paths::dir_of(socket);
    let shown = dir.display();
    let uid = daemon.uid;
    let how = &daemon.how;
    let m = match std::fs::symlink_metadata(&dir) {
        Ok(m) => Some(m),
        // It exists, or may, but a directory above it is not searchable for this user
        // (EACCES): not "does not exist yet" (twenty-fifth pass, found by the attacker of
        // advice: a runner's doctor said `serve` creates it). This user cannot reach the
        // socket through it either.
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            r.fail(
                "socket",
                format!("{shown} cannot be looked up by this user ({e}): a directory above it is not searchable for uid {}, so this user cannot reach the socket through it either; let the runners search the directories above it (or choose a socket path they can reach), and run `scopevault doctor` as the daemon's user to judge the directory itself", crate::sys::current_uid()),
            );
            return;
        }
        Err(_) => None,
    };
    let Some(m) = m else {
        match crate::paths::lstat_components(&crate::paths::nearest_existing(&dir)) {
            Ok(_) => r.warn(
                "socket",
                format!("{shown} does not exist yet: `scopevault serve` creates it"),
            ),
            Err(why) => r.fail(
                "socket",
                format!("{shown} does not exist, and `serve` would refuse the directory it creates: {why}"),
            ),
        }
        return;
    };
    if daemon.guessed {
        r.warn(
            "socket",
            format!(
                "{shown} (mode {:04o}, uid {}, gid {}): not checked: the daemon's uid is {how}; run `{}` as root or as the daemon's user to judge it",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                crate::advice::command("doctor")
            ),
        );
        return;
    }
    match crate::agent::server::check_socket_dir(&dir, uid) {
        Err(e) => r.fail(
            "socket",
            format!("`scopevault serve` as uid {uid} ({how}) refuses it: {e}"),
        ),
        Ok(()) => r.ok(
            "socket",
            format!(
                "{shown} (mode {:04o}, uid {}, gid {}); judged for uid {uid} ({how})",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ),
        ),
    }
}

/// The `audit` line for the log and anchor the daemon named in `health`
/// ([`super::status::daemon_audit_head`], what `status` reports).
fn report_audit_head(r: &mut Report, head: &crate::fleet::health::AuditHead) {
    let shown = crate::text::shown(&head.log);
    if let Some(e) = &head.error {
        r.fail(
            "audit",
            format!(
                "{shown} (the daemon's log, named by its health): {}",
                crate::text::escape_for_terminal(e)
            ),
        );
    } else if let Some(why) = &head.unchecked {
        r.warn(
            "audit",
            format!(
                "{shown}: not checked: {}",
                crate::text::escape_for_terminal(why)
            ),
        );
    } else {
        r.ok(
            "audit",
            format!(
                "{shown} (the daemon's log, named by its health): head at seq {}{}",
                head.seq.unwrap_or(0),
                head.anchor_seq
                    .map_or(String::new(), |s| format!(", anchored at seq {s}"))
            ),
        );
    }
}

/// Which of the two rotations that rename the log made a file beside it, by its name after
/// the log's: `.YYYYMMDDTHHMMSSZ` (and `-N`, `.gz`) is `scopevault audit rotate`'s; `.N` or
/// a date after `-` or `.` (and `.gz`) is logrotate's. Anything else (the key, the journal, an
/// operator's copy) is neither.
#[derive(Debug, PartialEq, Eq)]
enum Rotated {
    ByScopevault,
    ByLogrotate,
}

fn rotated_by(log: &[u8], name: &[u8]) -> Option<Rotated> {
    let rest = name.strip_prefix(log)?;
    let (&sep, tail) = rest.split_first()?;
    let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
    if sep == b'.' && digits == 8 && tail.len() >= 16 {
        let (t, z) = (tail[8], tail[15]);
        if t == b'T' && z == b'Z' && tail[9..15].iter().all(u8::is_ascii_digit) {
            return Some(Rotated::ByScopevault);
        }
    }
    let ends = tail.get(digits).is_none_or(|&b| matches!(b, b'.' | b'-'));
    (matches!(sep, b'.' | b'-') && digits > 0 && ends).then_some(Rotated::ByLogrotate)
}

/// Files of both `scopevault audit rotate` and logrotate beside the log: one read of its
/// directory. With both, logrotate's `rotate N` deletes its oldest numbered file, which lies
/// in the middle of the chain, and `audit verify --audit LOG LOG.*` fails for good from then
/// on (twenty-eighth pass, found by the outside attacker; docs/audit.md, "Rotation").
fn check_rotation_schemes(r: &mut Report, log: &Path) {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let (mut ours, mut theirs) = (None, None);
    for e in entries.flatten() {
        let n = e.file_name();
        match rotated_by(name.as_encoded_bytes(), n.as_encoded_bytes()) {
            Some(Rotated::ByScopevault) => ours = ours.or(Some(n)),
            Some(Rotated::ByLogrotate) => theirs = theirs.or(Some(n)),
            None => {}
        }
        if ours.is_some() && theirs.is_some() {
            break;
        }
    }
    if let (Some(ours), Some(theirs)) = (ours, theirs) {
        r.warn(
            "audit",
            format!(
                "{}: files of both `scopevault audit rotate` ({}) and logrotate ({}) lie beside the log: use one of them; with both, logrotate's `rotate N` deletes its oldest numbered file, which lies in the middle of the chain, and `scopevault audit verify --audit {} {}.*` fails for good from then on. Keep `audit rotate` and prune its files by age, oldest first (`find {} -name '{}.20*Z*' -mtime +400 -delete`), or logrotate alone (docs/audit.md, \"Rotation\")",
                dir.display(),
                ours.to_string_lossy(),
                theirs.to_string_lossy(),
                log.display(),
                log.display(),
                dir.display(),
                name.to_string_lossy(),
            ),
        );
    }
}

/// The audit log: writable where it exists, its hash chain verifies, and it holds the record
/// its anchor in the state directory names ([`crate::audit::verify_against_anchor`]: the rule
/// `serve` applies at start and `audit verify` applies too).
fn check_audit(r: &mut Report, path: &Path, daemon_uid: Option<u32>) {
    let shown = path.display();
    // Where the daemon opens its log: a directory others may write, or a link on the way;
    // judged for the daemon's uid when a daemon of another user answered (`daemon_uid`).
    let judged = match daemon_uid {
        Some(uid) => crate::audit::check_location_for(path, uid),
        None => crate::audit::check_location(path),
    };
    if let Err(e) = judged {
        r.fail("audit", format!("`scopevault serve` refuses it: {e}"));
        return;
    }
    // A FIFO, a device or a directory at the log's path: named, never opened (a FIFO would
    // make doctor wait for a writer).
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.is_file() {
            r.fail(
                "audit",
                format!(
                    "{shown} is {}: an audit log is a regular file; remove it, or give --audit another path",
                    crate::sys::not_a_regular_file_of(&m)
                ),
            );
            return;
        }
    }
    // The log's HMAC key, likewise by its type before anything opens it: `serve` and `audit
    // verify` refuse anything but a regular file there (a FIFO made `serve` wait for a
    // writer). It was a `warn` calling the key "the audit log" (seventeenth pass).
    let key = crate::audit::key_path(path);
    if let Ok(m) = std::fs::symlink_metadata(&key) {
        if !m.is_file() {
            let mut what = crate::sys::not_a_regular_file_of(&m).to_string();
            if let Ok(target) = std::fs::read_link(&key) {
                what.push_str(&format!(" to {}", target.display()));
            }
            r.fail(
                "audit",
                format!(
                    "{} is {what}: the log's HMAC key is a regular file (32 bytes), and `serve` refuses anything else at that path; remove it and put the key back from a backup; if it is lost for good and the log holds records, start the daemon once with `--new-audit-key` (docs/audit.md, \"The HMAC key\")",
                    key.display(),
                ),
            );
            return;
        }
    }
    // A user other than the daemon's may not be allowed to read its log: nothing to judge.
    if let Err(e) = crate::sys::open_regular(path, true) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            r.warn(
                "audit",
                format!(
                    "{shown}: this user cannot read it ({e}): run doctor as the daemon's user{} or root to verify it",
                    daemon_uid.map(|u| format!(" (uid {u})")).unwrap_or_default()
                ),
            );
            return;
        }
    }
    let checked = match crate::audit::verify_against_anchor(path) {
        Ok(c) => c,
        Err(e) => {
            r.fail("audit", format!("{e}"));
            return;
        }
    };
    // What `serve` says when it refuses the log, with its fix.
    let refused = |m: &crate::audit::AnchorGap| crate::audit::AuditError::Gap {
        path: path.to_owned(),
        why: m.refusal(&crate::audit::anchor_path(path)),
    };
    // A log empty (or missing) under an anchor naming records: the start looks beside it for
    // the file a rotation moved it to, and continues it or is refused saying what it saw
    // (the same search: `crate::audit::moved_log`). It was called a cut tail here, though the
    // start continued the moved file (twenty-third pass's review).
    // So does a start under an anchor whose new file is still to be begun (no gap then): the
    // file a rotation moved away after that file's first batch is looked for too.
    if checked.chain.as_ref().is_none_or(|c| c.lines == 0) {
        match crate::audit::moved_log(path, daemon_uid) {
            crate::audit::MovedLog::Continues {
                path: moved,
                last_seq,
                ..
            } => {
                // Its key missing, the start is refused as for a log that holds records, and
                // named so here, with serve's advice (it was `ok`, and the start made a new
                // key silently: twenty-fifth pass, found by the attacker of advice).
                if matches!(std::fs::symlink_metadata(&key), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
                {
                    let e = crate::audit::AuditError::KeyMissing {
                        path: path.to_owned(),
                        key: key.clone(),
                    };
                    r.fail(
                        "audit",
                        format!(
                            "{e}: `serve` refuses to start (its records up to seq {last_seq} are in {}, moved there by a rotation; docs/audit.md, \"The HMAC key\")",
                            moved.display()
                        ),
                    );
                    return;
                }
                r.ok(
                    "audit",
                    format!(
                        "{shown} is {}: a rotation moved the log away before the daemon noticed; its records up to seq {last_seq} are in {}, which the next start continues (the new file begins with an `audit.rotate` record; docs/audit.md, \"Rotation\")",
                        if checked.chain.is_some() { "empty" } else { "missing" },
                        moved.display()
                    ),
                );
                return;
            }
            crate::audit::MovedLog::Refused(why) if checked.gap.is_some() => {
                let Some(m) = &checked.gap else { return };
                // Worded as the start's refusal.
                let e = crate::audit::AuditError::Gap {
                    path: path.to_owned(),
                    why: format!("{}; {why}", m.refusal(&crate::audit::anchor_path(path))),
                };
                r.fail(
                    "audit",
                    match checked.chain {
                        Some(_) => e.to_string(),
                        None => format!(
                            "{shown} does not exist, but its anchor says records were written; `serve` refuses to start: {e} (docs/audit.md, \"The anchor\")"
                        ),
                    },
                );
                return;
            }
            crate::audit::MovedLog::Unterminated(why) => {
                let e = crate::audit::AuditError::MovedUnterminated {
                    path: path.to_owned(),
                    why,
                };
                r.fail("audit", format!("`serve` refuses to start: {e}"));
                return;
            }
            crate::audit::MovedLog::NotMoved | crate::audit::MovedLog::Refused(_) => {}
        }
    }
    let Some(chain) = checked.chain else {
        if let Some(m) = &checked.gap {
            r.fail(
                "audit",
                format!(
                    "{shown} does not exist, but its anchor says records were written; `serve` refuses to start: {} (docs/audit.md, \"The anchor\")",
                    refused(m)
                ),
            );
            return;
        }
        // `serve` creates the log's missing directories (0700): judge the nearest directory
        // that exists, where the first of them would be made. It judged `/` instead, and told
        // a newcomer on a fresh HOME that `~/.local/state/scopevault` "is not writable by this
        // user: run the daemon as its owner" (nineteenth pass).
        let dir = path.parent().unwrap_or(Path::new("."));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let existing = dir
            .ancestors()
            .find(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_ok())
            .unwrap_or(Path::new("/"));
        let writable = rustix::fs::access(
            existing,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .is_ok();
        match (writable, existing == dir) {
            (true, true) => r.ok(
                "audit",
                format!("{shown} does not exist yet: the daemon creates it"),
            ),
            (true, false) => r.ok(
                "audit",
                format!(
                    "{shown} does not exist yet, and {} does not exist yet either: the daemon creates them (in {}, which this user may write)",
                    dir.display(),
                    existing.display()
                ),
            ),
            (false, _) => r.warn(
                "audit",
                format!("{shown} does not exist and {} is not writable by this user: run the daemon as its owner, or give --audit PATH", existing.display()),
            ),
        }
        return;
    };
    if rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_err() {
        r.warn(
            "audit",
            format!(
                "{shown} is not writable by this user (fine if the daemon runs as another user)"
            ),
        );
    }
    // `serve` refuses a log with records whose key is gone or damaged (docs/audit.md, "The
    // HMAC key"): judged only where this user may read the key, as the daemon does.
    if chain.lines > 0 {
        match crate::audit::AuditKey::load(path) {
            Ok(k) => {
                // Another key than the chain's, as the anchor records it or, with no anchor,
                // the log's newest record naming its key: `serve` refuses it, by the same
                // judgement (twenty-seventh pass: taken silently, and doctor said ok;
                // twenty-ninth: doctor compared with the anchor only).
                let log = crate::sys::open_regular(path, true);
                let len = log
                    .as_ref()
                    .ok()
                    .and_then(|f| f.metadata().ok())
                    .map_or(0, |m| m.len());
                match k.other_chain_key(path, checked.anchor.as_ref(), log.as_ref().ok(), len) {
                    Ok(Some((chain, origin))) => {
                        let e = crate::audit::AuditError::KeyMismatch {
                            key: key.clone(),
                            found: k.fingerprint(),
                            chain,
                            recorded_in: origin,
                        };
                        r.fail("audit", format!("`scopevault serve` refuses to start: {e}"));
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => r.warn(
                        "audit",
                        format!("{shown}: cannot read back the key its records name: {e}"),
                    ),
                }
            }
            Err(crate::audit::AuditError::KeyOpen { message, .. })
                if std::fs::symlink_metadata(&key).is_err() =>
            {
                r.fail(
                    "audit",
                    format!(
                        "{} is missing ({}), and the log holds records: `serve` refuses to start; restore the key from backup, or start it once with `--new-audit-key`, which records the new key in the chain (docs/audit.md, \"The HMAC key\")",
                        key.display(),
                        message
                    ),
                );
                return;
            }
            Err(e @ crate::audit::AuditError::BadKey { .. }) => {
                r.fail("audit", format!("{e}: `serve` refuses to start"));
                return;
            }
            Err(e) => r.warn(
                "audit",
                format!("cannot read the key: {e} (fine if the daemon runs as another user)"),
            ),
        }
    }
    // A last line cut within, below a later anchored seq, is a cut tail: named as `serve`
    // names it, not as the incomplete final line a crash in the middle of an append leaves
    // (twenty-first pass).
    let cut_within = checked.gap.as_ref().is_some_and(|g| g.is_cut_within());
    if let (Some(whole), None) = (&checked.line_end_missing, &checked.gap) {
        // The anchored record whole but for its newline: nothing is missing, and `serve`
        // completes the line at start (twenty-second pass: named a cut tail).
        r.warn(
            "audit",
            format!(
                "{shown}: {}",
                whole.describe_line_end_missing(&crate::audit::anchor_path(path))
            ),
        );
    } else if let (Some(bad), false) = (chain.first_bad, cut_within) {
        r.fail(
            "audit",
            format!("{shown}: chain broken at line {}: {}; keep the file as evidence, see docs/audit.md", bad.line, bad.why),
        );
    } else if let Some(m) = &checked.gap {
        r.fail("audit", format!("{}", refused(m)));
    } else if !chain.gaps.is_empty() {
        // Seqs the chain skips at the daemon's `audit.gap` records (a cut under the daemon, or
        // a cut tail accepted at start): the file verifies, but records are missing, as
        // `audit verify` names them. Said `ok` until the re-attacker of the twenty-fifth
        // pass's fixes.
        let mut shown_gaps = chain
            .gaps
            .iter()
            .take(5)
            .map(|g| format!("{}..={} (line {})", g.first, g.last, g.line))
            .collect::<Vec<_>>()
            .join(", ");
        if chain.gaps.len() > 5 {
            shown_gaps.push_str(&format!(" and {} more gaps", chain.gaps.len() - 5));
        }
        r.warn(
            "audit",
            format!(
                "{shown}: {} record(s) verify, but records {} are missing: the `audit.gap` record there says why (the file cut back under the daemon, or a cut tail accepted with `serve --accept-audit-gap`); keep the file as evidence of it, and `scopevault audit verify` names them; head {}",
                chain.lines,
                shown_gaps,
                chain.head
            ),
        );
    } else if checked.anchor.is_none() && chain.last_seq > 0 {
        // Records and no anchor of them in the state directory: `serve` refuses to start, and
        // this said "ok … no anchor yet" (twenty-seventh pass, found by its attacker of
        // multi-admin work and backups: a log restored from backup without the state
        // directory).
        let e = crate::audit::AuditError::NoAnchor {
            path: path.to_owned(),
            state_dir: crate::paths::state_dir(),
            last: chain.last_seq,
        };
        r.fail(
            "audit",
            format!(
                "`scopevault serve` refuses to start: {e}; {} record(s) verify; head {}",
                chain.lines, chain.head
            ),
        );
    } else {
        r.ok(
            "audit",
            format!(
                "{shown}: {} record(s) verify{}; head {} (compare with the head you recorded elsewhere)",
                chain.lines,
                match &checked.anchor {
                    Some(a) => format!(", up to the anchored seq {}", a.seq),
                    None => format!(
                        ", no anchor yet ({} does not exist)",
                        crate::audit::anchor_path(path).display()
                    ),
                },
                chain.head
            ),
        );
    }
}

/// The state directory (rollback record, anchors, applied records), as the writers check it,
/// and the generation its rollback record holds for this vault against the file's.
/// The state directory and what its rollback record holds for the vault. `other_vault`: the
/// file authenticated with its own key, but the record binds its id to another vault's
/// (the open refused it): the generation recorded is that vault's, not this file's.
/// Run as root: why the daemon's user (the vault file's owner, as in the documented layout)
/// cannot use the state directory `dir`, when it cannot (it is another user's). A root
/// command recreates a lost state directory as root's, mode 0700, and the daemon's start then
/// fails; doctor said `ok state` (twenty-seventh pass, found by the attacker of multi-admin
/// work and backups).
fn daemon_user_locked_out(dir: &Path, vault: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let owner = std::fs::metadata(vault).ok()?.uid();
    let d = std::fs::metadata(dir).ok()?;
    // Another user's directory is refused by a daemon not of root's whatever its mode, and one
    // its group or others may write is refused by everyone (docs/operations.md, "The state
    // directory").
    if owner == 0 || d.uid() == owner {
        return None;
    }
    Some(format!(
        "{} is uid {}'s (mode {:04o}), but the vault file is uid {owner}'s, the daemon's user in the documented layout: a daemon running as uid {owner} cannot use this state directory, and its start fails (a command run as root recreates a lost state directory as root's). Give it back: `chown -R {owner} {}` (the systemd unit's StateDirectory= does it at each start); a daemon run as root needs nothing (docs/operations.md, \"Restore\")",
        dir.display(),
        d.uid(),
        d.mode() & 0o7777,
        crate::advice::shell_quoted(&dir.to_string_lossy())
    ))
}

fn check_state(
    r: &mut Report,
    file: Option<&FileHeader>,
    other_vault: bool,
    vault: &Path,
    daemon_uid: Option<u32>,
) {
    let dir = crate::paths::state_dir();
    let shown = dir.display();
    // Only a directory that is not there "does not exist yet": one this user may not reach
    // (a daemon's own, of another user) is judged below (it was said not to exist).
    if std::fs::symlink_metadata(&dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        r.warn(
            "state",
            format!("{shown} does not exist yet: the first open of the vault on this machine creates it and records the vault's generation there (rollback detection starts then; docs/security.md, \"Trust on first use\")"),
        );
        return;
    }
    if let Err(e) = crate::vault::SafeDir::open(&dir, false) {
        // A daemon of another user answered: a directory this user may not open, or one of
        // the daemon's own (not writable by group or others), is the daemon's to judge, not
        // a refusal (twenty-seventh pass: a second admin's doctor failed it).
        let meta = std::fs::symlink_metadata(&dir).ok();
        let denied = std::fs::read_dir(&dir)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
        let daemons = |uid: u32| {
            meta.as_ref()
                .is_some_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0)
        };
        if let Some(uid) = daemon_uid.filter(|&u| denied || daemons(u)) {
            r.warn(
                "state",
                format!(
                    "{shown}: this user cannot check it as the writers do ({e}); the daemon answering runs as uid {uid}{}: run doctor as the daemon's user or root to check its state directory",
                    if daemons(uid) { ", which owns it" } else { "" }
                ),
            );
            return;
        }
        r.fail(
            "state",
            format!("every command that opens the vault, and `serve`, refuse it: {e}"),
        );
        return;
    }
    if let Some(why) = daemon_user_locked_out(&dir, vault) {
        r.warn("state", why);
    }
    let Some(file) = file else {
        r.ok("state", format!("{shown}: checked as the writers check it"));
        return;
    };
    if other_vault {
        r.fail(
            "state",
            format!(
                "{shown} records another vault (another vault key) under vault id {}…: its generation is that vault's, and every command and `serve` refuse this file (the vault line says what to do)",
                short_id(&file.vault_id)
            ),
        );
        return;
    }
    match crate::vault::recorded_generation(&file.vault_id) {
        Err(e) => r.fail(
            "state",
            format!("the rollback record cannot be read, so every open of the vault fails: {e}"),
        ),
        Ok(Some(seen)) if seen > file.generation => r.fail(
            "state",
            format!(
                "the vault file is generation {}, older than generation {seen} recorded in {shown}: every command and `serve` refuse it as a rollback; put the newest copy back, or, restored on purpose, adopt this one with a command that saves, given `--allow-rollback` (docs/operations.md, \"Restore\")",
                file.generation
            ),
        ),
        // The record behind the file: a save whose record update failed (twenty-fifth pass,
        // found by the attacker of advice: doctor said `ok state` then, and the copy of the
        // previous generation put back opened with no flag). Until an open raises it, every
        // older copy above the recorded generation is accepted.
        Ok(Some(seen)) if seen < file.generation => r.warn(
            "state",
            format!(
                "the vault file is generation {}, above generation {seen} recorded in {shown} for vault {}…: the record lags the file (a save whose record update failed?), so a copy of an older generation above {seen} put back is accepted as if current; run one command that opens the vault (e.g. `{}`), which records the file's generation",
                file.generation,
                short_id(&file.vault_id),
                crate::advice::command("cred list"),
            ),
        ),
        Ok(Some(seen)) => r.ok(
            "state",
            format!("{shown}: generation {seen} recorded for vault {}…", short_id(&file.vault_id)),
        ),
        Ok(None) => r.warn(
            "state",
            format!(
                "{shown} records no generation for vault {}… yet: rollback detection starts at its first open on this machine",
                short_id(&file.vault_id)
            ),
        ),
    }
}

/// The locations applied here (`fleet-locations-*.json` beside the applied record, with the
/// record's entries), as a move (`bundle apply --from-location`) judges them: a file that
/// cannot be read refuses every move, and the admin learnt it only at the move (thirty-second
/// pass). No line when nothing was applied here, nor when this user may not open the state
/// directory (its own line says so).
fn check_locations(r: &mut Report, vault: &Path, file: &FileHeader) {
    if crate::vault::SafeDir::open(&crate::paths::state_dir(), false).is_err() {
        return;
    }
    let record = crate::fleet::health::read_record(vault).ok().flatten();
    match crate::fleet::health::locations_here(vault, &file.vault_id, record.as_ref()) {
        Err(e) => r.warn(
            "locations",
            format!(
                "{}: {}",
                crate::text::escape_for_terminal(&e),
                crate::fleet::health::LOCATIONS_UNREADABLE
            ),
        ),
        Ok(l) if l.is_empty() => {}
        Ok(l) => r.ok(
            "locations",
            format!(
                "applied here: {} (a move back, `bundle apply --from-location`, is judged by them)",
                crate::fleet::health::locations_shown(&l)
            ),
        ),
    }
}

/// The vault file against the generation the audit chain has recorded of its vault (its
/// anchor and its `vault.load` records), as `serve` judges its start: a vault file and state
/// directory restored together from a backup pass the rollback record, and only the log kept
/// says a newer generation was loaded (twenty-third pass: doctor said ok, and `serve` served
/// it). A `fail` then, and nothing otherwise (the `state` and `audit` lines say the rest).
fn check_chain_generation(r: &mut Report, log: &Path, file: Option<&FileHeader>) {
    let Some(file) = file else {
        return;
    };
    // Never opened when it is not a regular file: the `audit` line says what it is.
    if std::fs::symlink_metadata(log).is_ok_and(|m| !m.is_file()) {
        return;
    }
    // A log that cannot be read: the `audit` line says so.
    let Ok(seen) = crate::audit::chain_generation(log, &file.vault_id) else {
        return;
    };
    if seen > file.generation {
        r.fail(
            "vault",
            format!(
                "the vault file is generation {}, older than generation {seen} the audit chain of {} has recorded of this vault: `serve` refuses it as a rollback; put the newest copy back, or, restored on purpose, adopt this one with a command that saves, given `--allow-rollback` (docs/operations.md, \"Restore\")",
                file.generation,
                log.display()
            ),
        );
    }
}

/// TOTP codes are only right with the right time: a clock before this build or far in the
/// future is wrong, and so is one behind the newest record of this host's audit log or far
/// past it ([`clock_against_log`]).
fn check_clock(r: &mut Report, log: &Path) {
    let now = time::OffsetDateTime::now_utc();
    // 2025-01-01: no correct clock is earlier than code written after it.
    if now.unix_timestamp() < 1_735_689_600 || now.year() > 2100 {
        r.fail(
            "clock",
            format!("the system time is {now}: TOTP codes will be wrong; set the time (timedatectl set-ntp true)"),
        );
        return;
    }
    match clock_against_log(now, log) {
        Ok(Some(off)) => r.warn("clock", off.to_string()),
        Ok(None) => r.ok(
            "clock",
            format!(
                "{} UTC (TOTP needs it within 30 s of the server's: keep NTP on)",
                now.date()
            ),
        ),
        Err(why) => r.ok(
            "clock",
            format!(
                "{} UTC (TOTP needs it within 30 s of the server's: keep NTP on); not compared with the audit log's newest record: {why}",
                now.date()
            ),
        ),
    }
}

/// The clock against the newest record of the audit log at `log` (its last line only, never
/// the whole log; an empty log's moved file the start would continue, [`crate::audit::moved_log`]): `Some` when it is behind it or far past it (twenty-fourth pass, found by
/// the attacker of evidence from the audit trail: `ok` for a clock a year behind this host's
/// own log). `Ok(None)` also with no log or no record; `Err` says why the log could not say
/// (the `audit` line reports the log itself).
fn clock_against_log(
    now: time::OffsetDateTime,
    log: &Path,
) -> Result<Option<crate::audit::ClockVsLog>, String> {
    let newest = match crate::audit::newest_record_time(log) {
        Ok(Some(newest)) => newest,
        // Empty, or missing, after a rotation `serve` did not see: the newest record is in the
        // moved file the next start continues (twenty-fourth pass, found by its attacker of
        // this pass's fixes: a plain `ok` then, with no word of the comparison not made).
        Ok(None) => match crate::audit::moved_log(log, None) {
            crate::audit::MovedLog::NotMoved => return Ok(None),
            crate::audit::MovedLog::Continues { path, .. } => {
                match crate::audit::newest_record_time(&path) {
                    Ok(Some(newest)) => newest,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(e.to_string()),
                }
            }
            crate::audit::MovedLog::Refused(_) | crate::audit::MovedLog::Unterminated(_) => {
                return Err("the log is empty after a move, and the file the start would continue is not settled (the `audit` line says why)".into())
            }
        },
        Err(e) => return Err(e.to_string()),
    };
    Ok(crate::audit::ClockVsLog::judge(now, newest))
}

/// The memory-lock limit doctor calls enough: the daemon locks all its memory, later
/// allocations included (`MCL_FUTURE`), so once locked every allocation counts against the
/// limit, an unlock's Argon2 memory too: the most a passphrase slot may ask (1 GiB,
/// vault-format.md), beside as much again for the daemon's own address space (its binary,
/// thread stacks and allocator arenas count whole, touched or not). Unlimited (the shipped
/// unit's `LimitMEMLOCK=infinity`) or `CAP_IPC_LOCK` needs no figure.
const MEMLOCK_ENOUGH: u64 = 2 * (crate::vault::KdfParams::MAX.m_kib as u64) * 1024;

/// `mlockall` needs RLIMIT_MEMLOCK room (or CAP_IPC_LOCK), judged for the daemon: its own
/// process when doctor found it (`/proc/PID/limits` and `status`), else this process when the
/// daemon's uid is this user's (a daemon started here gets these limits); a daemon of another
/// uid that doctor cannot see is not judged, and that is said. A finite limit below
/// [`MEMLOCK_ENOUGH`] is a `warn`: below the daemon's size its lock fails (secrets may reach
/// swap), above it an unlock whose key derivation does not fit beside the daemon is refused
/// (it was `ok` from 64 MiB, the old unit's figure, under which an unlock killed the daemon:
/// nineteenth pass).
fn check_mlock(r: &mut Report, daemon: &DaemonProc) {
    let need = MEMLOCK_ENOUGH;
    let too_little = "every allocation of a daemon that locked its memory counts against it: below the daemon's size the lock fails and secrets may reach swap, above it an unlock whose key derivation (64 MiB for a slot `init` makes, up to 1 GiB) does not fit is refused";
    // No daemon runs: there is no daemon's limit to judge, and this process's is the one a
    // daemon gets only when started from this shell (systemd's unit sets its own). It was
    // `ok`, judged from this process as if that were the daemon's (eighteenth pass).
    if let Some(why) = &daemon.stopped {
        let here = match crate::sys::memlock_room(None) {
            _ if daemon.uid != crate::sys::current_uid() => String::new(),
            Ok(room) if room.cap_ipc_lock => {
                "; started from this shell it would have CAP_IPC_LOCK, as this process has"
                    .to_owned()
            }
            Ok(room) => match room.limit {
                None => "; started from this shell it would get this process's RLIMIT_MEMLOCK, unlimited".to_owned(),
                Some(l) if l >= need => format!(
                    "; started from this shell it would get this process's RLIMIT_MEMLOCK of {}, enough",
                    crate::sys::memory_amount(l)
                ),
                Some(l) => format!(
                    "; started from this shell it would get this process's RLIMIT_MEMLOCK of {}, too little ({too_little}; `ulimit -l unlimited`)",
                    crate::sys::memory_amount(l)
                ),
            },
            Err(_) => String::new(),
        };
        r.warn(
            "mlock",
            format!(
                "not checked: no daemon runs ({why}), and the limit that counts is the one the daemon starts with{here}; under systemd its unit sets it (LimitMEMLOCK=infinity); run `{}` again while the daemon runs",
                crate::advice::command("doctor")
            ),
        );
        return;
    }
    let (room, whose) = match daemon.pid {
        Some(pid) => (
            crate::sys::memlock_room(Some(pid)),
            format!("judged for uid {} ({})", daemon.uid, daemon.how),
        ),
        None if !daemon.guessed && daemon.uid == crate::sys::current_uid() => (
            crate::sys::memlock_room(None),
            format!(
                "judged for uid {} ({}) from this process, whose limits a daemon started here inherits",
                daemon.uid, daemon.how
            ),
        ),
        None if daemon.guessed => {
            r.warn(
                "mlock",
                format!(
                    "not judged: the daemon's uid is {}; if its log says `mlockall failed`, raise RLIMIT_MEMLOCK where it starts (LimitMEMLOCK=infinity in the systemd unit, `ulimit -l unlimited`)",
                    daemon.how
                ),
            );
            return;
        }
        None => {
            r.warn(
                "mlock",
                format!(
                    "not judged: the daemon's uid is {} ({}), not this user's, and its process is not visible here to read its limit from; if its log says `mlockall failed`, raise RLIMIT_MEMLOCK where it starts (LimitMEMLOCK=infinity in the systemd unit, `ulimit -l unlimited`)",
                    daemon.uid, daemon.how
                ),
            );
            return;
        }
    };
    match room {
        Err(e) => r.warn(
            "mlock",
            format!("cannot read the memory-lock limit: {e}; {whose}"),
        ),
        Ok(room) if room.cap_ipc_lock => r.ok(
            "mlock",
            format!("CAP_IPC_LOCK: the daemon can lock its memory; {whose}"),
        ),
        Ok(room) if room.limit.is_none_or(|l| l >= need) => r.ok(
            "mlock",
            match room.limit {
                None => format!("RLIMIT_MEMLOCK unlimited; {whose}"),
                Some(l) => format!("RLIMIT_MEMLOCK {}; {whose}", crate::sys::memory_amount(l)),
            },
        ),
        Ok(room) => r.warn(
            "mlock",
            format!(
                "RLIMIT_MEMLOCK is {}, too little: {too_little}; raise it (LimitMEMLOCK=infinity in the systemd unit, `ulimit -l unlimited`) or grant CAP_IPC_LOCK; {whose}",
                crate::sys::memory_amount(room.limit.unwrap_or(0))
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_are_told_apart_by_their_names() {
        let log = b"audit.jsonl";
        for n in [
            "audit.jsonl.20261129T200000Z",
            "audit.jsonl.20261129T200000Z-1",
            "audit.jsonl.20261129T200000Z.gz",
        ] {
            assert_eq!(
                rotated_by(log, n.as_bytes()),
                Some(Rotated::ByScopevault),
                "{n}"
            );
        }
        for n in [
            "audit.jsonl.1",
            "audit.jsonl.52.gz",
            "audit.jsonl-20261202",
            "audit.jsonl-20261202.gz",
            "audit.jsonl.2026-12-02",
        ] {
            assert_eq!(
                rotated_by(log, n.as_bytes()),
                Some(Rotated::ByLogrotate),
                "{n}"
            );
        }
        for n in [
            "audit.jsonl",
            "audit.jsonl.key",
            "audit.jsonl.journal",
            "audit.jsonl.",
            "audit.jsonl.bak",
            "audit.jsonl1",
            "other.1",
        ] {
            assert_eq!(rotated_by(log, n.as_bytes()), None, "{n}");
        }
    }
}
