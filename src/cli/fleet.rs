//! Fleet commands: `recipient`, `publish`, `bundle inspect|verify|apply`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::args::{BundleApplyArgs, BundleCheckArgs, BundleCommand, GlobalArgs, PublishArgs};
use super::unlock::{open_vault_locked, open_vault_to_read, prompt, read_secret_file, vault_path};
use super::{Exit, EXIT_DAEMON};
use crate::fleet::allowed_signers::AllowedSigners;
use crate::fleet::apply::{self, Refusal};
use crate::fleet::bundle::{self, Bundle};
use crate::fleet::{publish as pubs, sig};
use crate::policy::{self, Policy};
use crate::text::{escape_for_terminal, rfc3339, shown};
use crate::vault::{self, AppliedBundle, Staged, WriteLock};

/// Exit code of a refused bundle (a check failed): 1, as a failed verification.
const EXIT_CHECK: u8 = 1;

fn refused(r: Refusal) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: EXIT_CHECK,
        message: r.to_string(),
    })
}

/// Said on stderr after a local writer (`cred add|set|rm`, `policy apply`, `sync`, `import`)
/// saved a vault that holds an applied bundle: what it now serves is no longer the signed
/// bundle. `status` reports the bundle superseded by a local change (the vault file's
/// payload is not the one the apply wrote) until a bundle is applied again: a newer
/// generation, or the same one with `--reapply` to restore the signed content now (not
/// `--allow-rollback`, which would also accept an older bundle and a rolled-back vault file).
pub(crate) fn warn_local_change(v: &vault::Vault) {
    let Some(a) = v.fleet_state().and_then(|s| s.applied.as_ref()) else {
        return;
    };
    errln!(
        "scopevault: warning: {} holds the signed fleet bundle {} generation {}: this local change diverges from it; `status` now reports the bundle superseded by a local change until a bundle is applied again (a newer generation, or this one with --reapply)",
        shown(v.path()),
        escape_for_terminal(&a.location),
        a.generation
    );
}

/// `recipient`: the vault's recipient, read once the vault is authenticated (the header's
/// copy is anyone's who may write the file, and the admin encrypts the location's bundles to
/// it). Without an unlock source the error says so, and how to give the identity that a
/// checkpoint set up as docs/operations.md "systemd" says keeps only in its systemd credential:
/// it said "give --identity-file FILE", that file shredded (thirty-second pass).
pub(crate) fn recipient(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let v = open_vault_to_read(g).map_err(|e| match e.downcast_ref::<crate::vault::VaultError>() {
        Some(crate::vault::VaultError::NoUnlockSource(why)) => anyhow::Error::new(crate::vault::VaultError::NoUnlockSource(format!(
            "{why}. The recipient is printed only once the vault is authenticated (the header's copy could have been changed by anyone who may write the file, and bundles would then go to their key). On a checkpoint whose identity file is kept only in the systemd credential (docs/operations.md, \"systemd\"), as root: `{}`",
            crate::advice::command(
                "recipient --identity-file <(systemd-creds decrypt --name=scopevault-identity /etc/credstore.encrypted/scopevault-identity -)"
            )
        ))),
        _ => e,
    })?;
    outln!("{}", v.recipient())?;
    Ok(ExitCode::SUCCESS)
}

/// `30d`, `2w`, `12h`: the policy's durations (`crate::policy::parse_duration`), up to
/// `100000h`, `100000d` or `100000w`. One over the bound was refused as if it were not a
/// number (twenty-ninth pass): the message says what is wrong, the largest accepted
/// included, and never quotes the value (a usage error does not: README, "Exit codes").
fn parse_validity(s: &str) -> anyhow::Result<time::Duration> {
    crate::policy::parse_duration(s).map_err(|e| anyhow::anyhow!("invalid --valid-for: {e}"))
}

