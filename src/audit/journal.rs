//! The audit journal: how a batch becomes durable without an `fdatasync` of the log.
//!
//! An `fdatasync` of an appended log writes the data and then the inode (its size changed),
//! two trips to the disk. The journal is a file of fixed size beside the log
//! (`<log>.journal`), zero-filled and synced once when it is made, so that overwriting it
//! changes no metadata. Each batch is appended to the log as before (page cache only) and
//! then written once more, framed, into the journal with `O_DIRECT | O_DSYNC`: that one write
//! returns when the frame is on stable storage, and only then are the batch's answers sent.
//! The log itself is `fdatasync`ed at most every 250 ms while records flow (before the anchor
//! is written), before
//! the journal's ring could overwrite frames whose records the log may not yet hold, and
//! before a rotation or any record of the daemon's own.
//!
//! After a crash of the machine the log may have lost writes that were never synced (a cut
//! tail, or a hole of zeros where pages were not written back). When the log is opened, the
//! frames of this log file (same device and inode) are read back in the order they were
//! written, compared line by line with the log, and from the first line that differs the log
//! is rewritten from the journal and synced ([`Journal::redo`], [`WriteBack::apply`]). The device, inode and key id
//! tie a frame to one log: a new log made at the same path, even on a reused inode, has a new
//! key. A file's first batch is synced in the log, not framed, so every frame continues a line
//! its file holds, and an empty log is never written from the journal: a new file of the same
//! log on the inode of a removed one (a moved log compressed) is not taken for it. A clean stop
//! clears the journal ([`AuditLog::clear_journal`]). The restoration is recorded
//! in the chain (`audit.repair`). A frame is trusted only whole: its SHA-256 covers its
//! header and its records, and its records must continue the log's chain.
//!
//! File format (docs/audit.md, "The journal"): blocks of 4,096 bytes; a frame starts at a
//! block and fills whole blocks:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `SVAJRNL1` |
//! | 8..16 | frame serial (grows with every frame written, across restarts) |
//! | 16..24, 24..32 | device and inode of the log file the records were appended to |
//! | 32..40 | the log's key id: the first 8 bytes of HMAC-SHA256(the log's key, `scopevault audit journal`) |
//! | 40..48 | offset in that file of the first record |
//! | 48..56 | seq of the first record |
//! | 56..60 | number of records |
//! | 60..64 | length of the records |
//! | 64..96 | SHA-256 of bytes 0..64 and the records |
//! | 96.. | the records, exactly as appended to the log (JSON lines) |
//!
//! Integers are little-endian. The rest of the frame's last block is zero.

use super::*;

/// Size of a journal block: the unit of a direct write.
pub(super) const BLOCK: usize = 4096;
/// Blocks in the journal (1 MiB).
pub(super) const BLOCKS: usize = 256;
/// Largest frame, in blocks: a bigger batch is synced in the log instead.
const MAX_FRAME_BLOCKS: usize = BLOCKS / 4;
const MAGIC: &[u8; 8] = b"SVAJRNL1";
const HEADER: usize = 96;

/// `O_DSYNC`: a write returns once its data (and what is needed to read it back) is on stable
/// storage. rustix's `OFlags::DSYNC` is `O_SYNC` on its raw Linux backend, which also writes
/// the inode for the new modification time: a second trip to the disk on every frame.
fn o_dsync() -> OFlags {
    OFlags::from_bits_retain(libc::O_DSYNC as u32)
}

/// The journal of the log at `log`: `<log>.journal`, beside it.
pub fn journal_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// The log's key id, for its frames (see the format above).
pub(super) fn key_id(key: &AuditKey) -> u64 {
    let mac = key.hmac_value("scopevault audit journal");
    let hex = mac.strip_prefix(HMAC_PREFIX).unwrap_or(&mac);
    let bytes = HEXLOWER.decode(&hex.as_bytes()[..16]).unwrap_or_default();
    // Stored little-endian: the field holds the MAC's first 8 bytes as they are.
    u64::from_le_bytes(bytes.try_into().unwrap_or_default())
}

/// Which log a frame belongs to: its file's device and inode, and its key id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LogId {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) key: u64,
}

/// Where the journal's write of the next frame goes, and what it must not overwrite.
pub(super) struct Journal {
    file: File,
    /// Block where the next frame starts.
    next: usize,
    /// Blocks (frames and the skipped end of the ring) written since the log was last
    /// synced: frames the log may not hold durably yet lie within this many blocks before
    /// `next`. Kept at most half the ring, so a frame never overwrites one of them.
    unsynced: usize,
    /// A sync of the log failed while frames were ahead of it: the log may lack records the
    /// journal holds, so no frame may overwrite them and no batch is taken any more (fail
    /// closed) until a restart writes them back.
    failed: Option<String>,
    /// Whether a frame can be written here ([`Journal::usable`]), once tried.
    usable: Option<bool>,
    /// Serial of the next frame.
    serial: u64,
    /// Scratch for a frame, with room to start it at a block-aligned address (`O_DIRECT`).
    scratch: Vec<u8>,
}

/// What [`Journal::redo`] found: nothing is written until the start goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Redo {
    /// Records to write back into the log ([`WriteBack::apply`]).
    WriteBack(WriteBack),
    /// The log lacks or differs from the journal's records from `seq` (at byte `at`) on, and
    /// none could be written back: the line before them is broken (a hole the crash left
    /// there, whose own frame is gone), or the journal's record does not continue it.
    Unmended { seq: u64, at: u64 },
}

/// Records the journal gives back to the log: the log is cut at `at` and `records` written
/// there. Found by [`Journal::redo`] and written by [`WriteBack::apply`] only once the log,
/// as it would then be, has been judged against its anchor: a start refused leaves the log
/// as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WriteBack {
    /// Where the log is cut and the records go.
    pub(super) at: u64,
    /// The seq and SHA-256 hex of the line that ends at `at` (`None` at the file's start):
    /// the first record written continues it.
    pub(super) before: Option<(u64, String)>,
    /// The records, whole lines, each continuing the one before.
    pub(super) records: Vec<u8>,
    /// The seq of the first record and of the last.
    pub(super) first_seq: u64,
    pub(super) last_seq: u64,
    /// The SHA-256 hex of the last record's line: the chain's head once written back.
    pub(super) head: String,
}

impl WriteBack {
    /// Cut the log at `at`, write the records and sync it.
    pub(super) fn apply(&self, log: &File) -> std::io::Result<()> {
        log.set_len(self.at)?;
        (&*log).write_all(&self.records)?;
        log.sync_data()
    }

