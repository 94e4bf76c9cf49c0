//! `scopevault cred add|set|list|show|rm`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use serde_json::json;

use super::args::{CredAddArgs, CredCommand, CredSetArgs, GlobalArgs, SecretInputArgs};
use super::escape_for_terminal;
use super::unlock::{
    open_vault, open_vault_to_read, prompt, read_secret_file, read_secret_stdin, vault_path,
};
use crate::secret::SecretString;
use crate::vault::{self, validate_field_key, validate_name, Credential, Vault, WriteLock};

pub(crate) fn run(g: &GlobalArgs, cmd: &CredCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CredCommand::Add(a) => add(g, a),
        CredCommand::Set(a) => set(g, a),
        CredCommand::List { json } => list(g, *json),
        CredCommand::Show { name, json } => show(g, name, *json),
        CredCommand::Rm { name } => rm(g, name),
        CredCommand::Import(a) => super::import::run(g, a),
    }
}

/// Parse `KEY=VALUE` plain fields, refusing keys that are secret for `kind` (its schema) or
/// look secret for any kind: those belong in --secret. `kind` is `None` when it is not known
/// yet (`cred set` before the vault is open: checked again with the stored kind).
fn parse_fields(
    raw: &[String],
    kind: Option<crate::policy::CredentialKind>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for f in raw {
        let Some((k, v)) = f.split_once('=') else {
            bail!("--field expects KEY=VALUE (got a value without `=`)");
        };
        validate_field_key(k)?;
        refuse_secret_field(k, kind)?;
        vault::validate_field_value(k, v).map_err(|e| anyhow::anyhow!("--field {k}: {e}"))?;
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            // As a secret given twice is: the last one silently won (twenty-fourth pass).
            bail!("field `{k}` is given twice: give each --field once; nothing was stored");
        }
    }
    Ok(out)
}

/// Refuse a name given both as a `--field` and as a secret (`--secret`, `--secret-file`),
/// before any secret is read: a field name holds one value, plain or secret
/// ([`vault::field_in_both`]).
fn refuse_field_and_secret(
    fields: &BTreeMap<String, String>,
    a: &SecretInputArgs,
) -> anyhow::Result<()> {
    let secret_keys = a.secrets.iter().map(String::as_str).chain(
        a.secret_files
            .iter()
            .filter_map(|s| Some(s.split_once('=')?.0)),
    );
    for k in secret_keys {
        if fields.contains_key(k) {
            bail!("`{k}` is given both as --field and as a secret: a field name holds one value, plain or secret; give it once; nothing was read");
        }
    }
    Ok(())
}

/// Refuse a plain `--field` whose key is secret: in `kind`'s schema, in the known secret
/// names, or named like a secret.
fn refuse_secret_field(k: &str, kind: Option<crate::policy::CredentialKind>) -> anyhow::Result<()> {
    if vault::is_secret_field_name(k, kind) {
        // The value is already in argv (visible in ps); say so, and never echo it back.
        bail!("`{k}` is a secret field (by its name or the credential kind's schema): it cannot be given with --field (arguments are visible to other users in ps). Use --secret {k} (prompt or stdin) or --secret-file {k}=PATH, and consider the value exposed");
    }
    Ok(())
}

