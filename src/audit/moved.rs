//! The file a rotation moved the log to, found at start when the daemon did not live to notice
//! the move (docs/audit.md, "Rotation"): logrotate renamed the log and made an empty one in its
//! place, then the daemon was killed, or was stopped, before its next write. The live log is
//! empty while its anchor names records: those records are in a file beside it, which the
//! start finds by its content (the anchored record, its seq and hash) among the log's
//! `<name>.*` siblings, verifies, and continues, as a rotation noticed at the next write does.

use std::ffi::OsStr;

use super::*;

/// The highest seq a chain is taken to reach: a log writing a billion records a second would
/// take 292 years to pass it. A seq above it (in a file beside the log, the log, its journal or
/// its anchor) was not handed out by the daemon, and a chain continued after it could come
/// within reach of `u64::MAX` and wrap to 0 (twenty-third pass: a line beside the log claiming
/// seq 2^64-1 made `--accept-audit-gap` give seqs 0, 1, 2 again): the start refuses it.
pub const SEQ_CEILING: u64 = u64::MAX / 2;

/// How many file names a message lists, the rest counted ("and N more"): a directory of
/// 20,000 `<log>.*` files made a 369 KB error line and `audit.gap` record (twenty-third pass).
const NAMES_SHOWN: usize = 5;