pub(crate) fn publish(g: &GlobalArgs, a: &PublishArgs) -> anyhow::Result<ExitCode> {
    let valid_for = parse_validity(&a.valid_for)?;
    let source = policy::read_policy_file(&a.policy)?;
    let display = a.policy.display().to_string();
    let parsed = Policy::parse(&source, &display)?;
    // A checkpoint's vault stores its share's canonical form, which is no larger than the
    // whole policy's: within the limit, it can be exported and applied again there.
    parsed.canonical_toml_within_limit()?;
    let today = time::OffsetDateTime::now_utc().date();
    let report = policy::lint::lint(&parsed, &policy::lint::LintOptions::new(today));
    if report.blocking(policy::lint::Class::Error) > 0 {
        err!("{}", report.render_text(false));
        bail!(
            "refusing to publish {display}: the lint found errors ({})",
            report.summary()
        );
    }
    let mut locations: Vec<String> = if a.locations.is_empty() {
        parsed.locations().map(|(n, _)| n.to_owned()).collect()
    } else {
        a.locations.clone()
    };
    locations.sort();
    locations.dedup();
    if locations.is_empty() {
        bail!("{display} declares no [locations.NAME]: nothing to publish");
    }
    for l in &locations {
        if parsed.location(l).is_none() {
            bail!("{display} declares no location `{l}`");
        }
        // `ams.svbundle` and `AMS.svbundle` are one file on a case-insensitive file system
        // (macOS, Windows, a share): one bundle would replace the other, its checkpoint
        // getting another's tasks or none. Refused before anything is read or written, for
        // either location, whichever one is asked for (twenty-eighth pass).
        if let Some((twin, _)) = parsed
            .locations()
            .find(|(n, _)| *n != l.as_str() && n.eq_ignore_ascii_case(l))
        {
            bail!(
                "refusing to publish {display}: locations `{l}` and `{twin}` differ only in case, and their bundles `{l}.svbundle` and `{twin}.svbundle` are one file on a case-insensitive file system; rename one of them (`scopevault lint` reports it as names-differ-only-in-case)"
            );
        }
    }
    // The signing key is read (and its passphrase asked) before the vault is touched.
    let key = match &a.sign_key {
        None => None,
        Some(path) => {
            let text = read_sign_key(path)?;
            Some(sig::load_signing_key(&text, || {
                match &a.sign_key_passphrase_file {
                    Some(f) => read_secret_file(f),
                    None => prompt(&format!("Passphrase for {}: ", shown(path))),
                }
            })?)
        }
    };
    // Checked before the master vault records the new generations. Another user who may
    // write there, or who owns it or a directory above it, could swap a file between its
    // creation and its rename (a symlink in its place: the published bundle then names a file
    // of their choosing), so the directory must be writable by us alone, on a path of our own
    // or root's, reached without another user's link; a missing one is judged by the
    // directory above before it is made. Root included: unlike the vault's directories, no
    // daemon user shares the output.
    let out_dir = vault::SafeDir::open_output(&a.out)?;

    let path = vault_path(g);
    let lock = WriteLock::acquire(&path)?;
    let mut v = open_vault_locked(g, &lock)?;
    let mut state = v.fleet_state().cloned().unwrap_or_default();
    let created = vault::timestamp();
    let expires = created + valid_for;
    let mut out = Vec::with_capacity(locations.len());
    let plan = pubs::Plan::new(&parsed);
    for l in &locations {
        // Above the last generation the master vault remembers, and above the bundle already
        // in --out: a master vault restored from a backup remembers fewer, and published a
        // second, different bundle of a generation already published and applied over it
        // (twenty-seventh pass).
        let remembered = state.published.get(l).copied().unwrap_or(0);
        let last = match out_generation(&out_dir, &a.out, l)? {
            Some(found) if found > remembered => {
                // Trusted only once its signature verifies with this publish's own key and
                // it is this location's: an edited manifest (2^64 - 3) made every later
                // publish of the location fail (twenty-seventh pass).
                check_out_bundle(&out_dir, &a.out, l, found, remembered, key.as_ref())?;
                errln!(
                    "warning: {} carries generation {found}, but the master vault remembers generation {remembered} as the last it published for `{l}` (a master vault restored from a backup, or bundles published from another copy): publishing above it, so that no generation is published twice",
                    shown(&a.out.join(format!("{l}.svbundle"))),
                );
                found
            }
            _ => remembered,
        };
        // A bundle's generation is a vault's (1 ..= 2^64 - 2, checked by every reader): a
        // location published at the last one can take no newer bundle.
        let Some(generation) = last.checked_add(1).filter(|g| *g <= vault::LAST_GENERATION) else {
            bail!(
                "location `{l}` was published at generation {}, the last a bundle may carry: its checkpoint can apply no newer one; give it a new vault and location name",
                vault::LAST_GENERATION
            );
        };
        // What a rename cannot replace stops the run here, before anything is saved: a
        // directory at `NAME.svbundle.sig` failed the rename of the signature after the master
        // vault had recorded every generation and the bundles before it were written
        // (twenty-ninth pass). (A directory at `NAME.svbundle` is refused by
        // `out_generation` above, which reads it.) Without --sign-key the signature is
        // removed, which a directory or an immutable file refuses alike.
        for name in [format!("{l}.svbundle"), format!("{l}.svbundle.sig")] {
            check_replaceable(&out_dir, &a.out, &name, l)?;
        }
        // Encrypting and signing run the age and ssh-key crates: a panic there (age's on a
        // failing RNG) ends the run with a message naming the location, exit 2, nothing
        // saved or written, not exit 101.
        let built = super::catch_panic(|| {
            pubs::build_planned(
                &parsed,
                &plan,
                l,
                generation,
                v.credentials(),
                created,
                expires,
            )
        })
        .map_err(|why| panicked(l, "encrypting", &why))?;
        let (manifest, bytes) =
            built.map_err(|e| anyhow::anyhow!("cannot publish location `{l}`: {e}"))?;
        let signature = match &key {
            Some(k) => Some(
                super::catch_panic(|| sig::sign(k, &bytes))
                    .map_err(|why| panicked(l, "signing", &why))?
                    .with_context(|| format!("cannot publish location `{l}`"))?,
            ),
            None => None,
        };
        state.published.insert(l.clone(), generation);
        out.push((manifest, bytes, signature));
    }
    // Every bundle and signature is written to a temporary file in --out before the master
    // vault records anything: a full disk (or no inode left) stops the run here with nothing
    // saved and nothing replaced (twenty-ninth pass: the first bundles were renamed into
    // place, one without its signature, the rest not written, after the save).
    let mut staged: Vec<(Staged, Option<Staged>)> = Vec::with_capacity(out.len());
    for (m, bytes, signature) in &out {
        let name = format!("{}.svbundle", m.location);
        let pair = out_dir
            .stage(name.as_ref(), ".svbundle-new-", bytes, 0o644)
            .and_then(|b| match signature {
                None => Ok((b, None)),
                Some(pem) => {
                    match out_dir.stage(
                        format!("{name}.sig").as_ref(),
                        ".svbundle-new-",
                        pem.as_bytes(),
                        0o644,
                    ) {
                        Ok(s) => Ok((b, Some(s))),
                        Err(e) => {
                            out_dir.discard(b);
                            Err(e)
                        }
                    }
                }
            });
        match pair {
            Ok(pair) => staged.push(pair),
            Err(e) => {
                discard_all(&out_dir, staged);
                return Err(anyhow::Error::new(e).context(format!(
                    "nothing was published or saved (the master vault and {} are as they were)",
                    shown(&a.out)
                )));
            }
        }
    }
    // The generations are saved before any bundle is renamed into place: a bundle there
    // always has a generation the master vault remembers, so a later publish never reuses it.
    v.set_fleet_state(state);
    if let Err(e) = v.save(&lock) {
        discard_all(&out_dir, staged);
        return Err(e.into());
    }
    // What lets an adoption of a restored copy of this vault say that it is older than this
    // publish (`policy apply --allow-rollback`, ...): best effort, as the unlock hint, since
    // the generations are saved and the bundles are still to be written.
    if let Err(e) = v.record_published() {
        errln!(
            "warning: the generations published could not be recorded in this machine's state directory ({}): a restore of an older copy of this vault will not be told it is older than this publish",
            escape_for_terminal(&e.to_string())
        );
    }
    // Each location's pair renamed into place, the signature first: a new bundle is never
    // beside an old signature or none (a reader between the two renames sees the old bundle
    // with the new signature, which the signature check refuses; bundle-format.md). Every
    // bundle written before anything is printed: a failed write to stdout must not leave
    // the later bundles unwritten (twenty-third pass).
    let mut report = String::new();
    let mut pending = staged.into_iter().zip(&out);
    while let Some(((bundle_file, sig_file), (m, _, signature))) = pending.next() {
        let name = format!("{}.svbundle", m.location);
        let file = a.out.join(&name);
        let sig_name = format!("{name}.sig");
        // Without --sign-key a signature left from an earlier publish no longer matches: it
        // is removed, so the pair on disk is never a bundle with another bundle's signature.
        let sig_step = match sig_file {
            Some(s) => out_dir
                .commit(s, sig_name.as_ref())
                .map_err(anyhow::Error::new),
            None => out_dir
                .remove(sig_name.as_ref())
                .with_context(|| format!("cannot remove the stale {}", shown(&sig_path(&file)))),
        };
        let failed = match sig_step {
            Err(e) => {
                out_dir.discard(bundle_file);
                Some((e, None))
            }
            Ok(()) => out_dir
                .commit(bundle_file, name.as_ref())
                .err()
                .map(|e| (anyhow::Error::new(e), Some(signature.is_some()))),
        };
        if let Some((e, sig_step_done)) = failed {
            let rest: Vec<&str> = pending
                .map(|((b, s), (m, _, _))| {
                    out_dir.discard(b);
                    if let Some(s) = s {
                        out_dir.discard(s);
                    }
                    m.location.as_str()
                })
                .collect();
            return Err(stopped_part_way(
                &out_dir,
                &a.out,
                e,
                &report,
                &m.location,
                sig_step_done,
                &rest,
                out.len(),
            ));
        }
        report.push_str(&format!(
            "{}: generation {}, {} tasks, {} credentials{}\n",
            shown(&file),
            m.generation,
            m.tasks.len(),
            m.credentials.len(),
            if signature.is_some() { " (signed)" } else { "" }
        ));
    }
    synced(&out_dir, &a.out);
    super::output::after_change(
        &format!("{} bundle(s) were published", out.len()),
        super::write_stdout(report.as_bytes()),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The error of a panic inside `what` (encrypting, signing) the bundle of `location`, caught
/// by [`super::catch_panic`].
fn panicked(location: &str, what: &str, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot publish location `{location}`: {what} its bundle failed inside a library it uses (it panicked: {why}). Nothing was published or saved; run the command again, and if it fails the same way, report it"
    )
}

/// Refuse, before anything is saved, a bundle or signature of `location` that a rename into
/// --out could not replace ([`vault::SafeDir::cannot_replace`]: a directory there, an
/// immutable or append-only file or directory).
fn check_replaceable(
    dir: &vault::SafeDir,
    out: &Path,
    name: &str,
    location: &str,
) -> anyhow::Result<()> {
    let path = out.join(name);
    let what = if name.ends_with(".sig") {
        "the signature of the bundle"
    } else {
        "the bundle"
    };
    match dir.cannot_replace(name.as_ref()) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => bail!(
            "cannot publish {what} of `{location}` at {}: {why}. Nothing was published or saved: move it out of {} (or undo the attribute) and publish again",
            shown(&path),
            shown(out)
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "cannot examine {}, so nothing was published or saved",
            shown(&path)
        ))),
    }
}