/// Check the names given with `--secret`, before anything is unlocked or read. An argument
/// that is not a field name may be the secret itself, typed by mistake (`password=VALUE`, the
/// form `--field` takes, or the value where the name goes): it is in argv now, visible to
/// other users in ps. Refused as `--field password=…` is: without quoting it (nothing after
/// `=`, nothing of a name that is not one), and saying to consider the value exposed. The
/// shared name check quoted it: `invalid name "password=VALUE"` (eighteenth pass).
fn check_secret_names(a: &SecretInputArgs) -> anyhow::Result<()> {
    for k in &a.secrets {
        if let Some((name, _)) = k.split_once('=') {
            let alone = if validate_field_key(name).is_ok() {
                format!("--secret {name}")
            } else {
                "the field's name alone with --secret".to_owned()
            };
            bail!("--secret takes a field name, not KEY=VALUE: a secret value is read from the prompt, stdin or --secret-file, never from the arguments (visible to other users in ps). Give {alone}, and consider the value typed after `=` exposed; nothing was stored");
        }
        if validate_field_key(k).is_err() {
            bail!("--secret takes a field name ({}); the argument given is not one and is not shown, in case it is a secret value typed by mistake: if it is, it is in argv (visible to other users in ps), so consider it exposed; nothing was stored", vault::FIELD_NAME_RULE);
        }
    }
    Ok(())
}

/// Refuse, before any secret is read, a secret other than the seed (`totp_seed`, `otpauth`)
/// given for a `totp` credential (`kinds`: the kind given or stored, and the one the applied
/// policy declares): it holds only its seed, and its runners get codes, never a secret.
/// `cred add --kind totp --secret seed` was stored in silence, and the seed went to every
/// runner beside the code once `totp_seed` was set too (twenty-eighth pass, found by the
/// attacker of a long-running daemon). Names the field, never a value.
fn refuse_beside_seed(
    name: &str,
    kinds: &[Option<crate::policy::CredentialKind>],
    a: &SecretInputArgs,
) -> anyhow::Result<()> {
    if !kinds.contains(&Some(crate::policy::CredentialKind::Totp)) {
        return Ok(());
    }
    let keys = a.secrets.iter().map(String::as_str).chain(
        a.secret_files
            .iter()
            .filter_map(|s| Some(s.split_once('=')?.0)),
    );
    if let Some(k) = vault::secret_beside_seed(keys) {
        bail!("{}; nothing was read", vault::beside_seed_message(name, k));
    }
    Ok(())
}

/// Refuse to read both the vault's passphrase and a secret from a stdin that is not a terminal
/// (`--passphrase-fd 0`, or `--passphrase-file /dev/stdin`, with `--secret` or a
/// `--secret-file` that is stdin): one of them would get the other's bytes, and the vault's
/// passphrase was stored as the secret and handed to the task's runners (found by attacking
/// the admin CLI, fourteenth pass).
fn refuse_stdin_twice(g: &GlobalArgs, a: &SecretInputArgs) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if std::io::stdin().is_terminal() {
        return Ok(());
    }
    let id = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let Some(stdin) = id(std::path::Path::new("/proc/self/fd/0")) else {
        return Ok(());
    };
    let is_stdin = |p: &std::path::Path| id(p) == Some(stdin);
    let passphrase = g.unlock.passphrase_fd.is_some_and(|fd| {
        fd == 0 || is_stdin(std::path::Path::new(&format!("/proc/self/fd/{fd}")))
    }) || g.unlock.passphrase_file.as_deref().is_some_and(is_stdin);
    let secret = !a.secrets.is_empty()
        || a.secret_files
            .iter()
            .filter_map(|s| s.split_once('='))
            .any(|(_, p)| is_stdin(std::path::Path::new(p)));
    if passphrase && secret {
        bail!("the vault's passphrase and the secret would both be read from stdin: give the passphrase with --passphrase-file FILE (not stdin) or --identity-file, or the secret with --secret-file KEY=PATH; nothing was read");
    }
    Ok(())
}

