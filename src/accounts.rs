//! The user and group databases, `/etc/passwd` and `/etc/group`, as scopevault reads them:
//! the uid of a runner's or scheduler's name, the gid of a group's name, and the groups a
//! user belongs to. Never more broadly than the system does.
//!
//! glibc's `files` source (nss_files) is the system's view, and scopevault's answer is
//! either glibc's or none at all:
//!
//! - **A lookup** (a name's uid or gid, a uid's user) finds the line glibc's `getpwnam`,
//!   `getgrnam` or `getpwuid` would find — the first that parses as glibc parses it — and then
//!   uses it only if it is *plain*: no control character anywhere (a carriage return of a file
//!   saved with CRLF line ends, a tab, a NUL), exactly 7 fields (`/etc/passwd`) or 4
//!   (`/etc/group`), a name without white space that does not start with `+`, `-` or `#`,
//!   and ids written as plain decimal numbers (no sign, no leading zero, no space, at most
//!   4294967295). Otherwise the name resolves to nothing ([`Unresolved::Unusable`] says which
//!   line and why), so a later line of the same name is never taken in its place.
//! - **Membership** counts only plain `/etc/group` lines, and a member list's entry only when
//!   it is the user's name exactly: `alice ` (a space before a comma), ` alice` or `alice\r`
//!   is nobody. A commented-out line (`#name:x:gid:alice`), which glibc's `getgrouplist`
//!   still reads, does not count here.
//!
//! ```
//! let me = scopevault::sys::current_uid();
//! assert_eq!(scopevault::accounts::user_uid(&me.to_string()), Some(me));
//! ```

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the users are.
const PASSWD: &str = "/etc/passwd";
/// Where the groups are.
const GROUP: &str = "/etc/group";

/// Why a line of `/etc/passwd` or `/etc/group` that glibc would use is not used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oddity {
    /// A carriage return: the file was saved with CRLF line ends.
    CarriageReturn,
    /// Another control character (a tab, a NUL, …).
    ControlCharacter,
    /// Not the database's number of fields.
    FieldCount {
        /// The database's number.
        want: usize,
        /// The line's.
        got: usize,
    },
    /// An empty name, one with white space, or one starting with `+` or `-` (NIS markers).
    Name,
    /// An id that is not a plain decimal number.
    Number,
}

impl std::fmt::Display for Oddity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Oddity::CarriageReturn => {
                f.write_str("it holds a carriage return (a file saved with CRLF line ends has one on every line)")
            }
            Oddity::ControlCharacter => f.write_str("it holds a control character"),
            Oddity::FieldCount { want, got } => write!(f, "it has {got} fields, not {want}"),
            Oddity::Name => {
                f.write_str("its name is empty, holds white space, or starts with `+` or `-`")
            }
            Oddity::Number => f.write_str(
                "an id is not a plain decimal number (no sign, no leading zero, no space)",
            ),
        }
    }
}

/// Why a name has no id here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    /// No line of the database has it.
    #[error("no such name in {db}")]
    Missing {
        /// `/etc/passwd` or `/etc/group`.
        db: &'static str,
    },
    /// Its line is one glibc would use, but not a plain one.
    #[error("its line in {db} (line {line}) is not one scopevault uses: {why}; write it as `useradd`/`groupadd` would (docs/operations.md, \"Who gets what\")")]
    Unusable {
        /// `/etc/passwd` or `/etc/group`.
        db: &'static str,
        /// The line, counted from 1.
        line: usize,
        /// What is odd about it.
        why: Oddity,
    },
}

/// The uid of a user name; a numeric string is taken as the uid itself. `None` for a name
/// [`resolve_user`] does not resolve.
pub fn user_uid(name: &str) -> Option<u32> {
    name.parse::<u32>().ok().or_else(|| resolve_user(name).ok())
}

/// The gid of a group name; a numeric string is taken as the gid itself. `None` for a name
/// [`resolve_group`] does not resolve.
pub fn group_gid(name: &str) -> Option<u32> {
    name.parse::<u32>()
        .ok()
        .or_else(|| resolve_group(name).ok())
}

/// The uid of user `name` in `/etc/passwd`, or why there is none.
pub fn resolve_user(name: &str) -> Result<u32, Unresolved> {
    by_name(&read_db(PASSWD), Db::Passwd, name).map(|e| e.ids[0])
}