    /// [`record_at_seq`] in `log` as it will be once written back, without writing it: the
    /// anchor's check of the log as the start would leave it.
    pub(super) fn record_at(&self, log: &File, want: u64) -> std::io::Result<Found> {
        if want < self.first_seq {
            return record_at_seq(log, self.at, want);
        }
        let mut before = self.before.as_ref().map(|(seq, hash)| LineBefore {
            seq: Some(*seq),
            hash: hash.clone(),
        });
        for line in self
            .records
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            let hash = HEXLOWER.encode(&Sha256::digest(line));
            let (seq, prev) = match parse_chain_fields(line) {
                Ok(fields) => fields,
                Err(why) => return Ok(Found::Unreadable(why)),
            };
            if seq == want {
                return Ok(Found::At(Located { prev, hash, before }));
            }
            before = Some(LineBefore {
                seq: Some(seq),
                hash,
            });
        }
        Ok(Found::Unreadable(format!(
            "there is no record at seq {want} among those the journal gives back"
        )))
    }
}

/// Why [`Journal::redo`] wrote nothing: the journal holds what a genuine journal cannot,
/// against the anchored record. Records at or below the anchored seq were synced in the log
/// before they were anchored, so the log never lost them to a crash, and never differs there
/// from a journal the daemon wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Conflict(pub(super) String);

/// One frame read back from the journal.
struct Frame {
    serial: u64,
    offset: u64,
    first_seq: u64,
    count: u64,
    records: Vec<u8>,
}

fn blocks_for(records: usize) -> usize {
    (HEADER + records).div_ceil(BLOCK)
}

/// The block-aligned part of `buf` of `len` bytes (`O_DIRECT` needs aligned memory).
fn aligned(buf: &mut [u8], len: usize) -> &mut [u8] {
    let at = buf.as_ptr().align_offset(BLOCK);
    &mut buf[at..at + len]
}

fn digest(header: &[u8], records: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header);
    h.update(records);
    h.finalize().into()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as usize
}

impl Journal {
    /// Open the journal of the log at `path` through the log's directory `dirfd` (made,
    /// zero-filled and synced if it is missing or not of the journal's size), for direct
    /// synchronous writes. It must be a regular file with one link: a hard link planted there
    /// to another file of the daemon's is refused, not overwritten. `Ok(None)` when the file
    /// system takes neither `O_DIRECT` nor `O_DSYNC` writes, or has no room for the journal:
    /// the log is then `fdatasync`ed after every batch, as without a journal.
    pub(super) fn open(
        dirfd: &rustix::fd::OwnedFd,
        path: &Path,
    ) -> Result<Option<Journal>, AuditError> {
        Journal::open_named(dirfd, path, true)
    }

    /// As [`Journal::open`], but only a journal that is there, of the journal's size: nothing
    /// is made, zero-filled or written (`Ok(None)` instead), so that a start refused after
    /// reading it back ([`Journal::redo`]) leaves the journal's place as it found it. The
    /// daemon makes the journal with [`Journal::open`] once it goes on.
    pub(super) fn open_existing(
        dirfd: &rustix::fd::OwnedFd,
        path: &Path,
    ) -> Result<Option<Journal>, AuditError> {
        Journal::open_named(dirfd, path, false)
    }

    fn open_named(
        dirfd: &rustix::fd::OwnedFd,
        path: &Path,
        make: bool,
    ) -> Result<Option<Journal>, AuditError> {
        // Every refusal names the journal, not the log.
        Journal::open_or_make(dirfd, path, make).map_err(|e| match e {
            AuditError::Open { path, message } => AuditError::JournalOpen {
                path,
                message,
                source: None,
            },
            other => other,
        })
    }