/// `names` for a message: at most [`NAMES_SHOWN`] of them, then how many more.
pub(super) fn list(names: &[String]) -> String {
    let mut out = names
        .iter()
        .take(NAMES_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_SHOWN {
        out.push_str(&format!(" and {} more", names.len() - NAMES_SHOWN));
    }
    out
}

/// Whether `candidate` is a name logrotate may give the log `name` when it moves it: `<name>.N`
/// (and `.N.gz`), `<name>-YYYYMMDD` with `dateext` (the default on RHEL and Fedora; any
/// `dateformat` beginning with `-` or `.`), and `.gz` or another ending added by `compress`.
pub(super) fn rotated_name(name: &[u8], candidate: &[u8]) -> bool {
    candidate.len() > name.len() + 1
        && candidate.starts_with(name)
        && matches!(candidate[name.len()], b'.' | b'-')
}

/// The file beside the log that the anchored chain continues in, verified to its end.
#[derive(Debug, Clone)]
pub(super) struct Predecessor {
    /// The file.
    pub(super) path: PathBuf,
    /// Its last whole record's seq and the SHA-256 hex of its line: the new file continues
    /// them.
    pub(super) last_seq: u64,
    pub(super) head: String,
    /// The bytes of an incomplete final line (no newline, not a whole record: a write a crash
    /// cut) after its last whole record, left in the file as they are: a rotated file is
    /// not changed.
    pub(super) torn: Option<u64>,
}

/// What the start found beside a log that is empty under an anchor naming records.
#[derive(Debug, Default)]
pub(super) struct Siblings {
    /// The one file holding the anchored record and verifying to its end.
    pub(super) found: Option<Predecessor>,
    /// Why no file is taken though one or more hold the anchored record (several do, or the
    /// one that does fails verification), naming them.
    pub(super) refused: Option<String>,
    /// The names of the `<name>.*` and `<name>-*` files seen (how each was judged, where it
    /// was not read), escaped for a message: what a rotation may have left.
    pub(super) seen: Vec<String>,
    /// The highest seq the uncompressed files beside the log whose records verify as a chain
    /// end at: seqs that may have been handed out, which an accepted gap must not give
    /// again. A file that does not verify is not taken at its word.
    pub(super) highest: u64,
    /// A file beside the log that verifies as a chain ending above [`SEQ_CEILING`]: named,
    /// for a refusal that no option overrides.
    pub(super) beyond: Option<(String, u64)>,
    /// The refusal gives its own fix, alone: the records are (or may be) in a file beside the
    /// log, so a restore or `--accept-audit-gap` (which would record a gap where nothing is
    /// missing) is not advised. The one file holding the anchored record ends with it whole
    /// but for its newline (add it); two files hold it (move the extra copy away); or no file
    /// the start can read does, but a compressed one or another user's is there (decompress
    /// it, or give it to the daemon's user: twenty-fourth pass's attacker of this pass's
    /// fixes, who followed the advice and recorded a false gap).
    pub(super) newline_only: bool,
    /// The compressed `<name>.*` files seen (escaped), which the start does not read.
    pub(super) compressed: Vec<String>,
    /// The `<name>.*` files of another user's seen (escaped), which the start does not read.
    pub(super) foreign: Vec<String>,
    /// The `<name>.*` names seen that are a symbolic link or not a regular file (escaped),
    /// which the start does not follow or read.
    pub(super) unread: Vec<String>,
}

impl Siblings {
    /// The fixes for the files beside the log that the start does not read: decompress the
    /// compressed ones (`how`: the tools named after "in place", or nothing), give another
    /// user's to the daemon's user.
    fn unread_fixes(&self, how: &str) -> Vec<String> {
        let mut fixes = Vec::new();
        if !self.compressed.is_empty() {
            fixes.push(format!(
                "decompress {} in place{how}",
                list(&self.compressed)
            ));
        }
        if !self.foreign.is_empty() {
            fixes.push(format!(
                "give {} to the daemon's user (`chown` it; the start reads only its own user's files and root's)",
                list(&self.foreign)
            ));
        }
        fixes
    }
}

/// Look among the regular files `<name>.*` and `<name>-*` ([`rotated_name`]) in the log's
/// directory (open as `dirfd`, at `dir`) for the one whose records hold the record anchored
/// in `a`. Never follows a link, never opens what is not a regular file
/// ([`crate::sys::open_regular_at`]), reads a file linked under two names once, and reads only
/// files of the daemon's user `daemon_uid` (or root's): the directory itself was judged not
/// writable by others when it was opened.
pub(super) fn find(
    dirfd: &rustix::fd::OwnedFd,
    dir: &Path,
    name: &OsStr,
    a: &Anchor,
    daemon_uid: u32,
) -> Siblings {
    let mut out = Siblings::default();
    let Ok(entries) = rustix::fs::Dir::read_from(dirfd) else {
        return out;
    };
    let mut names: Vec<std::ffi::OsString> = entries
        .flatten()
        .map(|e| {
            use std::os::unix::ffi::OsStrExt;
            OsStr::from_bytes(e.file_name().to_bytes()).to_owned()
        })
        .filter(|n| rotated_name(name.as_encoded_bytes(), n.as_encoded_bytes()))
        .collect();
    names.sort();
    let key = key_path(Path::new(name));
    let journal = journal_path(Path::new(name));
    let mut inodes: Vec<((u64, u64), String)> = Vec::new();
    let mut matches: Vec<(String, Result<Predecessor, String>)> = Vec::new();
    let mut newline_case: Option<String> = None;
    // The anchor names the first record of the daemon's new file as still to be written
    // (`begins`): a crash between that file's first batch and the anchor written right after
    // it leaves this, and a rotation since may have moved the file holding that batch away
    // (twenty-fifth pass). Only a file that begins with the very line the anchor names
    // (`next`) is that file; the one holding the anchored record is the file before it.
    let pending = a.pending();
    for n in names {
        if Path::new(&n) == key || Path::new(&n) == journal {
            continue;
        }
        let shown = crate::text::shown(Path::new(&n));
        let file = match crate::sys::open_regular_at(
            dirfd,
            Path::new(&n),
            true,
            rustix::fs::OFlags::RDONLY,
        ) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                out.seen
                    .push(format!("{shown} (a symbolic link: not followed)"));
                out.unread.push(shown);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => {
                out.seen
                    .push(format!("{shown} (not a regular file: not read)"));
                out.unread.push(shown);
                continue;
            }
        };
        let Ok(meta) = file.metadata() else { continue };
        if let Some((_, first)) = inodes.iter().find(|(i, _)| *i == (meta.dev(), meta.ino())) {
            out.seen.push(format!("{shown} (the same file as {first})"));
            continue;
        }
        inodes.push(((meta.dev(), meta.ino()), shown.clone()));
        if meta.uid() != daemon_uid && meta.uid() != 0 {
            out.seen.push(format!("{shown} (another user's: not read)"));
            out.foreign.push(shown);
            continue;
        }
        let mut magic = [0u8; 6];
        let got = file.read_at(&mut magic, 0).unwrap_or(0);
        let compressed = [
            &[0x1f, 0x8b][..],
            b"BZh",
            &[0xfd, b'7', b'z', b'X', b'Z', 0],
            &[0x28, 0xb5, 0x2f, 0xfd],
        ];
        if compressed.iter().any(|m| magic[..got].starts_with(m)) {
            out.seen.push(format!("{shown} (compressed: not read)"));
            out.compressed.push(shown);
            continue;
        }
        out.seen.push(shown);
        let len = meta.len();
        let first = first_record(&file);
        // The daemon's new file whose first record the anchor names as pending (`begins`,
        // `next`): the one file beside the log that begins with that very line. Judged by
        // that line alone: what follows it (a last line that is no record, a sparse tail) is
        // for the walk below to refuse, not a reason to pass the file by (re-attacker of the
        // twenty-fifth pass: such a file was skipped, and the start began a second chain at
        // the seq it begins with).
        let begun = pending && first.as_ref().map(|f| f.2.as_str()) == a.next.as_deref();
        let last = last_record(&file, len);
        let path = dir.join(&n);
        if pending && first.is_none() && unterminated_first(&file, len, a) {
            // Its one line is the pending record, whole but for its newline.
            let shown = crate::text::shown(&path);
            newline_case = Some(shown.clone());
            matches.push((shown.clone(), Err(format!(
                "the daemon's new file after seq {} (the log's first file at 0), whose first record the anchor names, is {shown}, moved away by a rotation, whose one line is that record whole but for its line end (the newline a crash cut off): the start does not change a rotated file; add the newline (`printf '\\n' >> {shown}`) and start again, which continues the chain from it",
                a.seq
            ))));
            continue;
        }
        if !begun && (first.is_none() || last.is_none()) {
            continue;
        }
        let report = match segment_reader(file.try_clone().unwrap_or(file))
            .map_err(|e| e.to_string())
            .and_then(|(r, _)| {
                verify_reader(r, &path, &mut |_, _| Ok(())).map_err(|e| e.to_string())
            }) {
            Ok(r) => r,
            Err(why) => {
                let within = first
                    .as_ref()
                    .zip(last)
                    .is_some_and(|(f, l)| f.0 <= a.seq && a.seq <= l.0.saturating_add(1));
                if begun || (!pending && within) {
                    matches.push((
                        crate::text::shown(&path),
                        Err(refused_broken(a, &path, &why)),
                    ));
                }
                continue;
            }
        };
        // An incomplete final line is a write a crash cut, as in the live log: the file's
        // chain is its whole records, the line is left where it is.
        let torn = report.torn;
        let broken = report.first_bad.as_ref().filter(|_| torn.is_none());
        if broken.is_none() {
            out.highest = out.highest.max(report.last_seq);
            if report.last_seq > SEQ_CEILING && out.beyond.is_none() {
                out.beyond = Some((crate::text::shown(&path), report.last_seq));
            }
        }
        if pending {
            // The file holding the anchored record is the one before it: not continued.
            if begun {
                matches.push(judged(a, path, report));
            }
            continue;
        }
        let (Some(first), Some(last)) = (first, last) else {
            continue;
        };
        // The anchored record within it, or the file beginning right after it; or its
        // incomplete final line, the anchored record whole but for its newline.
        if torn.is_some() && report.line_end_missing(a).is_some() && broken.is_none() {
            let shown = crate::text::shown(&path);
            newline_case = Some(shown.clone());
            matches.push((shown.clone(), Err(format!(
                "the record its anchor names (seq {}) is the final line of {shown}, moved away by a rotation, whole but for its line end (the newline a crash cut off): the start does not change a rotated file; add the newline (`printf '\\n' >> {shown}`) and start again, which continues the chain from it",
                a.seq
            ))));
            continue;
        }
        // (A file that does not verify is judged by its last whole line's seq.)
        let end = if broken.is_some() {
            last.0
        } else {
            report.last_seq
        };
        let holds = first.0 <= a.seq && a.seq <= end;
        let begins_after = Some(first.0) == a.seq.checked_add(1) && first.1 == a.head;
        if !(holds || begins_after) {
            continue;
        }
        let of_anchor = if begins_after {
            Some(report.first_seq) == a.seq.checked_add(1)
                && report.continues.as_deref() == Some(a.head.as_str())
        } else {
            let reopened =
                crate::sys::open_regular_at(dirfd, Path::new(&n), true, rustix::fs::OFlags::RDONLY);
            reopened.is_ok_and(|f| {
                anchor_gap(a, report.last_seq, &report.head, || {
                    match a.seq.checked_add(1) {
                        Some(next) => record_at_seq(&f, len - torn.unwrap_or(0), next),
                        None => Ok(Found::Unreadable("no seq follows the largest".into())),
                    }
                })
                .is_ok_and(|g| g.is_none())
            })
        };
        // A file whose records hold another record at the anchored seq is another chain's
        // (an older log's): not the one this chain continues in.
        if !of_anchor && broken.is_none() {
            continue;
        }
        matches.push(judged(a, path, report));
    }
    match matches.len() {
        0 => {}
        1 => match matches.pop().expect("one") {
            (_, Ok(p)) => out.found = Some(p),
            (name, Err(why)) => {
                out.newline_only = newline_case == Some(name);
                out.refused = Some(why);
            }
        },
        _ => {
            let files: Vec<String> = matches.iter().map(|(n, _)| n.clone()).collect();
            // The records are there, twice: nothing is missing.
            out.newline_only = true;
            out.refused = Some(format!(
                "the log is empty and the record its anchor names (seq {}) is in more than one file beside it ({}): the start cannot tell which one the chain continues in; keep the file the daemon wrote to beside the log and move the other copies out of its directory",
                if pending { a.seq.saturating_add(1) } else { a.seq },
                list(&files)
            ));
        }
    }
    out
}

