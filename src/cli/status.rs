//! `scopevault status`: the daemon's health, and for the fleet the applied bundle (from its
//! clear record, `crate::fleet::health`) and the audit log's head, as text, JSON or
//! Prometheus metrics for node_exporter's textfile collector (docs/fleet.md, "Health").

use std::process::ExitCode;

use crate::text::rfc3339;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::args::{GlobalArgs, StatusArgs, StatusFormat};
use super::client_cmds::{daemon_err, health_and_peer_after_load, socket_path};
use crate::client::ClientError;
use crate::fleet::health::{self, Applied, AuditHead, Exposition, RecordError};

/// The locations applied here, each with the highest generation applied.
type Locations = std::collections::BTreeMap<String, health::AppliedAt>;
use crate::protocol::Health;

/// What `status` gathered: the daemon's answer, the applied record, the audit head.
struct Gathered {
    health: anyhow::Result<Health>,
    bundle: Result<Option<Applied>, RecordError>,
    /// The locations applied here to the vault ([`health::locations_here`]), when its applied
    /// record could be judged: an error when the file that keeps them cannot be read.
    locations: Option<Result<Locations, String>>,
    audit: AuditHead,
    /// The daemon down and its log holding records with no anchor of them
    /// ([`health::note_unanchored`]): the text prints its line before the error.
    unanchored: bool,
    now: OffsetDateTime,
}

pub(crate) fn run(g: &GlobalArgs, a: &StatusArgs) -> anyhow::Result<ExitCode> {
    let format = match (a.json, a.format) {
        (true, _) => StatusFormat::Json,
        (false, f) => f.unwrap_or(StatusFormat::Text),
    };
    if a.output.is_some() && format != StatusFormat::Prometheus {
        return Err(anyhow::Error::new(super::Exit {
            code: super::EXIT_USAGE,
            message: "--output writes the metrics file for the textfile collector: give it with --format prometheus".to_owned(),
        }));
    }
    // After a save (`bundle apply`), the first `health` starts the daemon's load of the
    // file and is answered at once with `loading`: asked again until the load is done.
    let socket = socket_path(g);
    let answer = health_and_peer_after_load(&socket).map_err(daemon_err);
    // The daemon's uid is its process's, as `doctor` finds it: the socket's peer is systemd
    // (root) under socket activation, and root's files the daemon named were checked as its
    // own (twenty-seventh pass, found by the twenty-sixth pass's review).
    let audit = daemon_audit_head(
        a.audit.as_deref(),
        answer
            .as_ref()
            .ok()
            .map(|(h, peer)| (h, super::doctor::daemon_uid(&socket, *peer))),
    );
    // The daemon down: a log with records and no anchor of it is what its next start
    // refuses, reported as `doctor` fails it.
    let mut audit = audit;
    let unanchored = answer.is_err() && health::note_unanchored(&mut audit);
    let health = answer.map(|(h, _)| h);
    let vault = super::unlock::vault_path(g);
    let bundle = health::read_applied(&vault);
    // A move (`--from-location`) is refused while the file keeping them cannot be read: said
    // here, not only at the move (thirty-second pass).
    let locations = match &bundle {
        Ok(Some(a)) => Some(health::locations_here(
            &vault,
            &a.record.vault_id,
            Some(&a.record),
        )),
        Ok(None) => crate::vault::file_facts(&vault)
            .ok()
            .map(|f| health::locations_here(&vault, &f.vault_id, None)),
        Err(_) => None,
    };
    let s = Gathered {
        health,
        bundle,
        locations,
        audit,
        unanchored,
        now: OffsetDateTime::now_utc(),
    };
    match format {
        StatusFormat::Json => json_out(s),
        StatusFormat::Prometheus => {
            let output = match a.output.as_deref() {
                Some(file) => {
                    let vault = super::unlock::vault_path(g);
                    let logs = [s.audit.log.clone(), crate::audit::default_audit_path()];
                    // The vault's lock too: metrics renamed over it give the next writer
                    // another inode to lock than a writer holding the old one, and two saves
                    // of the vault run at once (twenty-eighth pass). The rollback record's
                    // lock, `generations.lock`, is in the state directory, refused whole.
                    let mut own = vec![crate::vault::lock_path(&vault), vault];
                    for log in logs {
                        own.push(crate::audit::journal_path(&log));
                        own.push(crate::audit::key_path(&log));
                        own.push(log);
                    }
                    Some((file, own))
                }
                None => None,
            };
            prometheus_out(&s, output)
        }
        StatusFormat::Text => text_out(g, s),
    }
}

