//! `scopevault publish`: the bundle of one location from the master policy and vault.

use std::collections::{BTreeMap, BTreeSet};

use time::OffsetDateTime;

use super::bundle::{self, Manifest, Payload};
use crate::policy::Policy;
use crate::vault::Credential;

/// What a location's bundle carries, by name: the tasks that list it and the declared
/// credentials those tasks list.
pub fn contents(policy: &Policy, location: &str) -> (Vec<String>, Vec<String>) {
    contents_of(policy, &policy.tasks_of_location(location))
}

fn contents_of(policy: &Policy, task_names: &BTreeSet<&str>) -> (Vec<String>, Vec<String>) {
    let mut tasks = Vec::new();
    let mut creds = BTreeSet::new();
    for name in task_names {
        let Some(task) = policy.task(name) else {
            continue;
        };
        tasks.push((*name).to_owned());
        for c in task.credentials.iter() {
            if policy.credential(&c.value).is_some() {
                creds.insert(c.value.clone());
            }
        }
    }
    (tasks, creds.into_iter().collect())
}

/// The tasks of every location, found in one pass over the policy's tasks: a publish of
/// 1,000 locations would otherwise walk every task once per location.
pub struct Plan<'p> {
    by_location: BTreeMap<&'p str, BTreeSet<&'p str>>,
}

impl<'p> Plan<'p> {
    /// Index `policy`'s tasks by the locations they list.
    pub fn new(policy: &'p Policy) -> Plan<'p> {
        let mut by_location: BTreeMap<&'p str, BTreeSet<&'p str>> = BTreeMap::new();
        for (name, task) in policy.tasks() {
            for l in task.locations.iter() {
                by_location
                    .entry(l.value.as_str())
                    .or_default()
                    .insert(name);
            }
        }
        Plan { by_location }
    }
}

/// Build the bundle file of `location` at `generation`: the manifest in the clear, and the
/// policy subset with exactly its credentials encrypted to the location's recipient.
/// `stored` are the master vault's credentials; a credential the bundle needs that is not
/// stored is an error.
pub fn build(
    policy: &Policy,
    location: &str,
    generation: u64,
    stored: &BTreeMap<String, Credential>,
    created: OffsetDateTime,
    expires: OffsetDateTime,
) -> Result<(Manifest, Vec<u8>), String> {
    let tasks = policy.tasks_of_location(location);
    build_with(
        policy, &tasks, location, generation, stored, created, expires,
    )
}

/// As [`build`], for one location of a [`Plan`] (what `scopevault publish` does for each
/// location it writes).
pub fn build_planned(
    policy: &Policy,
    plan: &Plan<'_>,
    location: &str,
    generation: u64,
    stored: &BTreeMap<String, Credential>,
    created: OffsetDateTime,
    expires: OffsetDateTime,
) -> Result<(Manifest, Vec<u8>), String> {
    let none = BTreeSet::new();
    let tasks = plan.by_location.get(location).unwrap_or(&none);
    build_with(
        policy, tasks, location, generation, stored, created, expires,
    )
}

fn build_with(
    policy: &Policy,
    task_names: &BTreeSet<&str>,
    location: &str,
    generation: u64,
    stored: &BTreeMap<String, Credential>,
    created: OffsetDateTime,
    expires: OffsetDateTime,
) -> Result<(Manifest, Vec<u8>), String> {
    let loc = policy
        .location(location)
        .ok_or_else(|| format!("the policy declares no location `{location}`"))?;
    // The lint refuses such a recipient first (`invalid-recipient`); a library caller that
    // skipped it gets the same refusal here, naming the location, not age's panic.
    let recipient = super::recipient::parse(loc.recipient()).map_err(|why| {
        format!(
            "location `{location}` has an invalid recipient \"{}\": {why}",
            crate::text::escape_for_terminal(&loc.recipient().chars().take(80).collect::<String>())
        )
    })?;
    let (tasks, cred_names) = contents_of(policy, task_names);
    let mut credentials = BTreeMap::new();
    for name in &cred_names {
        let c = stored.get(name).ok_or_else(|| {
            format!(
                "credential `{name}` (needed at `{location}`) is not stored in the vault: `{}`",
                crate::advice::command(&format!("cred add {name}"))
            )
        })?;
        // A vault saved by an older scopevault may hold a credential over the bound on one
        // credential (vault-format.md, "Payload"): `bundle apply` refuses it on each
        // checkpoint, so publish refuses it here, once.
        if let Some(over) = c.over_bound() {
            return Err(format!(
                "credential `{name}`: {over} (vault-format.md, \"Payload\"). A checkpoint's `bundle apply` refuses a bundle carrying it, so nothing was published: split it into several credentials (`{}`, then `cred add` of each), or leave `{name}` out of this location's tasks, and publish again",
                crate::advice::command(&format!("cred rm {name}"))
            ));
        }
        // A vault saved by an older scopevault may hold both TOTP seed fields, or a field
        // name both as a plain field and as a secret: `bundle apply` refuses either (the
        // same check, `Credential::field_conflict`), so publish refuses it here, once.
        if let Some(x) = c.field_conflict(None) {
            return Err(x.message(name));
        }
        // So may a TOTP seed every writer now refuses (an otpauth URI with an `encoder`
        // parameter): `bundle apply` refuses it on each checkpoint, so publish refuses it
        // here, once, naming the credential (twenty-first pass). TotpError never quotes the
        // seed.
        if let Some((key, e)) = crate::agent::totp::unusable_seed(&c.secrets) {
            return Err(format!(
                "credential `{name}`: secret field `{key}` is not a usable TOTP secret: {e}. A checkpoint's `bundle apply` refuses a bundle carrying it, so nothing was published: store a usable seed with `{}` (or `--secret totp_seed`), which replaces it, or leave `{name}` out of this location's tasks, and publish again",
                crate::advice::command(&format!("cred set {name} --secret otpauth"))
            ));
        }
        credentials.insert(name.clone(), c.clone());
    }
    let policy_text = policy.location_subset_toml_of(location, task_names);
    let policy_digest = bundle::digest(policy_text.as_bytes());
    let payload = Payload {
        location: location.to_owned(),
        generation,
        policy: policy_text,
        credentials,
    };
    let ciphertext = bundle::encrypt_payload(&payload, &recipient)?;
    // Whole seconds, the one form a reader accepts (bundle-format.md): `scopevault publish`
    // passes whole seconds already; a library caller's `now_utc()` is cut to them here.
    let whole = |t: OffsetDateTime| t.replace_nanosecond(0).unwrap_or(t);
    let (created, expires) = (whole(created), whole(expires));
    let manifest = Manifest {
        format: 1,
        location: location.to_owned(),
        generation,
        created,
        expires,
        recipient: loc.recipient().to_owned(),
        policy_digest,
        payload_digest: bundle::digest(&ciphertext),
        tasks,
        credentials: cred_names,
    };
    let bytes = bundle::encode(&manifest, &ciphertext);
    Ok((manifest, bytes))
}