/// Read every secret named by --secret / --secret-file. Done before the vault is locked for
/// writing, so a slow prompt does not hold other writers up.
fn read_secrets(a: &SecretInputArgs) -> anyhow::Result<BTreeMap<String, SecretString>> {
    check_secret_names(a)?;
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for s in &a.secret_files {
        let Some((k, p)) = s.split_once('=') else {
            bail!("--secret-file expects KEY=PATH");
        };
        files.push((k.to_owned(), PathBuf::from(p)));
    }
    let mut keys: Vec<&str> = a.secrets.iter().map(String::as_str).collect();
    keys.extend(files.iter().map(|(k, _)| k.as_str()));
    for (i, k) in keys.iter().enumerate() {
        validate_field_key(k)?;
        if keys[..i].contains(k) {
            bail!("secret `{k}` is given twice");
        }
    }
    if vault::holds_both_totp_seeds(keys.iter().copied()) {
        // Before anything is read: two TOTP seeds for one credential, and codes come from one.
        bail!("`totp_seed` and `otpauth` are both given: a credential holds one TOTP seed, as base32 `totp_seed` or as an `otpauth` URI, never both; give the one in use; nothing was read");
    }
    let mut out = BTreeMap::new();
    if !a.secrets.is_empty() {
        if std::io::stdin().is_terminal() {
            for k in &a.secrets {
                let v = prompt(&format!("{k}: "))?;
                out.insert(k.clone(), v);
            }
        } else if a.secrets.len() == 1 {
            out.insert(a.secrets[0].clone(), read_secret_stdin()?);
        } else {
            bail!("stdin is not a terminal, so it can carry only one secret: use --secret-file KEY=PATH for the others");
        }
    }
    for (k, p) in files {
        let v = read_secret_file(&p)?;
        out.insert(k, v);
    }
    for (k, v) in &out {
        if v.is_empty() {
            bail!("secret `{k}` is empty: nothing was stored");
        }
        // A TOTP seed that cannot produce a code would only fail at fetch time, on the
        // checkpoint: refuse it here. TotpError never quotes the seed.
        // Under 80 bits is refused, under 128 warned of (RFC 4226, section 4).
        if matches!(k.as_str(), "totp_seed" | "otpauth") {
            match crate::agent::totp::check_new_seed(k, v) {
                Err(e) => {
                    bail!("secret `{k}` is not a usable TOTP secret: {e}; nothing was stored")
                }
                Ok(Some(w)) => errln!("scopevault: warning: secret `{k}`: {w}"),
                Ok(None) => {}
            }
        }
    }
    Ok(out)
}

/// The note `cred set` and `cred import --update` print when a TOTP seed field replaced the
/// other one ([`Credential::set_secret`]).
pub(crate) fn replaced_note(name: &str, new: &str, old: &str) -> String {
    format!("note: credential {name} held its TOTP seed as `{old}`, which was removed: `{new}` replaces it (a credential holds one of `totp_seed` and `otpauth`)")
}

/// Warn, on stderr, about each secret holding a NUL byte: `exec` cannot pass it in an
/// environment variable (it refuses, naming the field), only with `--files`. Stored anyway:
/// a binary token is a fine file. Names the field, never the value.
fn warn_nul(cred: &str, secrets: &BTreeMap<String, SecretString>) {
    warn_nul_at("", cred, secrets.iter().map(|(k, v)| (k.as_str(), v)));
}

/// [`warn_nul`] for `cred import`, each row's line first (`at` = `row 3: `), so that every
/// way a secret enters the vault says so (an imported one did not, eighteenth pass).
pub(crate) fn warn_nul_at<'a>(
    at: &str,
    cred: &str,
    secrets: impl IntoIterator<Item = (&'a str, &'a SecretString)>,
) {
    for (k, v) in secrets {
        if v.expose().contains('\0') {
            errln!(
                "scopevault: warning: {at}{cred}.{k} holds a NUL byte: `exec` cannot pass it in an environment variable, only as a file with `exec --files`"
            );
        }
    }
}