/// The audit log's head `status` and `doctor` report: the log given with `--audit`, else the
/// log the daemon (`answer`: its `health` and its uid) names to an admin with its anchor, else
/// this user's default log. An admin whose own default paths are not the daemon's (a user in
/// the admin group, root against another uid's daemon, another state directory) read its own
/// default log and reported that (twenty-sixth pass; `doctor` still did: found by the
/// re-attacker of this pass's fixes). A file the daemon names that is owned neither by the
/// daemon's uid nor, for a daemon of root's, by root is not checked ([`not_the_daemons`]).
/// A daemon whose uid is not known (`Err`: its process is not visible to this user, under
/// socket activation) has nothing it names checked: its uid was guessed from the socket
/// directory's owner, root's under systemd, and root's files were checked as the daemon's
/// (twenty-seventh pass, found by the twenty-seventh pass's re-attacker of its fixes).
pub(super) fn daemon_audit_head(
    given: Option<&std::path::Path>,
    answer: Option<(&Health, Result<u32, String>)>,
) -> AuditHead {
    match (given, answer) {
        (Some(log), _) => health::audit_head(log),
        (
            None,
            Some((
                Health {
                    audit_log: Some(log),
                    audit_anchor,
                    ..
                },
                uid,
            )),
        ) => {
            let log = std::path::Path::new(log);
            let anchor = audit_anchor.as_deref().map(std::path::Path::new);
            let why = match &uid {
                Ok(uid) => not_the_daemons(*uid, log, anchor),
                Err(how) => Some(format!(
                    "the daemon named {} as its audit log, but the user it runs as is not known ({how}): nothing was checked; run status as root or as the daemon's user, or give the log with --audit",
                    crate::text::shown(log)
                )),
            };
            match why {
                Some(why) => AuditHead {
                    unchecked: Some(why),
                    ..AuditHead::of(log)
                },
                None => health::audit_head_with(log, anchor, uid.ok()),
            }
        }
        (None, _) => health::audit_head(&crate::audit::default_audit_path()),
    }
}

/// Why the log and anchor a daemon of `uid` names are not checked: one of them (or the link at
/// its path) is owned by another uid than the daemon's (root's files are the daemon's only
/// when it runs as root). `uid` is the daemon process's ([`super::doctor::daemon_uid`]), not
/// the socket's peer: under systemd's socket activation that is root, and root's files were
/// taken for the daemon's until the twenty-seventh pass. `root`'s
/// `status` checked any path a daemon named (`/etc/shadow` as its anchor) and advised moving it
/// aside (twenty-sixth pass, found by the re-attacker of this pass's fixes). A file missing is
/// not refused: nothing of it is read.
fn not_the_daemons(
    uid: u32,
    log: &std::path::Path,
    anchor: Option<&std::path::Path>,
) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    for (what, path) in [("audit log", Some(log)), ("anchor", anchor)] {
        let Some(path) = path else { continue };
        for m in [std::fs::symlink_metadata(path), std::fs::metadata(path)]
            .into_iter()
            .flatten()
        {
            if m.uid() != uid && uid != 0 {
                return Some(format!(
                    "the daemon (uid {uid}) named as its {what} {}, a file it does not own (owner uid {}): nothing was checked, and nothing is to be done to that file; ask the daemon's user which audit log it writes, or give it with --audit",
                    crate::text::shown(path),
                    m.uid()
                ));
            }
        }
    }
    None
}

/// Whether the daemon serves the signed bundle (`None`: the daemon is down or locked, so it
/// cannot say): the vault it was applied to, at that generation or a later one, holding the
/// bundle's policy (the daemon's `policy_digest` is the bundle's) and no local change since
/// (a value changed at the same policy shows in the vault file's payload, not in the digest).
/// The payload compared is the one the daemon loaded (its `payload_digest`) with the one the
/// apply wrote: the file at the path is not always what the daemon serves. After a local
/// change the daemon loaded, a copy of the applied file put back was refused (a rollback)
/// and the daemon kept serving the local change, yet `daemon_current` said true, judged by
/// that file (twenty-seventh pass, found by the twenty-seventh pass's attacker of monitoring
/// and time). A daemon that does not say (older) or a record without the digest (format 1)
/// is judged by the file as before.
fn daemon_current(h: Option<&Health>, a: &Applied) -> Option<bool> {
    let r = &a.record;
    let h = h?;
    let id = h.vault_id.as_deref()?;
    let generation = h.generation?;
    let serves_applied_payload = match (h.payload_digest.as_deref(), &r.vault_payload_digest) {
        (Some(served), Some(applied)) => served == applied,
        _ => true,
    };
    Some(
        id == r.vault_id
            && generation >= r.vault_generation
            && h.policy_digest.as_deref() == Some(r.policy_digest.as_str())
            && !a.local_change
            && serves_applied_payload,
    )
}