    fn open_or_make(
        dirfd: &rustix::fd::OwnedFd,
        path: &Path,
        make: bool,
    ) -> Result<Option<Journal>, AuditError> {
        let jpath = journal_path(path);
        let name = jpath.file_name().expect("a log path names a file");
        // A journal already there is judged before it is opened: a FIFO or a device at its
        // path is refused, never opened (it was opened and judged afterwards: twentieth
        // pass).
        let open = |direct: bool| {
            let flags = OFlags::RDWR
                | o_dsync()
                | if direct {
                    OFlags::DIRECT
                } else {
                    OFlags::empty()
                };
            if make {
                crate::sys::open_or_create_regular_at(dirfd, Path::new(name), flags, 0o600)
                    .map(|(file, _)| file)
            } else {
                crate::sys::open_regular_at(dirfd, Path::new(name), true, flags)
            }
        };
        let absent = |e: &std::io::Error| !make && e.kind() == std::io::ErrorKind::NotFound;
        let refused = |e: std::io::Error| match rustix::io::Errno::from_io_error(&e) {
            Some(errno) => nofollow_err(&jpath, errno),
            None => AuditError::JournalOpen {
                path: jpath.clone(),
                message: format!("{e}; remove it: the daemon makes the journal itself"),
                source: Some(std::sync::Arc::new(e)),
            },
        };
        let invalid =
            |e: &std::io::Error| e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error());
        let file = match open(true) {
            Ok(file) => file,
            Err(e) if absent(&e) => return Ok(None),
            Err(e) if invalid(&e) => match open(false) {
                Ok(file) => file,
                Err(e) if invalid(&e) || absent(&e) => return Ok(None),
                Err(e) => return Err(refused(e)),
            },
            Err(e) => return Err(refused(e)),
        };
        let mut scratch = vec![0u8; (BLOCKS + 1) * BLOCK];
        let meta = file.metadata().map_err(|e| AuditError::JournalOpen {
            path: jpath.clone(),
            message: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        })?;
        if !meta.file_type().is_file() || meta.nlink() != 1 {
            return Err(AuditError::Open {
                path: jpath,
                message: format!(
                    "it is not a regular file of its own ({} link(s)); remove it: the daemon makes the journal itself",
                    meta.nlink()
                ),
            });
        }
        let size = meta.len();
        if size != (BLOCKS * BLOCK) as u64 && !make {
            // Not a journal this daemon made (or one cut short): it holds no frame to read
            // back, and is made anew once the start goes on.
            return Ok(None);
        }
        if size != (BLOCKS * BLOCK) as u64 {
            let zeros = aligned(&mut scratch, BLOCKS * BLOCK);
            zeros.fill(0);
            let made = file
                .set_len(0)
                .and_then(|()| file.write_all_at(zeros, 0))
                .and_then(|()| file.sync_all())
                .and_then(|()| rustix::fs::fsync(dirfd).map_err(std::io::Error::from));
            match made {
                Ok(()) => {}
                // No room for it (a full disk): go on without, syncing the log itself.
                Err(e)
                    if [rustix::io::Errno::NOSPC, rustix::io::Errno::DQUOT]
                        .iter()
                        .any(|n| e.raw_os_error() == Some(n.raw_os_error())) =>
                {
                    let _ = file.set_len(0);
                    return Ok(None);
                }
                Err(e) => {
                    return Err(AuditError::JournalOpen {
                        path: jpath,
                        message: format!("cannot make the journal ({e})"),
                        source: Some(std::sync::Arc::new(e)),
                    })
                }
            }
        }
        Ok(Some(Journal {
            file,
            next: 0,
            unsynced: 0,
            failed: None,
            usable: None,
            serial: 1,
            scratch,
        }))
    }

    /// The highest seq any frame of the log with the key `key` holds, whatever file (device
    /// and inode) it describes: the journal knows what it made durable, and so handed out, of
    /// a file moved away or removed since (0 with no such frame). Reads, writes nothing.
    pub(super) fn highest_seq(&mut self, key: u64) -> std::io::Result<u64> {
        Ok(self
            .frames()?
            .iter()
            .filter(|(_, of)| of.key == key)
            .map(|(f, _)| f.first_seq + f.count - 1)
            .max()
            .unwrap_or(0))
    }

    /// Every whole frame in the journal, of any log.
    fn frames(&mut self) -> std::io::Result<Vec<(Frame, LogId)>> {
        let all = aligned(&mut self.scratch, BLOCKS * BLOCK);
        self.file.read_exact_at(all, 0)?;
        let all: &[u8] = all;
        let mut frames = Vec::new();
        for b in 0..BLOCKS {
            let at = b * BLOCK;
            let head = &all[at..at + HEADER];
            if &head[..8] != MAGIC {
                continue;
            }
            let len = u32_at(head, 60);
            if len > all.len() - at - HEADER {
                continue;
            }
            let records = &all[at + HEADER..at + HEADER + len];
            if digest(&head[..64], records) != head[64..96] {
                continue;
            }
            let frame = Frame {
                serial: u64_at(head, 8),
                offset: u64_at(head, 40),
                first_seq: u64_at(head, 48),
                count: u32_at(head, 56) as u64,
                records: records.to_vec(),
            };
            // A frame as the writer makes them, whatever its checksum: whole lines, as many
            // as it says, numbers that add up without overflow.
            let lines = records.iter().filter(|&&b| b == b'\n').count() as u64;
            let sound = frame.count >= 1
                && lines == frame.count
                && records.last() == Some(&b'\n')
                && frame.first_seq >= 1
                && frame.first_seq.checked_add(frame.count).is_some()
                && frame.offset.checked_add(len as u64).is_some();
            if !sound {
                continue;
            }
            frames.push((
                frame,
                LogId {
                    dev: u64_at(head, 16),
                    ino: u64_at(head, 24),
                    key: u64_at(head, 32),
                },
            ));
        }
        Ok(frames)
    }

    /// Whether frames can be written: the first time, write the first block as every frame
    /// is written (after [`Journal::redo`] and the open's checks, so that a start refused for
    /// a gap leaves the journal as it was). A file system or device that refuses such a write
    /// (a block size the 4,096-byte alignment does not meet) is found there, and the log is
    /// then synced directly instead of failing every batch.
    pub(super) fn usable(&mut self) -> bool {
        *self.usable.get_or_insert_with(|| {
            let block = aligned(&mut self.scratch, BLOCK);
            block.fill(0);
            self.file.write_all_at(block, 0).is_ok()
        })
    }

    /// Whether a batch of `len` bytes goes through the journal (a bigger one is synced in
    /// the log).
    pub(super) fn fits(&self, len: usize) -> bool {
        blocks_for(len) <= MAX_FRAME_BLOCKS
    }

    /// Whether frames were written since the log was last synced.
    pub(super) fn unsynced(&self) -> bool {
        self.unsynced > 0
    }

    /// `fdatasync` the log, which the frames written so far may be ahead of. A failure while
    /// frames were ahead is kept: every later sync and frame fails with it (see `failed`).
    pub(super) fn sync_log(&mut self, log: &File) -> std::io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(std::io::Error::other(why.clone()));
        }
        match log.sync_data() {
            Ok(()) => {
                self.unsynced = 0;
                Ok(())
            }
            Err(e) => {
                if self.unsynced > 0 {
                    self.failed = Some(format!(
                        "a sync of the log failed ({e}) with batches in the journal it may lack; restart the daemon, which writes them back from the journal"
                    ));
                }
                Err(e)
            }
        }
    }

    /// Drop every frame (the whole journal zeroed, synchronously): the log file they belong to
    /// was cut under the daemon (copytruncate), so they no longer describe it, and a start
    /// must not write them back over what the file holds since (the `audit.gap` record of the
    /// cut and the records after it).
    pub(super) fn forget(&mut self) -> std::io::Result<()> {
        let zeros = aligned(&mut self.scratch, BLOCKS * BLOCK);
        zeros.fill(0);
        self.file.write_all_at(zeros, 0)?;
        self.next = 0;
        self.unsynced = 0;
        Ok(())
    }

    /// Make a batch durable: `records` (`count` of them, the first `first_seq`), just
    /// appended at `offset` to `log` (`id`), written as one frame with
    /// one synchronous write. First syncs `log` if the frame could otherwise overwrite a
    /// frame the log may not hold yet.
    pub(super) fn commit(
        &mut self,
        log: &File,
        id: LogId,
        offset: u64,
        first_seq: u64,
        count: usize,
        records: &[u8],
    ) -> std::io::Result<()> {
        if let Some(why) = &self.failed {
            return Err(std::io::Error::other(why.clone()));
        }
        let n = blocks_for(records.len());
        if self.next + n > BLOCKS {
            self.unsynced += BLOCKS - self.next;
            self.next = 0;
        }
        if self.unsynced + n > BLOCKS / 2 {
            self.sync_log(log)?;
        }
        let len = n * BLOCK;
        let frame = aligned(&mut self.scratch, len);
        frame[..8].copy_from_slice(MAGIC);
        frame[8..16].copy_from_slice(&self.serial.to_le_bytes());
        frame[16..24].copy_from_slice(&id.dev.to_le_bytes());
        frame[24..32].copy_from_slice(&id.ino.to_le_bytes());
        frame[32..40].copy_from_slice(&id.key.to_le_bytes());
        frame[40..48].copy_from_slice(&offset.to_le_bytes());
        frame[48..56].copy_from_slice(&first_seq.to_le_bytes());
        frame[56..60].copy_from_slice(&(count as u32).to_le_bytes());
        frame[60..64].copy_from_slice(&(records.len() as u32).to_le_bytes());
        let sum = digest(&frame[..64], records);
        frame[64..96].copy_from_slice(&sum);
        frame[HEADER..HEADER + records.len()].copy_from_slice(records);
        frame[HEADER + records.len()..].fill(0);
        self.file.write_all_at(frame, (self.next * BLOCK) as u64)?;
        self.serial += 1;
        self.next += n;
        self.unsynced += n;
        Ok(())
    }

    /// What it takes to bring `log` (`id`, opened for appending) up to the journal: follow
    /// the frames of this file back from the last one written, compare their records line by
    /// line with the log, and from the first line missing or different the log is to be cut
    /// there and the journal's records written ([`Redo::WriteBack`], which
    /// [`WriteBack::apply`] writes once the start goes on). `Ok(None)` when the log already
    /// holds every record (or the frames do not join the log: a log cut below them is the
    /// anchor's to report). Once written back every frame is in the log durably, unless
    /// nothing can be written back ([`Redo::Unmended`]: the log is left as it is). Also takes
    /// up the serials where the frames there left them. Writes nothing, to the log or here.
    ///
    /// `anchored` is the anchor's seq and head, if there is one: where the first record the
    /// log lacks or holds otherwise is at or below it, the log is written back only if it
    /// lacks it (ends there, or in a cut line) and the journal's records lead to the anchored
    /// record, its hash; else nothing is ([`Conflict`]).
    pub(super) fn redo(
        &mut self,
        log: &File,
        id: LogId,
        anchored: Option<(u64, &str)>,
    ) -> std::io::Result<Result<Option<Redo>, Conflict>> {
        let all = self.frames()?;
        // Serials keep growing across restarts, so that the last frame written is known.
        self.serial = all.iter().map(|(f, _)| f.serial).max().unwrap_or(0) + 1;
        let mut frames: Vec<Frame> = all
            .into_iter()
            .filter(|(_, of)| *of == id)
            .map(|(f, _)| f)
            .collect();
        frames.sort_by_key(|f| std::cmp::Reverse(f.serial));
        // The frames written one after the other up to the last one: each continues the
        // previous one in seq and in file offset. A frame that does not (a batch whose write
        // failed and was written again, or one of before a truncation) is not followed.
        let mut run: Vec<Frame> = Vec::new();
        for f in frames {
            match run.last() {
                None => run.push(f),
                Some(later)
                    if f.first_seq + f.count == later.first_seq
                        && f.offset + f.records.len() as u64 == later.offset =>
                {
                    run.push(f)
                }
                Some(_) => {}
            }
        }
        run.reverse();
        let Some(first) = run.first() else {
            return Ok(Ok(None));
        };
        let have = log.metadata()?.len();
        if first.offset > have {
            return Ok(Ok(None));
        }
        // The first line the log lacks: its offset, its seq, and where it is in the run.
        let mut missing = None;
        'frames: for (i, f) in run.iter().enumerate() {
            let mut at = f.offset;
            let mut within = 0usize;
            for (k, line) in f.records.split_inclusive(|&b| b == b'\n').enumerate() {
                let mut there = vec![0u8; line.len()];
                let same = at + line.len() as u64 <= have
                    && log.read_exact_at(&mut there, at).is_ok()
                    && there == line;
                if !same {
                    missing = Some((at, f.first_seq + k as u64, i, within));
                    break 'frames;
                }
                at += line.len() as u64;
                within += line.len();
            }
        }
        let Some((at, seq, i, within)) = missing else {
            log.sync_data()?;
            return Ok(Ok(None));
        };
        // At or below the anchored record the log was durable before the anchor named it: a
        // whole line there that the journal holds otherwise was not lost to a crash.
        let pinned = anchored.filter(|(a, _)| seq <= *a);
        // An empty log under an anchor naming records the frames hold is not the file they
        // were written to: those records were synced in their file before they were
        // anchored, so no crash emptied it. It is a new file at the path, and the device
        // and inode do not tell it from the old one when the old one was removed (a moved
        // file compressed: `gzip` unlinks it) and its inode taken again. Its records are
        // not written into the new file (twenty-third pass's review: they then stood in two
        // files): the start judges the empty log against the anchor, and looks for the
        // moved file beside it (docs/audit.md, "Rotation").
        if have == 0 {
            return Ok(Ok(None));
        }
        if let Some((a, _)) = pinned {
            if whole_line_at(log, at, have)? {
                return Ok(Err(Conflict(format!(
                    "its record at seq {seq} (byte {at}) differs from the log's, at or below the anchored seq {a}, which the log held durably before it was anchored"
                ))));
            }
        }
        // What is written back: the run's records from the first one the log lacks, as far
        // as each is a record `audit verify` accepts (its members, `record_members`) and
        // continues the chain (its seq and prev) from the line before it; the first must be
        // the seq the frames say. At the file's start the first must begin a file as `audit
        // verify` takes it.
        let mut rest: Vec<u8> = run[i].records[within..].to_vec();
        for f in &run[i + 1..] {
            rest.extend_from_slice(&f.records);
        }
        let mut before = if at == 0 {
            None
        } else {
            match line_before(log, at)? {
                Some(b) => Some(b),
                // Below the anchored record the line before was durable: not lost to a crash.
                None if pinned.is_some() => {
                    return Ok(Err(Conflict(format!(
                        "the log's line before its record at seq {seq} (byte {at}), at or below the anchored seq, is not a whole record"
                    ))))
                }
                None => return Ok(Ok(Some(Redo::Unmended { seq, at }))),
            }
        };
        let line_before_at = before.clone();
        let mut good = 0usize;
        let mut last_seq = 0u64;
        for line in rest.split_inclusive(|&b| b == b'\n') {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            let Ok(mut view) = record_view(body) else {
                break;
            };
            if record_members(&mut view).is_err() {
                break;
            }
            let (s, prev) = (view.seq, view.prev.into_owned());
            let continues = match &before {
                Some((bs, bh)) => bs.checked_add(1) == Some(s) && prev == *bh,
                None => good == 0 && begins_a_file(body, s, &prev),
            };
            if !continues || (good == 0 && s != seq) {
                break;
            }
            before = Some((s, HEXLOWER.encode(&Sha256::digest(body))));
            good += line.len();
            last_seq = s;
        }
        if let Some((a, head)) = pinned {
            // What would fill a log cut at or below the anchored record must lead to it.
            if anchored_hash_of(&rest[..good], a).as_deref() != Some(head) {
                return Ok(Err(Conflict(format!(
                    "the log ends at byte {at}, before seq {seq}, and the journal's records from seq {seq} do not lead to the record at seq {a} the anchor names (its hash)"
                ))));
            }
        }
        if good == 0 {
            return Ok(Ok(Some(Redo::Unmended { seq, at })));
        }
        rest.truncate(good);
        Ok(Ok(Some(Redo::WriteBack(WriteBack {
            at,
            before: line_before_at,
            records: rest,
            first_seq: seq,
            last_seq,
            head: before.map(|(_, h)| h).unwrap_or_default(),
        }))))
    }
}