/// The start's judgment of a log empty (or missing) under an anchor `a` that names records
/// and no record of the daemon's own pending (`begins`): [`find`] the file the anchored chain
/// continues in beside it, and take it unless the journal holds records above its end
/// (`journal_top`). Returns what was found, with [`Siblings::found`] the file the start
/// continues (if any), and otherwise what the refusal of the empty log adds to the cut tail's
/// wording. The one decision of `serve`, `doctor` and the commands that save the vault
/// ([`moved_log`]). `daemon_uid` is the user the start runs as: it reads that user's files
/// beside the log and root's ([`find`]).
pub(super) fn judge(
    dirfd: &rustix::fd::OwnedFd,
    dir: &Path,
    name: &OsStr,
    a: &Anchor,
    journal_top: u64,
    log: &Path,
    daemon_uid: u32,
) -> (Siblings, Option<String>) {
    let mut siblings = find(dirfd, dir, name, a, daemon_uid);
    let adopted = match siblings.found.take() {
        Some(p) if journal_top > p.last_seq => {
            siblings.refused = Some(format!(
                "{} holds the anchored record but ends at seq {}, and the journal {} holds records up to seq {journal_top} (the machine stopped before they reached that file?)",
                crate::text::shown(&p.path),
                p.last_seq,
                crate::text::shown(&journal_path(log))
            ));
            None
        }
        p => p,
    };
    let why = match (&adopted, &siblings.refused) {
        (Some(_), _) => None,
        (None, Some(refused)) => Some(refused.clone()),
        // The daemon's own new file still to be begun, and a file beside the log the start
        // does not read (another user's, compressed, a link, not a regular file) may be that
        // file moved away: refused as the search under any anchor refuses such files, naming
        // them with their fix (re-attacker of the twenty-fifth pass: the start began the file
        // again, a second record at the seq the moved file begins with).
        (None, None)
            if a.pending()
                && !(siblings.compressed.is_empty()
                    && siblings.foreign.is_empty()
                    && siblings.unread.is_empty()) =>
        {
            let mut fixes = siblings.unread_fixes("");
            if !siblings.unread.is_empty() {
                fixes.push(format!(
                    "replace {} by the file itself or move it out of the log's directory (the start follows no link and reads only regular files)",
                    list(&siblings.unread)
                ));
            }
            siblings.newline_only = true;
            Some(format!(
                "the anchor names the first record of the daemon's new file after seq {} (the log's first file at 0) as still to be written, and a rotation may have moved that file away after its first records: {} beside the log may be it, but the start does not read {}: {}, and start again, which continues the chain from the file that begins with that record, or begins the file if none does",
                a.seq,
                list(
                    &siblings
                        .compressed
                        .iter()
                        .chain(&siblings.foreign)
                        .chain(&siblings.unread)
                        .cloned()
                        .collect::<Vec<_>>()
                ),
                if siblings.compressed.len() + siblings.foreign.len() + siblings.unread.len() == 1 {
                    "it"
                } else {
                    "them"
                },
                fixes.join("; ")
            ))
        }
        // The daemon's own new file still to be begun, and no file beside the log begun with
        // its first record: the start begins it (a full disk kept that record out).
        (None, None) if a.pending() => None,
        (None, None) if !(siblings.compressed.is_empty() && siblings.foreign.is_empty()) => {
            // A file the start does not read may hold the records: its own fix, and no
            // advice to record a gap before it is read.
            let fixes = siblings.unread_fixes(
                " (`gunzip`, `bunzip2`, `unxz` or `unzstd` without keeping the compressed file)",
            );
            siblings.newline_only = true;
            let shown = crate::text::shown(log);
            Some(format!(
                "a rotation may have moved the log away before the daemon noticed, and no file beside it ({}) that the start reads holds the anchored record (seq {}), but {} may: {}, and start again, which continues the chain from the file that holds it (check the two with `scopevault audit verify --audit {shown} <that file>`); only if none of them holds it, once read, are its records lost (then `serve --accept-audit-gap` records the gap)",
                list(&siblings.seen),
                a.seq,
                list(
                    &siblings
                        .compressed
                        .iter()
                        .chain(&siblings.foreign)
                        .cloned()
                        .collect::<Vec<_>>()
                ),
                fixes.join("; ")
            ))
        }
        (None, None) => {
            let seen = if siblings.seen.is_empty() {
                "there is none".to_owned()
            } else {
                list(&siblings.seen)
            };
            let shown = crate::text::shown(log);
            Some(format!(
                "a rotation may have moved the log away before the daemon noticed, but no file beside it ({seen}) holds the anchored record uncompressed: if the log's records are in a file moved elsewhere or compressed, put it back beside the log uncompressed, under a name not taken that begins with its name and a dot or a dash (such as {shown}.restored), and start again, which continues the chain from it (check the two with `scopevault audit verify --audit {shown} <that file>`)"
            ))
        }
    };
    siblings.found = adopted;
    (siblings, why)
}

