//! `sys::open_regular` and its variants, the one way the crate opens a file that must be a
//! regular file: what the path leads to is judged through an `O_PATH` descriptor (which opens
//! nothing: no device's open is called, no FIFO waited on) and only a regular file is then
//! opened, through that descriptor. Each surface that opens such a file has its own test
//! (lint, `--audit`, doctor, the vault and its state, the audit writer, the fleet's inputs);
//! here the helpers themselves.

use std::io::{Read, Write};
use std::path::Path;

use rustix::fs::OFlags;
use scopevault::sys::{open_or_create_regular_at, open_regular, open_regular_at};

use crate::common::{mkfifo, opened_while};

/// lint judged the policy with `stat` and then opened the path, so a link flipped from a
/// regular file to `/dev/ptmx` in between got the device opened (9 runs in 100; nineteenth
/// pass, found by attacking this pass's fixes), though a device is never to be opened.
/// `open_regular` now judges what an `O_PATH` descriptor leads to (which opens nothing)
/// and opens for reading only a regular file, through that descriptor: a FIFO, directly
/// or behind a link, is refused without being opened (no `IN_OPEN`), while a regular file
/// is opened and read.
#[test]
fn open_regular_never_opens_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let link = dir.path().join("policy.toml");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let real = dir.path().join("real.toml");
    std::fs::write(&real, "x = 1\n").unwrap();
    let (results, opened) = opened_while(&[&fifo, &real], || {
        [
            open_regular(&fifo, false).map(|_| ()),
            open_regular(&link, false).map(|_| ()),
            open_regular(&fifo, true).map(|_| ()),
        ]
    });
    for r in &results {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
        assert!(scopevault::sys::is_not_a_regular_file(e), "{e}");
        assert!(e.to_string().contains("a FIFO"), "{e}");
    }
    assert_eq!(opened, [false, false], "the FIFO was opened");
    // A link is still refused under `nofollow` as before (ELOOP), and a regular file is
    // opened, read, and seen opened.
    let e = open_regular(&link, true).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::LOOP.raw_os_error()),
        "{e}"
    );
    let (text, opened) = opened_while(&[&real], || {
        let mut text = String::new();
        open_regular(&real, true)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    });
    assert_eq!((opened, text.as_str()), (vec![true], "x = 1\n"));
}

/// Twentieth pass (found by the nineteenth pass's review): what the crate opens for writing
/// (the vault's lock, the rollback record's lock, the audit log, its journal) was opened by
/// name, or created with a plain `O_CREAT`, which opens whatever is there, and judged only
/// afterwards. `open_regular_at` judges the name in a directory as `open_regular` judges a
/// path and opens it with the access asked for; `open_or_create_regular_at` creates a missing
/// file (`O_CREAT | O_EXCL`, which meets nothing) and judges one that is there. A FIFO, or a
/// link to one, is refused without being opened; a regular file is opened with the access
/// asked for (appended to here), and a new one is made with the mode asked for.
#[test]
fn the_write_variants_never_open_what_is_not_a_regular_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let dirfd = std::fs::File::open(dir.path()).unwrap();
    let fifo = dir.path().join("log");
    mkfifo(&fifo);
    std::os::unix::fs::symlink("log", dir.path().join("link")).unwrap();
    let append = OFlags::RDWR | OFlags::APPEND;
    let (results, opened) = opened_while(&[&fifo], || {
        [
            open_regular_at(&dirfd, Path::new("log"), true, append).map(drop),
            open_regular_at(&dirfd, Path::new("link"), false, OFlags::WRONLY).map(drop),
            open_or_create_regular_at(&dirfd, Path::new("log"), append, 0o600).map(drop),
        ]
    });
    for r in &results {
        let e = r.as_ref().unwrap_err();
        assert!(scopevault::sys::is_not_a_regular_file(e), "{e}");
        assert!(e.to_string().contains("not a regular file (a FIFO)"), "{e}");
    }
    assert_eq!(opened, [false], "the FIFO was opened");
    // A link at the name is refused (ELOOP) where links are not followed, by both.
    for e in [
        open_regular_at(&dirfd, Path::new("link"), true, append).unwrap_err(),
        open_or_create_regular_at(&dirfd, Path::new("link"), append, 0o600).unwrap_err(),
    ] {
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error()),
            "{e}"
        );
    }
    // A missing file is made with the mode asked for; the one there is opened for appending.
    let (mut made, created) =
        open_or_create_regular_at(&dirfd, Path::new("new"), append, 0o600).unwrap();
    assert!(created);
    made.write_all(b"one\n").unwrap();
    let new = dir.path().join("new");
    assert_eq!(
        std::fs::metadata(&new).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (mut again, created) =
        open_or_create_regular_at(&dirfd, Path::new("new"), append, 0o600).unwrap();
    assert!(!created);
    again.write_all(b"two\n").unwrap();
    assert_eq!(std::fs::read_to_string(&new).unwrap(), "one\ntwo\n");
}