/// The gid of group `name` in `/etc/group`, or why there is none.
pub fn resolve_group(name: &str) -> Result<u32, Unresolved> {
    by_name(&read_db(GROUP), Db::Group, name).map(|e| e.ids[0])
}

/// `/etc/passwd` and `/etc/group` read once, for resolving many names against the same
/// contents (a policy's runners and schedulers at each vault load): [`resolve_user`] and
/// [`resolve_group`] read their file on every call.
pub struct Databases {
    passwd: String,
    group: String,
}

impl Databases {
    /// Read both files now (a missing or unreadable one resolves no name).
    pub fn read() -> Databases {
        Databases {
            passwd: read_db(PASSWD),
            group: read_db(GROUP),
        }
    }

    /// [`resolve_user`] against the contents read.
    pub fn resolve_user(&self, name: &str) -> Result<u32, Unresolved> {
        by_name(&self.passwd, Db::Passwd, name).map(|e| e.ids[0])
    }

    /// [`resolve_group`] against the contents read.
    pub fn resolve_group(&self, name: &str) -> Result<u32, Unresolved> {
        by_name(&self.group, Db::Group, name).map(|e| e.ids[0])
    }

    /// These contents, as if read (tests).
    #[cfg(test)]
    pub(crate) fn of(passwd: String, group: String) -> Databases {
        Databases { passwd, group }
    }
}

/// Every group the user of `uid` belongs to: the primary group of its `/etc/passwd` line and
/// each plain `/etc/group` line that lists its name, sorted and deduplicated. Empty when the
/// uid has no line, or its line is not plain.
pub fn user_groups(uid: u32) -> Vec<u32> {
    groups_of(&read_db(PASSWD), &read_db(GROUP), uid)
}

/// The home directory (the sixth field) of the `/etc/passwd` line glibc's `getpwuid` would
/// answer for `uid`, if that line is plain and the field is not empty.
pub fn user_home(uid: u32) -> Option<String> {
    let passwd = read_db(PASSWD);
    let user = glibc_first(&passwd, Db::Passwd, |n, ids| {
        ids[0] == uid && !n.starts_with(['+', '-'])
    })
    .ok()?;
    let home = user.fields[5];
    (!home.is_empty()).then(|| home.to_owned())
}

/// How many times the user and group databases, or what the daemon resolved in them, may have
/// changed since the process started: a connection's rights
/// ([`crate::agent::peer::PeerIdentity::follow`]) were decided at one generation and are
/// decided again, its groups looked up again, at its next request once this has moved on. The
/// daemon moves it once it has resolved every name again after a change of `/etc/passwd` or
/// `/etc/group` ([`DatabaseWatch`]), at a `reload` and at every vault load: never before the
/// names are in place, so that a decision made with the names before a change was made at a
/// generation before it (a ticket's issuer is judged again at its redemption when the
/// generation moved on since the issue).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current generation of the user and group databases (one atomic load).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Every connection's rights are decided again, its groups looked up again, at its next
/// request.
pub fn databases_changed() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// One version of a database file ([`crate::paths::Stamp`]), or none when it cannot be read.
type Stamp = Option<crate::paths::Stamp>;

/// The SHA-256 of a database file's content, or none when it cannot be read.
type Digest = Option<[u8; 32]>;

fn digest(path: &Path) -> Digest {
    use sha2::Digest as _;
    std::fs::read(path)
        .ok()
        .map(|b| sha2::Sha256::digest(&b).into())
}

/// While the stamps stay the same, the watch compares the files' content every this many
/// polls: about once a second at the daemon's four polls a second.
const DIGEST_EVERY: u32 = 4;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| crate::paths::stamp(&m))
}

/// Notices a change of `/etc/passwd` or `/etc/group` by their stamps (a `stat` each, no
/// read), so that the daemon resolves its names again and moves [`generation`] on: a user
/// removed from a group (`gpasswd -d`, `usermod`, `userdel`) loses what the group gave on
/// connections already open, not only on new ones (twenty-eighth pass).
///
/// A rewrite in place that keeps the size, the inode and both times has the same stamp: a
/// second write within one tick of a kernel's coarse clock (a few milliseconds; Linux 6.13
/// and later give a write after a `stat` another time), or one after the clock was stepped
/// back. So while the stamps stay the same the content is compared too, by SHA-256, every
/// [`DIGEST_EVERY`] polls (twenty-ninth pass): such a change is noticed within about a
/// second. Measured with sha2 as built here (SHA-NI) on a shared 2-core host: 23 to 30 µs for
/// both files of a host with a few dozen users (1.8 KB), 1.1 ms with a 1 MiB `/etc/group`, 21
/// ms with 16 MiB, once a second; the daemon's ticker, never a request, pays it.
pub struct DatabaseWatch {
    paths: [std::path::PathBuf; 2],
    seen: [Stamp; 2],
    digests: [Digest; 2],
    /// Polls since the content was last read.
    polls: u32,
}

