//! The checkpoint's checks on a bundle, in the order of the contract (docs/operations.md
//! "Fleet"): signature, location, expiry, generation, decryption. Each refusal names its
//! check.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use super::allowed_signers::AllowedSigners;
use super::bundle::{self, Bundle, Payload};
use super::sig::{self, Verified};
use crate::policy::Policy;
use crate::vault::Vault;

/// The checks, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// 1: the SSH signature against allowed_signers.
    Signature,
    /// The file's structure (after the signature: a signed file that does not parse).
    Format,
    /// 2: the manifest's location is this checkpoint's.
    Location,
    /// 3: the bundle has not expired.
    Expiry,
    /// 4: the generation is newer than the last applied.
    Generation,
    /// 5: the payload decrypts with the vault identity and matches the manifest.
    Decrypt,
}

impl Check {
    /// The name printed in refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Signature => "signature",
            Check::Format => "format",
            Check::Location => "location",
            Check::Expiry => "expiry",
            Check::Generation => "generation",
            Check::Decrypt => "decrypt",
        }
    }
}

/// A bundle refused by one check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bundle refused by the {} check: {message}", check.as_str())]
pub struct Refusal {
    /// Which check.
    pub check: Check,
    /// Why.
    pub message: String,
}

fn refuse<T>(check: Check, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        check,
        message: message.into(),
    })
}

/// Check 1: the detached signature over the whole file (`None`: no signature file).
pub fn check_signature(
    bytes: &[u8],
    sig_pem: Option<&[u8]>,
    allowed: &AllowedSigners,
    now: OffsetDateTime,
) -> Result<Verified, Refusal> {
    let Some(sig_pem) = sig_pem else {
        return refuse(
            Check::Signature,
            "no signature file (NAME.svbundle.sig): an unsigned bundle is never applied",
        );
    };
    sig::verify(sig_pem, bytes, allowed, now).map_err(|message| Refusal {
        check: Check::Signature,
        message,
    })
}

/// The file's structure.
pub fn check_format(bytes: &[u8]) -> Result<Bundle, Refusal> {
    Bundle::parse(bytes).map_err(|e| Refusal {
        check: Check::Format,
        message: e.to_string(),
    })
}

/// The bundle this checkpoint applied last, as its vault recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Last<'a> {
    /// Its generation.
    pub generation: u64,
    /// Its payload digest (`None`: applied by an older scopevault, which did not record it).
    pub payload_digest: Option<&'a str>,
}

/// How a bundle at or below the last generation applied is taken (check 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    /// Refused: an older or replayed bundle.
    Refuse,
    /// `--reapply`: only the very bundle applied last (same generation and payload digest),
    /// to restore its signed content after a local change.
    Reapply,
    /// `--allow-rollback`: any, on purpose.
    Allow,
}

/// Where a checkpoint is for an apply (check 2): its location, and the one it moves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located<'a> {
    /// The location the bundle is applied as: `--location`, or the one recorded.
    pub location: Option<&'a str>,
    /// `--from-location`, accepted: the location recorded, which the checkpoint leaves for
    /// [`Located::location`]. Then no bundle was applied here as that location, and the
    /// generation check takes the bundle as on a first apply.
    pub moved_from: Option<&'a str>,
}

