//! `scrub_report`: a runner of a task reports what a scrub of its artefacts did.

use super::{Handler, Held, Refused};
use crate::agent::authz::is_runner;
use crate::agent::outcome::Refusal;
use crate::agent::peer::PeerIdentity;
use crate::agent::state::Opened;
use crate::audit::{AuditRecord, Decision, Ticket as AuditTicket};
use crate::policy::CredentialKind;
use crate::protocol::{ErrorBody, Op, ScrubCounts};

impl Handler {
    /// `scrub_report`: a runner of the task says what a scrub of its artefacts did. Authorised
    /// as a `fetch` by task name (the peer must be one of the task's runners); one audit
    /// record holds the counts, with each label the task does not hand out (`CRED.FIELD` of a
    /// credential it lists and a secret field that credential holds, or `CRED.totp_code`)
    /// recorded as its HMAC. A refusal is audited like a refused fetch.
    pub(super) fn scrub_report(
        &self,
        peer: &PeerIdentity,
        task: &str,
        scrub: &ScrubCounts,
        queued: &mut Vec<AuditTicket>,
    ) -> Result<Held, ErrorBody> {
        let (result, recorded) = self.state.with(|v| {
            let recorded = self.recorded_name(v, task, true);
            (self.check_scrub_report(v, peer, task, scrub), recorded)
        });
        match result {
            Ok((counts, unknown)) => {
                let reason = (unknown > 0).then(|| {
                    format!(
                        "{unknown} label(s) the task does not hand out, recorded as their HMACs"
                    )
                });
                queued.push(self.enqueue_allowed(
                    peer,
                    AuditRecord {
                        peer: Some(peer.audit_info()),
                        task: Some(task),
                        reason: reason.as_deref(),
                        scrub: Some(&counts),
                        ..AuditRecord::new(Op::ScrubReport, Decision::Allow)
                    },
                ));
                Ok(Held::Scrub(task.to_owned()))
            }
            Err(why) => {
                let r = Refused::in_task(why, &recorded);
                self.audit_refusal(Some(peer), Op::ScrubReport, &r, None, queued);
                Err(r.why.body())
            }
        }
    }

    /// Authorise a `scrub_report` and map its labels (audited by the caller): the counts to
    /// record, and how many labels were recorded as HMACs.
    fn check_scrub_report(
        &self,
        v: Option<&Opened>,
        peer: &PeerIdentity,
        task: &str,
        scrub: &ScrubCounts,
    ) -> Result<(ScrubCounts, usize), Refusal> {
        let (o, policy) = Self::opened_with_policy(v, Op::ScrubReport)?;
        let t = policy.task(task).ok_or(Refusal::NoSuchTask)?;
        if !is_runner(o.runners.get(task), peer) {
            return Err(Refusal::NotARunner {
                op: Op::ScrubReport,
                uid: peer.uid,
                task: task.to_owned(),
            });
        }
        let mut labels = std::collections::BTreeSet::new();
        for name in t.credentials() {
            // What `fetch` hands out: by the kind the applied policy declares, not the entry's.
            let (Some(cred), Some(decl)) = (o.vault.credential(name), policy.credential(name))
            else {
                continue;
            };
            let kind = decl.kind();
            // A `totp` credential's runners get its code, never a secret.
            for k in cred.secrets.keys().filter(|_| kind.hands_out_secrets()) {
                labels.insert(format!("{name}.{k}"));
            }
            if kind == CredentialKind::Totp {
                labels.insert(format!("{name}.totp_code"));
            }
        }
        let mut hits = std::collections::BTreeMap::new();
        let mut unknown = 0;
        for (label, n) in &scrub.hits {
            let key = if labels.contains(label) {
                label.clone()
            } else {
                unknown += 1;
                self.unknown_name(label)
            };
            let e: &mut u64 = hits.entry(key).or_default();
            *e = e.saturating_add(*n);
        }
        let counts = ScrubCounts {
            files: scrub.files,
            rewritten: scrub.rewritten,
            failed: scrub.failed,
            binary_kept: scrub.binary_kept,
            binary_dropped: scrub.binary_dropped,
            binary_with_form: scrub.binary_with_form,
            hits,
        };
        Ok((counts, unknown))
    }
}
