//! The audit record: written by the daemon ([`AuditRecord`]) and read back by `audit verify`,
//! `audit show` and `lint --audit` ([`RecordView`]).

use super::*;

/// The outcome recorded for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Granted (values were handed out).
    Allow,
    /// Refused by policy or authorisation.
    Deny,
    /// Failed for another reason (locked, internal error, ...).
    Error,
}

impl Decision {
    /// As written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }
}

/// What a record is about: the `op` member. A request's record carries its protocol op; the
/// daemon's own records (and `bundle apply`'s) have kinds of their own. docs/audit.md lists
/// them; the strings are the log's format and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOp {
    /// A request, under its protocol op (`fetch`, `ticket`, `unlock`, `scrub_report`, ...).
    Request(crate::protocol::Op),
    /// `denials`: refusals of one uid counted, not recorded one by one.
    Denials,
    /// `invalid`: a request refused before it was parsed (a line over 64 KiB).
    Invalid,
    /// `vault.load`: a vault was loaded (unlock, reload, SIGHUP) or refused as a rollback.
    VaultLoad,
    /// `audit.rotate`: the first record of a new file after a rotation.
    AuditRotate,
    /// `audit.gap`: the file was cut under the daemon, or a gap was accepted at start.
    AuditGap,
    /// `audit.new_key`: a new HMAC key was made for an existing log.
    AuditNewKey,
    /// `audit.repair`: an incomplete final line was removed on open.
    AuditRepair,
    /// `bundle.apply`: `bundle apply` wrote a signed bundle into the vault.
    BundleApply,
}

impl AuditOp {
    /// The records of the daemon's own kinds (every [`AuditOp`] but a request).
    pub const OWN: [AuditOp; 8] = [
        AuditOp::Denials,
        AuditOp::Invalid,
        AuditOp::VaultLoad,
        AuditOp::AuditRotate,
        AuditOp::AuditGap,
        AuditOp::AuditNewKey,
        AuditOp::AuditRepair,
        AuditOp::BundleApply,
    ];

    /// As written in the log's `op`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditOp::Request(op) => op.as_str(),
            AuditOp::Denials => "denials",
            AuditOp::Invalid => "invalid",
            AuditOp::VaultLoad => "vault.load",
            AuditOp::AuditRotate => "audit.rotate",
            AuditOp::AuditGap => "audit.gap",
            AuditOp::AuditNewKey => "audit.new_key",
            AuditOp::AuditRepair => "audit.repair",
            AuditOp::BundleApply => "bundle.apply",
        }
    }

    /// The kind of an `op` read back from a log; `None` for a name this version does not
    /// write (a later version's, or a forged line): readers keep such a record, as a string.
    pub fn from_name(name: &str) -> Option<AuditOp> {
        crate::protocol::Op::from_name(name)
            .map(AuditOp::Request)
            .or_else(|| AuditOp::OWN.into_iter().find(|k| k.as_str() == name))
    }
}

impl From<crate::protocol::Op> for AuditOp {
    fn from(op: crate::protocol::Op) -> Self {
        AuditOp::Request(op)
    }
}

impl std::fmt::Display for AuditOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked, from the kernel (`SO_PEERCRED`) and `/proc/PID/exe` read through a pidfd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    /// Effective uid of the peer.
    pub uid: u32,
    /// Effective gid of the peer.
    pub gid: u32,
    /// Process id, if known.
    pub pid: Option<i32>,
    /// The peer's executable at accept time, cut at 256 bytes; `None` if unknown or not
    /// confirmed to be the connected process's.
    pub exe: Option<String>,
}