impl DatabaseWatch {
    /// Watch the system's databases, as they are now.
    pub fn system() -> DatabaseWatch {
        DatabaseWatch::of([PASSWD.into(), GROUP.into()])
    }

    /// Watch these two files, as they are now.
    pub fn of(paths: [std::path::PathBuf; 2]) -> DatabaseWatch {
        let seen = [stamp(&paths[0]), stamp(&paths[1])];
        let digests = [digest(&paths[0]), digest(&paths[1])];
        DatabaseWatch {
            paths,
            seen,
            digests,
            polls: 0,
        }
    }

    /// Stat both files, and every [`DIGEST_EVERY`] polls with the same stamps read them: true
    /// if either changed since the last call (or since [`DatabaseWatch::of`]). The caller
    /// resolves its names again, then moves [`generation`] on ([`databases_changed`]).
    pub fn poll(&mut self) -> bool {
        let now = [stamp(&self.paths[0]), stamp(&self.paths[1])];
        if now != self.seen {
            self.seen = now;
            self.digests = [digest(&self.paths[0]), digest(&self.paths[1])];
            self.polls = 0;
            return true;
        }
        self.polls += 1;
        if self.polls < DIGEST_EVERY {
            return false;
        }
        self.polls = 0;
        let digests = [digest(&self.paths[0]), digest(&self.paths[1])];
        if digests == self.digests {
            return false;
        }
        self.digests = digests;
        true
    }
}

fn read_db(path: &str) -> String {
    // A missing or unreadable database means "no such name": callers fall back to numeric ids.
    std::fs::read_to_string(Path::new(path)).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Passwd,
    Group,
}

impl Db {
    fn path(self) -> &'static str {
        match self {
            Db::Passwd => PASSWD,
            Db::Group => GROUP,
        }
    }

    fn fields(self) -> usize {
        match self {
            Db::Passwd => 7,
            Db::Group => 4,
        }
    }

    /// How many ids follow the name and the password field: uid and gid, or gid.
    fn ids(self) -> usize {
        match self {
            Db::Passwd => 2,
            Db::Group => 1,
        }
    }
}

/// A plain line: its name, its ids (uid and gid; gid), and its fields.
#[derive(Debug)]
struct Entry<'a> {
    name: &'a str,
    ids: [u32; 2],
    fields: Vec<&'a str>,
}

/// `line` as an entry of `db` if it is plain (see the module's documentation).
fn plain(line: &str, db: Db) -> Result<Entry<'_>, Oddity> {
    if line.contains('\r') {
        return Err(Oddity::CarriageReturn);
    }
    if line.chars().any(char::is_control) {
        return Err(Oddity::ControlCharacter);
    }
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() != db.fields() {
        return Err(Oddity::FieldCount {
            want: db.fields(),
            got: fields.len(),
        });
    }
    let name = fields[0];
    if name.is_empty() || name.contains(char::is_whitespace) || name.starts_with(['+', '-', '#']) {
        return Err(Oddity::Name);
    }
    let mut ids = [0; 2];
    for (id, text) in ids.iter_mut().zip(&fields[2..2 + db.ids()]) {
        *id = plain_number(text).ok_or(Oddity::Number)?;
    }
    Ok(Entry { name, ids, fields })
}

/// A decimal number as `useradd` writes it: digits only, no leading zero, within u32.
fn plain_number(text: &str) -> Option<u32> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    (digits && canonical).then(|| text.parse().ok()).flatten()
}

/// The entry of the line glibc's lookup would return for `name` (`getpwnam`, `getgrnam`),
/// if that line is plain.
fn by_name<'a>(text: &'a str, db: Db, name: &str) -> Result<Entry<'a>, Unresolved> {
    // glibc never matches a name starting with `+` or `-` (files-pwd.c, files-grp.c).
    if name.starts_with(['+', '-']) {
        return Err(Unresolved::Missing { db: db.path() });
    }
    glibc_first(text, db, |n, _| n == name)
}