/// What the daemon's next start does with the log at `path` when it is empty (or missing)
/// under an anchor that names records ([`judge`]): `doctor` says it, and the commands that
/// save the vault count the `vault.load` records of the moved file it continues, as the start
/// does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MovedLog {
    /// The log is not empty under such an anchor (or its directory cannot be judged here: the
    /// `audit` line of `doctor` says why): nothing to look for.
    NotMoved,
    /// The start continues the chain from this file beside the log, whose last whole record
    /// is `last_seq`.
    Continues {
        /// The moved file.
        path: PathBuf,
        /// Its last whole record's seq.
        last_seq: u64,
        /// The SHA-256 hex of that record's line: the chain's head.
        head: String,
    },
    /// The start is refused: what its refusal adds to the cut tail's wording.
    Refused(String),
    /// The start is refused until the newline is added to the moved file, whose final line
    /// is the anchored record whole but for it, an extra copy is moved away, or a compressed
    /// file or another user's is decompressed or given to the daemon's user: why, and that fix
    /// ([`AuditError::MovedUnterminated`]).
    Unterminated(String),
}

/// [`MovedLog`] of the log at `path`, found as the start finds it ([`judge`]), without
/// changing anything: the anchor, the log's directory, the files beside it, and the journal's
/// highest seq where this user may read the key and the journal (otherwise taken as 0).
///
/// `daemon_uid` is the user the daemon runs as, when the caller knows it (`doctor` and
/// `status` from the daemon that answered): the start reads that user's files beside the log
/// and root's. Not known, it is this user, or for root the owner of the log's directory
/// ([`judged_uid`]).
pub fn moved_log(path: &Path, daemon_uid: Option<u32>) -> MovedLog {
    let Ok(Some(a)) = read_anchor(path) else {
        return MovedLog::NotMoved;
    };
    moved_log_under(path, &a, daemon_uid)
}