/// Check 2 of an apply, before the manifest's: `given` (`--location`) and `recorded` (the
/// location of the bundle applied last) must agree, unless `from` (`--from-location`) names
/// the recorded location on purpose, to move the checkpoint to `given`, whose bundle
/// (`bundle_location`) this must be. A checkpoint was bound for ever to the location of its
/// first apply: one set up as `_ams`, a name today's `publish` refuses, could take no bundle
/// again (twenty-ninth pass, found by the fleet attacker). The refusals of another location
/// name the way to move.
pub fn locate<'a>(
    bundle_location: &str,
    given: Option<&'a str>,
    recorded: Option<&'a str>,
    from: Option<&'a str>,
) -> Result<Located<'a>, Refusal> {
    use crate::text::escape_for_terminal as esc;
    let Some(from) = from else {
        if let (Some(g), Some(r)) = (given, recorded) {
            if g != r {
                return refuse(
                    Check::Location,
                    format!(
                        "--location {} differs from the location `{}` this vault was set up for{}",
                        esc(g),
                        esc(r),
                        move_hint(g, r)
                    ),
                );
            }
        }
        let location = given.or(recorded);
        if let (Some(l), Some(r)) = (location, recorded) {
            if l != bundle_location {
                return refuse(
                    Check::Location,
                    format!(
                        "the bundle is for location `{}`, this checkpoint is `{}`{}",
                        esc(bundle_location),
                        esc(l),
                        move_hint(bundle_location, r)
                    ),
                );
            }
        }
        // The first apply's checks are the manifest's (check_manifest).
        return Ok(Located {
            location,
            moved_from: None,
        });
    };
    let Some(recorded) = recorded else {
        return refuse(
            Check::Location,
            format!(
                "--from-location {}: no bundle was applied to this vault yet, so it has no location to move from; give --location NAME alone on the first apply",
                esc(from)
            ),
        );
    };
    if from != recorded {
        return refuse(
            Check::Location,
            format!(
                "--from-location {} is not the location this vault was set up for, `{}`: name the location it moves from (`scopevault status` shows it)",
                esc(from),
                esc(recorded)
            ),
        );
    }
    let Some(to) = given else {
        return refuse(
            Check::Location,
            "--from-location needs --location NEW, the location the checkpoint moves to",
        );
    };
    if to == recorded {
        return refuse(
            Check::Location,
            format!(
                "--location {} is already this checkpoint's location: nothing to move (--from-location is for moving it to another location)",
                esc(to)
            ),
        );
    }
    if to != bundle_location {
        return refuse(
            Check::Location,
            format!(
                "the bundle is for location `{}`, not `{}` (--location), the location this checkpoint is to move to",
                esc(bundle_location),
                esc(to)
            ),
        );
    }
    Ok(Located {
        location: Some(to),
        moved_from: Some(recorded),
    })
}

/// How a checkpoint set up for `old` would take a bundle of `new` on purpose.
fn move_hint(new: &str, old: &str) -> String {
    use crate::text::escape_for_terminal as esc;
    format!(
        "; if this checkpoint is to serve `{}` from now on (the location renamed in the policy, or this host given to another location), move it with --location={} --from-location={} (docs/operations.md, \"Moving a checkpoint to another location\")",
        esc(new),
        esc(new),
        esc(old)
    )
}

/// Checks 2–4 on the manifest. `location`: this checkpoint's (given or recorded; `None`: the
/// first apply without `--location`, refused). `last`: the last bundle applied here.
pub fn check_manifest(
    b: &Bundle,
    location: Option<&str>,
    now: OffsetDateTime,
    last: Option<Last<'_>>,
    rollback: Rollback,
) -> Result<(), Refusal> {
    let m = &b.manifest;
    match location {
        None => return refuse(Check::Location, format!("this checkpoint has no location yet: give --location NAME on the first apply (the bundle is for `{}`)", m.location)),
        Some(l) if l != m.location => {
            return refuse(
                Check::Location,
                format!("the bundle is for location `{}`, this checkpoint is `{l}`", m.location),
            )
        }
        Some(_) => {}
    }
    if now >= m.expires {
        return refuse(
            Check::Expiry,
            format!(
                "the bundle expired at {} (published {}): publish a fresh one",
                crate::text::rfc3339(m.expires),
                crate::text::rfc3339(m.created)
            ),
        );
    }
    let Some(last) = last else { return Ok(()) };
    check_generation(m, last, rollback, Memory::Vault)
}

/// Whose memory of the bundle applied last check 4 judges by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Memory<'a> {
    /// The vault's record of its last apply (an apply without a move).
    Vault,
    /// This machine's applied record of the location a move goes back to (`--from-location`):
    /// the vault holds another location's bundle, so the very bundle applied last of this
    /// one is taken back without `--reapply`.
    MovedBack(&'a str),
}

