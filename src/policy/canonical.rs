//! Canonical TOML of a [`Policy`]: what `scopevault policy export` prints.
//!
//! Sections in a fixed order, names sorted, lists sorted and de-duplicated (a task's credentials keep their order), origins and
//! durations normalised, defaults written out. Parsing the output and writing it again gives
//! the same bytes (a fixed point, tested).

use std::collections::BTreeSet;
use std::fmt::Write;

use super::parse::format_duration;
use super::{Policy, Sp};

/// A TOML string literal (basic string, escaped by the toml crate).
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A key: bare when it can be, quoted otherwise.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_owned()
    } else {
        q(s)
    }
}

fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let set: BTreeSet<&str> = items.into_iter().collect();
    let inner: Vec<String> = set.into_iter().map(q).collect();
    format!("[{}]", inner.join(", "))
}

fn strs<T: AsRef<str>>(v: &[Sp<T>]) -> impl Iterator<Item = &str> {
    v.iter().map(|s| s.value.as_ref())
}

pub(crate) fn write(p: &Policy) -> String {
    write_filtered(p, None)
}

/// The canonical TOML, or with `only = Some(location)` the subset a fleet bundle for that
/// location carries (see [`Policy::location_subset_toml`]).
pub(crate) fn write_filtered(p: &Policy, only: Option<&str>) -> String {
    match only {
        None => write_subset(p, None),
        Some(l) => {
            let kept = tasks_of_location(p, l);
            write_subset(p, Some((l, &kept)))
        }
    }
}

/// The names of the tasks that list `location` (one pass over the tasks).
pub(crate) fn tasks_of_location<'p>(p: &'p Policy, location: &str) -> BTreeSet<&'p str> {
    p.tasks
        .iter()
        .filter(|(_, t)| t.locations.iter().any(|x| x.value == location))
        .map(|(n, _)| n.as_str())
        .collect()
}