/// The user whose files beside the log the start is judged to read (with root's), for a
/// command that is not the daemon: the daemon's user when known; otherwise this user, or for
/// root the owner of the log's directory `dir_uid`. Root runs `doctor`, `status` and the
/// commands that save the vault on the daemon's files (systemd's `LogsDirectory=` makes the
/// directory the daemon's user's, and a daemon not root refuses a log directory of another
/// user than itself and root): root's doctor called the files of the daemon's own user beside
/// a moved log "another user's: not read", said `serve` refused to start, and advised a
/// `chown` to that very user, while the start continued them (twenty-ninth pass, found by the
/// systemd attacker).
fn judged_uid(daemon_uid: Option<u32>, dir_uid: u32) -> u32 {
    let me = rustix::process::geteuid().as_raw();
    match daemon_uid {
        Some(uid) => uid,
        None if me == 0 => dir_uid,
        None => me,
    }
}

/// The user whose files beside the log a writer of the log reads (with root's) when it
/// continues a moved log: the daemon's start, or a command writing to the log with the
/// daemon stopped (`bundle apply`), as [`judged_uid`] judges it with no daemon known: its own
/// user, or for root the owner of the log's directory `dirfd` (a root `bundle apply` on the
/// daemon's log refused the daemon's own files, which the daemon's start continues).
pub(super) fn writer_uid(dirfd: &rustix::fd::OwnedFd) -> u32 {
    judged_uid(None, rustix::fs::fstat(dirfd).map_or(0, |st| st.st_uid))
}

