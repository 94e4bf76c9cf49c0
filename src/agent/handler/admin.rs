//! The admin ops (`lock`, `unlock`, `reload`, `audit_rotate`), the signals that do the same,
//! and the load of a vault file saved since it was loaded.

use super::{Handler, Held};
use crate::agent::outcome::Refusal;
use crate::agent::peer::PeerIdentity;
use crate::agent::state::{FileStamp, Opened};
use crate::audit::{AuditRecord, Decision, Ticket as AuditTicket};
use crate::protocol::{ok_line, AdminStatus, ErrorBody, Op, RotateStatus};

/// A changed vault file whose load gave up on the rollback record's lock.
pub(super) struct FollowBusy {
    /// The file's stamp.
    stamp: FileStamp,
    /// The load's refusal, naming the lock and its holder.
    why: String,
    /// When the lock was last looked at.
    probed: std::time::Instant,
}

impl FollowBusy {
    /// How often the daemon looks whether the lock is free again.
    const PROBE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
}

/// The vault file the last load after the start refused (an older copy, another vault's file,
/// one that fails its checks): `health`'s `load_refused`, while that file is at the path.
pub(super) struct LoadRefused {
    /// The stamp of the file at the path when the load began.
    stamp: Option<FileStamp>,
    /// The refusal's message.
    why: String,
}

impl Handler {
    /// SIGHUP: reload as if an admin asked; the outcome is audited. Returns a status line.
    pub fn reload_from_signal(&self) -> Result<AdminStatus, ErrorBody> {
        let r = self.reload_asked();
        // The reload itself happened (or not) whatever the audit says; report both.
        let mut queued = Vec::new();
        self.audit_admin(None, Op::Reload, &r, Some("SIGHUP"), &mut queued);
        let audited = self
            .settle(&queued)
            .map_err(|_| Refusal::AuditUnavailable.body());
        r.map_err(ErrorBody::from).and_then(|s| audited.map(|()| s))
    }

    /// Issue 14, item 5: a vault file saved since it was loaded (`cred set`, `policy apply`,
    /// `bundle apply`) is reloaded before the request is served, with the same authenticity
    /// and rollback checks as `reload`, and audited as a `reload` ("the vault file changed").
    /// Other callers check once per request; the event loop checks once per turn with
    /// [`Handler::vault_file_changed`] and has its worker thread call this, holding the
    /// turn's requests other than `health` until it is done (`health` says `loading`
    /// meanwhile). While one thread reloads, the others serve what is loaded; a file that
    /// failed to load is not tried again until it changes. The reload refuses a file whose
    /// MAC fails before reading its payload (`Vault::reopen`).
    pub fn follow_vault_file(&self) {
        let Some((loaded, now)) = self.vault_file_to_follow() else {
            return;
        };
        #[cfg(test)]
        self.followed_on
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(std::thread::current().name().unwrap_or_default().to_owned());
        let failed = || self.follow_failed.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(_only_one) = self.following.try_lock() else {
            return;
        };
        // Another thread may have loaded it while this one waited.
        if self.state.with(|v| v.map(|o| o.vault.stamp())) != Some(Some(loaded)) {
            return;
        }
        let r = self.reload();
        let mut queued = Vec::new();
        self.audit_admin(
            None,
            Op::Reload,
            &r,
            Some("the vault file changed"),
            &mut queued,
        );
        let _ = self.settle(&queued);
        match r {
            Ok(s) => {
                *failed() = None;
                crate::diag!(
                    "scopevault: the vault file changed: loaded generation {}",
                    s.generation.unwrap_or(0)
                );
            }
            // The rollback record's lock stayed held for the load's short wait (a command
            // stopped or hung while it holds it): the loaded generation is served meanwhile,
            // and the file loaded once the lock is free, not only when it changes again. The
            // load waited for that lock without a bound, and every fetch with it (twenty-fifth
            // pass).
            Err(Refusal::Vault(e)) if e.code == crate::protocol::ErrorCode::Busy => {
                let generation = self.admin_status().generation.unwrap_or(0);
                crate::diag!(
                    "scopevault: the vault file changed, but it waits for the rollback record's lock (still serving generation {generation}; loaded once the lock is free): {}",
                    crate::text::escape_for_terminal(&e.message)
                );
                *self.follow_busy.lock().unwrap_or_else(|p| p.into_inner()) = Some(FollowBusy {
                    stamp: now,
                    why: e.message,
                    probed: std::time::Instant::now(),
                });
            }
            Err(e) => {
                *failed() = Some(now);
                crate::diag!(
                    "scopevault: the vault file changed but was not loaded (still serving the loaded one): {}",
                    crate::text::escape_for_terminal(&e.message())
                );
            }
        }
    }