fn add(g: &GlobalArgs, a: &CredAddArgs) -> anyhow::Result<ExitCode> {
    validate_name(&a.name)?;
    let fields = parse_fields(&a.fields, Some(a.kind))?;
    check_secret_names(&a.secrets)?;
    refuse_field_and_secret(&fields, &a.secrets)?;
    refuse_beside_seed(&a.name, &[Some(a.kind)], &a.secrets)?;
    for s in &a.scopes {
        crate::policy::Scope::parse(s).map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
    }
    let origins = a
        .origins
        .iter()
        .map(|o| check_origin(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    refuse_stdin_twice(g, &a.secrets)?;
    let secrets = read_secrets(&a.secrets)?;
    warn_nul(&a.name, &secrets);
    let path = vault_path(g);
    // Unlock (which may prompt) before taking the writer lock, then read the file again
    // under it: a slow prompt must not hold every other writer up.
    let unlocked = open_vault(g)?;
    let lock = WriteLock::acquire(&path)?;
    let mut vault = unlocked.reopen(&super::unlock::open_options(g))?;
    drop(unlocked);
    let mut cred = Credential::new(a.kind, vault::timestamp());
    cred.scopes = a.scopes.clone();
    cred.origins = origins;
    if let Some(decl) = vault.policy().and_then(|p| p.credential(&a.name)) {
        as_declared(&a.name, decl, &mut cred)?;
    }
    cred.fields = fields.into_iter().collect();
    cred.secrets = secrets.into_iter().collect();
    let n = cred.secrets.len();
    vault.add_credential(&a.name, cred)?;
    vault.save(&lock)?;
    super::fleet::warn_local_change(&vault);
    super::output::after_change(
        &format!("the credential {} was added and saved", a.name),
        outln!(
            "added credential {} ({}, {n} secret field(s))",
            a.name,
            a.kind
        ),
    )?;
    if n == 0 {
        // A secret piped in without `--secret KEY` was left unread (thirty-second pass, found by
        // the walk through a new admin's first day: `printf tok | cred add gh2 --kind token`
        // stored a token credential holding no token, and said only "0 secret field(s)").
        let stdin = if std::io::stdin().is_terminal() {
            ""
        } else {
            "; stdin was not read"
        };
        errln!(
            "note: credential {} holds no secret field: a secret is read only for a --secret KEY (from a no-echo prompt, or stdin when it is not a terminal) or a --secret-file KEY=PATH{stdin}; add one with `{}`",
            a.name,
            crate::advice::command(&format!("cred set {} --secret KEY", a.name))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `cred add` of a credential the applied policy declares: the entry gets the declaration's
/// kind, scopes and origins, as `policy apply` stores them. A `--kind` other than the declared
/// one, or `--scope`s or `--origin`s other than the declared ones, are refused, pointing at the
/// policy: `policy apply` is the one way to change a declaration. (`cred rm` and a new `cred
/// add --kind login --scope 'admin:*'` once stored a `totp` credential's seed as a `login`
/// whose seed the daemon handed out, twentieth pass, found by attacking who gets what.)
/// Without `--scope` or `--origin` the declared ones are taken.
fn as_declared(
    name: &str,
    decl: &crate::policy::CredentialDecl,
    cred: &mut Credential,
) -> anyhow::Result<()> {
    let given_scopes = !cred.scopes.is_empty();
    let given_origins = !cred.origins.is_empty();
    let differs = decl.stored_differences(cred.kind, &cred.scopes, &cred.origins);
    let mut conflicts = Vec::new();
    if differs.kind.is_some() {
        conflicts.push(format!("--kind {}", cred.kind));
    }
    if differs.scopes && given_scopes {
        conflicts.push("--scope".to_owned());
    }
    if differs.origins && given_origins {
        conflicts.push("--origin".to_owned());
    }
    let list = |v: Vec<&str>| format!("[{}]", v.join(", "));
    if !conflicts.is_empty() {
        bail!(
            "credential `{name}` is declared by the applied policy as kind `{}` with scopes {} and origins {}, and `cred add` stores it as declared, but the {} given {} from the declaration. Give --kind {} (and no --scope or --origin, or the declared ones), or change [credentials.{name}] in the policy file and run `{}` (the one way to change a declaration); nothing was stored",
            decl.kind(),
            list(decl.scopes()),
            list(decl.origins()),
            conflicts.join(" and "),
            if conflicts.len() == 1 { "differs" } else { "differ" },
            decl.kind(),
            crate::advice::command("policy apply POLICY")
        );
    }
    // The applied policy is canonical: its lists are sorted and without duplicates, as
    // `policy apply` stores them.
    cred.scopes = decl.scopes().into_iter().map(str::to_owned).collect();
    cred.origins = decl.origins().into_iter().map(str::to_owned).collect();
    Ok(())
}

/// An `--origin` as the policy writes origins (`scheme://host[:port]`, lowercase, no trailing
/// `/`), the rule `import` and the policy use. A URL with a user, path, query or fragment is
/// refused with the origin it names: those parts may hold a token, and `cred show` prints
/// origins.
fn check_origin(o: &str) -> anyhow::Result<String> {
    let http = |s: &str| s.starts_with("https://") || s.starts_with("http://");
    match crate::policy::normalise_origin(o) {
        Some(n) if http(&n) => Ok(n),
        _ => match super::import::origin_of_url(o) {
            Some(n) if o.len() <= 2048 => bail!(
                "--origin takes an origin only: give --origin {n} (a URL's user, path, query and fragment are not stored)"
            ),
            _ => bail!("--origin must be an http(s) origin such as https://shop.example.com: scheme://host[:port], a plain ASCII host and a port from 1 to 65535"),
        },
    }
}

fn set(g: &GlobalArgs, a: &CredSetArgs) -> anyhow::Result<ExitCode> {
    let fields = parse_fields(&a.fields, None)?;
    check_secret_names(&a.secrets)?;
    refuse_field_and_secret(&fields, &a.secrets)?;
    refuse_stdin_twice(g, &a.secrets)?;
    if a.secrets.secrets.is_empty() && a.secrets.secret_files.is_empty() && fields.is_empty() {
        bail!("nothing to set: give --secret KEY, --secret-file KEY=PATH or --field KEY=VALUE");
    }
    // Unlock first, then ask for the secret: a user answering prompts in order must never type
    // the vault passphrase into the secret's prompt. With a piped secret, the passphrase is
    // asked on the controlling terminal (as pass, gpg and ssh do).
    let unlocked = open_vault(g)?;
    // Opening a restored file with --allow-rollback saved it again: said even when the values
    // given change nothing.
    let adopted = super::unlock::adopted(&unlocked).then(|| unlocked.generation());
    if !unlocked.credentials().contains_key(&a.name) {
        // Before any secret is typed: a value for a credential that does not exist is lost.
        return Err(vault::VaultError::UnknownCredential(a.name.clone()).into());
    }
    // The kind stored and the one declared (the daemon hands it out as declared).
    let declared = unlocked
        .policy()
        .and_then(|p| p.credential(&a.name))
        .map(|d| d.kind());
    let stored = unlocked.credentials().get(&a.name).map(|c| c.kind);
    refuse_beside_seed(&a.name, &[stored, declared], &a.secrets)?;
    let secrets = read_secrets(&a.secrets)?;
    warn_nul(&a.name, &secrets);
    // Prompts are over: take the writer lock and re-read the file (another writer may have
    // saved meanwhile) with the key already in memory.
    let path = vault_path(g);
    let lock = WriteLock::acquire(&path)?;
    let mut vault = unlocked.reopen(&super::unlock::open_options(g))?;
    drop(unlocked);
    // `cred set` changes values only, never the kind, scopes or origins. A field is checked
    // against the schema of the kind stored and of the kind declared (the one the daemon
    // hands the credential out as), where they differ.
    if let Some(c) = vault.credentials().get(&a.name) {
        let declared = vault
            .policy()
            .and_then(|p| p.credential(&a.name))
            .map(|d| d.kind());
        for k in fields.keys() {
            refuse_secret_field(k, Some(c.kind))?;
            refuse_secret_field(k, declared)?;
        }
    }
    let now = vault::timestamp();
    let mut synced_from = None;
    let mut replaced = Vec::new();
    let (changed, fields_changed) = vault.update_credential(&a.name, |c| {
        // Secrets compared in constant time (`SecretString`'s `==`), never printed.
        // A secret replaces a plain field of its name and the other way round: a field name
        // holds one value (`--secret user` next to a plain `user` stored a second value,
        // twenty-fourth pass).
        let changed = c.set_secrets(secrets, now, &mut replaced);
        let fields_changed = c.set_fields(fields, now, &mut replaced);
        // The vault no longer holds what the source had: the next sync must see a credential
        // set by hand (and put the source's values back), not "unchanged". The source stays,
        // marked, so that sync still compares the version with the one synced last.
        if changed > 0 || fields_changed {
            synced_from = c.mark_set_by_hand(now).cloned();
        }
        (changed, fields_changed)
    })?;
    if changed == 0 && !fields_changed {
        // Every value given is the one stored: nothing is saved, so the generation does not
        // move, the daemon has nothing to reload, and a configuration-management run can tell
        // "no change" from a change by the report (`cred set` saved a new generation and said
        // "0 secret value(s) changed", twenty-fourth pass). The copy in memory, never saved,
        // has the file's id and generation.
        drop(lock);
        let report = format!(
            "credential {} unchanged: the value(s) given are the ones stored; nothing was saved",
            escape_for_terminal(&a.name)
        );
        return match adopted {
            Some(generation) => {
                super::client_cmds::print_after_save(
                    g,
                    &vault,
                    format!(
                        "{report}, but the {}\n",
                        super::unlock::adopted_note(generation)
                    ),
                    &format!("the restored vault was adopted and saved (generation {generation})"),
                )??;
                Ok(ExitCode::SUCCESS)
            }
            None => {
                outln!("{report}")?;
                Ok(ExitCode::SUCCESS)
            }
        };
    }
    vault.save(&lock)?;
    super::fleet::warn_local_change(&vault);
    // What changed form is said in the report itself: a field that became a secret, or
    // plain, lost its other value.
    let moved: String = replaced
        .iter()
        .filter_map(|(k, r)| match r {
            vault::Replaced::PlainField => Some(format!(
                "; field {k} is now a secret (its plain value was removed)"
            )),
            vault::Replaced::SecretField => Some(format!(
                "; field {k} is now plain (its secret value was removed)"
            )),
            vault::Replaced::BesideSeed => Some(format!(
                "; secret {k}, not a TOTP seed field, was removed (a totp credential holds only its seed)"
            )),
            vault::Replaced::OtherSeed(_) => None,
        })
        .collect();
    let pickup = super::client_cmds::print_after_save(
        g,
        &vault,
        format!(
            "updated credential {} ({changed} secret value(s) changed{moved})\n",
            a.name
        ),
        &format!(
            "the credential {} was updated and saved (generation {})",
            a.name,
            vault.generation()
        ),
    )?;
    for (new, r) in &replaced {
        if let vault::Replaced::OtherSeed(old) = r {
            errln!("{}", replaced_note(&a.name, new, old));
        }
    }
    if let Some(src) = synced_from {
        errln!(
            "note: {} was synced from {} {}: the next `scopevault sync openbao` puts that value back; change it there to keep it",
            a.name,
            escape_for_terminal(&src.engine),
            escape_for_terminal(&src.path)
        );
    }
    pickup?;
    Ok(ExitCode::SUCCESS)
}

/// Metadata of one credential as JSON: never a secret value.
fn meta(vault: &Vault, name: &str, c: &Credential) -> serde_json::Value {
    let tasks: Vec<&str> = vault
        .policy()
        .map(|p| {
            p.tasks()
                .filter(|(_, t)| t.credentials().contains(&name))
                .map(|(n, _)| n)
                .collect()
        })
        .unwrap_or_default();
    json!({
        "name": name,
        "kind": c.kind,
        "scopes": c.scopes,
        "origins": c.origins,
        "fields": c.fields,
        "secret_fields": c.secrets.keys().collect::<Vec<_>>(),
        "created": c.created.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "rotated": c.rotated.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "tasks": tasks,
        "source": c.source.as_ref().map(|src| json!({
            "engine": src.engine,
            "namespace": src.namespace,
            "path": src.path,
            "version": src.version,
            "updated": src.updated.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "set_by_hand": src.set_by_hand.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        })),
    })
}

fn list(g: &GlobalArgs, json: bool) -> anyhow::Result<ExitCode> {
    let vault = open_vault_to_read(g)?;
    if json {
        let v: Vec<_> = vault
            .credentials()
            .iter()
            .map(|(n, c)| meta(&vault, n, c))
            .collect();
        super::output::print_shown_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
    if vault.credentials().is_empty() {
        outln!(
            "no credentials (add one with `{}`)",
            crate::advice::command("cred add")
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 5]> = vault
        .credentials()
        .iter()
        .map(|(n, c)| {
            let secrets: Vec<&str> = c.secrets.keys().map(String::as_str).collect();
            [
                n.clone(),
                c.kind.to_string(),
                c.scopes.join(","),
                if secrets.is_empty() {
                    "(none set)".to_owned()
                } else {
                    secrets.join(",")
                },
                // A credential declared by a policy but never given a secret was never rotated.
                if secrets.is_empty() {
                    "-".to_owned()
                } else {
                    c.rotated.date().to_string()
                },
            ]
        })
        .collect();
    super::write_stdout(
        table(&["NAME", "KIND", "SCOPES", "SECRETS", "ROTATED"], &rows).as_bytes(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Left-aligned columns, two spaces apart, widths in characters; the last column unpadded.
/// Every cell is escaped ([`escape_for_terminal`]): the names and scopes come from the vault
/// file, which a vault saved by an older scopevault may hold unchecked.
pub(crate) fn table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) -> String {
    let rows: Vec<[String; N]> = rows
        .iter()
        .map(|r| r.clone().map(|cell| escape_for_terminal(&cell)))
        .collect();
    let rows = rows.as_slice();
    let mut width = head.map(|h| h.chars().count());
    for r in rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head = head.map(str::to_owned);
    for r in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(
                    ' ',
                    width[i] - cell.chars().count() + 2,
                ));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn show(g: &GlobalArgs, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let vault = open_vault_to_read(g)?;
    let c = vault
        .credentials()
        .get(name)
        .ok_or_else(|| vault::VaultError::UnknownCredential(name.to_owned()))?;
    let m = meta(&vault, name, c);
    if json {
        super::output::print_shown_json(&m)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Escaped, every string from the vault: a vault written before names and values were
    // checked may hold control characters.
    let esc = escape_for_terminal;
    outln!("name:     {}", esc(name))?;
    outln!("kind:     {}", c.kind)?;
    outln!("scopes:   {}", esc(&c.scopes.join(", ")))?;
    outln!("origins:  {}", esc(&c.origins.join(", ")))?;
    for (k, v) in &c.fields {
        outln!("field:    {} = {}", esc(k), esc(v))?;
    }
    for k in c.secrets.keys() {
        outln!("secret:   {} (set; values are never shown)", esc(k))?;
    }
    if let Some(field) = vault::field_in_both(&c.fields, &c.secrets) {
        // A vault saved by an older scopevault: said, since the daemon does not hand it out.
        outln!(
            "warning:  {}; until then the daemon does not hand this credential out",
            esc(&vault::field_in_both_message(name, field))
        )?;
    }
    outln!("created:  {}", m["created"].as_str().unwrap_or_default())?;
    outln!("rotated:  {}", m["rotated"].as_str().unwrap_or_default())?;
    if let Some(t) = m["tasks"].as_array().filter(|t| !t.is_empty()) {
        let t: Vec<&str> = t.iter().filter_map(|v| v.as_str()).collect();
        outln!("tasks:    {}", esc(&t.join(", ")))?;
    }
    if let Some(src) = &c.source {
        let ns = src
            .namespace
            .as_ref()
            .map(|n| format!(" (namespace {})", esc(n)))
            .unwrap_or_default();
        let by_hand = m["source"]["set_by_hand"]
            .as_str()
            .map(|t| {
                format!("; set by hand since {t} (the next sync puts the source's values back)")
            })
            .unwrap_or_default();
        outln!(
            "source:   {} {}{ns}, version {}, updated {}{by_hand}",
            esc(&src.engine),
            esc(&src.path),
            src.version,
            m["source"]["updated"].as_str().unwrap_or_default()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn rm(g: &GlobalArgs, name: &str) -> anyhow::Result<ExitCode> {
    let path = vault_path(g);
    // Unlock (which may prompt) before taking the writer lock, then read the file again
    // under it: a slow prompt must not hold every other writer up.
    let unlocked = open_vault(g)?;
    let lock = WriteLock::acquire(&path)?;
    let mut vault = unlocked.reopen(&super::unlock::open_options(g))?;
    drop(unlocked);
    let users: Vec<String> = vault
        .policy()
        .map(|p| {
            p.tasks()
                .filter(|(_, t)| t.credentials().contains(&name))
                .map(|(n, _)| n.to_owned())
                .collect()
        })
        .unwrap_or_default();
    vault.remove_credential(name)?;
    vault.save(&lock)?;
    super::fleet::warn_local_change(&vault);
    // A name an older vault holds may be unchecked: escaped, as every name from the vault.
    let shown_name = escape_for_terminal(name);
    if !users.is_empty() {
        errln!(
            "warning: the applied policy still lists {shown_name} for task(s) {}: their fetches will fail until it is added again or the policy changes",
            escape_for_terminal(&users.join(", "))
        );
    }
    super::output::after_change(
        &format!("the credential {shown_name} was removed and the vault saved"),
        outln!("removed credential {shown_name}"),
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::check_origin;

    #[test]
    fn an_origin_is_stored_as_the_policy_writes_it_and_a_url_with_more_is_refused_naming_its_origin(
    ) {
        assert_eq!(
            check_origin("HTTPS://Shop.example.com:8443/").unwrap(),
            "https://shop.example.com:8443"
        );
        // Twenty-first pass: the default port is no part of the origin a browser sees.
        assert_eq!(
            check_origin("https://shop.example.com:443").unwrap(),
            "https://shop.example.com"
        );
        let e = check_origin("https://user:Tok-canary@shop.example.com/login?token=Tok-canary")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--origin https://shop.example.com "), "{e}");
        assert!(!e.contains("canary"), "{e}");
        // Twenty-first pass (found by attacking this pass's fixes): a browser reads `\` as `/`
        // in an http(s) URL, so this one opens shop.example.com; the suggestion named
        // https://evil.example.
        let e = check_origin(r"https://shop.example.com\@evil.example")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--origin https://shop.example.com "), "{e}");
        assert!(!e.contains("evil"), "{e}");
        for bad in [
            "shop.example.com",
            "ftp://shop.example.com",
            "https://evil\u{202e}moc.example",
            "https://",
            // Twentieth pass: a port outside 1-65535 was stored.
            "https://a.example:99999",
            "https://a.example:0",
            "https://a.example:99999/login?token=Tok-canary",
        ] {
            let e = check_origin(bad).unwrap_err().to_string();
            assert!(e.contains("must be an http(s) origin"), "{bad}: {e}");
            assert!(!e.contains("canary"), "{e}");
        }
    }
}