/// [`moved_log`] under the anchor `a` already read (`status` reads the one the daemon names).
pub fn moved_log_under(path: &Path, a: &Anchor, daemon_uid: Option<u32>) -> MovedLog {
    // Under an anchor whose new file is still to be begun (`begins`, `next`), the file that
    // begins with that record is looked for (a crash before that file's first anchor, then a
    // rotation: [`find`]); none found, the start begins the file.
    let pending = a.pending();
    if (a.seq == 0 || a.begins.is_some()) && !pending {
        return MovedLog::NotMoved;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.len() == 0 => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        _ => return MovedLog::NotMoved,
    }
    let dir = crate::paths::dir_of(path);
    let Ok((dirfd, name)) = open_dir_of(path, &dir) else {
        return MovedLog::NotMoved;
    };
    let journal_top = AuditKey::load_at(&dirfd, path)
        .ok()
        .flatten()
        .and_then(|key| {
            let mut j = Journal::open_existing(&dirfd, path).ok()??;
            j.highest_seq(key_id(&key)).ok()
        })
        .unwrap_or(0);
    let dir_uid = rustix::fs::fstat(&dirfd).map_or(0, |st| st.st_uid);
    let uid = judged_uid(daemon_uid, dir_uid);
    match judge(&dirfd, &dir, &name, a, journal_top, path, uid) {
        (Siblings { found: Some(p), .. }, _) => MovedLog::Continues {
            path: p.path,
            last_seq: p.last_seq,
            head: p.head,
        },
        (s, Some(why)) if s.newline_only || pending => MovedLog::Unterminated(why),
        (_, Some(why)) => MovedLog::Refused(why),
        (_, None) => MovedLog::NotMoved,
    }
}

/// The file at `path`, verified as `report` says, as a candidate for the file the anchored
/// chain continues in (its name as shown): refused when its chain breaks before an incomplete
/// final line (a write a crash cut is no break), else the predecessor it would be.
fn judged(
    a: &Anchor,
    path: PathBuf,
    report: VerifyReport,
) -> (String, Result<Predecessor, String>) {
    let torn = report.torn;
    let shown = crate::text::shown(&path);
    let judged = match report.first_bad.as_ref().filter(|_| torn.is_none()) {
        Some(b) => Err(refused_broken(
            a,
            &path,
            &format!("line {}: {}", b.line, b.why),
        )),
        None => Ok(Predecessor {
            path,
            last_seq: report.last_seq,
            head: report.head,
            torn,
        }),
    };
    (shown, judged)
}