/// Whether `log` (`have` bytes long) holds a whole line, ending in `\n`, from byte `at`: a
/// record there, not the cut end of the file.
fn whole_line_at(log: &File, at: u64, have: u64) -> std::io::Result<bool> {
    let mut off = at;
    let mut buf = vec![0u8; 64 * 1024];
    while off < have && off - at <= MAX_LINE as u64 {
        let want = ((have - off) as usize).min(buf.len());
        let got = log.read_at(&mut buf[..want], off)?;
        if got == 0 {
            break;
        }
        if buf[..got].contains(&b'\n') {
            return Ok(true);
        }
        off += got as u64;
    }
    Ok(false)
}

/// The SHA-256 hex of the line of `records` (whole lines) whose `seq` is `seq`.
fn anchored_hash_of(records: &[u8], seq: u64) -> Option<String> {
    records
        .split(|&b| b == b'\n')
        .find(|l| parse_chain_fields(l).is_ok_and(|(s, _)| s == seq))
        .map(|l| HEXLOWER.encode(&Sha256::digest(l)))
}

/// Whether a record may begin a file, as `audit verify` takes one: seq 1 after 64 zeros, or a
/// later segment's first record (`audit.rotate`, `audit.gap`).
fn begins_a_file(line: &[u8], seq: u64, prev: &str) -> bool {
    if seq == 1 {
        return prev == GENESIS;
    }
    record_view(line)
        .ok()
        .and_then(|r| r.op)
        .is_some_and(|op| SEGMENT_STARTS.contains(&&*op))
}