/// As [`write_filtered`], with the location's tasks already known: only those tasks are
/// visited, so a publish of many locations costs one pass over the policy's tasks in all
/// rather than one per location.
pub(crate) fn write_subset(p: &Policy, only: Option<(&str, &BTreeSet<&str>)>) -> String {
    // Fleet: which tasks and credentials are kept (names in order, as `p.tasks` iterates).
    let tasks: Vec<(&String, &super::Task)> = match only {
        None => p.tasks.iter().collect(),
        Some((_, names)) => names
            .iter()
            .filter_map(|n| p.tasks.get_key_value(*n))
            .collect(),
    };
    let only = only.map(|(l, _)| l);
    let kept_creds: Option<BTreeSet<&str>> = only.map(|_| {
        tasks
            .iter()
            .flat_map(|(_, t)| t.credentials.iter().map(|c| c.value.as_str()))
            .collect()
    });
    let cred_kept = |c: &str| kept_creds.as_ref().is_none_or(|k| k.contains(c));
    let kept_tasks: Option<BTreeSet<&str>> =
        only.map(|_| tasks.iter().map(|(n, _)| n.as_str()).collect());
    let task_name_kept = |t: &str| kept_tasks.as_ref().is_none_or(|k| k.contains(t));
    let mut o = String::new();
    // `write!` to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(o, "version = 1");
    let _ = writeln!(o, "\n[settings]");
    let _ = writeln!(o, "enforce = {}", q(p.enforce.as_str()));
    if let Some(d) = &p.max_credential_age {
        let _ = writeln!(o, "max_credential_age = {}", q(&format_duration(d.value)));
    }
    // Fleet: written only when declared, so policies without locations keep their bytes.
    for (name, l) in &p.locations {
        if only.is_some_and(|x| x != name) {
            continue;
        }
        let _ = writeln!(o, "\n[locations.{}]", key(name));
        let _ = writeln!(o, "recipient = {}", q(&l.recipient.value));
    }
    for (name, e) in &p.catalog {
        let _ = writeln!(o, "\n[scopes.{}]", key(name));
        let _ = writeln!(o, "risk = {}", q(e.risk.as_str()));
        let _ = writeln!(
            o,
            "implies = {}",
            list(e.implies.iter().map(|s| s.value.as_str()))
        );
        if let Some(d) = &e.description {
            let _ = writeln!(o, "description = {}", q(d));
        }
    }
    for (name, c) in &p.credentials {
        if !cred_kept(name) {
            continue;
        }
        let _ = writeln!(o, "\n[credentials.{}]", key(name));
        let _ = writeln!(o, "kind = {}", q(c.kind.value.as_str()));
        let _ = writeln!(
            o,
            "scopes = {}",
            list(c.scopes.iter().map(|s| s.value.as_str()))
        );
        let _ = writeln!(o, "origins = {}", list(strs(&c.origins)));
        if let Some(owner) = &c.owner {
            let _ = writeln!(o, "owner = {}", q(owner));
        }
        if let Some(d) = &c.rotate_every {
            let _ = writeln!(o, "rotate_every = {}", q(&format_duration(d.value)));
        }
    }
    for (name, t) in tasks {
        let _ = writeln!(o, "\n[tasks.{}]", key(name));
        let _ = writeln!(
            o,
            "needs = {}",
            list(t.needs.iter().map(|s| s.value.as_str()))
        );
        // Declared order is kept: it may decide which credential a fetch without one gets.
        let mut seen = BTreeSet::new();
        let creds: Vec<String> = strs(&t.credentials)
            .filter(|c| seen.insert(*c))
            .map(q)
            .collect();
        let _ = writeln!(o, "credentials = [{}]", creds.join(", "));
        if let Some(r) = &t.runners {
            let _ = writeln!(
                o,
                "runners = {{ users = {}, groups = {} }}",
                list(strs(&r.users)),
                list(strs(&r.groups))
            );
        }
        if let Some(origin) = &t.origin {
            let _ = writeln!(o, "origin = {}", q(&origin.value));
        }
        // Kept when empty: `schedulers = []` and no `schedulers` mean the same to the daemon,
        // but the lint tells them apart. Sorted, duplicates dropped (a set, as runners are).
        if let Some(s) = &t.schedulers {
            let _ = writeln!(o, "schedulers = {}", list(strs(&s.value)));
        }
        // A bundle's subset names only its own location.
        match only {
            Some(l) => {
                let _ = writeln!(o, "locations = {}", list([l]));
            }
            None if !t.locations.is_empty() => {
                let _ = writeln!(o, "locations = {}", list(strs(&t.locations)));
            }
            None => {}
        }
    }
    let mut exceptions: Vec<String> = p
        .exceptions
        .iter()
        .filter(|e| {
            e.credential.as_ref().is_none_or(|c| cred_kept(&c.value))
                && e.task.as_ref().is_none_or(|t| task_name_kept(&t.value))
        })
        .map(|e| {
            let mut s = String::new();
            let _ = writeln!(s, "\n[[exceptions]]");
            let _ = writeln!(s, "rule = {}", q(&e.rule.value));
            if let Some(c) = &e.credential {
                let _ = writeln!(s, "credential = {}", q(&c.value));
            }
            if let Some(t) = &e.task {
                let _ = writeln!(s, "task = {}", q(&t.value));
            }
            let _ = writeln!(
                s,
                "scopes = {}",
                list(e.scopes.iter().map(|x| x.value.as_str()))
            );
            if let Some((key, v)) = &e.subject {
                let _ = writeln!(s, "{} = {}", key.as_str(), q(&v.value));
            }
            if let Some(r) = &e.reason {
                let _ = writeln!(s, "reason = {}", q(&r.value));
            }
            if let Some(x) = &e.expires {
                let _ = writeln!(s, "expires = {}", q(&x.value.to_string()));
            }
            s
        })
        .collect();
    // Sorting the rendered blocks orders exceptions by rule, credential, task, … at once.
    exceptions.sort();
    exceptions.dedup();
    for e in exceptions {
        o.push_str(&e);
    }
    o
}
