//! The vault generations the audit chain has recorded (docs/audit.md, "Vault generations in
//! the chain"): the highest of each vault, by its id, kept in the anchor and read back from the
//! log's `vault.load` records at start.

use std::collections::BTreeMap;

use super::*;

/// The highest generation the audit chain of the log at `log` has recorded of the vault
/// `vault_id` (0: none), as `serve` judges its first load against it: from the log's anchor
/// and its `vault.load` records. A command that adopts a restored vault file
/// (`--allow-rollback`) saves above it, and `doctor` compares the file with it. An anchor that
/// cannot be used (a link, another log's) is left out: `serve` refuses to start on it, and
/// `audit verify` and `doctor` report it. A log that is there and cannot be read is an error:
/// nothing can be said of its chain then (no log at all: `Ok` of what the anchor holds).
pub fn chain_generation(log: &Path, vault_id: &str) -> std::io::Result<u64> {
    match crate::sys::open_regular(log, false) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let anchor = read_anchor(log).ok().flatten();
    // A line over `MAX_LINE` bytes ends the reading: what follows it cannot be judged here,
    // and `serve` refuses a log that ends in one (a log of one 1 GiB line took 1 GiB of memory
    // here, twenty-third pass).
    let mut g = Generations::default();
    // The moved file the start continues an empty log from counts as the start counts it
    // (twenty-third pass's review: an adoption saved above the anchor only, below the
    // moved file's `vault.load` records, and the start refused the save).
    match moved_log(log, None) {
        MovedLog::Continues { path, .. } => {
            let _ = g.scan_into(&path, false);
        }
        // Its records are in a file the start cannot read yet (compressed, two copies,
        // another user's): the generations they hold are not known here, and a save judged
        // without them was promised to load and refused (twenty-fourth pass).
        MovedLog::Refused(why) | MovedLog::Unterminated(why) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("it is empty and a daemon's start on it is refused until the file its records were moved to can be read: {why}"),
            ));
        }
        MovedLog::NotMoved => {}
    }
    g.scan_into(log, true).map_err(|why| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{why}: the vault generations its chain recorded cannot be read from it"),
        )
    })?;
    Ok(Generations::with_anchor(anchor.as_ref(), g)
        .judge(vault_id)
        .seen)
}

/// What the chain has recorded of the vaults it loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Generations {
    /// The highest generation loaded of each vault id.
    vaults: BTreeMap<String, u64>,
    /// The vault loaded last (its id).
    last: Option<String>,
    /// A generation whose vault is not named: an anchor written before anchors named their
    /// vaults (twentieth pass) holds one generation for whatever vaults it loaded. The next
    /// vault loaded is judged against it whatever its id, as those versions judged every
    /// vault, and takes it as its own once loaded.
    unknown: u64,
}

/// How a load is judged ([`Generations::judge`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Judged {
    /// The generation a load must not be below (0: none recorded).
    pub(super) seen: u64,
    /// `seen` is a generation whose vault the chain does not name (an anchor of an earlier
    /// version), not this vault's own.
    pub(super) unnamed: bool,
    /// Another vault was loaded last: its id and the highest generation recorded for it.
    pub(super) switched_from: Option<(String, u64)>,
}

/// What the anchor keeps of [`Generations`]: its `generation`, `vault` and `vaults`.
pub(super) type AnchorMembers = (u64, Option<String>, Option<BTreeMap<String, u64>>);

impl Generations {
    /// What the chain has recorded: its anchor's generations and the `vault.load` records of
    /// the log at `log`, the highest of each vault from either. The anchor holds the
    /// generations of records no longer in the file (rotated away); the records hold those
    /// written after the anchor. An anchor restored from a backup with the vault file and the
    /// rollback record is an old anchor: trusted alone, it let that restore be served without
    /// a word while the log kept said a newer generation had been loaded, though with no
    /// anchor at all the log's records refused it (twenty-third pass).
    ///
    /// `earlier` are files the chain continues from (the moved file a start continues, found
    /// beside the log), read before `log`: their records count as the log's (twenty-third
    /// pass: a restore was served when the `vault.load` records were in the moved file). A
    /// line over [`MAX_LINE`] bytes is skipped.
    pub(super) fn read(anchor: Option<&Anchor>, earlier: &[&Path], log: &Path) -> Generations {
        let mut scanned = Generations::default();
        for path in earlier.iter().copied().chain([log]) {
            let _ = scanned.scan_into(path, false);
        }
        Generations::with_anchor(anchor, scanned)
    }