/// One decision to record. `values` are the secret fields handed out; only their HMACs are
/// written.
#[derive(Debug)]
pub struct AuditRecord<'a> {
    /// Who asked.
    pub peer: Option<PeerInfo>,
    /// The protocol op (`fetch`, `ticket`, `unlock`, ...) or the daemon's own record kind.
    pub op: AuditOp,
    /// The task asked for.
    pub task: Option<&'a str>,
    /// The credential concerned.
    pub credential: Option<&'a str>,
    /// Allowed, denied or failed.
    pub decision: Decision,
    /// Why (an error code and short text); never a secret.
    pub reason: Option<&'a str>,
    /// Runtime scope warnings attached to the response.
    pub warnings: Vec<String>,
    /// (field name, value) of every secret value handed out; logged as HMACs only.
    pub values: Vec<(&'a str, &'a SecretString)>,
    /// (field name, HMAC) of secret values handed out whose HMAC was already made with this
    /// log's key ([`crate::audit::AuditLog::hmac_value`]; the daemon makes each once per vault
    /// load). Written beside `values`, as they are.
    pub macs: Vec<(&'a str, &'a str)>,
    /// For an aggregate record (`op` `denials`): how many refusals it stands for.
    pub count: Option<u64>,
    /// For a `vault.load` record: the generation of the vault loaded.
    pub generation: Option<u64>,
    /// For a `vault.load` record: the digest of the policy loaded ([`Policy::digest`](crate::policy::Policy::digest)),
    /// `None` when the vault holds no policy. The lint's usage rules cut their window where it
    /// changes (docs/lint-rules.md).
    pub policy: Option<&'a str>,
    /// For an aggregate record (`op` `denials`): the refusals it stands for by `"<op>
    /// <decision>"` (they add up to `count`).
    pub by_op: Vec<(String, u64)>,
    /// For a `scrub_report` record: what the scrub of the task's artefacts did (labels the
    /// task does not hand out already replaced by their HMACs).
    pub scrub: Option<&'a crate::protocol::ScrubCounts>,
}

impl<'a> AuditRecord<'a> {
    /// A record with only an op and a decision; fill in the rest with struct update syntax.
    pub fn new(op: impl Into<AuditOp>, decision: Decision) -> Self {
        AuditRecord {
            peer: None,
            op: op.into(),
            task: None,
            credential: None,
            decision,
            reason: None,
            warnings: Vec::new(),
            values: Vec::new(),
            macs: Vec::new(),
            count: None,
            generation: None,
            policy: None,
            by_op: Vec::new(),
            scrub: None,
        }
    }
}

/// The records with which the daemon begins a later segment of a log (a new file after a
/// rotation, or what is left of a truncated one): their `prev` continues the file before.
pub(super) const SEGMENT_STARTS: [&str; 2] =
    [AuditOp::AuditRotate.as_str(), AuditOp::AuditGap.as_str()];

/// One record as [`verify_each`] reads it back: the chain members, and the members a reader of
/// the evidence needs (`lint --audit`, docs/audit.md). Every other member is skipped, its JSON
/// still checked. Read without building a JSON tree: one parse per line serves the chain and
/// the reader.
#[derive(serde::Deserialize)]
pub struct RecordView<'a> {
    /// The record's sequence number.
    pub seq: u64,
    /// The hex SHA-256 of the line before.
    #[serde(borrow)]
    pub prev: std::borrow::Cow<'a, str>,
    /// The operation (`fetch`, `reload`, …), as written: kept as a string, so that a kind
    /// this version does not write is still read ([`AuditOp::from_name`] types it).
    #[serde(borrow, default)]
    pub op: Option<std::borrow::Cow<'a, str>>,
    /// RFC 3339 time.
    #[serde(borrow, default)]
    pub time: Option<std::borrow::Cow<'a, str>>,
    /// The peer's uid and gid.
    #[serde(default)]
    pub peer: Option<PeerView>,
    /// The task named by the request.
    #[serde(borrow, default)]
    pub task: Option<std::borrow::Cow<'a, str>>,
    /// The credential named by the request.
    #[serde(borrow, default)]
    pub credential: Option<std::borrow::Cow<'a, str>>,
    /// `allow`, `deny`, …
    #[serde(borrow, default)]
    pub decision: Option<std::borrow::Cow<'a, str>>,
    /// A `vault.load` record's generation.
    #[serde(default)]
    pub generation: Option<u64>,
    /// A `vault.load` record's policy digest (`sha256:…`).
    #[serde(borrow, default)]
    pub policy: Option<std::borrow::Cow<'a, str>>,
    /// `time`, parsed: set by the verifier once it has accepted the record (every record it
    /// hands on has one, [`record_members`]).
    #[serde(skip)]
    pub at: Option<time::OffsetDateTime>,
    /// The SHA-256 hex of the record's line: set by the verifier for the records it hands on.
    #[serde(skip)]
    pub hash: Option<[u8; 64]>,
}