/// The `seq` and SHA-256 hex of the line that ends at `at` (> 0) in `log`, or `None` when no
/// whole record ends there.
fn line_before(log: &File, at: u64) -> std::io::Result<Option<(u64, String)>> {
    Ok(whole_line_before(log, at)?.and_then(|line| {
        parse_chain_fields(&line)
            .ok()
            .map(|(s, _)| (s, HEXLOWER.encode(&Sha256::digest(&line))))
    }))
}

/// The whole line (without its `\n`) that ends at `at` (> 0) in `log`, or `None` when no
/// whole line of at most [`MAX_LINE`] bytes ends there.
pub(super) fn whole_line_before(log: &File, at: u64) -> std::io::Result<Option<Vec<u8>>> {
    let from = at.saturating_sub(MAX_LINE as u64 + 1);
    let mut tail = vec![0u8; (at - from) as usize];
    log.read_exact_at(&mut tail, from)?;
    if tail.last() != Some(&b'\n') {
        return Ok(None);
    }
    tail.pop();
    let start = tail.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    if start == 0 && from != 0 {
        return Ok(None);
    }
    tail.drain(..start);
    Ok(Some(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>() -> AuditRecord<'a> {
        AuditRecord::new(crate::protocol::Op::Fetch, Decision::Allow)
    }

    /// A log of `n` records, each appended (and made durable) as its own batch; returns its
    /// bytes. The log is closed without the sync the daemon's once-a-second tick does.
    fn log_of(path: &Path, n: usize) -> Vec<u8> {
        let log = AuditLog::open(path, true).unwrap();
        for _ in 0..n {
            log.append(rec()).unwrap();
        }
        drop(log);
        std::fs::read(path).unwrap()
    }

    /// Byte offset of the start of line `k` (0-based) of `bytes`.
    fn line_start(bytes: &[u8], k: usize) -> usize {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .take(k)
            .map(<[u8]>::len)
            .sum()
    }

    /// The lines of the reopened log after the `before` bytes, and whether it verifies.
    fn reopened(path: &Path) -> (Vec<u8>, Vec<serde_json::Value>) {
        let log = AuditLog::open(path, true).unwrap();
        drop(log);
        assert_eq!(verify(path).unwrap().first_bad, None, "the log verifies");
        let text = std::fs::read(path).unwrap();
        let records = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        (text, records)
    }

    /// A crash of the machine loses what the log had not synced: a cut tail, or a hole of
    /// zeros where pages were not written back. Every batch was acknowledged from its
    /// journal frame, so opening the log writes those records back, byte for byte, and says
    /// so in the chain.
    #[test]
    fn records_the_journal_made_durable_come_back_when_the_log_lost_them() {
        for loss in ["cut tail", "hole"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            let whole = log_of(&path, 20);
            assert!(journal_path(&path).exists());
            match loss {
                "cut tail" => {
                    let cut = line_start(&whole, 12) + 17;
                    std::fs::write(&path, &whole[..cut]).unwrap();
                }
                _ => {
                    let mut holed = whole.clone();
                    holed[line_start(&whole, 5)..line_start(&whole, 9)].fill(0);
                    std::fs::write(&path, &holed).unwrap();
                }
            }
            let (text, records) = reopened(&path);
            assert_eq!(
                &text[..whole.len()],
                &whole[..],
                "{loss}: restored byte for byte"
            );
            assert_eq!(records.len(), 21, "{loss}");
            let first = if loss == "cut tail" { 13 } else { 6 };
            let repair = &records[20];
            assert_eq!(repair["op"], "audit.repair", "{loss}");
            assert!(
                repair["reason"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("restored records {first}..=20 from the journal")),
                "{loss}: {repair}"
            );
            // Opened again, nothing more is restored.
            let (_, again) = reopened(&path);
            assert_eq!(again.len(), 21, "{loss}");
        }
    }

    /// A log of 6 records that a crash holed from the middle of record 4 into record 5 (record
    /// 4's newline with it), whose journal lost record 4's frame: its path, the holed bytes and
    /// where record 5 began.
    fn holed_past_mending(dir: &Path) -> (PathBuf, Vec<u8>, usize) {
        let path = dir.join("audit.jsonl");
        let whole = log_of(&path, 6);
        // One frame per record here, record k in block k - 2 (the first record's batch is
        // synced in the log, not framed): break record 4's frame (late in the ring, so that
        // the frames of the next run of the daemon leave it there).
        let mut j = std::fs::read(journal_path(&path)).unwrap();
        assert_eq!(&j[2 * BLOCK..2 * BLOCK + 8], MAGIC);
        j[2 * BLOCK + HEADER + 10] ^= 1;
        std::fs::write(journal_path(&path), &j).unwrap();
        let at = line_start(&whole, 4);
        let mut holed = whole.clone();
        holed[line_start(&whole, 3) + 40..at + 30].fill(0);
        std::fs::write(&path, &holed).unwrap();
        (path, holed, at)
    }

    fn unmended_records(path: &Path) -> usize {
        String::from_utf8_lossy(&std::fs::read(path).unwrap())
            .matches("cannot be written back")
            .count()
    }

    /// A crash that left a hole across two records, when the frame of the first is gone too
    /// (found by the `journal` fuzz target's first run): the later records' frames cannot be
    /// written back after a line the crash broke (they would not continue it), so the log is
    /// left as it is, the open goes on from its intact tail, and the chain says what the
    /// journal found and could not mend, once; `audit verify` names the broken line.
    #[test]
    fn a_hole_the_journal_cannot_fill_is_left_as_it_is_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let (path, holed, at) = holed_past_mending(dir.path());
        let log = AuditLog::open(&path, true).unwrap();
        let text = std::fs::read(&path).unwrap();
        assert_eq!(
            &text[..holed.len()],
            &holed[..],
            "the log is left as it was"
        );
        let last: serde_json::Value =
            serde_json::from_slice(text[holed.len()..].strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(last["op"], "audit.repair");
        assert_eq!(last["seq"], 7, "the chain goes on from the intact tail");
        let reason = last["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("from seq 5 (byte {at})"))
                && reason.contains("cannot be written back")
                && reason.contains("audit verify"),
            "{reason}"
        );
        let report = verify(&path).unwrap();
        assert_eq!(
            report.first_bad.map(|b| b.line),
            Some(4),
            "verify names the line"
        );
        // The daemon writes on; its frames do not lead the next start back past the record
        // (it was synced in the log, not framed), so nothing new is recorded then.
        log.append(rec()).unwrap();
        log.append(rec()).unwrap();
        drop(log);
        let more = std::fs::read(&path).unwrap();
        drop(AuditLog::open(&path, true).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), more, "not recorded again");
        assert_eq!(unmended_records(&path), 1);

        // A start right after the record (no batch since) finds the same loss again and
        // sees its record as the log's last line: not recorded twice.
        let dir = tempfile::tempdir().unwrap();
        let (path, _, _) = holed_past_mending(dir.path());
        drop(AuditLog::open(&path, true).unwrap());
        let once = std::fs::read(&path).unwrap();
        drop(AuditLog::open(&path, true).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), once, "recorded once");
        assert_eq!(unmended_records(&path), 1);
    }

    /// The ring of frames wraps many times (the log is synced before a frame could overwrite
    /// one the log may lack), and the last batches still come back.
    #[test]
    fn the_journal_wraps_and_still_holds_the_batches_the_log_may_lack() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let n = 3 * BLOCKS + 17;
        let whole = log_of(&path, n);
        let cut = line_start(&whole, n - 40);
        std::fs::write(&path, &whole[..cut]).unwrap();
        let (text, records) = reopened(&path);
        assert_eq!(&text[..whole.len()], &whole[..]);
        assert_eq!(records.len(), n + 1);
        assert_eq!(records[n]["op"], "audit.repair");
    }

    /// A frame is trusted only whole and only for its own log: a frame whose checksum fails
    /// is not replayed (the records after it are not either: they no longer join the log),
    /// and the frames of a log begun anew in the same file, with a new key, are not written
    /// into it.
    #[test]
    fn a_damaged_frame_or_one_of_another_log_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let whole = log_of(&path, 6);
        // Frames are one block each here: the first record's batch is synced in the log, not
        // framed, and the second's is block 0. Damage the frame of record 5 (block 3) and cut
        // the log after record 3.
        let mut j = std::fs::read(journal_path(&path)).unwrap();
        j[3 * BLOCK + HEADER + 10] ^= 1;
        std::fs::write(journal_path(&path), &j).unwrap();
        std::fs::write(&path, &whole[..line_start(&whole, 3)]).unwrap();
        let (text, records) = reopened(&path);
        // Record 6's frame is the last written, but it does not join record 4's without
        // record 5: nothing is restored, and the cut is the anchor's to report.
        assert_eq!(
            &text[..line_start(&whole, 3)],
            &whole[..line_start(&whole, 3)]
        );
        assert_eq!(records.len(), 3);

        // A new log begun in the same file (same inode) with a new key: the old log's frames
        // are not its records.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        log_of(&path, 4);
        std::fs::remove_file(key_path(&path)).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let (_, records) = reopened(&path);
        assert!(records.is_empty(), "{records:?}");
    }

    /// Found while fixing the eighteenth pass's forged journal: the frames of a log cut under
    /// the daemon (copytruncate) still named its file, so a start after the cut, with no
    /// framed batch since (the `audit.gap` record and its batch are synced in the log, not
    /// framed), cut the log again and wrote the records of before the cut over the gap record
    /// and the hand-outs after it. A cut now clears the journal.
    #[test]
    fn a_log_cut_under_the_daemon_is_not_overwritten_by_the_frames_of_before_the_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, true).unwrap();
        log.append(rec()).unwrap();
        log.append(rec()).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(log.append(rec()).unwrap(), 4, "after the gap record");
        drop(log);
        let after_cut = std::fs::read_to_string(&path).unwrap();
        let (text, records) = reopened(&path);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            after_cut,
            "the log as the daemon left it"
        );
        assert_eq!(records[0]["op"], "audit.gap");
        assert_eq!(records.len(), 2);
    }

    /// The attacker's view: a frame made by hand from the format in docs/audit.md (not
    /// through `Journal`) is replayed when its record continues the chain, and refused when
    /// it does not — whoever can write the journal can write the log too, but cannot splice
    /// records into it that `audit verify` would accept without the chain. Nor one that
    /// continues the chain but that `audit verify` refuses (a `time` without its zone): the
    /// open would write back a line the log then fails on.
    #[test]
    fn a_frame_made_from_the_documented_format_is_replayed_only_if_it_continues_the_chain() {
        for (honest, zoned) in [(true, true), (false, true), (true, false)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            let whole = log_of(&path, 3);
            let third = whole[line_start(&whole, 2)..whole.len() - 1].to_vec();
            let third_text = String::from_utf8(third.clone()).unwrap();
            let prev = if honest {
                HEXLOWER.encode(&Sha256::digest(&third))
            } else {
                "ab".repeat(32)
            };
            let body_start = third_text.find(",\"time\"").unwrap();
            let body_end = third_text.rfind(",\"prev\"").unwrap();
            let mut body = third_text[body_start..body_end].to_owned();
            if !zoned {
                let at = body.find("\"time\":\"").unwrap() + 8;
                let end = at + body[at..].find('"').unwrap();
                body.replace_range(at..end, "2026-11-30T10:00:00");
            }
            let line = format!("{{\"seq\":4{body},\"prev\":\"{prev}\"}}\n");
            let meta = std::fs::metadata(&path).unwrap();
            let mut head = Vec::new();
            head.extend_from_slice(b"SVAJRNL1");
            head.extend_from_slice(&1_000_000u64.to_le_bytes());
            head.extend_from_slice(&meta.dev().to_le_bytes());
            head.extend_from_slice(&meta.ino().to_le_bytes());
            // The key id, as docs/audit.md defines it, made here with the `hmac` crate.
            let key = std::fs::read(key_path(&path)).unwrap();
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(b"scopevault audit journal");
            head.extend_from_slice(&mac.finalize().into_bytes()[..8]);
            head.extend_from_slice(&(whole.len() as u64).to_le_bytes());
            head.extend_from_slice(&4u64.to_le_bytes());
            head.extend_from_slice(&1u32.to_le_bytes());
            head.extend_from_slice(&(line.len() as u32).to_le_bytes());
            let mut sum = Sha256::new();
            sum.update(&head);
            sum.update(line.as_bytes());
            head.extend_from_slice(&sum.finalize());
            head.extend_from_slice(line.as_bytes());
            let mut j = std::fs::read(journal_path(&path)).unwrap();
            j[200 * 4096..200 * 4096 + head.len()].copy_from_slice(&head);
            std::fs::write(journal_path(&path), &j).unwrap();
            let log = AuditLog::open(&path, true).unwrap();
            drop(log);
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            if honest && zoned {
                assert_eq!(lines[3], line.trim_end());
                assert!(lines[4].contains("restored records 4..=4"), "{}", lines[4]);
                assert_eq!(verify(&path).unwrap().first_bad, None);
            } else {
                // Not written; what the journal holds and could not give back is recorded.
                assert_eq!(lines.len(), 4, "{text}");
                assert!(!text.contains(line.trim_end()), "{text}");
                assert!(
                    lines[3].contains("\"op\":\"audit.repair\"")
                        && lines[3].contains("from seq 4 (byte ")
                        && lines[3].contains("cannot be written back"),
                    "{}",
                    lines[3]
                );
                assert_eq!(verify(&path).unwrap().first_bad, None);
            }
        }
    }

    /// Frames with a valid checksum but hostile numbers (no record, more records claimed than
    /// lines, a seq or an offset at the end of the integers, a cut line) are not taken, and
    /// nothing panics on them.
    #[test]
    fn frames_with_hostile_numbers_are_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let whole = log_of(&path, 3);
        let meta = std::fs::metadata(&path).unwrap();
        let key = AuditKey::load(&path).unwrap();
        let id = LogId {
            dev: meta.dev(),
            ino: meta.ino(),
            key: key_id(&key),
        };
        let line = b"{\"seq\":4}\n";
        let cases: [(u64, u64, u32, &[u8]); 6] = [
            (whole.len() as u64, 4, 0, b""),
            (whole.len() as u64, 4, 2, line),
            (whole.len() as u64, u64::MAX, 1, line),
            (u64::MAX - 3, 4, 1, line),
            (whole.len() as u64, 0, 1, line),
            (whole.len() as u64, 4, 1, b"{\"seq\":4}"),
        ];
        let mut j = std::fs::read(journal_path(&path)).unwrap();
        for (k, (offset, first_seq, count, records)) in cases.into_iter().enumerate() {
            let mut head = Vec::new();
            head.extend_from_slice(MAGIC);
            head.extend_from_slice(&(1_000_000 + k as u64).to_le_bytes());
            head.extend_from_slice(&id.dev.to_le_bytes());
            head.extend_from_slice(&id.ino.to_le_bytes());
            head.extend_from_slice(&id.key.to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            head.extend_from_slice(&first_seq.to_le_bytes());
            head.extend_from_slice(&count.to_le_bytes());
            head.extend_from_slice(&(records.len() as u32).to_le_bytes());
            let sum = digest(&head, records);
            head.extend_from_slice(&sum);
            head.extend_from_slice(records);
            let at = (100 + k) * BLOCK;
            j[at..at + head.len()].copy_from_slice(&head);
        }
        std::fs::write(journal_path(&path), &j).unwrap();
        let (dirfd, _) = open_dir_of(&path, dir.path()).unwrap();
        let mut journal = Journal::open(&dirfd, &path).unwrap().unwrap();
        let taken = journal.frames().unwrap();
        assert!(
            taken.iter().all(|(f, _)| f.serial < 1_000_000),
            "a hostile frame was taken"
        );
        assert_eq!(
            taken.len(),
            2,
            "the writer's own two frames (the first record's batch is not framed)"
        );
        let file = File::open(&path).unwrap();
        assert_eq!(journal.redo(&file, id, None).unwrap(), Ok(None));
    }

    /// A frame as [`Journal::commit`] writes it (the format in docs/audit.md), for the log
    /// `id`, at serial `serial`: to plant one the writer would not write.
    fn frame_bytes(serial: u64, id: LogId, offset: u64, first_seq: u64, records: &[u8]) -> Vec<u8> {
        let count = records.iter().filter(|&&b| b == b'\n').count() as u32;
        let mut head = Vec::new();
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&serial.to_le_bytes());
        head.extend_from_slice(&id.dev.to_le_bytes());
        head.extend_from_slice(&id.ino.to_le_bytes());
        head.extend_from_slice(&id.key.to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        head.extend_from_slice(&first_seq.to_le_bytes());
        head.extend_from_slice(&count.to_le_bytes());
        head.extend_from_slice(&(records.len() as u32).to_le_bytes());
        let sum = digest(&head, records);
        head.extend_from_slice(&sum);
        head.extend_from_slice(records);
        head
    }

    /// The id of the log at `path` (its device, inode and key id).
    fn id_of(path: &Path) -> LogId {
        let meta = std::fs::metadata(path).unwrap();
        LogId {
            dev: meta.dev(),
            ino: meta.ino(),
            key: key_id(&AuditKey::load(path).unwrap()),
        }
    }

    /// Found by the twenty-third pass's review: a log moved away and its file removed (gzip of
    /// the moved file), then an empty log made at the path, which took the freed inode. The
    /// frames named that device and inode, so the start wrote the old file's records into the
    /// new one: the same records in two files. A file's first batch is now synced in the log,
    /// not framed, so every frame continues a line its file holds durably; and an empty log
    /// is never written from the journal, even from a frame of a file's start (as the writer
    /// made them until then), with an anchor naming its records or without.
    #[test]
    fn an_empty_log_on_a_reused_inode_is_not_written_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let whole = log_of(&path, 4);
        let id = id_of(&path);
        let (dirfd, _) = open_dir_of(&path, dir.path()).unwrap();
        let mut journal = Journal::open_existing(&dirfd, &path).unwrap().unwrap();
        let frames = journal.frames().unwrap();
        assert_eq!(frames.len(), 3, "records 2, 3 and 4");
        assert!(
            frames.iter().all(|(f, _)| f.offset > 0),
            "no frame describes the file's start"
        );
        // A frame of the whole file from its start, written before the others.
        let mut j = std::fs::read(journal_path(&path)).unwrap();
        let planted = frame_bytes(0, id, 0, 1, &whole[..line_start(&whole, 1)]);
        j[100 * BLOCK..100 * BLOCK + planted.len()].copy_from_slice(&planted);
        std::fs::write(journal_path(&path), &j).unwrap();
        let last = whole
            .strip_suffix(b"\n")
            .unwrap()
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap();
        let head = HEXLOWER.encode(&Sha256::digest(last));
        // The new empty file, as if on the old one's inode: the frames' id is passed for it.
        let fresh = dir.path().join("fresh");
        let file = File::create(&fresh).unwrap();
        let mut journal = Journal::open_existing(&dirfd, &path).unwrap().unwrap();
        for anchored in [Some((4, head.as_str())), Some((2, "")), None] {
            assert_eq!(
                journal.redo(&file, id, anchored).unwrap(),
                Ok(None),
                "nothing written into an empty log (anchor {anchored:?})"
            );
        }
        assert_eq!(std::fs::metadata(&fresh).unwrap().len(), 0);
        // The log itself, holding its first record, still gets the rest back.
        std::fs::write(&path, &whole[..line_start(&whole, 1)]).unwrap();
        let (text, _) = reopened(&path);
        assert_eq!(&text[..whole.len()], &whole[..]);
    }

    /// A failed sync of the log while frames are ahead of it fails every later batch (fail
    /// closed: the log may lack records only the journal holds, which a frame must not
    /// overwrite); one with no frame ahead fails only itself.
    #[test]
    fn a_failed_sync_of_the_log_with_frames_ahead_fails_every_later_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (dirfd, _) = open_dir_of(&path, dir.path()).unwrap();
        let log = File::create(&path).unwrap();
        // fdatasync of /dev/null fails (EINVAL): a log whose sync fails.
        let unsyncable = File::open("/dev/null").unwrap();
        let id = LogId {
            dev: 1,
            ino: 2,
            key: 3,
        };
        let mut j = Journal::open(&dirfd, &path).unwrap().unwrap();
        assert!(j.sync_log(&unsyncable).is_err());
        j.commit(&log, id, 0, 1, 1, b"{}\n").unwrap();
        assert!(j.unsynced());
        assert!(j.sync_log(&unsyncable).is_err());
        let e = j.commit(&log, id, 3, 2, 1, b"{}\n").unwrap_err();
        assert!(e.to_string().contains("restart the daemon"), "{e}");
        let e = j.sync_log(&log).unwrap_err();
        assert!(e.to_string().contains("restart the daemon"), "{e}");
    }

    /// Opening a log writes nothing into its journal (a start refused for a gap leaves the
    /// frames there to be read); the first batch does.
    #[test]
    fn opening_a_log_leaves_its_journal_as_it_was_until_the_first_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        log_of(&path, 5);
        let before = std::fs::read(journal_path(&path)).unwrap();
        let log = AuditLog::open(&path, true).unwrap();
        assert!(std::fs::read(journal_path(&path)).unwrap() == before);
        log.append(rec()).unwrap();
        assert!(std::fs::read(journal_path(&path)).unwrap() != before);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 40,
            ..Default::default()
        })]

        /// The attacker's tool, from the format in docs/audit.md: after any loss of the log
        /// (a cut anywhere, a hole of zeros), reopening gives back every record byte for
        /// byte; and with the journal's frames edited at random and then re-signed (device,
        /// inode, key id and SHA-256 made right again, as whoever can write the directory
        /// could), reopening never panics, and a log it opens still verifies: what is written
        /// back continues the chain or is not written.
        #[test]
        fn any_loss_is_restored_and_a_re_signed_journal_never_breaks_the_chain(
            cut in 0usize..100_000,
            hole in proptest::option::of((0usize..100_000, 1usize..900)),
            edits in proptest::collection::vec((0usize..6 * BLOCK, proptest::prelude::any::<u8>()), 0..8),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            let whole = log_of(&path, 6);
            // The first record's batch was synced in the log, not framed: a crash never takes
            // it, and no frame gives it back.
            let first = line_start(&whole, 1);
            let cut = first + cut % (whole.len() - first + 1);
            let mut lost = whole[..cut].to_vec();
            if edits.is_empty() {
                if let Some((at, n)) = hole {
                    let at = first + at % (lost.len() - first + 1);
                    let end = (at + n).min(lost.len());
                    lost[at..end].fill(0);
                }
            }
            std::fs::write(&path, &lost).unwrap();
            if !edits.is_empty() {
                let meta = std::fs::metadata(&path).unwrap();
                let key = key_id(&AuditKey::load(&path).unwrap());
                let mut j = std::fs::read(journal_path(&path)).unwrap();
                for (at, byte) in &edits {
                    j[*at] = *byte;
                }
                for b in 0..6 {
                    let at = b * BLOCK;
                    if &j[at..at + 8] != MAGIC {
                        continue;
                    }
                    j[at + 16..at + 24].copy_from_slice(&meta.dev().to_le_bytes());
                    j[at + 24..at + 32].copy_from_slice(&meta.ino().to_le_bytes());
                    j[at + 32..at + 40].copy_from_slice(&key.to_le_bytes());
                    let len = u32_at(&j[at..], 60);
                    if len <= BLOCKS * BLOCK - at - HEADER {
                        let sum = digest(&j[at..at + 64], &j[at + HEADER..at + HEADER + len]);
                        j[at + 64..at + 96].copy_from_slice(&sum);
                    }
                }
                std::fs::write(journal_path(&path), &j).unwrap();
            }
            match AuditLog::open(&path, true) {
                Ok(log) => {
                    drop(log);
                    let report = verify(&path).unwrap();
                    proptest::prop_assert_eq!(report.first_bad, None);
                    if edits.is_empty() {
                        let text = std::fs::read(&path).unwrap();
                        proptest::prop_assert_eq!(&text[..whole.len()], &whole[..]);
                    }
                }
                Err(e) => proptest::prop_assert!(!edits.is_empty(), "{e}"),
            }
        }
    }

    /// Found by the property test in CI: the log lost whole, and its first record's `prev` in
    /// the journal changed and re-signed. A record that could not begin a file (seq 1 after
    /// anything but 64 zeros) is not written back as the file's first line; the chain begins
    /// with the record of what the journal held and could not give back. (Since the
    /// twenty-fourth pass no frame the writer makes holds a file's first record, and an empty
    /// log is not written from the journal: here a planted frame, before a first line cut.)
    #[test]
    fn a_first_record_that_cannot_begin_a_file_is_not_written_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let whole = log_of(&path, 2);
        let first = whole[..line_start(&whole, 1)].to_vec();
        let prev = first.windows(8).position(|w| w == b"\"prev\":\"").unwrap() + 8;
        let mut forged = first.clone();
        forged[prev] = b'3';
        let planted = frame_bytes(0, id_of(&path), 0, 1, &forged);
        let mut j = std::fs::read(journal_path(&path)).unwrap();
        j[100 * BLOCK..100 * BLOCK + planted.len()].copy_from_slice(&planted);
        std::fs::write(journal_path(&path), &j).unwrap();
        std::fs::write(&path, &first[..10]).unwrap();
        let (text, records) = reopened(&path);
        assert!(
            records.iter().all(|r| r["op"] == "audit.repair"),
            "{}",
            String::from_utf8_lossy(&text)
        );
        assert!(
            records.iter().any(|r| {
                let reason = r["reason"].as_str().unwrap();
                reason.contains("from seq 1 (byte 0)") && reason.contains("cannot be written back")
            }),
            "{}",
            String::from_utf8_lossy(&text)
        );
    }

    /// A hard link planted at the journal's path (to another file of the daemon's, here a
    /// stand-in for the vault) is refused, and the file it names is left as it was.
    #[test]
    fn a_planted_hard_link_at_the_journal_s_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("vault.scopevault");
        std::fs::write(&precious, "precious\n").unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::hard_link(&precious, journal_path(&path)).unwrap();
        let e = AuditLog::open(&path, true).unwrap_err();
        assert!(
            e.to_string().contains("not a regular file of its own"),
            "{e}"
        );
        assert_names_the_journal(&e, &path);
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n");
    }

    /// A link planted at the journal's path is not followed: the log is refused and the file
    /// the link names is left as it was.
    #[test]
    fn a_planted_journal_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let path = logs.join("audit.jsonl");
        std::os::unix::fs::symlink(&victim, journal_path(&path)).unwrap();
        let e = AuditLog::open(&path, true).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_names_the_journal(&e, &path);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    /// A refused journal is named as the log's journal, not as the log with advice about the
    /// log's directory (eighteenth pass: "cannot open the audit log …journal").
    fn assert_names_the_journal(e: &AuditError, log: &Path) {
        let shown = e.to_string();
        let journal = journal_path(log).display().to_string();
        assert!(
            shown.contains(&format!("cannot open the audit log's journal {journal}"))
                && shown.contains("the daemon makes it again")
                && !shown.contains(&format!("the audit log {journal}"))
                && !shown.contains("check that the directory exists"),
            "{shown}"
        );
    }
}