    /// Whether the vault file was saved since it was loaded and is to be loaded (one `stat`):
    /// [`Handler::follow_vault_file`] would reload it.
    pub fn vault_file_changed(&self) -> bool {
        self.vault_file_to_follow().is_some()
    }

    /// The stamps of the loaded file and of the file there now, when they differ and the one
    /// there did not already fail to load.
    fn vault_file_to_follow(&self) -> Option<(FileStamp, FileStamp)> {
        let (loaded, now) = self
            .state
            .with(|v| v.map(|o| (o.vault.stamp(), o.vault.current_stamp())))?;
        let (loaded, now) = (loaded?, now?);
        let failed = *self.follow_failed.lock().unwrap_or_else(|p| p.into_inner());
        if loaded == now || failed == Some(now) {
            return None;
        }
        // A load that gave up on the rollback record's lock is tried again once the lock is
        // free (looked at twice a second at most): not at every turn, each holding the
        // requests for the load's wait again.
        let mut busy = self.follow_busy.lock().unwrap_or_else(|p| p.into_inner());
        // A wait for a file no longer at the path is over: the file there now is loaded
        // (or waits) on its own, and the old message would name a holder long gone
        // (twenty-sixth pass).
        if busy.as_ref().is_some_and(|b| b.stamp != now) {
            *busy = None;
        }
        if let Some(b) = busy.as_mut() {
            if b.probed.elapsed() < FollowBusy::PROBE_EVERY {
                return None;
            }
            b.probed = std::time::Instant::now();
            if crate::vault::record_lock_held() {
                return None;
            }
            *busy = None;
        }
        Some((loaded, now))
    }

    /// Why a vault file saved since the load is not loaded yet, while it waits for the
    /// rollback record's lock (`health`'s `load_waits`): only while that very file is at the
    /// path and not loaded. The holder (its pid and command) is named to admins only; anyone
    /// else who may connect is told that another process holds the lock.
    ///
    /// Twenty-sixth pass, found by the attacker of observability and many daemons: once a
    /// second save replaced the file that waited, the message stayed for good, naming a pid
    /// long gone, after the daemon had loaded the newest file, and `reload` did not clear it.
    pub(super) fn load_waits(&self, admin: bool) -> Option<String> {
        let busy = self.follow_busy.lock().unwrap_or_else(|p| p.into_inner());
        let b = busy.as_ref()?;
        let (loaded, there) = self
            .state
            .with(|v| v.map(|o| (o.vault.stamp(), o.vault.current_stamp())))?;
        if loaded == Some(b.stamp) || there != Some(b.stamp) {
            return None;
        }
        Some(if admin {
            b.why.clone()
        } else {
            "the rollback record's lock (generations.lock in the daemon's state directory) is held by another process, named to admins only (root and the daemon's user: `scopevault status`)".to_owned()
        })
    }