/// Check 4 against `last`, the bundle applied last here (for an apply without a move, by the
/// vault's record; for a move back, the highest generation of that location by this
/// machine's applied record), in one place for both: a newer generation passes; another
/// bundle of `last`'s generation (another payload digest) is named as such with both digests,
/// never taken without `--allow-rollback`; an older one is an older or replayed bundle. Until
/// the thirtieth pass a move back judged the generation alone and took another bundle of the
/// generation without a word.
fn check_generation(
    m: &bundle::Manifest,
    last: Last<'_>,
    rollback: Rollback,
    memory: Memory<'_>,
) -> Result<(), Refusal> {
    if m.generation > last.generation || rollback == Rollback::Allow {
        return Ok(());
    }
    let g = last.generation;
    let the_same = m.generation == g && last.payload_digest == Some(m.payload_digest.as_str());
    // Another bundle of the generation applied last (another payload): not an older or
    // replayed bundle, which is what the refusal called it until the twenty-ninth pass.
    let another = last
        .payload_digest
        .filter(|d| m.generation == g && *d != m.payload_digest);
    if let Some(applied) = another {
        let reapply = if rollback == Rollback::Reapply {
            "--reapply restores only the bundle applied last, and "
        } else {
            ""
        };
        return refuse(
            Check::Generation,
            format!(
                "{reapply}the bundle is {}; it is not applied in place of the one applied: {}",
                another_bundle_of(g, applied, &m.payload_digest),
                another_bundle_fix(g)
            ),
        );
    }
    let unrecorded = match memory {
        Memory::Vault => "this vault does not record which bundle of it was applied (an apply by an older scopevault)".to_owned(),
        Memory::MovedBack(l) => format!(
            "this machine's applied record does not record which bundle of it was applied for location `{}` (written by an older scopevault)",
            crate::text::escape_for_terminal(l)
        ),
    };
    match rollback {
        Rollback::Reapply if the_same => Ok(()),
        Rollback::Reapply if m.generation == g => refuse(
            Check::Generation,
            format!("--reapply: {unrecorded}; apply the next generation, or pass --allow-rollback"),
        ),
        Rollback::Reapply => refuse(
            Check::Generation,
            format!("--reapply restores only the bundle applied last (generation {g}{}), but this is generation {}, an older bundle; pass --allow-rollback to apply it on purpose", last.payload_digest.map(|d| format!(", payload {d}")).unwrap_or_default(), m.generation),
        ),
        // Back to the very bundle applied last for that location: the vault holds another
        // location's, so this is no replay.
        _ if the_same && memory != Memory::Vault => Ok(()),
        _ if the_same => refuse(
            Check::Generation,
            format!("the bundle is generation {g}, the one already applied here; pass --reapply to restore its signed content (after a local change)"),
        ),
        _ if m.generation == g => refuse(
            Check::Generation,
            format!("the bundle is generation {g}, the generation already applied here, and {unrecorded}: this one again, or another bundle of that generation; apply the next generation, or pass --allow-rollback to apply it on purpose (it is applied with a warning and recorded as a rollback)"),
        ),
        _ => refuse(
            Check::Generation,
            format!("the bundle is generation {}, but generation {g} was already applied here (an older or replayed bundle: it brings back generation {}'s policy and credentials, including any rotated out since); check that this is the bundle you meant to go back to, then pass --allow-rollback to apply it on purpose (it is applied with a warning and recorded as a rollback)", m.generation, m.generation),
        ),
    }
}

/// What this machine remembers of the location a move (`--from-location`) goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remembered<'a> {
    /// Nothing can be told: this machine's applied record is not the one the vault's last
    /// apply wrote (`why`: there is none, it cannot be read, or it names another apply: the
    /// state directory put back from an older copy, the vault brought from another host).
    Unknown(String),
    /// No bundle of that location was applied to this vault here.
    Never,
    /// The highest generation of it applied here, and which bundle of it last.
    Applied(Last<'a>),
}