/// Remove every staged file of a run that stops before renaming them.
fn discard_all(dir: &vault::SafeDir, staged: Vec<(Staged, Option<Staged>)>) {
    for (b, s) in staged {
        dir.discard(b);
        if let Some(s) = s {
            dir.discard(s);
        }
    }
}

/// fsync --out once, after the last rename; a failure leaves the renames' durability in doubt,
/// not the bundles: said, not an error (the master vault has recorded their generations).
fn synced(dir: &vault::SafeDir, out: &Path) {
    if let Err(e) = dir.sync() {
        errln!(
            "scopevault: warning: the bundles were renamed into place in {}, but the directory could not be synced ({e}): a crash now could bring old versions back; publish again after one",
            shown(out)
        );
    }
}

/// The error of a run that stopped renaming the staged pairs into place, at `location`
/// (whose old signature was replaced by its new one, or removed without --sign-key, when
/// `sig_step_done`), `rest` not written; the locations written, in `report`, are printed on
/// stdout first.
#[allow(clippy::too_many_arguments)]
fn stopped_part_way(
    dir: &vault::SafeDir,
    out: &Path,
    e: anyhow::Error,
    report: &str,
    location: &str,
    sig_step_done: Option<bool>,
    rest: &[&str],
    total: usize,
) -> anyhow::Error {
    if !report.is_empty() {
        synced(dir, out);
    }
    let written = report.lines().count();
    let listed = if written == 0 {
        ""
    } else if super::write_stdout(report.as_bytes()).is_ok() {
        " (listed on standard output)"
    } else {
        " (their list could not be printed on standard output)"
    };
    let mut not_written: Vec<String> = std::iter::once(location)
        .chain(rest.iter().copied())
        .take(10)
        .map(|l| format!("`{l}`"))
        .collect();
    let left = rest.len() + 1;
    if left > not_written.len() {
        not_written.push(format!("… ({left} in all)"));
    }
    let except = match sig_step_done {
        Some(true) => format!(
            ", except that the new signature of `{location}` is in place beside its old bundle, which fails the signature check until the next publish"
        ),
        Some(false) => format!(
            ", except that the old signature of `{location}` was removed (a publish without --sign-key)"
        ),
        None => String::new(),
    };
    anyhow::anyhow!(
        "{e:#}; publish stopped part-way: {written} of {total} location(s) were written{listed}; not written: {} (their old bundles and signatures, if any, are as they were{except}). The master vault has recorded the new generations of all {total}: once the cause is fixed, publish again, which publishes every location above them",
        not_written.join(", ")
    )
}

/// The bundle of `location` in the output directory, whose generation `found` is above the
/// `remembered` one this publish would otherwise start from: trusted only if it is a bundle
/// of `location` whose signature (`NAME.svbundle.sig`) verifies with the public key of `key`,
/// the key this publish signs with. A manifest edited to generation 2^64 - 3 (its signature
/// broken) drove the location to the last generation, saved, and every later publish failed;
/// a bundle of another location under the name was taken too (twenty-seventh pass, found by
/// the re-attacker of this pass's fixes). Refused before anything is saved.
fn check_out_bundle(
    dir: &vault::SafeDir,
    out: &Path,
    location: &str,
    found: u64,
    remembered: u64,
    key: Option<&ssh_key::PrivateKey>,
) -> anyhow::Result<()> {
    let name = format!("{location}.svbundle");
    let file = out.join(&name);
    let why = (|| -> Result<(), String> {
        let bytes = dir
            .read(&name, bundle::MAX_FILE)
            .map_err(|e| e.to_string())?
            .ok_or("it is gone")?;
        let b = Bundle::parse(&bytes).map_err(|e| e.to_string())?;
        if b.manifest.location != location {
            return Err(format!(
                "it is a bundle of location `{}`, not `{location}`",
                escape_for_terminal(&b.manifest.location)
            ));
        }
        let key = key.ok_or(
            "without --sign-key its signature cannot be checked: publish with --sign-key, the key that signed it",
        )?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| format!("cannot encode the signing key's public key: {e}"))?;
        let allowed = AllowedSigners::parse(
            &format!("publisher namespaces=\"{}\" {public}\n", sig::NAMESPACE),
            "--sign-key",
        )
        .map_err(|e| e.to_string())?;
        let sig_pem = dir
            .read(&format!("{name}.sig"), sig::MAX_SIG_BYTES as u64)
            .map_err(|e| format!("its signature cannot be read: {e}"))?
            .ok_or("it has no signature beside it")?;
        sig::verify(&sig_pem, &bytes, &allowed, time::OffsetDateTime::now_utc())
            .map(|_| ())
            .map_err(|e| {
                format!("its signature does not verify with the --sign-key's public key: {e}")
            })
    })();
    if let Err(why) = why {
        bail!(
            "{} says generation {found}, above the {remembered} the master vault remembers for `{location}`, but it is not trusted: {}. Nothing was published or saved. If you did not publish that file with this signing key, move it (and its .sig) out of {} and publish again; if you did, publish with the --sign-key that signed it",
            shown(&file),
            escape_for_terminal(&why),
            shown(out)
        );
    }
    Ok(())
}