    /// A load succeeded (`reload`, `unlock`, a changed file followed): no wait of an earlier
    /// load is left to report.
    fn loaded_now(&self) {
        *self.follow_busy.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.load_refused.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// `audit_rotate` (admins): the rotation writes its own `audit.rotate` record, the first
    /// of the new file; a refusal is audited like any admin op.
    pub(super) fn audit_rotate(
        &self,
        peer: &PeerIdentity,
        queued: &mut Vec<AuditTicket>,
    ) -> Result<Held, ErrorBody> {
        if !self.access.is_admin(peer) {
            let refused: Result<AdminStatus, Refusal> = Err(Refusal::NotAdmin {
                op: Op::AuditRotate,
                uid: peer.uid,
            });
            self.audit_admin(Some(peer), Op::AuditRotate, &refused, None, queued);
            return refused
                .map(|s| Held::Line(ok_line(&s)))
                .map_err(ErrorBody::from);
        }
        match self.audit.rotate() {
            Ok((moved, seq)) => Ok(Held::Line(ok_line(&RotateStatus {
                rotated_to: moved.display().to_string(),
                seq,
            }))),
            Err(e) => Err(Refusal::RotateFailed(e.to_string()).body()),
        }
    }

    /// SIGUSR1: continue in a new file if the log was moved away (logrotate). Returns the seq
    /// of the `audit.rotate` record, or `None` when the log is still at its path.
    pub fn reopen_audit_from_signal(&self) -> Result<Option<u64>, String> {
        self.audit.reopen("SIGUSR1").map_err(|e| e.to_string())
    }

    pub(super) fn admin(
        &self,
        peer: &PeerIdentity,
        op: Op,
        queued: &mut Vec<AuditTicket>,
        act: impl FnOnce(&Self) -> Result<AdminStatus, Refusal>,
    ) -> Result<Held, ErrorBody> {
        let result = if self.access.is_admin(peer) {
            act(self)
        } else {
            Err(Refusal::NotAdmin { op, uid: peer.uid })
        };
        self.audit_admin(Some(peer), op, &result, None, queued);
        result
            .map(|s| Held::Line(ok_line(&s)))
            .map_err(ErrorBody::from)
    }

    /// `unlock`, as [`Handler::admin`], its record's reason the kind of source that unlocked
    /// (`passphrase sent`, `identity sent`, `daemon's own identity file`, …; never a key or
    /// a file's content): a plain `unlock` and one with a key were both recorded with no
    /// reason (twenty-fourth pass, found by its attacker of this pass's fixes).
    pub(super) fn admin_unlock(
        &self,
        peer: &PeerIdentity,
        queued: &mut Vec<AuditTicket>,
        act: impl FnOnce(&Self) -> Result<(AdminStatus, &'static str), Refusal>,
    ) -> Result<Held, ErrorBody> {
        let result = if self.access.is_admin(peer) {
            act(self)
        } else {
            Err(Refusal::NotAdmin {
                op: Op::Unlock,
                uid: peer.uid,
            })
        };
        let kind = result.as_ref().ok().map(|(_, kind)| *kind);
        self.audit_admin(Some(peer), Op::Unlock, &result, kind, queued);
        result
            .map(|(s, _)| Held::Line(ok_line(&s)))
            .map_err(ErrorBody::from)
    }

    /// `lock`: the vault is forgotten and every ticket dropped. Its record is queued while
    /// the vault is held for writing, so the log's order is the order of the decisions: every
    /// fetch decided before the lock is recorded before it, every fetch refused as locked
    /// after it (twenty-first pass, found by attacking from the documents: the record was
    /// queued after the lock took effect, and 2 to 3 of 20 locks had a `locked` refusal
    /// recorded before the `lock` that caused it).
    pub(super) fn lock(
        &self,
        peer: &PeerIdentity,
        queued: &mut Vec<AuditTicket>,
    ) -> Result<Held, ErrorBody> {
        if !self.access.is_admin(peer) {
            let refused = Refusal::NotAdmin {
                op: Op::Lock,
                uid: peer.uid,
            };
            self.audit_admin::<()>(Some(peer), Op::Lock, &Err(refused.clone()), None, queued);
            return Err(refused.into());
        }
        self.state
            .lock_recorded(|| self.audit_admin(Some(peer), Op::Lock, &Ok(()), None, queued));
        self.tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(Held::Line(ok_line(&self.admin_status())))
    }

    /// Queue the record of an admin op: `allow` with `note`, or the refusal's mapping.
    fn audit_admin<T>(
        &self,
        peer: Option<&PeerIdentity>,
        op: Op,
        result: &Result<T, Refusal>,
        note: Option<&str>,
        queued: &mut Vec<AuditTicket>,
    ) {
        match result {
            Ok(_) => self.append_limited(
                peer,
                AuditRecord {
                    peer: peer.map(PeerIdentity::audit_info),
                    reason: note,
                    ..AuditRecord::new(op, Decision::Allow)
                },
                queued,
            ),
            Err(why) => self.audit_refusal(peer, op, &why.clone().into(), None, queued),
        }
    }

    pub(super) fn unlock(&self, key: &crate::vault::Unlock) -> Result<AdminStatus, Refusal> {
        let Some(open) = &self.opener else {
            return Err(Refusal::NoVault);
        };
        let vault = open(key, &self.load_rules()).map_err(Refusal::Vault)?;
        self.note_load(vault.as_ref(), "unlock")?;
        self.state.set(Opened::new(vault));
        self.loaded_now();
        Ok(self.admin_status())
    }

    /// `unlock` with no key: the daemon's own start-time sources tried again, in the order of
    /// its start ([`Handler::set_own_sources`]); the first that opens the vault unlocks it. A
    /// file refused (`vault_refused`) stops there, as at start. When none is there, or none
    /// opens it, `denied` names each one tried and what it answered (never a key), and what
    /// an admin can send instead. A daemon whose vault's only slot is in the keyring could
    /// not be unlocked after a `lock` without a restart (twenty-fourth pass).
    /// Only the source its start chose is tried: a command-line source shadows the
    /// environment, the systemd credential and the keyring, and a start passphrase is not
    /// kept, so a daemon started with one has nothing to try (twenty-fourth pass, found by
    /// its attacker of this pass's fixes: `SCOPEVAULT_IDENTITY_FILE` was tried again for a
    /// daemon started with `--passphrase-file`).
    pub(super) fn unlock_with_own_sources(&self) -> Result<(AdminStatus, &'static str), Refusal> {
        use crate::protocol::ErrorCode;
        let Some(open) = &self.opener else {
            return Err(Refusal::NoVault);
        };
        let mut tried = Vec::new();
        for own in &self.own_sources {
            match open(&own.unlock, &self.load_rules()) {
                Ok(vault) => {
                    self.note_load(vault.as_ref(), "unlock")?;
                    self.state.set(Opened::new(vault));
                    self.loaded_now();
                    return Ok((self.admin_status(), own.kind));
                }
                Err(e) if e.code == ErrorCode::VaultRefused => return Err(Refusal::Vault(e)),
                Err(e) => tried.push(format!("{}: {}", own.name, e.message)),
            }
        }
        let what = if tried.is_empty() {
            format!(
                "the daemon has no unlock source of its own to try again ({})",
                self.no_own_source
            )
        } else {
            format!(
                "no unlock source of the daemon's own opened the vault ({})",
                tried.join("; ")
            )
        };
        Err(Refusal::Vault(ErrorBody::new(
            ErrorCode::Denied,
            format!("{what}; send the passphrase (`scopevault unlock` on a terminal, or --passphrase-file FILE) or the identity file (`scopevault unlock --identity-file FILE`)"),
        )))
    }

    /// `reload`, SIGHUP, a changed file followed; each also has every connection's groups
    /// looked up again (`crate::accounts::generation`). A refusal of the file (not `locked`, not a
    /// wait for the rollback record's lock, not the audit log) is kept for `health`'s
    /// `load_refused` until a load succeeds or another file is at the path: a refused
    /// rollback or another vault's file showed in no `status` line and no metric, only in
    /// the daemon's log and the audit log (twenty-sixth pass, found by the attacker of
    /// observability and many daemons).
    pub(super) fn reload(&self) -> Result<AdminStatus, Refusal> {
        // A reload re-reads the user and group databases too: `--admin-group` and
        // `--scheduler` are resolved again, and every connection's rights are decided again
        // at its next request (the load, if any, resolves the policy's names).
        self.access.resolve();
        crate::accounts::databases_changed();
        let there = self.state.with(|v| v.and_then(|o| o.vault.current_stamp()));
        let r = self.reload_now();
        let refused = match &r {
            Err(Refusal::Vault(e)) if e.code != crate::protocol::ErrorCode::Busy => {
                Some(e.message.clone())
            }
            Err(why @ Refusal::Rollback(_)) => Some(why.message()),
            _ => None,
        };
        if let Some(why) = refused {
            *self.load_refused.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(LoadRefused { stamp: there, why });
        }
        r
    }

    /// [`Handler::reload`] as an admin's `reload` or SIGHUP asks it (not a changed file
    /// followed): the service manager is told it begins and how it ended
    /// ([`crate::agent::notify::reloading`], [`crate::agent::notify::reloaded`]), so that a
    /// unit shows `reloading` meanwhile and a refusal in its status.
    pub(super) fn reload_asked(&self) -> Result<AdminStatus, Refusal> {
        crate::agent::notify::reloading();
        let r = self.reload();
        crate::agent::notify::reloaded(match &r {
            Ok(s) => Ok(s.generation),
            Err(e) => Err(e.code()),
        });
        r
    }

    /// Why the last load refused the vault file at the path, while that file is still there
    /// and nothing loaded since (`health`'s `load_refused`). The reason (paths, generations,
    /// vault ids) is given to admins only.
    pub(super) fn load_refused(&self, admin: bool) -> Option<String> {
        let refused = self.load_refused.lock().unwrap_or_else(|p| p.into_inner());
        let r = refused.as_ref()?;
        let there = self.state.with(|v| v.and_then(|o| o.vault.current_stamp()));
        if there != r.stamp {
            return None;
        }
        Some(if admin {
            r.why.clone()
        } else {
            "the daemon's last load refused the vault file at its path; the reason is given to admins only (root and the daemon's user: `scopevault status`)".to_owned()
        })
    }

    fn reload_now(&self) -> Result<AdminStatus, Refusal> {
        let fresh = self.state.with(|v| match v {
            None => Err(Refusal::Locked),
            Some(o) => o.vault.reopen().map_err(Refusal::Vault),
        })?;
        self.note_load(fresh.as_ref(), "reload")?;
        self.state.set(Opened::new(fresh));
        self.loaded_now();
        Ok(self.admin_status())
    }

    pub(super) fn admin_status(&self) -> AdminStatus {
        self.state.with(|v| AdminStatus {
            locked: v.is_none(),
            vault_id: v.map(|o| o.vault.id().to_owned()),
            generation: v.map(|o| o.vault.generation()),
        })
    }
}