/// Check 4 on a move (`--from-location`) to `location`, judged by what this machine's applied
/// record remembers of it ([`Remembered`]): a location this vault served before is judged as
/// an apply without a move is ([`check_generation`]: an older bundle, or another bundle of the
/// generation applied last, refused unless `--allow-rollback`; twenty-ninth pass, found by the
/// re-attacker: a move there and back took an older bundle as a first apply; thirtieth pass:
/// another bundle of the generation). When the record cannot tell (deleted, or put back from an
/// older copy of the state directory), a move back could take an older bundle of a location
/// served before with only a note (thirtieth pass), so a move is then refused unless
/// `--allow-rollback`.
pub fn check_moved_back(
    b: &Bundle,
    location: &str,
    remembered: &Remembered<'_>,
    rollback: Rollback,
) -> Result<(), Refusal> {
    use crate::text::escape_for_terminal as esc;
    match remembered {
        _ if rollback == Rollback::Allow => Ok(()),
        Remembered::Never => Ok(()),
        Remembered::Applied(last) => {
            check_generation(&b.manifest, *last, rollback, Memory::MovedBack(location))
        }
        Remembered::Unknown(why) => refuse(
            Check::Generation,
            format!(
                "this checkpoint moves to location `{l}`, but this machine's applied record of the vault {why}, so it cannot tell which generations of `{l}` were applied here (a move back to a location served before refuses its older bundles and another bundle of its last generation); check that generation {} is the newest bundle of `{l}` and the one you mean, then pass --allow-rollback to move on purpose (the record is written again by that apply)",
                b.manifest.generation,
                l = esc(location)
            ),
        ),
    }
}

/// What a bundle of the generation applied last is when its payload is not the one applied
/// (`applied`): another bundle of that generation, published twice with different content.
/// Said by the generation check's refusals and by the warning of one taken with
/// `--allow-rollback`, after "the bundle is" or "bundle NAME generation N is". Until the
/// twenty-ninth pass the refusal called it "an older or replayed bundle" (found by the fleet
/// attacker: two admins with copies of the master vault, the reference play skipping the
/// second bundle in silence).
pub fn another_bundle_of(generation: u64, applied: &str, this: &str) -> String {
    format!(
        "another bundle of generation {generation}, not the one applied here (its payload is {this}, the one applied was payload {applied}): generation {generation} was published twice with different content, by two publishers or two copies of the master vault (one given to another admin, or restored from a backup)"
    )
}

/// What to do about another bundle of generation `generation` ([`another_bundle_of`]).
fn another_bundle_fix(generation: u64) -> String {
    format!(
        "find the copy of the master vault that holds the values you mean and publish from it again (it publishes above generation {generation}, which this checkpoint applies), and publish from that copy only; to apply this bundle now on purpose, pass --allow-rollback (it is applied with a warning and recorded as a rollback)"
    )
}

/// The generation a bundle accepted by check 4 with `--allow-rollback` goes back from, when it
/// does: the highest of `last` (the vault's record) and `machine` (the generation this
/// machine's applied record names for this vault and location: a vault file restored from a
/// backup holds an older record than what was applied here since), when the bundle is older;
/// or the last generation, when the bundle is another bundle of it (another payload). `None`:
/// not a rollback (a newer bundle, or the very bundle applied last). Such an apply is never
/// silent: `bundle apply` warns naming both generations and its `bundle.apply` record says so
/// (twenty-fifth pass: it was applied with no word at all).
pub fn went_back(b: &Bundle, last: Option<Last<'_>>, machine: Option<u64>) -> Option<u64> {
    let m = &b.manifest;
    let highest = last.map(|l| l.generation).max(machine)?;
    if m.generation < highest {
        return Some(highest);
    }
    let last = last.filter(|l| l.generation == m.generation && l.generation == highest)?;
    (last.payload_digest.is_some_and(|d| d != m.payload_digest)).then_some(m.generation)
}

/// How far ahead of this machine's clock a bundle's `created` may be before `verify` and
/// `apply` warn: five minutes, more than the drift of clocks kept by NTP.
pub const CREATED_AHEAD_WARN: time::Duration = time::Duration::minutes(5);