/// The generation of the bundle of `location` already in the output directory, if one is
/// there: read from its framing and manifest alone; one above the generation the master
/// vault remembers is trusted only once [`check_out_bundle`] verified it. A file there
/// whose generation cannot be read is refused, before anything is saved: `publish` would
/// replace it without knowing which generations a checkpoint may have applied from it.
fn out_generation(dir: &vault::SafeDir, out: &Path, location: &str) -> anyhow::Result<Option<u64>> {
    let name = format!("{location}.svbundle");
    let file = out.join(&name);
    let why = match dir.read(&name, bundle::HEAD_WITH_MANIFEST) {
        Ok(None) => return Ok(None),
        Ok(Some(head)) => match bundle::manifest_generation(&head) {
            Ok(g) => return Ok(Some(g)),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    bail!(
        "cannot read the generation of {}, the bundle this publish would replace: {}. `publish` publishes above the generation of the bundle it replaces (a master vault restored from a backup remembers older ones), so nothing was published: if that file is no bundle a checkpoint may have applied, move it out of {} and publish again",
        shown(&file),
        escape_for_terminal(&why),
        shown(out)
    )
}

/// The `--sign-key` file's text, read up to [`sig::MAX_SIGN_KEY_BYTES`]: one byte more is
/// refused naming the option and the bound. A pipe is taken as a file is (a key handed in
/// through `/dev/stdin` or `<(…)`), and read no further than the bound; a FIFO whose writer
/// never closes it is waited for, as any pipe handed in is.
fn read_sign_key(path: &Path) -> anyhow::Result<zeroize::Zeroizing<String>> {
    use std::io::Read;
    const MAX: usize = sig::MAX_SIGN_KEY_BYTES;
    // Sized once, so that no reallocation leaves a copy of the key behind.
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(MAX + 1));
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX as u64 + 1).read_to_end(&mut buf))
        .with_context(|| format!("cannot read --sign-key {}", path.display()))?;
    if buf.len() > MAX {
        bail!(
            "--sign-key {} is more than {MAX} bytes (64 KiB), more than an OpenSSH private key holds: give the private key file (`ssh-keygen -t ed25519 -f KEY` writes one)",
            path.display()
        );
    }
    match String::from_utf8(std::mem::take(&mut *buf)) {
        Ok(text) => Ok(zeroize::Zeroizing::new(text)),
        Err(e) => {
            // The bytes are cleared as they go.
            drop(zeroize::Zeroizing::new(e.into_bytes()));
            bail!(
                "cannot read --sign-key {}: it is not UTF-8 text, as an OpenSSH private key is",
                path.display()
            )
        }
    }
}

fn sig_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Read an input file of at most `max` bytes. `Err` (exit 2) when it cannot be read at all
/// (missing, no permission); `Ok(Err(why))` when it is there but not usable (not a regular
/// file, over the limit, judged before any read): the check that reads it refuses it (exit 1).
fn read_input(path: &Path, max: u64, what: &str) -> anyhow::Result<Result<Vec<u8>, String>> {
    let read = crate::fleet::read_regular(path, max)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    Ok(read.map_err(|u| format!("{what} {} is {}", shown(path), u.describe(max))))
}

pub(crate) fn bundle(g: &GlobalArgs, c: &BundleCommand) -> anyhow::Result<ExitCode> {
    match c {
        BundleCommand::Inspect { file, json } => inspect(file, *json),
        BundleCommand::Verify(a) => verify(a),
        BundleCommand::Apply(a) => apply_bundle(g, a),
    }
}

