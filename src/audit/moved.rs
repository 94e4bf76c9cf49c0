//! The file a rotation moved the log to, found at start when the daemon did not live to notice
//! the move (docs/audit.md, "Rotation"): logrotate renamed the log and made an empty one in its
//! place, then the daemon was killed, or was stopped, before its next write. The live log is
//! empty while its anchor names records: those records are in a file beside it, which the
//! start finds by its content (the anchored record, its seq and hash) among the log's
//! `<name>.*` siblings, verifies, and continues, as a rotation noticed at the next write does.

use std::ffi::OsStr;

use super::*;

/// The file beside the log that the anchored chain continues in, verified to its end.
#[derive(Debug, Clone)]
pub(super) struct Predecessor {
    /// The file.
    pub(super) path: PathBuf,
    /// Its last record's seq and the SHA-256 hex of its line: the new file continues them.
    pub(super) last_seq: u64,
    pub(super) head: String,
}

/// What the start found beside a log that is empty under an anchor naming records.
#[derive(Debug, Default)]
pub(super) struct Siblings {
    /// The one file holding the anchored record and verifying to its end.
    pub(super) found: Option<Predecessor>,
    /// Why no file is taken though one or more hold the anchored record (several do, or the
    /// one that does fails verification), naming them.
    pub(super) refused: Option<String>,
    /// The names of the regular `<name>.*` files seen (how each was judged, where it was not
    /// read), for the refusal: what a rotation may have left.
    pub(super) seen: Vec<String>,
    /// The highest seq the uncompressed files beside the log end at: seqs that may have been
    /// handed out, which an accepted gap must not give again.
    pub(super) highest: u64,
}

/// Look among the regular files `<name>.*` in the log's directory (open as `dirfd`, at
/// `dir`) for the one whose records hold the record anchored in `a`. Never follows a link,
/// never opens what is not a regular file ([`crate::sys::open_regular_at`]), and reads only
/// files of the daemon's user (or root's): the directory itself was judged not writable by
/// others when it was opened.
pub(super) fn find(dirfd: &rustix::fd::OwnedFd, dir: &Path, name: &OsStr, a: &Anchor) -> Siblings {
    let mut out = Siblings::default();
    let mut prefix = name.as_encoded_bytes().to_vec();
    prefix.push(b'.');
    let Ok(entries) = rustix::fs::Dir::read_from(dirfd) else {
        return out;
    };
    let mut names: Vec<std::ffi::OsString> = entries
        .flatten()
        .map(|e| {
            use std::os::unix::ffi::OsStrExt;
            OsStr::from_bytes(e.file_name().to_bytes()).to_owned()
        })
        .filter(|n| {
            let b = n.as_encoded_bytes();
            b.starts_with(&prefix) && b.len() > prefix.len()
        })
        .collect();
    names.sort();
    let key = key_path(Path::new(name));
    let journal = journal_path(Path::new(name));
    let me = rustix::process::geteuid().as_raw();
    let mut matches: Vec<(Predecessor, Option<String>)> = Vec::new();
    for n in names {
        if Path::new(&n) == key || Path::new(&n) == journal {
            continue;
        }
        let shown = n.to_string_lossy().into_owned();
        let Ok(file) =
            crate::sys::open_regular_at(dirfd, Path::new(&n), true, rustix::fs::OFlags::RDONLY)
        else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        if meta.uid() != me && meta.uid() != 0 {
            out.seen.push(format!("{shown} (another user's: not read)"));
            continue;
        }
        let mut magic = [0u8; 2];
        if matches!(file.read_at(&mut magic, 0), Ok(2)) && magic == [0x1f, 0x8b] {
            out.seen.push(format!("{shown} (compressed: not read)"));
            continue;
        }
        out.seen.push(shown);
        let len = meta.len();
        let (Some(first), Some(last)) = (first_record(&file), last_record(&file, len)) else {
            continue;
        };
        out.highest = out.highest.max(last.0);
        // The anchored record within it, or the file beginning right after it.
        let holds = first.0 <= a.seq && a.seq <= last.0;
        let begins_after = first.0 == a.seq + 1 && first.1 == a.head;
        if !(holds || begins_after) {
            continue;
        }
        let path = dir.join(&n);
        let report = match segment_reader(file.try_clone().unwrap_or(file))
            .map_err(|e| e.to_string())
            .and_then(|(r, _)| {
                verify_reader(r, &path, &mut |_, _| Ok(())).map_err(|e| e.to_string())
            }) {
            Ok(r) => r,
            Err(why) => {
                matches.push((
                    Predecessor {
                        path: path.clone(),
                        last_seq: last.0,
                        head: String::new(),
                    },
                    Some(why),
                ));
                continue;
            }
        };
        let of_anchor = if begins_after {
            report.first_seq == a.seq + 1 && report.continues.as_deref() == Some(a.head.as_str())
        } else {
            let reopened =
                crate::sys::open_regular_at(dirfd, Path::new(&n), true, rustix::fs::OFlags::RDONLY);
            reopened.is_ok_and(|f| {
                anchor_gap(a, report.last_seq, &report.head, || {
                    record_at_seq(&f, len - report.torn.unwrap_or(0), a.seq + 1)
                })
                .is_ok_and(|g| g.is_none())
            })
        };
        // A file whose records hold another record at the anchored seq is another chain's
        // (an older log's): not the one this chain continues in.
        if !of_anchor && report.first_bad.is_none() {
            continue;
        }
        let bad = report
            .first_bad
            .as_ref()
            .map(|b| format!("line {}: {}", b.line, b.why));
        matches.push((
            Predecessor {
                path,
                last_seq: report.last_seq,
                head: report.head,
            },
            bad,
        ));
    }
    match matches.len() {
        0 => {}
        1 => {
            let (p, bad) = matches.pop().expect("one");
            match bad {
                None => out.found = Some(p),
                Some(why) => {
                    out.refused = Some(format!(
                        "the log's records up to the anchored seq {} seem to be in {}, moved away by a rotation, but that file does not verify ({why}): run `scopevault audit verify --audit {}`",
                        a.seq,
                        p.path.display(),
                        p.path.display()
                    ))
                }
            }
        }
        _ => {
            let files: Vec<String> = matches
                .iter()
                .map(|(p, _)| p.path.display().to_string())
                .collect();
            out.refused = Some(format!(
                "the log is empty and the record its anchor names (seq {}) is in more than one file beside it ({}): the start cannot tell which one the chain continues in; keep the file the daemon wrote to beside the log and move the other copies out of its directory",
                a.seq,
                files.join(", ")
            ));
        }
    }
    out
}

/// The seq and `prev` of the file's first line, if it is a record (read with `pread`: the
/// file's offset stays at its start for the walk that follows).
fn first_record(file: &File) -> Option<(u64, String)> {
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
    Some((r.seq, r.prev.into_owned()))
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