/// The members every record the daemon writes has (docs/audit.md, "One line per record"):
/// `time` a string in RFC 3339, `op` and `decision` strings. A line without them verifies no
/// more than one without `seq` or `prev`: `audit verify`, `doctor` and `lint --audit` judge it
/// alike. Sets [`RecordView::at`].
pub(super) fn record_members(rec: &mut RecordView<'_>) -> Result<(), String> {
    let (Some(time), Some(_), Some(_)) = (&rec.time, &rec.op, &rec.decision) else {
        return Err("not an audit record (no string `time`, `op` or `decision`)".to_owned());
    };
    let at = time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`time` is not RFC 3339 ({e})"))?;
    rec.at = Some(at);
    Ok(())
}

/// The peer of a [`RecordView`].
#[derive(serde::Deserialize, Clone, Copy)]
pub struct PeerView {
    /// Peer uid.
    pub uid: u32,
    /// Peer gid.
    pub gid: u32,
}

/// Parse one line. The typed parse answers for every record the daemon writes; a line it
/// refuses (not an object, a member of another type or twice) goes through the JSON tree,
/// which gives the chain the same answer as before the typed parse, and names what is wrong.
pub(super) fn record_view(line: &[u8]) -> Result<RecordView<'_>, String> {
    if line.first() == Some(&b'{') {
        if let Ok(c) = serde_json::from_slice::<RecordView<'_>>(line) {
            if c.prev.len() == 64 && c.prev.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(c);
            }
        }
    }
    let (seq, prev) = parse_chain_fields(line)?;
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(|x| x.to_owned().into())
    };
    let num = |p: &serde_json::Value, k: &str| {
        p.get(k)
            .and_then(|x| x.as_u64())
            .and_then(|x| u32::try_from(x).ok())
    };
    Ok(RecordView {
        seq,
        prev: prev.into(),
        op: text("op"),
        time: text("time"),
        peer: v.get("peer").and_then(|p| {
            Some(PeerView {
                uid: num(p, "uid")?,
                gid: num(p, "gid")?,
            })
        }),
        task: text("task"),
        credential: text("credential"),
        decision: text("decision"),
        generation: v.get("generation").and_then(|x| x.as_u64()),
        policy: text("policy"),
        at: None,
        hash: None,
    })
}

/// Parse `seq` and `prev` of one line through a JSON tree.
pub(super) fn parse_chain_fields(line: &[u8]) -> Result<(u64, String), String> {
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON record ({e})"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "not a JSON object".to_string())?;
    let seq = obj
        .get("seq")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| "no numeric \"seq\"".to_string())?;
    let prev = obj
        .get("prev")
        .and_then(|s| s.as_str())
        .filter(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| "no 64-hex-digit \"prev\"".to_string())?;
    Ok((seq, prev.to_owned()))
}

/// Lower-case hex of a SHA-256 digest, without allocating.
pub(super) fn hex_digest(line: &[u8], out: &mut [u8; 64]) {
    HEXLOWER.encode_mut(&Sha256::digest(line), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Op;

    /// The `op` strings are the log's format: the daemon's own kinds as docs/audit.md names
    /// them, a request's as its protocol op; a name read back that this version does not
    /// write is kept as a string (no kind), not refused.
    #[test]
    fn ops_are_written_and_read_back_as_the_documented_strings() {
        let own: Vec<&str> = AuditOp::OWN.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            own,
            [
                "denials",
                "invalid",
                "vault.load",
                "audit.rotate",
                "audit.gap",
                "audit.new_key",
                "audit.repair",
                "bundle.apply"
            ]
        );
        for k in AuditOp::OWN
            .into_iter()
            .chain(Op::ALL.into_iter().map(AuditOp::from))
        {
            assert_eq!(AuditOp::from_name(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(AuditOp::from(Op::AuditRotate).as_str(), "audit_rotate");
        assert_eq!(AuditOp::from_name("audit.later_kind"), None);
        assert_eq!(SEGMENT_STARTS, ["audit.rotate", "audit.gap"]);
        let line = br#"{"seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","op":"audit.later_kind","decision":"allow"}"#;
        let view = record_view(line).unwrap();
        assert_eq!(view.op.as_deref(), Some("audit.later_kind"));
    }
}