fn inspect(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = read_input(file, bundle::MAX_FILE, "the bundle file")?.map_err(|why| {
        anyhow::Error::new(Exit {
            code: EXIT_CHECK,
            message: why,
        })
    })?;
    // The manifest's names are checked by the parse (`Manifest::check_names`): one that is not
    // a name is reported, escaped, not printed.
    let b = Bundle::parse(&bytes).map_err(|e| {
        anyhow::Error::new(Exit {
            code: EXIT_CHECK,
            message: format!("{}: {e}", shown(file)),
        })
    })?;
    let m = &b.manifest;
    if json {
        outln!("{}", serde_json::to_string_pretty(m)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The names are checked; every string from the file is escaped all the same.
    let esc = escape_for_terminal;
    outln!("location:       {}", esc(&m.location))?;
    outln!("generation:     {}", m.generation)?;
    outln!("created:        {}", rfc3339(m.created))?;
    outln!("expires:        {}", rfc3339(m.expires))?;
    outln!("recipient:      {}", esc(&m.recipient))?;
    outln!("policy digest:  {}", esc(&m.policy_digest))?;
    outln!("payload digest: {}", esc(&m.payload_digest))?;
    outln!("tasks:          {}", esc(&m.tasks.join(", ")))?;
    outln!("credentials:    {}", esc(&m.credentials.join(", ")))?;
    Ok(ExitCode::SUCCESS)
}

/// Bytes, signature and allowed signers of a check.
struct Inputs {
    bytes: Vec<u8>,
    sig: Option<Vec<u8>>,
    signers: AllowedSigners,
}

fn inputs(a: &BundleCheckArgs) -> anyhow::Result<Inputs> {
    // A bundle that is not a regular file or is over the format's limit is refused by the
    // format check before a byte is read (bundle-format.md: "a length over its limit").
    let bytes = read_input(&a.file, bundle::MAX_FILE, "the bundle file")?.map_err(|message| {
        refused(Refusal {
            check: apply::Check::Format,
            message,
        })
    })?;
    let sig_file = a.signature.clone().unwrap_or_else(|| sig_path(&a.file));
    let sig = match std::fs::metadata(&sig_file) {
        Ok(_) => Some(
            read_input(&sig_file, sig::MAX_SIG_BYTES as u64, "the signature file")?.map_err(
                |message| {
                    refused(Refusal {
                        check: apply::Check::Signature,
                        message,
                    })
                },
            )?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("cannot read signature {}: {e}", sig_file.display()),
    };
    let signers = AllowedSigners::read(&a.allowed_signers).map_err(|e| {
        anyhow::Error::new(Exit {
            code: EXIT_CHECK,
            message: format!("bundle refused by the signature check: allowed signers file: {e}"),
        })
    })?;
    Ok(Inputs {
        bytes,
        sig,
        signers,
    })
}

fn verify(a: &BundleCheckArgs) -> anyhow::Result<ExitCode> {
    let i = inputs(a)?;
    let now = time::OffsetDateTime::now_utc();
    let who =
        apply::check_signature(&i.bytes, i.sig.as_deref(), &i.signers, now).map_err(refused)?;
    let b = apply::check_format(&i.bytes).map_err(refused)?;
    if let Some(w) = apply::created_ahead(&b, now) {
        errln!("scopevault: warning: {w}");
    }
    let loc = a.location.as_deref().unwrap_or(&b.manifest.location);
    apply::check_manifest(&b, Some(loc), now, None, apply::Rollback::Refuse).map_err(refused)?;
    outln!(
        "{}: good signature by {}; location {}, generation {}, expires {}",
        shown(&a.file),
        who.shown(),
        escape_for_terminal(&b.manifest.location),
        b.manifest.generation,
        rfc3339(b.manifest.expires)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn apply_bundle(g: &GlobalArgs, a: &BundleApplyArgs) -> anyhow::Result<ExitCode> {
    let c = &a.check;
    let i = inputs(c)?;
    let now = time::OffsetDateTime::now_utc();
    // 1. signature (before anything else reads the file's content).
    let who =
        apply::check_signature(&i.bytes, i.sig.as_deref(), &i.signers, now).map_err(refused)?;
    let b = apply::check_format(&i.bytes).map_err(refused)?;
    if let Some(w) = apply::created_ahead(&b, now) {
        errln!("scopevault: warning: {w}");
    }
    let path = vault_path(g);
    let lock = WriteLock::acquire(&path)?;
    let mut v = open_vault_locked(g, &lock)?;
    let applied = v.fleet_state().and_then(|s| s.applied.clone());
    // 2. location: given, or the one recorded by the first apply (they must agree), or a
    // move from the recorded one to the given one (`--from-location`).
    let recorded = applied.as_ref().map(|x| x.location.as_str());
    let located = apply::locate(
        &b.manifest.location,
        c.location.as_deref(),
        recorded,
        a.from_location.as_deref(),
    )
    .map_err(refused)?;
    let location = located.location;
    // A move leaves the recorded location's generations behind: the location moved to has
    // none here, and its first bundle is taken as a first apply's.
    let last = applied
        .as_ref()
        .filter(|x| Some(x.location.as_str()) == location)
        .map(|x| apply::Last {
            generation: x.generation,
            payload_digest: x.payload_digest.as_deref(),
        });
    let rollback = if g.unlock.allow_rollback {
        apply::Rollback::Allow
    } else if a.reapply {
        apply::Rollback::Reapply
    } else {
        apply::Rollback::Refuse
    };
    // This machine's applied record of this vault: the highest generation applied here of
    // each location the vault served (a move there and back must not take an older bundle of
    // a location as a first apply: twenty-ninth pass, found by the re-attacker).
    let read = crate::fleet::health::read_record(&path);
    // What the file kept beside the record remembers too: an older scopevault's apply rewrote
    // the record without the locations applied here (thirty-first pass).
    let kept = crate::fleet::health::read_locations(&path, v.id());
    let machine_record = read
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .filter(|r| r.vault_id == v.id())
        .cloned()
        .map(|mut r| {
            if let Ok(k) = &kept {
                r.remember(k);
            }
            r
        });
    let at = location.and_then(|l| machine_record.as_ref()?.highest_of(l));
    let remembered = at.as_ref().map(|a| a.generation);
    // 2–4. location, expiry, generation.
    apply::check_manifest(&b, location, now, last, rollback).map_err(refused)?;
    // On a move, check 4 judges by this machine's memory of the location moved to, and only
    // when the record is the one the vault's last apply wrote (thirtieth pass).
    let moved_back = located.moved_from.map(|_| {
        match record_of_last_apply(&read, &v).and(kept.as_ref().map(|_| ()).map_err(|e| {
            format!(
                "is incomplete: the locations applied here, kept beside it, cannot be read ({})",
                escape_for_terminal(e)
            )
        })) {
            Err(why) => apply::Remembered::Unknown(why),
            Ok(()) => match &at {
                None => apply::Remembered::Never,
                Some(a) => apply::Remembered::Applied(apply::Last {
                    generation: a.generation,
                    payload_digest: a.payload_digest.as_deref(),
                }),
            },
        }
    });
    if let (Some(l), Some(r)) = (location, &moved_back) {
        apply::check_moved_back(&b, l, r, rollback).map_err(refused)?;
    }
    // 5. decrypt.
    let (payload, policy) = apply::check_decrypt(&v, &b).map_err(refused)?;
    // A move back is judged against the location's last bundle applied here, as an apply
    // without a move is against the vault's.
    let (judged, machine) = match &moved_back {
        Some(apply::Remembered::Applied(l)) => (Some(*l), None),
        Some(_) => (None, None),
        None => (last, remembered),
    };
    // A bundle taken below the last generation applied here (`--allow-rollback`) is never
    // silent: judged by the vault's record and by this machine's applied record, which a vault
    // file restored from a backup does not roll back. The one flag takes both the restored
    // vault file and the older bundle, so the warning names both (twenty-fifth pass: the
    // refusal's advice applied the old credentials with no word at all).
    let went_back = (rollback == apply::Rollback::Allow)
        .then(|| apply::went_back(&b, judged, machine))
        .flatten();
    if let Some(from) = went_back {
        let applied = judged.and_then(|l| l.payload_digest);
        errln!("{}", rollback_warning(&b, from, applied, &v));
    }
    if let (Some(from), Some(old)) = (located.moved_from, applied.as_ref()) {
        let taken = match &moved_back {
            Some(apply::Remembered::Applied(l)) => {
                format!("generation {} of it was applied here before", l.generation)
            }
            Some(apply::Remembered::Unknown(_)) => {
                "taken with --allow-rollback: this machine's applied record could not tell which generations of it were applied here".to_owned()
            }
            _ => "as on a first apply".to_owned(),
        };
        errln!(
            "scopevault: note: this checkpoint moves from location `{}` (generation {} applied) to `{}` (--from-location): the bundle of `{}` is taken at its generation {} ({taken}), and its generations count from it; bundles of `{}` are refused from now on",
            escape_for_terminal(from),
            old.generation,
            escape_for_terminal(&b.manifest.location),
            escape_for_terminal(&b.manifest.location),
            b.manifest.generation,
            escape_for_terminal(from)
        );
    }
    // 6. the audit log, opened as the daemon's start opens it, before anything changes: a
    // log the start would refuse refuses the apply, and the vault is left as it is.
    let audit = open_audit(a)?;

    // Replace the policy and credentials, keep the slots; one atomic save.
    let old: Vec<String> = v.credentials().keys().cloned().collect();
    for name in old {
        v.remove_credential(&name)?;
    }
    for (name, cred) in payload.credentials {
        v.add_credential(&name, cred)?;
    }
    v.set_policy(policy);
    let m = &b.manifest;
    // One time for both: the vault's record and the clear one say the same.
    let applied_before = applied.clone();
    let applied = vault::timestamp();
    let mut state = v.fleet_state().cloned().unwrap_or_default();
    state.applied = Some(AppliedBundle {
        location: m.location.clone(),
        generation: m.generation,
        signer: who.fingerprint.clone(),
        policy_digest: m.policy_digest.clone(),
        created: m.created,
        expires: m.expires,
        applied,
        payload_digest: Some(m.payload_digest.clone()),
    });
    v.set_fleet_state(state);
    v.save(&lock)?;
    // Every location's highest generation applied here, this one's included,
    // with the payload digest of the bundle of that generation applied last.
    use crate::fleet::health::{AppliedAt, AppliedRecord};
    let before = applied_before.as_ref().map(|x| {
        (
            x.location.as_str(),
            AppliedAt {
                generation: x.generation,
                payload_digest: x.payload_digest.clone(),
            },
        )
    });
    let now_applied = (
        m.location.as_str(),
        AppliedAt {
            generation: m.generation,
            payload_digest: Some(m.payload_digest.clone()),
        },
    );
    let also: Vec<_> = before.into_iter().chain([now_applied]).collect();
    let locations_applied = AppliedRecord::next_locations_applied(machine_record.as_ref(), &also);
    // The clear record `status` reads (names, digests, times), written after the save and
    // under the vault's write lock: it may trail the vault after a crash, never lead it.
    let record = crate::fleet::health::AppliedRecord {
        format: crate::fleet::health::RECORD_FORMAT,
        vault: crate::fleet::health::canonical_vault(&path),
        vault_id: v.id().to_owned(),
        vault_generation: v.generation(),
        location: m.location.clone(),
        generation: m.generation,
        signer_fingerprint: who.fingerprint.clone(),
        signer_principals: who.principals.clone(),
        policy_digest: m.policy_digest.clone(),
        created: m.created,
        expires: m.expires,
        applied,
        vault_payload_digest: Some(v.payload_digest().to_owned()),
        payload_digest: Some(m.payload_digest.clone()),
        locations_applied,
    };
    // The locations first, then the record. The record holds the same entries, so it is
    // written even when the file could not be: a move judges by the record of the last apply,
    // and skipping it refused the next move (thirty-first pass, found by the re-attacker).
    use crate::fleet::health::{locations_path, record_path, write_locations, write_record};
    if let Err(e) = write_locations(&path, v.id(), &record.locations_applied) {
        errln!("{}", unkept_locations_warning(&locations_path(&path), &e));
    }
    if let Err(e) = write_record(&path, &record) {
        errln!("{}", unwritten_record_warning(&record_path(&path), &e, c));
    }
    drop(lock);
    // Every durable step (the save, the audit record, the daemon's reload) before anything is
    // printed: a failed write to stdout used to end the apply after the save and before its
    // `bundle.apply` record and the reload (twenty-third pass).
    let mut report = format!(
        "applied {} generation {} to {} (vault generation {}): {} tasks, {} credentials; signed by {}\n",
        escape_for_terminal(&m.location),
        m.generation,
        shown(&path),
        v.generation(),
        m.tasks.len(),
        m.credentials.len(),
        who.shown()
    );
    if let Some(line) = audit_apply(audit, &b, &who.fingerprint, went_back, located.moved_from) {
        report.push_str(&line);
    }
    let reloaded = reload_daemon(g, v.id());
    if let Ok(Some(line)) = &reloaded {
        report.push_str(line);
    }
    super::output::after_change(
        &format!(
            "the bundle was applied (generation {}, vault generation {}), audited, and a running daemon asked to reload",
            m.generation,
            v.generation()
        ),
        super::write_stdout(report.as_bytes()),
    )?;
    reloaded.map(|_| ExitCode::SUCCESS)
}

/// Whether this machine's applied record (`read`) is the one the vault's last apply wrote (the
/// same vault, location, generation, payload and time of apply), so that what it remembers of
/// the locations applied here can be believed; else why not. A record deleted, or put back from
/// an older copy of the state directory, could let a move back take an older bundle of a
/// location served before (thirtieth pass).
fn record_of_last_apply(
    read: &Result<Option<crate::fleet::health::AppliedRecord>, crate::fleet::health::RecordError>,
    v: &vault::Vault,
) -> Result<(), String> {
    let r = match read {
        Ok(Some(r)) => r,
        Ok(None) => return Err("is missing (there is none)".to_owned()),
        Err(e) => {
            return Err(format!(
                "cannot be read ({})",
                escape_for_terminal(&e.to_string())
            ))
        }
    };
    let Some(a) = v.fleet_state().and_then(|s| s.applied.as_ref()) else {
        return Err("names no apply the vault records".to_owned());
    };
    // One time for both (commit 1aef1d5); an older apply took two, microseconds apart,
    // and a record put back from a copy names another apply, seconds or days away.
    let same_time = (r.applied - a.applied).abs() < time::Duration::SECOND;
    if r.vault_id != v.id()
        || r.location != a.location
        || r.generation != a.generation
        || !same_time
        || (r.payload_digest.is_some() && r.payload_digest != a.payload_digest)
    {
        return Err(format!(
            "is not the one the last apply wrote (it names location `{}` generation {} applied {}, the vault location `{}` generation {} applied {}: the state directory put back from an older copy, or the vault brought from elsewhere)",
            escape_for_terminal(&r.location),
            r.generation,
            rfc3339(r.applied),
            escape_for_terminal(&a.location),
            a.generation,
            rfc3339(a.applied)
        ));
    }
    Ok(())
}

/// The warning of a bundle accepted with `--allow-rollback` although generation `from` was
/// applied here ([`apply::went_back`]): both generations and what going back brings back, or,
/// for another bundle of the generation applied (`applied`: that bundle's payload digest),
/// that it is one ([`apply::another_bundle_of`]); and, when the same flag also took a vault
/// file older than this machine has seen (a restored checkpoint vault), that it took both.
fn rollback_warning(b: &Bundle, from: u64, applied: Option<&str>, v: &vault::Vault) -> String {
    let m = &b.manifest;
    let what = match applied {
        Some(applied) if m.generation == from => format!(
            "bundle {} generation {} is {}; its policy and credentials replace those of the bundle applied",
            escape_for_terminal(&m.location),
            m.generation,
            escape_for_terminal(&apply::another_bundle_of(
                from,
                applied,
                &m.payload_digest
            ))
        ),
        _ => format!(
            "bundle {} generation {} is older than generation {from} already applied here: an older or replayed bundle, which brings back generation {}'s policy and credentials (including any rotated out since)",
            escape_for_terminal(&m.location),
            m.generation,
            m.generation
        ),
    };
    let both = if super::unlock::adopted(v) {
        format!(
            "; the same flag also accepted the vault file {} older than the generation this machine had seen (the restore warned of above): both rollbacks were taken",
            shown(v.path())
        )
    } else {
        String::new()
    };
    format!("scopevault: warning: {what}; accepted because of --allow-rollback{both}")
}

/// The warning of an apply that saved the vault but could not write its applied record:
/// what failed, what to do about it, and the command that then writes the record. Not "run
/// the command again" (the I/O error's own hint): the generation check refuses the bundle
/// now applied, and only `--reapply` takes it again (found by attacking the fleet surface
/// from the documents, nineteenth pass).
fn unwritten_record_warning(
    record: &Path,
    e: &crate::vault::VaultError,
    c: &BundleCheckArgs,
) -> String {
    let (why, fix) = why_unwritten(e);
    format!(
        "scopevault: warning: the apply is done but `status` will not show it: its applied record {} was not written ({why}). To write it, {fix}, then apply the same bundle again with `--reapply` added: `{}` (with the other options given this time); without `--reapply` the generation check refuses the bundle now applied",
        shown(record),
        crate::advice::command(&format!(
            "bundle apply {} --allowed-signers {} --reapply",
            crate::advice::shell_quoted(&c.file.to_string_lossy()),
            crate::advice::shell_quoted(&c.allowed_signers.to_string_lossy()),
        )),
    )
}

/// The warning of an apply whose file of the locations applied here
/// ([`crate::fleet::health::locations_path`]) could not be written: the applied record, which
/// holds the same entries, is written anyway; what is lost is their copy for a later upgrade
/// after an older scopevault's apply.
fn unkept_locations_warning(file: &Path, e: &crate::fleet::health::LocationsUnwritten) -> String {
    use crate::fleet::health::LocationsUnwritten;
    let e = match e {
        LocationsUnwritten::Write(e) => e,
        LocationsUnwritten::Unreadable(why) => {
            return format!(
                "scopevault: warning: the apply is done, but the locations applied here were not kept beside the applied record: what is there cannot be read ({}), and is left as it is, as writing over it would forget the locations it keeps; every move (--from-location) is refused while it is there. Check it (put back a good copy, or remove it: this machine then forgets which generations of other locations were applied here unless the applied record names them); the next apply writes it",
                escape_for_terminal(why)
            );
        }
    };
    let (why, fix) = why_unwritten(e);
    format!(
        "scopevault: warning: the apply is done, but the locations applied here were not kept beside the applied record: {} was not written ({why}). The applied record keeps them; should an older scopevault's apply rewrite that record, a move back would not know them. To keep them, {fix}; the next apply writes it",
        shown(file),
    )
}

/// Why a state file was not written, and what to do about it.
fn why_unwritten(e: &crate::vault::VaultError) -> (String, &'static str) {
    use std::io::ErrorKind;
    match e {
        crate::vault::VaultError::Io { path, what, error } => (
            format!("{what} {}: {error}", shown(path)),
            match error.kind() {
                // Under the file-size limit (`EFBIG`) the limit is the cause, as every writer
                // says: it said "remove the cause" (twenty-seventh pass, found by the
                // twenty-sixth pass's review).
                _ if crate::sys::is_file_size_limit(error) => {
                    "raise or remove this process's file-size limit, which the record would pass (RLIMIT_FSIZE: `ulimit -f`, systemd's LimitFSIZE=)"
                }
                ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
                    "free space on that file system"
                }
                ErrorKind::ReadOnlyFilesystem => "make that file system writable",
                ErrorKind::PermissionDenied => {
                    "let this user write the state directory (permissions)"
                }
                _ => "remove the cause",
            },
        ),
        other => (escape_for_terminal(&other.to_string()), "remove the cause"),
    }
}

/// The audit log of an apply, as the apply found it.
struct ApplyAudit {
    path: PathBuf,
    /// Held by this command, which writes the `bundle.apply` record there; `None`: the daemon
    /// holds it, and its `reload` and `vault.load` records say the apply.
    log: Option<crate::audit::AuditLog>,
}

/// Open the apply's audit log exactly as the daemon's start does ([`AuditLog::open_with`]
/// with the anchor: journal recovery, the late-rotation continuation, the anchor's checks),
/// before the vault is changed. A log the start would refuse refuses the apply with the
/// start's own message. Until the twenty-third pass the apply opened the log without its
/// anchor: after logrotate moved the log while no daemon ran, it wrote its record as seq 1
/// of a second chain in the empty file, and the next start was refused as a cut tail.
///
/// [`AuditLog::open_with`]: crate::audit::AuditLog::open_with
fn open_audit(a: &BundleApplyArgs) -> anyhow::Result<ApplyAudit> {
    use crate::audit::{default_audit_path, AuditError, AuditLog, OpenFlags};
    let path = a.audit.clone().unwrap_or_else(default_audit_path);
    let flags = OpenFlags {
        anchor: true,
        ..OpenFlags::default()
    };
    match AuditLog::open_with(&path, true, &flags) {
        Ok(log) => {
            for note in log.notes_at_open() {
                errln!(
                    "scopevault: audit log {}: {}",
                    shown(&path),
                    escape_for_terminal(note)
                );
            }
            Ok(ApplyAudit {
                path,
                log: Some(log),
            })
        }
        Err(AuditError::InUse { .. }) => Ok(ApplyAudit { path, log: None }),
        Err(e) => Err(anyhow::Error::new(Exit {
            code: super::EXIT_USAGE,
            message: format!(
                "{e}; the bundle was not applied and the vault is unchanged: with no daemon running, `bundle apply` opens the audit log as `scopevault serve` starts on it, and the start refuses it too; once `serve` starts on this log, apply the bundle again"
            ),
        })),
    }
}

/// The audit record of an apply: `bundle.apply` with the location, generation, signer and
/// digest. The daemon holds the log's lock while it runs; then the daemon's own `reload`
/// record (after [`reload_daemon`]) is what the log gets, and this says so. Returns the line
/// to print once every step is done.
fn audit_apply(
    audit: ApplyAudit,
    b: &Bundle,
    signer: &str,
    went_back: Option<u64>,
    moved_from: Option<&str>,
) -> Option<String> {
    use crate::audit::{AuditOp, AuditRecord, Decision};
    let m = &b.manifest;
    let mut reason = format!(
        "location={} generation={} signer={} policy_digest={} payload_digest={}",
        m.location, m.generation, signer, m.policy_digest, m.payload_digest
    );
    // A rollback accepted with `--allow-rollback` says so, appended, so that a reader of
    // the pairs before it reads them as before (docs/audit.md, "bundle.apply").
    if let Some(from) = went_back {
        reason.push_str(&format!(" rollback_from_generation={from}"));
    }
    // So does a move to another location (`--from-location`, twenty-ninth pass).
    if let Some(from) = moved_from {
        reason.push_str(&format!(" moved_from_location={from}"));
    }
    let path = &audit.path;
    match audit.log {
        Some(log) => {
            let rec = AuditRecord {
                reason: Some(&reason),
                ..AuditRecord::new(AuditOp::BundleApply, Decision::Allow)
            };
            match log.append(rec) {
                Ok(seq) => {
                    // Anchored as the daemon anchors at its stop: the next start judges the
                    // log against a head that names this record.
                    if let Err(e) = log.write_anchor_now() {
                        errln!(
                            "scopevault: warning: the apply is recorded in {} (seq {seq}) but the audit log's anchor was not written: {}",
                            shown(path),
                            escape_for_terminal(&e.to_string())
                        );
                    } else {
                        // And its journal cleared, as at the daemon's stop: its frames hold
                        // nothing the synced log lacks. One left is harmless (never written
                        // back into a log that holds them, nor into an empty one).
                        let _ = log.clear_journal();
                    }
                    return Some(format!("audit: {} seq {seq}\n", shown(path)));
                }
                Err(e) => errln!(
                    "scopevault: warning: the apply is done but its audit record failed: {}",
                    escape_for_terminal(&e.to_string())
                ),
            }
        }
        None => errln!(
            "scopevault: note: the daemon holds {}; the apply is recorded there as the daemon's reload ({})",
            shown(path),
            escape_for_terminal(&reason)
        ),
    }
    None
}

/// Ask a running daemon to reload (admin op), so it serves the new content at once. No
/// socket: nothing to do. Returns the line to print. A daemon that says it serves another
/// vault than `vault_id`, the vault applied to, is not asked: its reload cannot serve the
/// bundle, and "daemon at … reloaded (vault generation 7)" was said of the other vault's
/// reload (twenty-sixth pass, found by the attacker of observability and many daemons); the
/// line says which daemon serves which vault ([`super::client_cmds::serves_other_vault`]).
fn reload_daemon(g: &GlobalArgs, vault_id: &str) -> anyhow::Result<Option<String>> {
    let socket = g
        .socket
        .clone()
        .unwrap_or_else(crate::agent::server::default_socket_path);
    if !socket.exists() {
        return Ok(None);
    }
    use crate::client::{Client, ClientError};
    // The same bound as every admin request, for the connection and for the answer.
    let path = super::unlock::vault_path(g);
    let reloaded = Client::connect_within(&socket, super::client_cmds::ANSWER_WAIT).map(|mut c| {
        let h = c.health()?;
        match super::client_cmds::serves_other_vault(&socket, &h, &path, vault_id) {
            Some(line) => Ok(Err(line)),
            None => c.reload().map(Ok),
        }
    });
    let reloaded = match reloaded {
        Ok(Ok(Err(line))) => {
            return Ok(Some(format!(
                "{line}; it was not asked to reload (the bundle is in the vault file: the daemon that serves it loads it at its next request)\n"
            )))
        }
        Ok(Ok(Ok(s))) => Ok(Ok(s)),
        Ok(Err(e)) => Ok(Err(e)),
        Err(e) => Err(e),
    };
    match reloaded {
        Ok(Ok(s)) => Ok(Some(format!(
            "daemon at {} reloaded (vault generation {})\n",
            shown(&socket),
            s.generation.map_or("?".to_owned(), |g| g.to_string())
        ))),
        // A daemon stopped (`kill -STOP`) or hung, which holds its socket: the message says
        // so, and where.
        Err(e @ ClientError::NoAnswer { .. }) | Ok(Err(e @ ClientError::NoAnswer { .. })) => {
            Err(anyhow::Error::new(Exit {
                code: EXIT_DAEMON,
                message: format!(
                    "the bundle was applied to the vault, but {e}; run `{}` once it answers",
                    crate::advice::daemon_command("reload")
                ),
            }))
        }
        // A socket file with no daemon behind it (stale after a crash): nothing serves it.
        Err(_) => Ok(None),
        Ok(Err(e)) => Err(anyhow::Error::new(Exit {
            code: EXIT_DAEMON,
            message: format!(
                "the bundle was applied to the vault, but the daemon at {} did not reload: {e}; run `{}`",
                socket.display(),
                crate::advice::daemon_command("reload")
            ),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk's advice is "free space", then the command with `--reapply`, never "run the
    /// command again" (which the generation check refuses); the error's path and cause are
    /// named (nineteenth pass).
    #[test]
    fn the_unwritten_record_warning_names_the_reapply_and_the_fix() {
        let c = BundleCheckArgs {
            file: "/var/lib/scopevault/ams.svbundle".into(),
            signature: None,
            allowed_signers: "/etc/scopevault/allowed_signers".into(),
            location: None,
        };
        let record = Path::new("/var/lib/scopevault-state/fleet-applied-0123456789abcdef.json");
        let full = crate::vault::VaultError::Io {
            path: record.to_owned(),
            what: "cannot save the new version of".into(),
            error: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        let w = unwritten_record_warning(record, &full, &c);
        assert!(
            w.contains(
                "free space on that file system, then apply the same bundle again with `--reapply`"
            ),
            "{w}"
        );
        assert!(
            w.contains("`scopevault bundle apply /var/lib/scopevault/ams.svbundle --allowed-signers /etc/scopevault/allowed_signers --reapply`"),
            "{w}"
        );
        assert!(w.contains("fleet-applied-0123456789abcdef.json"), "{w}");
        assert!(!w.contains("run the command again"), "{w}");
        let ro = crate::vault::VaultError::Io {
            path: record.to_owned(),
            what: "cannot create a temporary file for the new version of the file in".into(),
            error: std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem),
        };
        let w = unwritten_record_warning(record, &ro, &c);
        assert!(
            w.contains("make that file system writable") && w.contains("--reapply"),
            "{w}"
        );
        assert!(!w.contains("run the command again"), "{w}");
    }

    /// Under the file-size limit (`EFBIG`) the warning said "remove the cause", where every
    /// other writer names the limit (twenty-seventh pass, found by the twenty-sixth pass's
    /// review): it names the limit and its fix, then `--reapply`.
    #[test]
    fn regression_the_unwritten_record_warning_names_the_file_size_limit() {
        let c = BundleCheckArgs {
            file: "/var/lib/scopevault/ams.svbundle".into(),
            signature: None,
            allowed_signers: "/etc/scopevault/allowed_signers".into(),
            location: None,
        };
        let record = Path::new("/var/lib/scopevault-state/fleet-applied-0123456789abcdef.json");
        let big = crate::vault::VaultError::Io {
            path: record.to_owned(),
            what: "cannot save the new version of".into(),
            error: std::io::Error::from_raw_os_error(libc::EFBIG),
        };
        let w = unwritten_record_warning(record, &big, &c);
        assert!(
            w.contains("raise or remove this process's file-size limit")
                && w.contains("LimitFSIZE=")
                && w.contains("then apply the same bundle again with `--reapply`"),
            "{w}"
        );
        assert!(!w.contains("remove the cause"), "{w}");
    }
}