/// The refusal of the one file beside the log that holds the anchored record but does not
/// verify.
fn refused_broken(a: &Anchor, path: &Path, why: &str) -> String {
    let shown = crate::text::shown(path);
    if a.pending() {
        return format!(
            "the daemon's new file after seq {} (the log's first file at 0), whose first record the anchor names, seems to be {shown}, moved away by a rotation, but that file does not verify ({}): run `scopevault audit verify --audit {shown}`",
            a.seq,
            crate::text::escape_for_terminal(why)
        );
    }
    format!(
        "the log's records up to the anchored seq {} seem to be in {shown}, moved away by a rotation, but that file does not verify ({}): run `scopevault audit verify --audit {shown}`",
        a.seq,
        crate::text::escape_for_terminal(why)
    )
}

/// The seq and `prev` of the file's first line, if it is a record, and the SHA-256 hex of
/// that line (read with `pread`: the file's offset stays at its start for the walk that
/// follows).
fn first_record(file: &File) -> Option<(u64, String, String)> {
    let mut line = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = file.read_at(&mut chunk, line.len() as u64).ok()?;
        if n == 0 {
            return None;
        }
        let at = line.len();
        line.extend_from_slice(&chunk[..n]);
        if let Some(end) = line[at..].iter().position(|&b| b == b'\n') {
            line.truncate(at + end);
            break;
        }
        if line.len() > MAX_LINE {
            return None;
        }
    }
    let r = record_view(&line).ok()?;
    Some((
        r.seq,
        r.prev.into_owned(),
        HEXLOWER.encode(&Sha256::digest(&line)),
    ))
}

/// Whether the file's whole content is one line without its newline whose SHA-256 is the
/// line the anchor names as `next` (a crash cut the newline of a new file's first record).
fn unterminated_first(file: &File, len: u64, a: &Anchor) -> bool {
    if len == 0 || len > MAX_LINE as u64 {
        return false;
    }
    let mut line = vec![0u8; len as usize];
    if file.read_exact_at(&mut line, 0).is_err() || line.contains(&b'\n') {
        return false;
    }
    a.next.as_deref() == Some(HEXLOWER.encode(&Sha256::digest(&line)).as_str())
}

/// The seq of the file's last whole line, if it is a record.
fn last_record(file: &File, len: u64) -> Option<(u64,)> {
    if len == 0 {
        return None;
    }
    // A torn last line (a crash in a write) is looked past: the record before it.
    let mut end = len;
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, len - 1).ok()?;
    if b[0] != b'\n' {
        let from = len.saturating_sub(MAX_LINE as u64 + 1);
        let mut tail = vec![0u8; (len - from) as usize];
        file.read_exact_at(&mut tail, from).ok()?;
        end = from + tail.iter().rposition(|&c| c == b'\n')? as u64 + 1;
    }
    let line = journal::whole_line_before(file, end).ok()??;
    Some((record_view(&line).ok()?.seq,))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names logrotate gives the moved log are looked at, `dateext`'s too; the log's own
    /// name and other files are not.
    #[test]
    fn rotated_names_cover_numbered_dated_and_compressed() {
        let log = b"audit.jsonl";
        for n in [
            "audit.jsonl.1",
            "audit.jsonl.2.gz",
            "audit.jsonl-20261202",
            "audit.jsonl-20261202.gz",
            "audit.jsonl.2026-12-02",
        ] {
            assert!(rotated_name(log, n.as_bytes()), "{n}");
        }
        for n in [
            "audit.jsonl",
            "audit.jsonl.",
            "audit.jsonl-",
            "audit.jsonlx1",
            "other.1",
        ] {
            assert!(!rotated_name(log, n.as_bytes()), "{n}");
        }
    }

    /// A message lists a few names, then how many more: 20,000 files made a 369 KB line.
    #[test]
    fn a_list_of_names_is_bounded() {
        let names: Vec<String> = (0..20_000).map(|i| format!("audit.jsonl.{i}")).collect();
        let shown = list(&names);
        assert!(shown.ends_with("audit.jsonl.4 and 19995 more"), "{shown}");
        assert_eq!(list(&names[..2]), "audit.jsonl.0, audit.jsonl.1");
    }
}