/// A warning when the manifest's `created` is more than [`CREATED_AHEAD_WARN`] ahead of `now`:
/// the publisher's clock runs ahead, or this one behind, and then expiry (judged by this
/// clock) comes late. Not a refusal: the signature vouches for the time, and a checkpoint
/// whose clock is off would otherwise stop taking every bundle (bundle-format.md, "Checks on
/// the checkpoint").
pub fn created_ahead(b: &Bundle, now: OffsetDateTime) -> Option<String> {
    let m = &b.manifest;
    let ahead = m.created - now;
    (ahead > CREATED_AHEAD_WARN).then(|| {
        format!(
            "the bundle was created {} according to its manifest, {} minutes ahead of this machine's clock ({}): the publisher's clock or this one is wrong, and expiry is judged by this one; check both (NTP)",
            crate::text::rfc3339(m.created),
            ahead.whole_minutes(),
            crate::text::rfc3339(now)
        )
    })
}

/// Check 5: decrypt with the vault identity; the payload repeats the manifest's location and
/// generation, its policy matches the digest and parses, and it holds exactly the
/// credentials and tasks the manifest names.
pub fn check_decrypt(vault: &Vault, b: &Bundle) -> Result<(Payload, Policy), Refusal> {
    let fail = |m: String| Refusal {
        check: Check::Decrypt,
        message: m,
    };
    let m = &b.manifest;
    if m.recipient != vault.recipient() {
        return refuse(
            Check::Decrypt,
            format!(
                "the bundle is encrypted to {}, not to this vault ({}): the policy's [locations.{}] recipient is wrong",
                m.recipient,
                vault.recipient(),
                m.location
            ),
        );
    }
    let plain = vault
        .decrypt_addressed_to_vault(&b.payload)
        .map_err(|e| fail(e.to_string()))?;
    let p = bundle::parse_payload(&plain).map_err(fail)?;
    if p.location != m.location || p.generation != m.generation {
        return refuse(
            Check::Decrypt,
            "the payload's location or generation differs from the manifest's",
        );
    }
    if bundle::digest(p.policy.as_bytes()) != m.policy_digest {
        return refuse(
            Check::Decrypt,
            "the payload's policy does not match policy_digest",
        );
    }
    // Read under the rule an older publish wrote it with (a location or task name starting
    // with `.` or `_`); the names that matter are the manifest's, which refuse a leading `-`
    // (`Manifest::check_names`), and are checked against this policy below.
    let policy = Policy::parse_stored(&p.policy, "<bundle policy>")
        .map_err(|e| fail(format!("the bundle's policy does not parse: {e}")))?;
    // The vault stores its canonical form: one over the limit could not be exported and
    // applied again (twenty-fourth pass).
    policy
        .canonical_toml_within_limit()
        .map_err(|e| fail(format!("the bundle's policy cannot be stored: {e}")))?;
    let creds: Vec<&String> = p.credentials.keys().collect();
    let want: Vec<&String> = m.credentials.iter().collect();
    let tasks: BTreeSet<&str> = policy.tasks().map(|(n, _)| n).collect();
    let want_tasks: BTreeSet<&str> = m.tasks.iter().map(String::as_str).collect();
    if creds != want || tasks != want_tasks {
        return refuse(
            Check::Decrypt,
            "the payload's credentials or tasks differ from the manifest's names",
        );
    }
    // The bundle holds its location's share and nothing else (fleet.md, "Bundle"): the
    // policy is its own subset for the location (no other location's task, exception or
    // recipient), and the credentials are exactly those its tasks list.
    if policy.location_subset_toml(&m.location) != policy.to_canonical_toml() {
        return refuse(
            Check::Decrypt,
            format!(
                "the payload's policy holds more than location `{}`'s share (another location, or a task, credential or exception its tasks do not use)",
                m.location
            ),
        );
    }
    if policy.location(&m.location).map(|l| l.recipient()) != Some(vault.recipient()) {
        return refuse(
            Check::Decrypt,
            format!(
                "the payload's policy does not give this vault's recipient for location `{}`",
                m.location
            ),
        );
    }
    // Every task lists the location (the subset above), so the tasks are the location's; a
    // credential may still be one a task lists but the policy does not declare.
    let (_, share_creds) = super::publish::contents(&policy, &m.location);
    if share_creds.iter().collect::<BTreeSet<_>>() != p.credentials.keys().collect() {
        return refuse(
            Check::Decrypt,
            format!(
                "the payload's credentials are not those of location `{}`'s tasks (the declared credentials they list)",
                m.location
            ),
        );
    }
    // Last, the policy is in canonical form, as publish writes it: then `policy_digest` is
    // also the digest the daemon reports for the policy it serves (`Policy::digest`), which is
    // how `status` and the `vault.load` record tell the bundle from a local change.
    if policy.to_canonical_toml() != p.policy {
        return refuse(
            Check::Decrypt,
            "the payload's policy is not in canonical form (as `publish` writes it): its policy_digest would not name the policy served",
        );
    }
    // What `cred set` would refuse is refused here too, before the save: the vault holds
    // nothing a local writer could not have written.
    for (name, c) in &p.credentials {
        crate::vault::validate_name(name).map_err(|e| fail(format!("credential: {e}")))?;
        for key in c.fields.keys().chain(c.secrets.keys()) {
            crate::vault::validate_field_key(key)
                .map_err(|e| fail(format!("credential `{name}`: {e}")))?;
        }
        for (key, value) in c.fields.iter() {
            crate::vault::validate_field_value(key, value)
                .map_err(|e| fail(format!("credential `{name}`: {e}")))?;
        }
        if let Some((key, _)) = c
            .secrets
            .iter()
            .find(|(_, v)| !crate::secret::within_secret_limit(v.len()))
        {
            return Err(fail(format!(
                "credential `{name}`: secret field `{key}` is larger than {} KiB",
                crate::secret::MAX_SECRET_LEN / 1024
            )));
        }
        // The bound on one credential (vault-format.md, "Payload"): a credential over it
        // makes a fetch answer no client accepts (twenty-second pass).
        if let Some(over) = c.over_bound() {
            return Err(fail(format!(
                "credential `{name}`: {over} (vault-format.md, \"Payload\"); the master vault's credential must be split and the bundle published again"
            )));
        }
        // Both TOTP seeds, or a field name both plain and secret: the check every writer
        // and `publish` make.
        if let Some(x) = c.field_conflict(None) {
            return Err(fail(format!(
                "{}; the master vault's credential must be fixed and the bundle published again",
                x.message(name)
            )));
        }
        // A TOTP seed `cred set` refuses (one that gives no code, an `encoder` asking for
        // Steam's codes) is refused here too, as operations.md says: it was applied, and
        // every fetch of it then failed (twentieth pass). `publish` refuses the same seed
        // first. TotpError never quotes the seed.
        if let Some((key, e)) = crate::agent::totp::unusable_seed(&c.secrets) {
            return Err(fail(format!(
                "credential `{name}`: secret field `{key}` is not a usable TOTP secret: {e}; the master vault's credential must be fixed and the bundle published again"
            )));
        }
    }
    Ok((p, policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::bundle::Manifest;

    fn bundle(generation: u64, payload: char) -> Bundle {
        let now = OffsetDateTime::now_utc();
        Bundle {
            manifest: Manifest {
                format: 1,
                location: "ams".into(),
                generation,
                created: now,
                expires: now + time::Duration::days(1),
                recipient: "age1x".into(),
                policy_digest: format!("sha256:{}", "0".repeat(64)),
                payload_digest: format!("sha256:{}", payload.to_string().repeat(64)),
                tasks: vec![],
                credentials: vec![],
            },
            manifest_bytes: vec![],
            payload: vec![],
        }
    }

    fn check(b: &Bundle, last: Last<'_>, rollback: Rollback) -> Result<(), String> {
        check_manifest(
            b,
            Some("ams"),
            OffsetDateTime::now_utc(),
            Some(last),
            rollback,
        )
        .map_err(|r| {
            assert_eq!(r.check, Check::Generation);
            r.message
        })
    }

    /// `--reapply` restores the very bundle applied last and nothing else: not an older one,
    /// not another bundle of the same generation (a master restored from a backup publishes
    /// a generation twice), not one the vault cannot tell (an apply by an older scopevault).
    /// Without a flag the same bundle is refused with the way to restore it named.
    #[test]
    fn reapply_takes_only_the_bundle_applied_last_and_allow_rollback_takes_any() {
        let a = format!("sha256:{}", "a".repeat(64));
        let last = Last {
            generation: 5,
            payload_digest: Some(&a),
        };
        let same = bundle(5, 'a');
        let other = bundle(5, 'b');
        let older = bundle(4, 'a');
        let newer = bundle(6, 'c');

        let e = check(&same, last, Rollback::Refuse).unwrap_err();
        assert!(
            e.contains("the one already applied here") && e.contains("--reapply"),
            "{e}"
        );
        check(&same, last, Rollback::Reapply).unwrap();

        // Another bundle of the generation applied is named as such, with both payloads,
        // never as an older or replayed one (twenty-ninth pass).
        let b = format!("sha256:{}", "b".repeat(64));
        for r in [Rollback::Reapply, Rollback::Refuse] {
            let e = check(&other, last, r).unwrap_err();
            assert!(
                e.contains("another bundle of generation 5, not the one applied here")
                    && e.contains(&a)
                    && e.contains(&b)
                    && e.contains("published twice")
                    && !e.contains("older or replayed"),
                "{e}"
            );
        }
        let e = check(&other, last, Rollback::Reapply).unwrap_err();
        assert!(e.contains("only the bundle applied last"), "{e}");
        let e = check(&older, last, Rollback::Reapply).unwrap_err();
        assert!(e.contains("generation 4, an older bundle"), "{e}");

        let unknown = Last {
            generation: 5,
            payload_digest: None,
        };
        let e = check(&same, unknown, Rollback::Reapply).unwrap_err();
        assert!(e.contains("does not record which bundle"), "{e}");
        let e = check(&same, unknown, Rollback::Refuse).unwrap_err();
        assert!(
            e.contains("does not record which bundle") && !e.contains("older or replayed"),
            "{e}"
        );

        for b in [&same, &other, &older] {
            check(b, last, Rollback::Allow).unwrap();
        }
        for r in [Rollback::Refuse, Rollback::Reapply, Rollback::Allow] {
            check(&newer, last, r).unwrap();
        }
    }

    /// Twenty-ninth pass: a checkpoint could never leave the location of its first apply.
    /// `--from-location` moves it, naming the recorded location, to `--location`, whose bundle
    /// this must be; without it another location is refused, naming the way.
    #[test]
    fn locate_moves_a_checkpoint_only_from_its_recorded_location_to_the_bundles() {
        let ok = |b, g, r, f| locate(b, g, r, f).unwrap();
        let err = |b, g, r, f| {
            let e = locate(b, g, r, f).unwrap_err();
            assert_eq!(e.check, Check::Location);
            e.message
        };
        // As before: the recorded location, or the given one agreeing with it.
        let here = Located {
            location: Some("ams"),
            moved_from: None,
        };
        assert_eq!(ok("ams", None, Some("ams"), None), here);
        assert_eq!(ok("ams", Some("ams"), Some("ams"), None), here);
        assert_eq!(ok("ams", Some("ams"), None, None), here);
        assert_eq!(ok("ams", None, None, None).location, None);
        let e = err("ams", None, Some("_ams"), None);
        assert!(
            e.contains("this checkpoint is `_ams`")
                && e.contains("--location=ams --from-location=_ams"),
            "{e}"
        );
        let e = err("ams", Some("ams"), Some("_ams"), None);
        assert!(
            e.contains("differs") && e.contains("--location=ams --from-location=_ams"),
            "{e}"
        );
        // The move.
        assert_eq!(
            ok("ams", Some("ams"), Some("_ams"), Some("_ams")),
            Located {
                location: Some("ams"),
                moved_from: Some("_ams"),
            }
        );
        // Not from another location than the recorded one, nor with none recorded.
        assert!(err("ams", Some("ams"), Some("_ams"), Some("fra")).contains("`_ams`"));
        assert!(err("ams", Some("ams"), None, Some("_ams")).contains("first apply"));
        // Not without the target, nor to where it is, nor with another location's bundle.
        assert!(err("ams", None, Some("_ams"), Some("_ams")).contains("needs --location"));
        assert!(err("_ams", Some("_ams"), Some("_ams"), Some("_ams")).contains("nothing to move"));
        assert!(err("fra", Some("ams"), Some("_ams"), Some("_ams")).contains("for location `fra`"));
    }

    /// Thirtieth pass: a move back judged the generation alone. It is now judged by the check
    /// an apply without a move makes (another bundle of the generation refused naming both
    /// digests, an older one as older), except that the very bundle applied last for the
    /// location is taken back; when the record cannot tell, every move is refused; and
    /// `--allow-rollback` takes each.
    #[test]
    fn a_move_back_is_judged_by_the_check_an_apply_makes() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let last = Last {
            generation: 5,
            payload_digest: Some(&a),
        };
        let back = |bundle: &Bundle, r: &Remembered<'_>, rollback| {
            check_moved_back(bundle, "ams", r, rollback).map_err(|e| {
                assert_eq!(e.check, Check::Generation);
                e.message
            })
        };
        let applied = Remembered::Applied(last);
        let e = back(&bundle(5, 'b'), &applied, Rollback::Refuse).unwrap_err();
        assert_eq!(
            e,
            check(&bundle(5, 'b'), last, Rollback::Refuse).unwrap_err()
        );
        assert!(e.contains(&a) && e.contains(&b), "{e}");
        let e = back(&bundle(4, 'a'), &applied, Rollback::Refuse).unwrap_err();
        assert!(e.contains("older or replayed"), "{e}");
        back(&bundle(5, 'a'), &applied, Rollback::Refuse).unwrap();
        back(&bundle(6, 'c'), &applied, Rollback::Refuse).unwrap();
        let unknown = Remembered::Applied(Last {
            generation: 5,
            payload_digest: None,
        });
        let e = back(&bundle(5, 'a'), &unknown, Rollback::Refuse).unwrap_err();
        assert!(e.contains("does not record which bundle"), "{e}");
        back(&bundle(1, 'a'), &Remembered::Never, Rollback::Refuse).unwrap();
        let lost = Remembered::Unknown("is missing (there is none)".into());
        let e = back(&bundle(9, 'a'), &lost, Rollback::Refuse).unwrap_err();
        assert!(
            e.contains("is missing") && e.contains("cannot tell which generations of `ams`"),
            "{e}"
        );
        for r in [&applied, &unknown, &lost] {
            for g in [4, 5] {
                back(&bundle(g, 'b'), r, Rollback::Allow).unwrap();
            }
        }
    }

    /// Twenty-fifth pass: a bundle taken with `--allow-rollback` below the last generation
    /// applied here was applied with no warning. `went_back` names the generation it goes
    /// back from, judged by the vault's record and by this machine's applied record (a vault
    /// file restored from a backup holds an older record); the very bundle applied last, or
    /// a newer one, is no rollback.
    #[test]
    fn went_back_names_the_generation_replaced_by_the_vault_or_this_machine() {
        let a = format!("sha256:{}", "a".repeat(64));
        let last = Last {
            generation: 5,
            payload_digest: Some(&a),
        };
        assert_eq!(went_back(&bundle(4, 'a'), Some(last), None), Some(5));
        assert_eq!(went_back(&bundle(5, 'b'), Some(last), None), Some(5));
        assert_eq!(went_back(&bundle(5, 'a'), Some(last), None), None);
        assert_eq!(went_back(&bundle(6, 'c'), Some(last), None), None);
        assert_eq!(went_back(&bundle(6, 'c'), Some(last), Some(7)), Some(7));
        assert_eq!(went_back(&bundle(5, 'a'), Some(last), Some(7)), Some(7));
        assert_eq!(went_back(&bundle(3, 'c'), None, Some(4)), Some(4));
        assert_eq!(went_back(&bundle(4, 'c'), None, Some(4)), None);
        assert_eq!(went_back(&bundle(1, 'c'), None, None), None);
        let e = check(&bundle(4, 'a'), last, Rollback::Refuse).unwrap_err();
        assert!(
            e.contains("brings back generation 4's policy and credentials")
                && e.contains("check that this is the bundle you meant"),
            "{e}"
        );
    }
}