    /// The anchor's generations raised by `scanned`, what the log's records hold.
    fn with_anchor(anchor: Option<&Anchor>, scanned: Generations) -> Generations {
        let Some(a) = anchor else {
            return scanned;
        };
        let mut g = match &a.vaults {
            Some(vaults) if !vaults.is_empty() => Generations {
                // Only vault ids: whatever else a hand-edited anchor holds names no vault that
                // can be loaded, and is never printed.
                vaults: vaults
                    .iter()
                    .filter(|(id, _)| crate::vault::is_vault_id(id))
                    .map(|(id, g)| (id.clone(), *g))
                    .collect(),
                last: a.vault.clone().filter(|id| crate::vault::is_vault_id(id)),
                unknown: 0,
            },
            // An anchor of an earlier version (or of runs that loaded no vault since one):
            // one generation, of vaults it does not name.
            _ if a.generation != 0 => Generations {
                unknown: a.generation,
                ..Generations::default()
            },
            _ => return scanned,
        };
        // A record that names no vault is older than an anchor that names them (the load that
        // wrote such an anchor took every unnamed generation as its vault's): it judges no
        // vault then.
        if g.vaults.is_empty() {
            g.unknown = g.unknown.max(scanned.unknown);
        }
        for (id, generation) in scanned.vaults {
            let e = g.vaults.entry(id).or_default();
            *e = (*e).max(generation);
        }
        // The log's last load is at least as recent as the anchor's (which is of a record in
        // this file or, before a rotation, in an older one).
        if scanned.last.is_some() {
            g.last = scanned.last;
        }
        g
    }

    /// Raise `self` by the records of the log at `path` (the chain's own memory when no
    /// anchor holds it): the highest generation of each vault in its allowed `vault.load`
    /// records, and in the `vaults` that an `audit.rotate` or `audit.gap` record carries (the
    /// generations known when it began a new segment: those before it may be in a file moved
    /// away). Every version of the daemon began a `vault.load` record's `reason` with `vault
    /// <id> generation <g>`; a record whose reason names no vault counts as
    /// [`Generations::unknown`]. At most [`MAX_LINE`] bytes of a line are held: a longer line
    /// is skipped, or, when `stop_at_overlong`, ends the reading with `Err` naming it (a log
    /// of one 1 GiB line was read into memory whole, twenty-third pass). A log that is not
    /// there, or not a regular file, holds nothing.
    fn scan_into(&mut self, path: &Path, stop_at_overlong: bool) -> Result<(), String> {
        let Ok(f) = crate::sys::open_regular(path, false) else {
            return Ok(());
        };
        let mut lines = super::BoundedLines::new(BufReader::new(f));
        let mut n = 0u64;
        loop {
            n += 1;
            let line = match lines.next_line() {
                Ok(super::NextLine::Line(l)) => l,
                Ok(super::NextLine::Overlong) if stop_at_overlong => {
                    return Err(format!("line {n} is longer than {MAX_LINE} bytes"));
                }
                Ok(super::NextLine::Overlong) => continue,
                // The last line, if it has no line end.
                Ok(super::NextLine::End) => {
                    let last = lines.partial().to_vec();
                    self.note(&last);
                    return Ok(());
                }
                Err(e) if stop_at_overlong => return Err(format!("cannot be read ({e})")),
                Err(_) => return Ok(()),
            };
            self.note(line);
        }
    }

    /// Raise `self` by one line of the log (see [`Generations::scan_into`]).
    fn note(&mut self, line: &[u8]) {
        let op_is = |op: &str| memchr::memmem::find(line, op.as_bytes()).is_some();
        let load = op_is("\"op\":\"vault.load\"");
        if !(load || op_is("\"op\":\"audit.rotate\"") || op_is("\"op\":\"audit.gap\"")) {
            return;
        }
        // The one reader of records (`audit verify`'s): a line it refuses is none.
        let Ok(v) = super::shown_record(line) else {
            return;
        };
        if matches!(v.op.as_deref(), Some("audit.rotate" | "audit.gap")) {
            for (id, generation) in v.vaults {
                if crate::vault::is_vault_id(&id) {
                    let e = self.vaults.entry(id.into_owned()).or_default();
                    *e = (*e).max(generation);
                }
            }
            return;
        }
        if v.op.as_deref() != Some("vault.load") || v.decision.as_deref() != Some("allow") {
            return;
        }
        let generation = v.generation.unwrap_or(0);
        let id = v
            .reason
            .as_deref()
            .and_then(|r| r.strip_prefix("vault "))
            .and_then(|r| r.split_once(' '))
            .map(|(id, _)| id)
            .filter(|id| crate::vault::is_vault_id(id));
        match id {
            Some(id) => {
                let e = self.vaults.entry(id.to_owned()).or_default();
                *e = (*e).max(generation);
                self.last = Some(id.to_owned());
            }
            None => {
                self.unknown = self.unknown.max(generation);
                self.last = None;
            }
        }
    }