fn bundle_json(
    b: &Result<Option<Applied>, RecordError>,
    h: Option<&Health>,
    now: OffsetDateTime,
) -> Value {
    match b {
        Ok(None) => Value::Null,
        Err(e) => json!({ "error": e.to_string() }),
        Ok(Some(a)) => {
            let r = &a.record;
            json!({
            "vault": r.vault,
            "location": r.location,
            "generation": r.generation,
            "signer": {
                "fingerprint": r.signer_fingerprint,
                "principals": r.signer_principals,
            },
            "policy_digest": r.policy_digest,
            "payload_digest": r.payload_digest,
            "created": rfc3339(r.created),
            "age_seconds": health::seconds_between(r.created, now),
            "expires": rfc3339(r.expires),
            "expires_in_seconds": health::seconds_between(now, r.expires),
            "expired": now >= r.expires,
            "applied": rfc3339(r.applied),
            "vault_generation": r.vault_generation,
            "vault_file_generation": a.vault_file_generation,
            "local_change": a.local_change,
            "daemon_current": daemon_current(h, a),
            })
        }
    }
}

fn json_out(s: Gathered) -> anyhow::Result<ExitCode> {
    // Under --json, stdout is JSON whatever happens: errors too, with the table's code.
    let (mut value, code) = match &s.health {
        Ok(h) => (serde_json::to_value(h)?, 0),
        Err(e) => {
            let code = super::exit_code_of(e);
            let daemon_code = e
                .downcast_ref::<ClientError>()
                .and_then(ClientError::code_str);
            (
                json!({
                    "error": {
                        "message": super::message_of(e),
                        "code": daemon_code,
                        "exit_code": code,
                    }
                }),
                code,
            )
        }
    };
    // A daemon down: the gap its anchor keeps, where a running daemon's `health` has it.
    if let (Err(_), Some(gap)) = (&s.health, &s.audit.gap) {
        value["audit_gap"] = serde_json::to_value(gap)?;
    }
    value["bundle"] = bundle_json(&s.bundle, s.health.as_ref().ok(), s.now);
    value["locations_applied"] = match &s.locations {
        None => Value::Null,
        Some(Err(e)) => json!({ "error": e }),
        Some(Ok(l)) => l
            .iter()
            .map(|(name, at)| {
                (
                    name.clone(),
                    json!({ "generation": at.generation, "payload_digest": at.payload_digest }),
                )
            })
            .collect::<serde_json::Map<String, Value>>()
            .into(),
    };
    value["audit_head"] = serde_json::to_value(&s.audit)?;
    super::output::print_shown_json(&value)?;
    Ok(ExitCode::from(code))
}

/// Whether the command line asks `status` for JSON: `--json`, `--format json` or
/// `--format=json`, however the rest of it parses. Read from the arguments as typed: clap's
/// parse with its errors ignored stopped at the first error, so `--format json` with an empty
/// `SCOPEVAULT_VAULT`, or `--json --json`, were not seen as asking for JSON and printed
/// nothing on stdout (twenty-third pass, found by the twenty-third pass's attacker of the
/// documents' promises).
pub(crate) fn json_requested() -> bool {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    json_requested_in(&args)
}

/// [`json_requested`] of the arguments after the program's name.
fn json_requested_in(args: &[String]) -> bool {
    use clap::CommandFactory;
    let cli = super::args::Cli::command();
    let Some(status) = cli.find_subcommand("status") else {
        return false;
    };
    // Whether `arg` (`--name` or `-c`, no `=` in it) is an option that takes the next
    // argument as its value, among `cmd`'s arguments (the global ones included).
    let takes_next = |cmd: &clap::Command, arg: &str| {
        cmd.get_arguments().any(|a| {
            let named = match arg.strip_prefix("--") {
                Some(long) => a.get_long() == Some(long),
                None => {
                    arg.chars().nth(1).is_some_and(|c| a.get_short() == Some(c)) && arg.len() == 2
                }
            };
            named && a.get_action().takes_values()
        })
    };
    // An option's value is the next argument unless that is a long flag: clap does not take
    // `--json` as the value of `--audit` either (it refuses the line, and `--json` asked for
    // JSON).
    let mut rest = args.iter().peekable();
    let skip_value = |rest: &mut std::iter::Peekable<std::slice::Iter<'_, String>>| {
        rest.next_if(|v| !v.starts_with("--")).cloned()
    };
    // The subcommand: the first argument that is neither an option nor a global option's
    // value.
    loop {
        match rest.next() {
            None => return false,
            Some(a) if a == "--" => return false,
            Some(a) if a.starts_with('-') && a.len() > 1 => {
                if !a.contains('=') && takes_next(&cli, a) {
                    skip_value(&mut rest);
                }
            }
            Some(a) if a == "status" => break,
            Some(_) => return false,
        }
    }
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--" => return false,
            "--json" | "--format=json" => return true,
            // The guard takes the value either way: `--format text` is not read again.
            "--format" if skip_value(&mut rest).is_some_and(|v| v == "json") => return true,
            "--format" => {}
            a if a.starts_with('-')
                && !a.contains('=')
                && (takes_next(status, a) || takes_next(&cli, a)) =>
            {
                skip_value(&mut rest);
            }
            _ => {}
        }
    }
    false
}

