//! An audit log damaged as a crash of the machine leaves it, and a journal written from the
//! format in docs/audit.md ("The journal") and then edited by the fuzzer, through the real
//! open (`AuditLog::open`, which reads the journal's frames back and writes into the log what
//! it lacks).
//!
//! The log, its key and its journal are all made here, from the documents, not through our
//! library: the records (JSON lines chained by the SHA-256 of the line before), the key file
//! (32 bytes), and the frames (magic, serial, device and inode of the log, key id = the first 8
//! bytes of HMAC-SHA256(key, `scopevault audit journal`), offset, first seq, count, length,
//! SHA-256 of the header and the records). That is the attacker's tool: someone who can write
//! the log's directory and knows the format.
//!
//! Input layout (missing bytes are zero):
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | records in the log: 1 + b % 12 |
//! | 1, 2 | a new frame (batch) begins before record i + 1 when bit i is set |
//! | 3, 4 | where the crash cut the log after its first batch (u16 LE, modulo what follows it + 1) |
//! | 5, 6, 7 | a hole of zeros the crash left after the first batch: start (u16 LE), length (0: none) |
//!
//! A file's first batch is synced in the log, not framed (docs/audit.md, "The journal"): a
//! crash does not take it, and the journal holds the batches after it.
//! | 8 | bit 0: re-sign every frame after the edit (device, inode, key id and SHA-256 made right again, as whoever can write the directory could) |
//! | 9 | the frame the edit applies to (modulo the number of frames) |
//! | 10.. | XORed into that frame's bytes from its start (its header first) |
//!
//! Invariants: nothing panics; the open never breaks the chain: a log that opens verifies
//! (`audit verify` finds no bad line), or its first bad line is one the crash broke, left as the
//! crash left it with nothing written before it (the journal's frame of that record was
//! edited, so nothing could mend it); the open invents nothing: every line in the log
//! afterwards was in the damaged log, in the records of a frame as the journal held them, or is
//! a record of the daemon's own (`op` `audit.*`, no peer); with the journal as written (no
//! edit), the log afterwards verifies and begins with every record written, byte for byte, and
//! the open does not fail.
//!
//! The first libFuzzer run failed the first version of this target, which asserted that every
//! log that opens verifies, in 19 s (`fuzz/seeds/journal/crash-5e1f…`): a hole the crash left
//! in record 1 and the start of record 2, and record 1's frame edited. Records 2 on come back
//! from their frames, but not after a line the crash broke (the write-back must continue the
//! chain from the line before it), so the log keeps the hole and the open goes on: it reads
//! the log's tail, not all of it, and `audit verify` names the line (docs/audit.md). That is
//! the designed behaviour for a crash whose record the journal cannot give back either; the
//! invariant now says so.
#![no_main]

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use scopevault::audit::{journal_path, key_path, verify, AuditLog};
use sha2::{Digest, Sha256};

const BLOCK: usize = 4096;
const BLOCKS: usize = 256;
const HEADER: usize = 96;
const MAGIC: &[u8; 8] = b"SVAJRNL1";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const KEY: [u8; 32] = *b"fuzz-journal-key-32-bytes-long!!";

fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` records as the daemon writes them: one JSON object per line, `seq` from 1, `prev` the
/// SHA-256 (hex) of the line before (64 zeros for the first).
fn records(n: usize) -> Vec<Vec<u8>> {
    let mut prev = GENESIS.to_string();
    (1..=n)
        .map(|seq| {
            let line = format!(
                r#"{{"seq":{seq},"time":"2026-11-30T00:00:{:02}Z","peer":{{"uid":1001,"gid":1001,"pid":{},"exe":"/usr/bin/python3"}},"op":"fetch","task":"shop-login","credential":"shop-buyer","decision":"allow","reason":null,"warnings":[],"values":{{}},"prev":"{prev}"}}"#,
                seq % 60,
                4000 + seq
            );
            prev = hex(&Sha256::digest(line.as_bytes()));
            let mut l = line.into_bytes();
            l.push(b'\n');
            l
        })
        .collect()
}

fn key_id() -> [u8; 8] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&KEY).expect("HMAC takes any key");
    mac.update(b"scopevault audit journal");
    mac.finalize().into_bytes()[..8]
        .try_into()
        .expect("8 bytes")
}

/// Create the file at `path` (mode 0600, as the daemon makes its files) holding `bytes`.
fn create_0600(path: &std::path::Path, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Make the header's identity fields and checksum right again for the frame at `at`.
fn sign(j: &mut [u8], at: usize, dev: u64, ino: u64) {
    j[at + 16..at + 24].copy_from_slice(&dev.to_le_bytes());
    j[at + 24..at + 32].copy_from_slice(&ino.to_le_bytes());
    j[at + 32..at + 40].copy_from_slice(&key_id());
    let len = u32::from_le_bytes(j[at + 60..at + 64].try_into().expect("4 bytes")) as usize;
    if len <= BLOCKS * BLOCK - at - HEADER {
        let mut h = Sha256::new();
        h.update(&j[at..at + 64]);
        h.update(&j[at + HEADER..at + HEADER + len]);
        let sum: [u8; 32] = h.finalize().into();
        j[at + 64..at + 96].copy_from_slice(&sum);
    }
}

fuzz_target!(|data: &[u8]| {
    let recs = records(1 + byte(data, 0) as usize % 12);
    let split = u16::from_le_bytes([byte(data, 1), byte(data, 2)]);
    let whole: Vec<u8> = recs.concat();
    // Where a new batch begins, after record `end`.
    let batch_end = |i: usize| {
        let mut end = i + 1;
        while end < recs.len() && split & (1 << (end - 1)) == 0 {
            end += 1;
        }
        end
    };
    let first_batch = batch_end(0);
    let synced: usize = recs[..first_batch].iter().map(Vec::len).sum();

    // The damaged log: cut, then holed, after its first batch (synced in the log).
    let cut = synced
        + u16::from_le_bytes([byte(data, 3), byte(data, 4)]) as usize % (whole.len() - synced + 1);
    let mut damaged = whole[..cut].to_vec();
    let (hole_at, hole_len) = (
        u16::from_le_bytes([byte(data, 5), byte(data, 6)]) as usize,
        byte(data, 7) as usize,
    );
    if hole_len > 0 && damaged.len() > synced {
        let at = synced + hole_at % (damaged.len() - synced);
        let end = (at + hole_len).min(damaged.len());
        damaged[at..end].fill(0);
    }

    // In memory where there is a tmpfs: the journal's 1 MiB is written for every input. Not
    // through a link (the log's path must have none).
    let shm = std::path::Path::new("/dev/shm");
    let dir = if std::fs::symlink_metadata(shm).is_ok_and(|m| m.is_dir()) {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("a temp dir");
    let path = dir.path().join("audit.jsonl");
    create_0600(&key_path(&path), &KEY);
    create_0600(&path, &damaged);
    let meta = std::fs::metadata(&path).expect("the log's metadata");
    let (dev, ino) = (meta.dev(), meta.ino());

    // The journal: every record after the first batch in frames, one batch after another,
    // from block 0.
    let mut j = vec![0u8; BLOCKS * BLOCK];
    let mut frames: Vec<usize> = Vec::new();
    let (mut block, mut offset, mut i) = (0usize, synced as u64, first_batch);
    while i < recs.len() {
        let end = batch_end(i);
        let body: Vec<u8> = recs[i..end].concat();
        let at = block * BLOCK;
        frames.push(at);
        j[at..at + 8].copy_from_slice(MAGIC);
        j[at + 8..at + 16].copy_from_slice(&(frames.len() as u64).to_le_bytes());
        j[at + 40..at + 48].copy_from_slice(&offset.to_le_bytes());
        j[at + 48..at + 56].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        j[at + 56..at + 60].copy_from_slice(&((end - i) as u32).to_le_bytes());
        j[at + 60..at + 64].copy_from_slice(&(body.len() as u32).to_le_bytes());
        j[at + HEADER..at + HEADER + body.len()].copy_from_slice(&body);
        sign(&mut j, at, dev, ino);
        block += (HEADER + body.len()).div_ceil(BLOCK);
        offset += body.len() as u64;
        i = end;
    }
    let edit = data.get(10..).unwrap_or_default();
    let edited = !frames.is_empty() && edit.iter().any(|&b| b != 0);
    // The part of the journal that holds frames (what a line may be found in below).
    let mut used = block * BLOCK;
    if edited {
        let at = frames[byte(data, 9) as usize % frames.len()];
        used = used.max((at + edit.len()).min(j.len()));
        for (k, b) in edit.iter().enumerate() {
            if let Some(x) = j.get_mut(at + k) {
                *x ^= b;
            }
        }
        if byte(data, 8) & 1 == 1 {
            for b in 0..BLOCKS {
                if &j[b * BLOCK..b * BLOCK + 8] == MAGIC {
                    sign(&mut j, b * BLOCK, dev, ino);
                }
            }
        }
    }
    create_0600(&journal_path(&path), &j);

    let opened = AuditLog::open(&path, true);
    let log = match opened {
        Ok(log) => log,
        Err(e) => {
            assert!(edited, "the open failed with the journal as written: {e}");
            return;
        }
    };
    drop(log);
    let report = verify(&path).expect("the log reads back");
    let after = std::fs::read(&path).expect("the log afterwards");
    if let Some(bad) = &report.first_bad {
        // The journal could not mend what the crash broke (its frame of that record was
        // edited): the open must have left it as it was, and written nothing before it.
        assert!(
            edited,
            "with the journal as written the log does not verify: {bad:?}"
        );
        let untouched = after
            .iter()
            .zip(&damaged)
            .take_while(|(a, b)| a == b)
            .count();
        let bad_end: usize = after
            .split_inclusive(|&b| b == b'\n')
            .take(bad.line as usize)
            .map(<[u8]>::len)
            .sum();
        assert!(
            bad_end <= untouched,
            "the open broke the chain: {bad:?} lies in what it wrote (the log as the crash left it is the same for the first {untouched} bytes)"
        );
    }
    let found_in = |hay: &[u8], line: &[u8]| hay.windows(line.len()).any(|w| w == line);
    for line in after.split_inclusive(|&b| b == b'\n') {
        if found_in(&damaged, line) || found_in(&j[..used], line) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("a line neither written nor the daemon's: {e}: {line:?}"));
        assert!(
            v["op"].as_str().is_some_and(|op| op.starts_with("audit.")) && v["peer"].is_null(),
            "the open invented a record: {}",
            String::from_utf8_lossy(line)
        );
    }
    if !edited {
        assert!(
            after.starts_with(&whole),
            "the journal as written did not restore every record"
        );
    }
});