    /// What a load of the vault `vault_id` is judged against: its own highest generation, or
    /// the one whose vault is not named if that is higher; and the vault loaded last, when
    /// it is another.
    pub(super) fn judge(&self, vault_id: &str) -> Judged {
        let own = self.vaults.get(vault_id).copied().unwrap_or(0);
        Judged {
            seen: own.max(self.unknown),
            unnamed: self.unknown > own,
            switched_from: self
                .last
                .as_ref()
                .filter(|last| *last != vault_id)
                .map(|last| (last.clone(), self.vaults.get(last).copied().unwrap_or(0))),
        }
    }

    /// `vault_id` at `generation` was loaded (above what it was judged against, or accepted
    /// below it by `--allow-rollback`, which leaves the generation recorded as it was). A
    /// generation whose vault was not named is this vault's from now on.
    pub(super) fn loaded(&mut self, vault_id: &str, generation: u64) {
        let e = self.vaults.entry(vault_id.to_owned()).or_default();
        *e = (*e).max(generation).max(self.unknown);
        self.unknown = 0;
        self.last = Some(vault_id.to_owned());
    }

    /// The anchor's members: `generation`, the highest of every vault (what versions before
    /// the twentieth pass read and judge every vault against); `vault` and `vaults`, unless no
    /// vault is named yet (then the anchor keeps the form those versions wrote, and
    /// `generation` stays a generation of vaults it does not name).
    pub(super) fn anchor_members(&self) -> AnchorMembers {
        let highest = self.vaults.values().copied().fold(self.unknown, u64::max);
        if self.unknown != 0 || self.vaults.is_empty() {
            return (highest, None, None);
        }
        (highest, self.last.clone(), Some(self.vaults.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn anchor(generation: u64, vault: Option<&str>, vaults: &[(&str, u64)]) -> Anchor {
        Anchor {
            log: "/log".into(),
            seq: 1,
            head: "a".repeat(64),
            generation,
            vault: vault.map(str::to_owned),
            vaults: (!vaults.is_empty())
                .then(|| vaults.iter().map(|(id, g)| (id.to_string(), *g)).collect()),
            begins: None,
            next: None,
            gap: None,
            key: None,
        }
    }

    /// Each vault is judged against its own generations, whatever was loaded in between, and
    /// the vault loaded last is named when another is loaded.
    #[test]
    fn each_vault_is_judged_against_its_own_generations() {
        let mut g = Generations::default();
        g.loaded(A, 9);
        g.loaded(B, 2);
        assert_eq!(
            g.judge(A),
            Judged {
                seen: 9,
                unnamed: false,
                switched_from: Some((B.into(), 2)),
            }
        );
        assert_eq!(
            g.judge(B),
            Judged {
                seen: 2,
                unnamed: false,
                switched_from: None,
            }
        );
        assert_eq!(
            g.anchor_members(),
            (
                9,
                Some(B.into()),
                Some([(A.into(), 9), (B.into(), 2)].into())
            )
        );
        let back = Generations::read(
            Some(&anchor(9, Some(B), &[(A, 9), (B, 2)])),
            &[],
            Path::new("/nonexistent"),
        );
        assert_eq!(back, g);
    }

    /// An anchor of an earlier version (no `vaults`): its generation judges whatever vault is
    /// loaded next, which then takes it as its own; until one is loaded the anchor keeps that
    /// form.
    #[test]
    fn an_anchor_naming_no_vault_judges_the_next_vault_loaded_and_becomes_its() {
        let mut g = Generations::read(Some(&anchor(7, None, &[])), &[], Path::new("/nonexistent"));
        assert_eq!(g.anchor_members(), (7, None, None));
        assert_eq!(
            g.judge(B),
            Judged {
                seen: 7,
                unnamed: true,
                switched_from: None,
            }
        );
        // Accepted below it (--allow-rollback): the vault keeps 7 as its generation.
        g.loaded(B, 3);
        assert_eq!(
            g.anchor_members(),
            (7, Some(B.into()), Some([(B.into(), 7)].into()))
        );
        assert_eq!(g.judge(A).seen, 0);
    }

    /// Without an anchor, the log's `vault.load` records: allowed loads only, each vault by the
    /// id its reason begins with.
    #[test]
    fn the_log_is_read_back_by_vault_when_no_anchor_holds_the_generations() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let line = |id: &str, g: u64, decision: &str| {
            format!(
                r#"{{"seq":1,"op":"vault.load","decision":"{decision}","generation":{g},"reason":"vault {id} generation {g} loaded (start)","prev":"x"}}"#
            )
        };
        std::fs::write(
            &log,
            [
                line(A, 5, "allow"),
                line(A, 8, "deny"),
                line(B, 2, "allow"),
                r#"{"seq":4,"op":"vault.load","decision":"allow","generation":4,"reason":"loaded","prev":"x"}"#.into(),
                line(B, 3, "allow"),
            ]
            .join("\n"),
        )
        .unwrap();
        let g = Generations::read(None, &[], &log);
        assert_eq!(
            g,
            Generations {
                vaults: [(A.into(), 5), (B.into(), 3)].into(),
                last: Some(B.into()),
                unknown: 4,
            }
        );
        // An anchor that records no generation reads the log too.
        assert_eq!(Generations::read(Some(&anchor(0, None, &[])), &[], &log), g);
    }

    /// An anchor older than the log's records (restored from a backup with the vault and the
    /// rollback record): each vault's generation is the higher of the anchor's and the
    /// records', and the vault loaded last is the log's.
    #[test]
    fn the_log_after_an_old_anchor_raises_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let line = |id: &str, g: u64| {
            format!(
                r#"{{"seq":1,"op":"vault.load","decision":"allow","generation":{g},"reason":"vault {id} generation {g} loaded (start)","prev":"x"}}"#
            )
        };
        std::fs::write(&log, [line(B, 1), line(A, 3), line(A, 4)].join("\n")).unwrap();
        let g = Generations::read(Some(&anchor(5, Some(B), &[(A, 3), (B, 5)])), &[], &log);
        assert_eq!(
            g,
            Generations {
                vaults: [(A.into(), 4), (B.into(), 5)].into(),
                last: Some(A.into()),
                unknown: 0,
            }
        );
        // No anchor of this log: its records alone.
        assert_eq!(chain_generation(&log, A).unwrap(), 4);
    }

    /// A record that begins a new segment (`audit.rotate`, `audit.gap`) carries the
    /// generations known then (`vaults`): they count as `vault.load` records do, and a
    /// moved file read before the log counts too; a rotation record without them (written
    /// before the twenty-third pass) is read as before. A line over `MAX_LINE` bytes is
    /// skipped by the start and ends [`chain_generation`] with an error.
    #[test]
    fn a_segment_start_carries_the_generations_and_a_moved_file_counts() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let moved = dir.path().join("audit.jsonl.1");
        let rotate = |vaults: &str| {
            format!(
                r#"{{"seq":9,"op":"audit.rotate","decision":"allow","reason":"rotated",{vaults}"prev":"x"}}"#
            )
        };
        let load = format!(
            r#"{{"seq":1,"op":"vault.load","decision":"allow","generation":6,"reason":"vault {A} generation 6 loaded (start)","prev":"x"}}"#
        );
        std::fs::write(&moved, format!("{load}\n")).unwrap();
        std::fs::write(
            &log,
            format!(
                "{}\n{}\n",
                rotate(&format!(r#""vaults":{{"{A}":7,"{B}":2,"not an id":99}},"#)),
                rotate("")
            ),
        )
        .unwrap();
        let old = anchor(3, Some(A), &[(A, 3)]);
        let g = Generations::read(Some(&old), &[], &log);
        assert_eq!(g.vaults, [(A.into(), 7), (B.into(), 2)].into());
        assert_eq!(chain_generation(&log, A).unwrap(), 7);
        // A moved file the start continues, read before the (empty) log.
        std::fs::write(&log, "").unwrap();
        assert_eq!(Generations::read(Some(&old), &[], &log).judge(A).seen, 3);
        let g = Generations::read(Some(&old), &[moved.as_path()], &log);
        assert_eq!(g.judge(A).seen, 6);
        // A line over MAX_LINE bytes: skipped by the start, refused by the reader.
        let mut long = vec![b'x'; MAX_LINE + 1];
        long.push(b'\n');
        long.extend_from_slice(format!("{load}\n").as_bytes());
        std::fs::write(&log, &long).unwrap();
        assert_eq!(Generations::read(None, &[], &log).judge(A).seen, 6);
        let e = chain_generation(&log, A).unwrap_err().to_string();
        assert!(e.contains("line 1 is longer than"), "{e}");
    }
}