/// An argument error under `status --json`, as the JSON error object on stdout (the message
/// still goes to stderr, and the exit code is clap's, 2): `hidden`, the text printed instead of
/// clap's when clap's would quote a value typed ([`super::hidden_clap_error`]), else clap's.
pub(crate) fn print_argument_error(e: &clap::Error, hidden: Option<&str>) {
    let text = hidden.map_or_else(|| e.render().to_string(), str::to_owned);
    let message = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    print_error_json(message, e.exit_code());
}

/// The JSON `status --json` prints for an error before any command ran: `message`, no code.
pub(crate) fn print_error_json(message: &str, exit_code: i32) {
    let value = json!({
        "error": {
            "message": message,
            "code": null,
            "exit_code": exit_code,
        }
    });
    let _ = super::output::print_shown_json(&value);
}

fn b2f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The metrics (docs/fleet.md, "Metrics"). Exit 0 whenever they are printed: a daemon that
/// does not answer is `scopevault_up 0`, so a textfile collector job keeps its file fresh.
fn prometheus_out(
    s: &Gathered,
    output: Option<(&std::path::Path, Vec<std::path::PathBuf>)>,
) -> anyhow::Result<ExitCode> {
    let mut e = Exposition::new();
    let h = s.health.as_ref().ok();
    e.single(
        "scopevault_up",
        "1 if the daemon answered the health request, else 0.",
        b2f(h.is_some()),
    );
    if let Some(h) = h {
        e.single(
            "scopevault_locked",
            "1 if the daemon holds no vault key.",
            b2f(h.locked),
        );
        e.single(
            "scopevault_exe_replaced",
            "1 if the daemon runs a binary that was replaced or removed since it started (a new one installed at its path without a restart), else 0.",
            b2f(h.exe_replaced.is_some()),
        );
        e.single(
            "scopevault_vault_load_refused",
            "1 if the vault file at the path is one the daemon's last load refused (an older copy, another vault's file; it serves the generation it has), else 0.",
            b2f(h.load_refused.is_some()),
        );
        e.single(
            "scopevault_audit_ok",
            "1 if the daemon's last audit append succeeded (else hand-outs are refused).",
            b2f(h.audit_ok),
        );
        e.single(
            "scopevault_audit_anchor_ok",
            "1 if the daemon's last write of the audit anchor succeeded (else hand-outs are refused).",
            b2f(h.audit_anchor_ok),
        );
        e.single(
            "scopevault_log_lines_lost",
            "Lines of the daemon's log (stderr) lost since its start: not writable (closed terminal, log reader gone, full disk) or stuck.",
            h.log_lines_lost as f64,
        );
        e.single(
            "scopevault_connections",
            "Connections open on the daemon's socket, the status request's included.",
            h.connections as f64,
        );
        if let Some(digest) = &h.policy_digest {
            e.gauge(
                "scopevault_policy_info",
                "The policy the daemon serves: its digest, sha256 of its canonical TOML (value 1; absent while locked or without a policy).",
                &[(&[("digest", digest)], 1.0)],
            );
        }
        if let Some(generation) = h.generation {
            e.single(
                "scopevault_vault_generation",
                "Generation of the vault the daemon serves (absent while locked).",
                generation as f64,
            );
            e.single(
                "scopevault_credentials",
                "Credentials in the vault the daemon serves (absent while locked).",
                h.credentials as f64,
            );
            e.single(
                "scopevault_tasks",
                "Tasks in the policy the daemon serves (absent while locked).",
                h.tasks as f64,
            );
        }
    }
    // The gap accepted: the daemon's (`health`), or, while it does not answer, the one the
    // anchor keeps (absent when no anchor was read). Shown only while the daemon ran until
    // the twenty-seventh pass (found by the twenty-sixth pass's review).
    let gap = match h {
        Some(h) => Some(h.audit_gap.as_ref()),
        None => s.audit.anchor_seq.map(|_| s.audit.gap.as_ref()),
    };
    if let Some(gap) = gap {
        // Printed whether or not a gap was accepted (0 when none), so that an alert on them
        // has a series to watch on every host.
        let at = gap.and_then(|g| {
            OffsetDateTime::parse(&g.at, &time::format_description::well_known::Rfc3339).ok()
        });
        e.single(
            "scopevault_audit_gap_accepted",
            "1 if a start of the daemon accepted an audit gap (serve --accept-audit-gap: records cut from the log's end, recorded as an audit.gap record) in the live log file, until the log is rotated; else 0.",
            b2f(gap.is_some()),
        );
        e.single(
            "scopevault_audit_gap_timestamp_seconds",
            "When the start accepted the audit gap of scopevault_audit_gap_accepted (Unix time; 0 when none).",
            at.map_or(0.0, |t| t.unix_timestamp() as f64),
        );
        e.single(
            "scopevault_audit_gap_seq",
            "seq of the audit.gap record of the gap accepted (0 when none).",
            gap.map_or(0.0, |g| g.seq as f64),
        );
        e.single(
            "scopevault_audit_gap_missing_first_seq",
            "First seq missing from the audit log at the gap accepted (0 when none).",
            gap.and_then(|g| g.missing_first).unwrap_or(0) as f64,
        );
        e.single(
            "scopevault_audit_gap_missing_last_seq",
            "Last seq missing from the audit log at the gap accepted (0 when none).",
            gap.and_then(|g| g.missing_last).unwrap_or(0) as f64,
        );
    }
    e.single(
        "scopevault_bundle_record_ok",
        "1 if the applied-bundle record is absent, or readable, valid and this vault's; else 0.",
        b2f(s.bundle.is_ok()),
    );
    let applied = s.bundle.as_ref().ok().and_then(Option::as_ref);
    e.single(
        "scopevault_bundle_applied",
        "1 if a fleet bundle was applied to this vault, else 0.",
        b2f(applied.is_some()),
    );
    if let Some(a) = applied {
        let r = &a.record;
        let loc: &[(&str, &str)] = &[("location", &r.location)];
        let principals = r.signer_principals.join(",");
        let mut labels = vec![
            ("location", r.location.as_str()),
            ("signer", &r.signer_fingerprint),
            ("principal", &principals),
            ("policy_digest", &r.policy_digest),
        ];
        // Absent from a record an older scopevault wrote (format 1 or 2).
        if let Some(d) = &r.payload_digest {
            labels.push(("payload_digest", d));
        }
        e.gauge(
            "scopevault_bundle_info",
            "The applied bundle: location, signer key fingerprint and principals, policy and payload digests (value 1).",
            &[(&labels, 1.0)],
        );
        e.gauge(
            "scopevault_bundle_generation",
            "Generation of the applied bundle.",
            &[(loc, r.generation as f64)],
        );
        e.gauge(
            "scopevault_bundle_created_timestamp_seconds",
            "When the applied bundle was published (Unix time).",
            &[(loc, r.created.unix_timestamp() as f64)],
        );
        e.gauge(
            "scopevault_bundle_age_seconds",
            "Seconds since the applied bundle was published, when this was written.",
            &[(loc, health::seconds_between(r.created, s.now) as f64)],
        );
        e.gauge(
            "scopevault_bundle_expiry_timestamp_seconds",
            "When the applied bundle expires (Unix time).",
            &[(loc, r.expires.unix_timestamp() as f64)],
        );
        e.gauge(
            "scopevault_bundle_expiry_seconds",
            "Seconds until the applied bundle expires (negative once expired), when this was written: alert on scopevault_bundle_expiry_timestamp_seconds - time(), which a stale file cannot freeze.",
            &[(loc, health::seconds_between(s.now, r.expires) as f64)],
        );
        e.gauge(
            "scopevault_bundle_applied_timestamp_seconds",
            "When the bundle was applied here (Unix time).",
            &[(loc, r.applied.unix_timestamp() as f64)],
        );
        e.gauge(
            "scopevault_bundle_local_change",
            "1 if the vault's content was changed locally since the bundle was applied (it no longer holds the signed bundle).",
            &[(loc, b2f(a.local_change))],
        );
        if let Some(current) = daemon_current(h, a) {
            e.gauge(
                "scopevault_bundle_daemon_current",
                "1 if the daemon serves the bundle: its vault, at that generation or later, with its policy and no local change.",
                &[(loc, b2f(current))],
            );
        }
    }
    if let Some(l) = &s.locations {
        e.single(
            "scopevault_locations_applied_ok",
            "1 if the locations applied here (fleet-locations-*.json beside the applied record) are absent or readable; 0 if that file cannot be read, which refuses every move (bundle apply --from-location).",
            b2f(l.is_ok()),
        );
        if let Ok(l) = l {
            if !l.is_empty() {
                let samples: Vec<([(&str, &str); 1], f64)> = l
                    .iter()
                    .map(|(name, at)| ([("location", name.as_str())], at.generation as f64))
                    .collect();
                let samples: Vec<(&[(&str, &str)], f64)> =
                    samples.iter().map(|(l, v)| (&l[..], *v)).collect();
                e.gauge(
                    "scopevault_location_applied_generation",
                    "Highest bundle generation of each location applied here, which a move back (bundle apply --from-location) is judged by.",
                    &samples,
                );
            }
        }
    }
    let a = &s.audit;
    e.single(
        "scopevault_audit_head_checked",
        "1 if the audit log's head could be checked; 0 if this user may not read the anchor (the daemon's state directory): run the metrics as the daemon's user or root.",
        b2f(a.unchecked.is_none()),
    );
    // Unchecked is neither good nor bad: `scopevault_audit_head_ok` is absent then, not 0.
    if a.unchecked.is_none() {
        e.single(
            "scopevault_audit_head_ok",
            "1 if the audit log's head was read and matches its anchor (or, for a user who may not read the log, the anchor was read), else 0 (absent when it could not be checked).",
            b2f(a.error.is_none()),
        );
    }
    if let Some(seq) = a.seq {
        e.single(
            "scopevault_audit_seq",
            "seq of the audit log's last record (0 for an empty log).",
            seq as f64,
        );
    }
    if let Some(seq) = a.anchor_seq {
        e.single(
            "scopevault_audit_anchor_seq",
            "seq of the record the audit log's anchor names (the daemon rewrites it as records are written, and at stop).",
            seq as f64,
        );
    }
    // The head's hash is not a label: it changes with every record, and each value would be
    // a new series (`status --json` has it).
    if let Some(source) = a.source {
        e.gauge(
            "scopevault_audit_head_info",
            "Where the audit chain's head was read: the log, or its anchor for a user who may not read the log (value 1).",
            &[(&[("source", source)], 1.0)],
        );
    }
    match output {
        Some((file, own)) => write_metrics_file(file, &own, e.finish().as_bytes())?,
        None => super::write_stdout(e.finish().as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The text's line of an audit gap accepted at a start, `from` said after its first words.
fn gap_line(gap: &crate::protocol::AcceptedGap, from: &str) -> String {
    let esc = crate::text::escape_for_terminal;
    let missing = match (gap.missing_first, gap.missing_last) {
        (Some(first), Some(last)) => format!("records {first}..={last} are missing"),
        _ => "the anchored record was rewritten".to_owned(),
    };
    format!(
        "audit gap:   ACCEPTED at start ({}, serve --accept-audit-gap){from}: {missing}, recorded as the `audit.gap` record at seq {}: {}; shown until the log is rotated (`scopevault audit rotate`): keep the log as evidence, find out what cut it, and remove the option from the next start (docs/audit.md, \"The anchor\")",
        esc(&gap.at),
        gap.seq,
        esc(&crate::advice::in_daemon_text(&gap.reason))
    )
}

/// `status --format prometheus --output FILE`: the metrics written to a new file of a random
/// name in FILE's directory (`O_CREAT | O_EXCL | O_NOFOLLOW`), mode 0644 for node_exporter,
/// fsynced and renamed over FILE; FILE itself is never opened, so a link there is replaced,
/// not followed. The directory is checked as `publish --out` is (this user's or root's,
/// writable by nobody else, no other user's link on its way). The documented job redirected
/// the shell's output to a fixed `scopevault.prom.tmp` in a directory the docs gave no owner:
/// another writer of that directory linked that name to the vault, and the job, run as the
/// vault's owner, overwrote the vault with metrics (twenty-seventh pass).
///
/// `own`: scopevault's own files (the vault, its lock, the audit logs, their journals and keys), which
/// FILE may not be (the same file, or the same path once resolved), nor may it lie in the
/// state directory; a regular file already at FILE is replaced only if it starts as the
/// metrics scopevault writes. `--output` naming the vault replaced it with metrics, exit 0
/// (twenty-seventh pass, found by the re-attacker of this pass's fixes).
fn write_metrics_file(
    file: &std::path::Path,
    own: &[std::path::PathBuf],
    bytes: &[u8],
) -> anyhow::Result<()> {
    let name = file.file_name().ok_or_else(|| super::Exit {
        code: super::EXIT_USAGE,
        message: format!(
            "--output {}: give the path of the metrics file, e.g. /var/lib/node_exporter/textfile/scopevault/scopevault.prom",
            crate::text::shown(file)
        ),
    })?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let out = crate::vault::SafeDir::open_output(dir)?;
    if let Some(why) = not_a_metrics_file(&out, dir, name, own) {
        return Err(anyhow::Error::new(super::Exit {
            code: super::EXIT_USAGE,
            message: format!(
                "refusing to write the metrics to {}: {why}. Nothing was written; give --output a file of its own, e.g. /var/lib/node_exporter/textfile/scopevault/scopevault.prom",
                crate::text::shown(file)
            ),
        }));
    }
    out.replace_with_mode(name, ".scopevault-metrics-", bytes, 0o644)?;
    Ok(())
}

/// Why `name` in the output directory `out` (at `dir`) is not a file `status --output` may
/// replace ([`write_metrics_file`]), or `None`.
fn not_a_metrics_file(
    out: &crate::vault::SafeDir,
    dir: &std::path::Path,
    name: &std::ffi::OsStr,
    own: &[std::path::PathBuf],
) -> Option<String> {
    let target = std::fs::canonicalize(dir).ok().map(|d| d.join(name));
    let state = std::fs::canonicalize(crate::paths::state_dir()).ok();
    if let (Some(t), Some(state)) = (&target, &state) {
        if t.starts_with(state) {
            return Some(format!(
                "it is in scopevault's state directory {}, which holds the rollback record and the audit anchors",
                crate::text::shown(state)
            ));
        }
    }
    let entry = dir.join(name);
    for p in own {
        if crate::paths::replaces(&entry, p) {
            return Some(format!(
                "it is {}, one of scopevault's own files (the vault, its lock, an audit log, its journal or key)",
                crate::text::shown(p)
            ));
        }
    }
    let st = out.lstat(name).ok()?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    match kind {
        // A link there is replaced, never followed.
        rustix::fs::FileType::Symlink => None,
        rustix::fs::FileType::RegularFile => {
            let head = out
                .read(&name.to_string_lossy(), 64)
                .ok()
                .flatten()
                .unwrap_or_default();
            (!head.starts_with(METRICS_START)).then(|| {
                "a file is there that is not a metrics file scopevault wrote (its first line is not `# HELP scopevault_…`): move it away if it is not needed, or give another path".to_owned()
            })
        }
        _ => Some(format!(
            "it is a {kind:?}, not a metrics file: give the path of a regular file"
        )),
    }
}

/// How every metrics file `status --format prometheus` writes begins.
const METRICS_START: &[u8] = b"# HELP scopevault_";

fn text_out(g: &GlobalArgs, s: Gathered) -> anyhow::Result<ExitCode> {
    let Gathered {
        health,
        bundle,
        locations,
        audit,
        unanchored,
        now,
    } = s;
    let h = match health {
        Ok(h) => h,
        // The daemon down: the gap its anchor keeps is still shown (it was only while the
        // daemon ran until the twenty-seventh pass, found by the twenty-sixth pass's review).
        Err(e) => {
            if let Some(gap) = &audit.gap {
                outln!(
                    "{}",
                    gap_line(
                        gap,
                        " (read from the log's anchor: the daemon does not answer)"
                    )
                )?;
            }
            if let (true, Some(why)) = (unanchored, &audit.error) {
                outln!(
                    "audit head:  BAD: {}",
                    crate::text::escape_for_terminal(why)
                )?;
            }
            return Err(e);
        }
    };
    // The daemon serves another vault than the file this command reads the bundle of: said
    // once, and no reload is advised below (it cannot help).
    let elsewhere = super::client_cmds::ThisVault::of(g).served_elsewhere(&socket_path(g), &h);
    // Every string shown comes from elsewhere (the daemon's answer, the applied record, a
    // path, an error naming one): escaped, so none can move the cursor or forge a line.
    let esc = crate::text::escape_for_terminal;
    outln!(
        "daemon:      scopevault {} on {}",
        esc(&h.version),
        crate::text::shown(&socket_path(g))
    )?;
    // A binary installed over the daemon's without a restart: `health` and `doctor` said so,
    // `status` did not (twenty-seventh pass, found by the twenty-sixth pass's review).
    if let Some(path) = &h.exe_replaced {
        outln!(
            "             RUNS A REPLACED BINARY: the file at {} is not the one it runs (another was installed there, or it was removed), and it runs the old one until it is restarted; restart it (`systemctl restart scopevault`, or stop `scopevault serve` and start it again) (docs/operations.md, \"Upgrading\")",
            esc(path)
        )?;
    }
    if h.locked {
        // Naming the vault and socket this command was given, as `get`'s refusal and doctor
        // do: copied, it unlocks the daemon asked (twenty-eighth pass, found by the re-attacker
        // of its fixes).
        outln!(
            "vault:       locked (an admin runs `{}`)",
            crate::advice::daemon_command("unlock")
        )?;
    } else {
        outln!(
            "vault:       unlocked, id {}, generation {}{}",
            esc(h.vault_id.as_deref().unwrap_or("?")),
            h.generation.unwrap_or(0),
            if h.loading {
                " (loading the vault file saved since)"
            } else {
                ""
            }
        )?;
        if let Some(why) = &h.load_waits {
            outln!(
                "             the vault file saved since is not loaded yet: it waits for the rollback record's lock, and the daemon loads it once the lock is free: {}",
                esc(&crate::advice::in_daemon_text(why))
            )?;
        }
        if let Some(why) = &h.load_refused {
            outln!(
                "             the vault file at the path was REFUSED by the daemon's last load (it serves generation {} meanwhile): {}",
                h.generation.unwrap_or(0),
                esc(&crate::advice::in_daemon_text(why))
            )?;
        }
        outln!(
            "contents:    {} credentials, {} tasks, enforce = {}",
            h.credentials,
            h.tasks,
            esc(h.enforce.as_deref().unwrap_or("(no policy applied)"))
        )?;
        if let Some(d) = &h.policy_digest {
            outln!("policy:      {}", esc(d))?;
        }
    }
    if let Some(line) = &elsewhere {
        outln!(
            "vault file:  ANOTHER VAULT than the daemon's: {line} (the bundle and audit head below are this command's, not the daemon's)"
        )?;
    }
    outln!(
        "audit log:   {}",
        if h.audit_ok {
            "ok"
        } else {
            "FAILING: hand-outs are refused"
        }
    )?;
    if !h.audit_sync {
        outln!(
            "audit sync:  OFF: this daemon hands out before its audit records are durable (serve --no-audit-sync, a benchmark build with the cargo feature bench-no-audit-sync); a crash can lose the record of a hand-out. Restart it from a release build"
        )?;
    }
    if !h.audit_anchor_ok {
        outln!(
            "audit anchor: FAILING: hand-outs are refused; the anchor in the state directory cannot be written (disk space, permissions: the daemon's log names the error)"
        )?;
    }
    if let Some(gap) = &h.audit_gap {
        outln!("{}", gap_line(gap, ""))?;
    }
    if h.log_lines_lost > 0 {
        outln!(
            "daemon log:  {} line(s) lost: its stderr cannot be written (a closed terminal, a log reader gone, a full disk); the daemon serves on (docs/operations.md, \"The daemon's log\")",
            h.log_lines_lost
        )?;
    }
    if let (Some(seq), Some(hash), Some(source)) = (audit.seq, &audit.hash, audit.source) {
        outln!(
            "audit head:  seq {seq} hash {} (from the {source}){}",
            esc(hash),
            audit
                .anchor_seq
                .map_or(String::new(), |s| format!(", anchored at seq {s}"))
        )?;
        if let Some(moved) = &audit.moved {
            outln!(
                "             in {}, where a rotation moved the log before the daemon noticed: its next write (or start) continues it in a new file (docs/audit.md, \"Rotation\")",
                crate::text::shown(moved)
            )?;
        }
    }
    if let Some(e) = &audit.error {
        outln!("audit head:  BAD: {}", esc(e))?;
    }
    if let Some(why) = &audit.unchecked {
        outln!("audit head:  NOT CHECKED: {}", esc(why))?;
    }
    match &bundle {
        Ok(None) => {}
        Err(RecordError::OtherVault(why)) => {
            outln!("bundle:      none applied to this vault ({})", esc(why))?
        }
        Err(e) => outln!("bundle:      unknown: {}", esc(&e.to_string()))?,
        Ok(Some(a)) => {
            let r = &a.record;
            let left = health::seconds_between(now, r.expires);
            outln!(
                "bundle:      {} generation {}, signed by {}",
                esc(&r.location),
                r.generation,
                crate::fleet::sig::signer_shown(&r.signer_fingerprint, &r.signer_principals)
            )?;
            // Which bundle of the generation: two publishers can publish one twice.
            if let Some(d) = &r.payload_digest {
                outln!("             payload digest {}", esc(d))?;
            }
            outln!(
                "             published {} ({} s ago), {} {} ({} s{})",
                rfc3339(r.created),
                health::seconds_between(r.created, now),
                if left > 0 { "expires" } else { "EXPIRED" },
                rfc3339(r.expires),
                left.abs(),
                if left > 0 { " left" } else { " ago" }
            )?;
            if a.local_change {
                outln!(
                    "             SUPERSEDED by a local change: the vault (generation {}) was changed since the apply (generation {}); it no longer holds the signed bundle until one is applied again (a newer generation, or this one with --reapply)",
                    a.vault_file_generation, r.vault_generation
                )?;
            } else if elsewhere.is_some() {
                outln!(
                    "             the daemon does NOT serve it: it serves another vault (the vault file line above says which, and what serves this one); no reload of that daemon serves this bundle"
                )?;
            } else if daemon_current(Some(&h), a) == Some(false) {
                // The vault and generation are the bundle's, the policy is not: a reload
                // would not help.
                let loaded = h.vault_id.as_deref() == Some(r.vault_id.as_str())
                    && h.generation >= Some(r.vault_generation);
                match h.policy_digest.as_deref() {
                    Some(d) if loaded && d != r.policy_digest => outln!(
                        "             the daemon does NOT serve it: it serves the policy {}, not the bundle's {}",
                        esc(d),
                        esc(&r.policy_digest)
                    )?,
                    _ if loaded && h.load_refused.is_some() => outln!(
                        "             the daemon does NOT serve it: it serves generation {}, changed since the apply (generation {}), and refused the file at the path (the REFUSED line above says why and what to do)",
                        h.generation.unwrap_or(0),
                        r.vault_generation
                    )?,
                    _ => outln!(
                        "             the daemon does NOT serve it yet: run `{}`",
                        crate::advice::daemon_command("reload")
                    )?,
                }
            }
        }
    }
    match &locations {
        Some(Err(e)) => outln!(
            "locations:   UNREADABLE: {}: {}",
            esc(e),
            health::LOCATIONS_UNREADABLE
        )?,
        Some(Ok(l)) if !l.is_empty() => outln!(
            "locations:   applied here: {} (a move back, --from-location, is judged by them)",
            health::locations_shown(l)
        )?,
        _ => {}
    }
    outln!("connections: {}", h.connections)?;
    outln!(
        "you:         uid {} gid {} pid {}{}",
        h.peer.uid,
        h.peer.gid,
        h.peer.pid,
        if h.peer.admin { " (admin)" } else { "" }
    )?;
    Ok(ExitCode::SUCCESS)
}