/// The entry of the first line glibc's lookups parse and `wanted` accepts (given its name and
/// ids as glibc reads them), if that line is plain: glibc's answer, or none.
fn glibc_first<'a>(
    text: &'a str,
    db: Db,
    wanted: impl Fn(&str, [u32; 2]) -> bool,
) -> Result<Entry<'a>, Unresolved> {
    for (n, line) in text.split('\n').enumerate() {
        let Some((name, ids)) = glibc::lookup_view(line, db.ids()) else {
            continue;
        };
        if wanted(name, ids) {
            return plain(line, db).map_err(|why| Unresolved::Unusable {
                db: db.path(),
                line: n + 1,
                why,
            });
        }
    }
    Err(Unresolved::Missing { db: db.path() })
}

fn groups_of(passwd: &str, group: &str, uid: u32) -> Vec<u32> {
    // glibc's `getpwuid` skips names starting with `+` or `-` as `getpwnam` does.
    let Ok(user) = glibc_first(passwd, Db::Passwd, |n, ids| {
        ids[0] == uid && !n.starts_with(['+', '-'])
    }) else {
        return Vec::new();
    };
    let mut out = vec![user.ids[1]];
    out.extend(group.split('\n').filter_map(|line| {
        let g = plain(line, Db::Group).ok()?;
        g.fields[3]
            .split(',')
            .any(|m| m == user.name)
            .then_some(g.ids[0])
    }));
    out.sort_unstable();
    out.dedup();
    out
}

/// How glibc's nss_files reads a line for its lookups (`getpwnam`, `getpwuid`, `getgrnam`,
/// `getgrgid`): which line it would answer with is what a lookup here must find, so that a
/// line glibc uses but scopevault does not cannot let a later line answer in its place.
mod glibc {
    /// C's `isspace` in the C locale.
    fn is_space(b: u8) -> bool {
        matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
    }

    /// The name and ids (`ids` of them: 2 for passwd, 1 for group) glibc reads from `line`
    /// for a lookup, or `None` if it skips the line: cut at a NUL (a C string), leading white
    /// space skipped, blank lines and comments skipped (nss_readline.c), then the fields as
    /// files-parse.c's `STRING_FIELD` and `INT_FIELD` take them. A name starting with `+`
    /// or `-` is a NIS marker no lookup matches: `None` too.
    pub(super) fn lookup_view(line: &str, ids: usize) -> Option<(&str, [u32; 2])> {
        let line = line.split('\0').next().unwrap_or("");
        let line = line.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (name, rest) = string_field(line);
        if name.starts_with(['+', '-']) {
            return None;
        }
        let (_password, mut rest) = string_field(rest);
        let mut out = [0; 2];
        for id in out.iter_mut().take(ids) {
            let (value, after) = int_field(rest)?;
            *id = value;
            rest = after;
        }
        Some((name, out))
    }

    /// Up to the next `:` (taken off) or the end.
    fn string_field(s: &str) -> (&str, &str) {
        match s.split_once(':') {
            Some((field, rest)) => (field, rest),
            None => (s, ""),
        }
    }

    /// `strtou32` then a `:` (taken off) or the end; `None` where glibc's parse fails.
    fn int_field(s: &str) -> Option<(u32, &str)> {
        let (value, used) = strtou32(s.as_bytes())?;
        let rest = &s[used..];
        match rest.strip_prefix(':') {
            Some(after) => Some((value, after)),
            None => rest.is_empty().then_some((value, rest)),
        }
    }

    /// files-parse.c's `strtou32`: `strtoul(s, &end, 10)` (leading white space, a sign, any
    /// number of digits; `ULONG_MAX` on overflow; a `-` negates in unsigned arithmetic), then
    /// anything above 0xffffffff is 0xffffffff. The value and the bytes used; `None` when no
    /// digit was read (`end == s`).
    fn strtou32(s: &[u8]) -> Option<(u32, usize)> {
        let mut i = s.iter().take_while(|&&b| is_space(b)).count();
        let negative = s.get(i) == Some(&b'-');
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        let mut value: Option<u64> = Some(0);
        while let Some(d) = s.get(i).filter(|b| b.is_ascii_digit()) {
            value = value
                .and_then(|v| v.checked_mul(10))
                .and_then(|v| v.checked_add(u64::from(d - b'0')));
            i += 1;
        }
        if i == start {
            return None;
        }
        let value = match value {
            None => u64::MAX,
            Some(v) if negative => v.wrapping_neg(),
            Some(v) => v,
        };
        Some((u32::try_from(value).unwrap_or(u32::MAX), i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        mon:x:1001:1001::/home/mon:/bin/sh\n\
        broken line\n";
    const GROUP_TEXT: &str =
        "root:x:0:\nmon:x:1001:\nmonitors:x:2000:alice,mon\nother:x:2001:alice\n";

    /// A rewrite in place, a replacement by rename, a removal: each moves the generation on,
    /// and a poll with nothing changed does not.
    #[test]
    fn the_watch_moves_the_generation_on_each_change_of_either_file() {
        let dir = tempfile::tempdir().unwrap();
        let (p, g) = (dir.path().join("passwd"), dir.path().join("group"));
        std::fs::write(&p, PASSWD_TEXT).unwrap();
        std::fs::write(&g, "staff:x:50:alice\n").unwrap();
        let mut w = DatabaseWatch::of([p.clone(), g.clone()]);
        assert!(!w.poll(), "nothing changed");
        std::fs::write(&g, "staff:x:50:bob\n").unwrap();
        assert!(w.poll(), "rewritten in place");
        assert!(!w.poll());
        let new = dir.path().join("group+");
        std::fs::write(&new, "staff:x:50:\n").unwrap();
        std::fs::rename(&new, &g).unwrap();
        assert!(w.poll(), "replaced by rename");
        std::fs::remove_file(&p).unwrap();
        assert!(w.poll(), "removed");
        assert!(!w.poll());
    }

    /// Twenty-ninth pass (left open by the twenty-eighth's closing note): a rewrite of
    /// /etc/group in place that keeps its size, inode and both times was missed, and its
    /// change took effect only at the next other change or `reload`. The kernel here gives
    /// every write after a `stat` another ctime (multigrain times since Linux 6.13); one with
    /// a coarse clock keeps the times of a write in the same tick (a few milliseconds), and a
    /// clock stepped back can give them again: the watch is made to have seen the new stamp,
    /// as it would then. The content is compared about once a second (4 polls).
    #[test]
    fn a_rewrite_that_keeps_the_stamp_is_noticed_by_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let (p, g) = (dir.path().join("passwd"), dir.path().join("group"));
        std::fs::write(&p, PASSWD_TEXT).unwrap();
        std::fs::write(&g, "staff:x:50:alice\n").unwrap();
        let mut w = DatabaseWatch::of([p.clone(), g.clone()]);
        std::fs::write(&g, "staff:x:50:bobby\n").unwrap();
        w.seen = [stamp(&p), stamp(&g)];
        let noticed = (0..4).filter(|_| w.poll()).count();
        assert_eq!(noticed, 1, "noticed once within 4 polls");
        assert!((0..8).all(|_| !w.poll()), "then nothing changed");
    }

    #[test]
    fn groups_of_combines_primary_and_member_lists() {
        assert_eq!(groups_of(PASSWD_TEXT, GROUP_TEXT, 1001), vec![1001, 2000]);
        assert_eq!(groups_of(PASSWD_TEXT, GROUP_TEXT, 0), vec![0]);
        assert!(groups_of(PASSWD_TEXT, GROUP_TEXT, 4242).is_empty());
    }

    #[test]
    fn numeric_names_are_ids() {
        assert_eq!(user_uid("4242"), Some(4242));
        assert_eq!(group_gid("4243"), Some(4243));
        assert_eq!(user_uid("no-such-user-scopevault"), None);
        assert_eq!(user_uid("root"), Some(0));
        assert_eq!(group_gid("root"), Some(0));
    }

    const SV_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        svother:x:1002:1002::/home/svother:/bin/sh\n";

    /// Twentieth pass (found by attacking who gets what): the member lists glibc does not
    /// read as `svother` made `svother` a member here. Each row is one `/etc/group` line:
    /// whether `svother` (uid 1002, primary group 1002) is a member of gid 2400 for glibc's
    /// `getgrouplist` (the [`model`] below) and for scopevault. Never a member where glibc
    /// says no; the rows glibc counts and scopevault does not are the odd lines it refuses.
    #[test]
    fn membership_is_never_broader_than_glibc_s() {
        let rows: &[(&str, bool, bool)] = &[
            ("g:x:2400:svother", true, true),
            ("g:x:2400:svrunner,svother", true, true),
            ("g:x:2400:svrunner,,svother,", true, true),
            ("g:x:2400:svother\r", false, false),
            ("g:x:2400:svother:extra", false, false),
            ("g:x:2400:svother ,svrunner", false, false),
            ("g:x:2400:svother\t", false, false),
            ("g:x:2400:SVOTHER", false, false),
            ("g:x:2400:svother\0", true, false),
            ("g:x:2400: svother", true, false),
            ("g:x:2400:svrunner, svother", true, false),
            ("#g:x:2400:svother", true, false),
            (" g:x:2400:svother", true, false),
            ("g:x:02400:svother", true, false),
            ("g:x:+2400:svother", true, false),
            ("g:x: 2400:svother", true, false),
            ("g:x:2400", false, false),
            ("g:2400:svother", false, false),
            ("+g:x:2400:svother", true, false),
        ];
        for &(line, glibc, ours) in rows {
            let group = format!("{line}\n");
            let glibc_says = model::getgrouplist(SV_PASSWD, &group, 1002).contains(&2400);
            assert_eq!(glibc_says, glibc, "glibc's view of {line:?}");
            let we_say = groups_of(SV_PASSWD, &group, 1002).contains(&2400);
            assert_eq!(we_say, ours, "scopevault's view of {line:?}");
        }
    }

    /// A name resolves to the line glibc's lookup finds, and only when that line is plain:
    /// an odd first line is never passed over for a later line of the same name.
    #[test]
    fn a_name_resolves_to_glibc_s_line_or_to_nothing() {
        let group = "svg:x:2400:a\r\nsvg:x:2500:b\nok:x:2600:\n # indented comment\n";
        assert_eq!(
            by_name(group, Db::Group, "svg")
                .map(|e| e.ids[0])
                .unwrap_err(),
            Unresolved::Unusable {
                db: GROUP,
                line: 1,
                why: Oddity::CarriageReturn
            }
        );
        assert_eq!(by_name(group, Db::Group, "ok").unwrap().ids[0], 2600);
        // glibc skips an indented comment and a line whose gid does not parse, so scopevault
        // looks on; it stops at an indented line glibc reads.
        let group = "  #svg:x:1:\nsvg:x:x:\nsvg:x:2500:\n";
        assert_eq!(by_name(group, Db::Group, "svg").unwrap().ids[0], 2500);
        let group = "  svg:x:1:\nsvg:x:2500:\n";
        assert_eq!(
            by_name(group, Db::Group, "svg").unwrap_err(),
            Unresolved::Unusable {
                db: GROUP,
                line: 1,
                why: Oddity::Name
            }
        );
        let passwd = "svu:x:1002:1002::/h:/bin/sh:extra\nsvu:x:0:0::/root:/bin/sh\n";
        assert_eq!(
            by_name(passwd, Db::Passwd, "svu").unwrap_err(),
            Unresolved::Unusable {
                db: PASSWD,
                line: 1,
                why: Oddity::FieldCount { want: 7, got: 8 }
            }
        );
        assert!(matches!(
            by_name(passwd, Db::Passwd, "+svu"),
            Err(Unresolved::Missing { .. })
        ));
        assert!(Unresolved::Unusable {
            db: GROUP,
            line: 3,
            why: Oddity::CarriageReturn
        }
        .to_string()
        .contains("/etc/group (line 3)"));
    }

    /// The user of a uid is glibc's `getpwuid` line, and only a plain one: a CRLF
    /// `/etc/passwd` (or an extra field) gives the user no groups, not another line's.
    #[test]
    fn an_odd_passwd_line_gives_its_user_no_groups() {
        let group = "g:x:2400:svother\n";
        for passwd in [
            "svother:x:1002:1002::/h:/bin/sh\r\n",
            "svother:x:1002:1002::/h:/bin/sh:extra\n",
            "svother:x:1002:01002::/h:/bin/sh\n",
            "svother:x:1002:1002::/h:/bin/sh\r\nsvother:x:1002:1002::/h:/bin/sh\n",
        ] {
            assert!(groups_of(passwd, group, 1002).is_empty(), "{passwd:?}");
        }
        // The first line glibc reads for the uid decides, even under another name.
        let passwd = "svx:x:1002:1002::/h:/bin/sh\nsvother:x:1002:1002::/h:/bin/sh\n";
        assert_eq!(groups_of(passwd, group, 1002), vec![1002]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// For any `/etc/group` and `/etc/passwd` made of the odd pieces above, scopevault's
        /// groups of a user are among glibc's (`getgrouplist`), and a name it resolves
        /// resolves so for glibc (`getgrnam`, `getpwnam`).
        #[test]
        fn never_broader_than_glibc(
            group in prop::collection::vec(group_line(), 0..6),
            passwd in passwd(),
            uid in prop::sample::select(vec![1002u32, 1002, 0, 2400]),
        ) {
            let group = group.concat();
            let glibc = model::getgrouplist(&passwd, &group, uid);
            for g in groups_of(&passwd, &group, uid) {
                prop_assert!(glibc.contains(&g), "gid {g}: {glibc:?}");
            }
            for name in ["g", "svother", "#g", "+g"] {
                if let Ok(e) = by_name(&group, Db::Group, name) {
                    prop_assert_eq!(model::getnam(&group, name, 1), Some(e.ids));
                }
                if let Ok(e) = by_name(&passwd, Db::Passwd, name) {
                    prop_assert_eq!(model::getnam(&passwd, name, 2), Some(e.ids));
                }
            }
        }
    }

    /// `plain` four times in five, otherwise one of `odd`: most lines are plain, or odd in
    /// one way, and the user is often a member.
    fn mostly(plain: &'static str, odd: &[&'static str]) -> impl Strategy<Value = &'static str> {
        prop_oneof![4 => Just(plain), 1 => prop::sample::select(odd.to_vec())]
    }

    fn group_line() -> impl Strategy<Value = String> {
        (
            mostly("g", &["#g", " g", "+g", "-g", "svother", "", "g\r"]),
            mostly(":x:", &[":", "::", ":x :"]),
            mostly(
                "2400",
                &[
                    "2401",
                    "02400",
                    "+2400",
                    " 2400",
                    "2400 ",
                    "-1",
                    "4294967296",
                    "",
                    "24x",
                    "0",
                ],
            ),
            mostly(":", &["", "::"]),
            prop::collection::vec(
                mostly(
                    "svother",
                    &[
                        "svother ",
                        " svother",
                        "svother\r",
                        "svother:extra",
                        "",
                        "SVOTHER",
                        "root",
                        "\0svother",
                        "svother\t",
                        "\tsvother",
                        "svother\0",
                    ],
                ),
                0..3,
            ),
            mostly("\n", &["\r\n", ":\n", "\0\n", " \n", "\t\n", ":x\n"]),
        )
            .prop_map(|(name, sep, gid, colon, members, end)| {
                format!("{name}{sep}{gid}{colon}{}{end}", members.join(","))
            })
    }

    fn passwd() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => Just("svother:x:1002:1002::/h:/bin/sh\n".to_owned()),
            3 => prop::collection::vec(passwd_line(), 1..4).prop_map(|l| l.concat()),
        ]
    }

    fn passwd_line() -> impl Strategy<Value = String> {
        (
            mostly(
                "svother",
                &[" svother", "#svother", "+svother", "root", "svx"],
            ),
            mostly("1002", &["01002", "0", " 1002", "-1", "+1002", "1002 "]),
            mostly("1002", &["2400", "02400", "0", "-1"]),
            mostly("::/h:/bin/sh", &["::/h:/bin/sh:extra", "::/h", "", ":"]),
            mostly("\n", &["\r\n", "\0\n", " \n"]),
        )
            .prop_map(|(name, uid, gid, rest, end)| format!("{name}:x:{uid}:{gid}{rest}{end}"))
    }

    /// glibc 2.36's nss_files written out anew, byte by byte as the C does, to check the
    /// parser above against: `getgrouplist` (files-initgroups.c reads every line with
    /// `getline`, comments included, and parses it as files-grp.c does) and the `getpwnam` /
    /// `getgrnam` lookups (nss_readline.c skips leading white space, blank lines and comments).
    mod model {
        fn is_space(b: u8) -> bool {
            matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
        }

        /// A C string: up to the first NUL.
        fn c_str(line: &[u8]) -> &[u8] {
            line.split(|&b| b == 0).next().unwrap_or(&[])
        }

        /// files-parse.c's `parse_line` for passwd (`ids` = 2) or group (1): the name, the
        /// ids, and what follows them (the member list of a group).
        fn parse_line(line: &[u8], ids: usize) -> Option<(Vec<u8>, [u32; 2], Vec<u8>)> {
            let line = c_str(line);
            let mut p = 0;
            let field = |p: &mut usize| {
                let start = *p;
                while *p < line.len() && line[*p] != b':' {
                    *p += 1;
                }
                let f = line[start..*p].to_vec();
                if *p < line.len() {
                    *p += 1;
                }
                f
            };
            let name = field(&mut p);
            // A NIS marker (`+name`, `-name`): alone on its line it is all there is; its ids
            // may be empty (`INT_FIELD_MAYBE_NULL`, 0 then).
            let marker = name.first().is_some_and(|b| *b == b'+' || *b == b'-');
            if marker && p == line.len() {
                return Some((name, [0; 2], Vec::new()));
            }
            let _password = field(&mut p);
            let mut out = [0u32; 2];
            for id in out.iter_mut().take(ids) {
                if marker && p == line.len() {
                    return None;
                }
                // strtoul, base 10, then strtou32's clamp.
                let mut q = p;
                while q < line.len() && is_space(line[q]) {
                    q += 1;
                }
                let neg = q < line.len() && line[q] == b'-';
                if q < line.len() && (line[q] == b'+' || line[q] == b'-') {
                    q += 1;
                }
                let digits = q;
                let mut v: u128 = 0;
                while q < line.len() && line[q].is_ascii_digit() {
                    v = (v * 10 + u128::from(line[q] - b'0')).min(u128::from(u64::MAX) + 1);
                    q += 1;
                }
                if q == digits && !marker {
                    return None;
                }
                if q == digits {
                    // No number: the default, and the field's end is looked for right here.
                    q = p;
                    v = 0;
                }
                let v: u64 = if v > u128::from(u64::MAX) {
                    u64::MAX
                } else if neg {
                    (v as u64).wrapping_neg()
                } else {
                    v as u64
                };
                *id = if v > 0xffff_ffff { u32::MAX } else { v as u32 };
                if q < line.len() && line[q] == b':' {
                    q += 1;
                } else if q < line.len() {
                    return None;
                }
                p = q;
            }
            Some((name, out, line[p..].to_vec()))
        }

        /// files-parse.c's `parse_list` with `,` between entries: each entry's leading white
        /// space skipped, empty entries dropped, nothing else trimmed.
        fn members(list: &[u8]) -> Vec<Vec<u8>> {
            list.split(|&b| b == b',')
                .map(|m| {
                    let skip = m.iter().take_while(|&&b| is_space(b)).count();
                    m[skip..].to_vec()
                })
                .filter(|m| !m.is_empty())
                .collect()
        }

        /// The lines a lookup reads (nss_readline.c).
        fn lookup_lines(text: &str) -> impl Iterator<Item = &[u8]> {
            text.as_bytes().split(|&b| b == b'\n').filter_map(|l| {
                let l = c_str(l);
                let skip = l.iter().take_while(|&&b| is_space(b)).count();
                let l = &l[skip..];
                (!l.is_empty() && l[0] != b'#').then_some(l)
            })
        }

        /// No lookup matches a NIS marker's line.
        fn marker(name: &[u8]) -> bool {
            name.first().is_some_and(|b| *b == b'+' || *b == b'-')
        }

        /// `getpwnam` (`ids` = 2) or `getgrnam` (1): the ids of the first line of `name`.
        pub(super) fn getnam(text: &str, name: &str, ids: usize) -> Option<[u32; 2]> {
            lookup_lines(text)
                .filter_map(|l| parse_line(l, ids))
                .find(|(n, _, _)| n == name.as_bytes() && !marker(n))
                .map(|(_, i, _)| i)
        }

        /// `getgrouplist(getpwuid(uid))`: the primary gid and the gid of every line, as
        /// files-initgroups.c reads them, that lists the user.
        pub(super) fn getgrouplist(passwd: &str, group: &str, uid: u32) -> Vec<u32> {
            let Some((name, ids, _)) = lookup_lines(passwd)
                .filter_map(|l| parse_line(l, 2))
                .find(|(n, i, _)| i[0] == uid && !marker(n))
            else {
                return Vec::new();
            };
            let mut out = vec![ids[1]];
            for line in group.as_bytes().split(|&b| b == b'\n') {
                if let Some((_, gid, list)) = parse_line(line, 1) {
                    if members(&list).contains(&name) {
                        out.push(gid[0]);
                    }
                }
            }
            out
        }
    }
}
