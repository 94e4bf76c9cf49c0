//! The one way the CLI writes to its standard streams.
//!
//! `println!` and `eprintln!` panic when the write fails: stdout on a full disk
//! (`>/dev/full`), a closed terminal, a pipe whose reader went away. A panic exits 101, a
//! code the README's table does not have, with Rust's panic text on stderr; and a command
//! that changes state (`init`, `cred set`, `key add`, `bundle apply`) panicked after it had
//! saved, some of them before their audit record and the daemon's reload request (twenty-
//! third pass, found by the twenty-third pass's attacker of the documents' promises).
//!
//! So every write to stdout goes through [`outln!`] or [`out!`], which return a
//! [`StdoutError`] for `?` (exit 2, "cannot write to standard output: …"; a closed pipe is the
//! end of output, exit 0, see [`super::exit_code_of`]); `clippy::print_stdout` is denied in
//! the CLI. A write to stderr ([`errln!`], [`err!`]) that fails is dropped: stderr is where an
//! error would be reported, and a warning nobody can read must not stop a command whose
//! work (a hand-out already audited, a save) is done. A command that changes state does every
//! durable step before it prints, and says so when the printing fails ([`after_change`]).

use std::io::Write;

/// A write to stdout failed; the command's work (if any) is described by the context around
/// it.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output: {source}")]
pub(crate) struct StdoutError {
    #[source]
    source: std::io::Error,
}

/// A failed write of a command that writes to the locked stdout itself (`audit show`, which
/// streams).
pub(crate) fn stdout_error(source: std::io::Error) -> StdoutError {
    StdoutError { source }
}

/// Write formatted text (and a line break when `newline`) to stdout and flush it. Formatted
/// straight into the locked stdout: no intermediate `String` holds what is printed (a TOTP
/// code, a recipient).
pub(crate) fn print_fmt(args: std::fmt::Arguments<'_>, newline: bool) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        .and_then(|()| out.flush());
    written.map_err(|source| StdoutError { source })
}

/// Write `bytes` to stdout and flush them.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<(), StdoutError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| StdoutError { source })
}

/// Write formatted text (and a line break when `newline`) to stderr; an error is dropped (see
/// the module's documentation).
pub(crate) fn eprint_fmt(args: std::fmt::Arguments<'_>, newline: bool) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| {
        if newline {
            err.write_all(b"\n")
        } else {
            Ok(())
        }
    });
}

/// The last line of a command that failed (its `error: …`; a newline is added): written by
/// [`crate::diag`]'s writer thread, which the caller waits for at most [`crate::diag::WAIT`],
/// after the lines already queued there (a daemon's log). A stderr that is a full pipe nobody
/// reads held the process for good, so a supervisor never saw `serve`'s exit code
/// (twenty-third pass, found by the twenty-third pass's attacker of this pass's fixes); now
/// the process exits with its code, and its exit ends the blocked write.
pub(crate) fn final_error(args: std::fmt::Arguments<'_>) {
    crate::diag::start_writer();
    crate::diag::line(args);
}

/// A command line clap refused: its error printed as clap prints it (to stderr, coloured as
/// clap decides) by a thread of its own, waited for at most [`crate::diag::WAIT`] (see
/// [`final_error`]), then the process exits with clap's code. Help and version (stdout) are
/// printed by clap as before.
pub(crate) fn clap_error(e: clap::Error) -> std::process::ExitCode {
    if !e.use_stderr() {
        e.exit()
    }
    let code = u8::try_from(e.exit_code()).unwrap_or(super::EXIT_USAGE);
    let plain = e.render().to_string();
    let (done, wait) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("sv-error".into())
        .spawn(move || {
            let _ = e.print();
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = wait.recv_timeout(crate::diag::WAIT);
        }
        // No thread: the writer of `final_error` cannot start either, so this writes on the
        // caller's thread (without colour), as before.
        Err(_) => final_error(format_args!("{}", plain.trim_end_matches('\n'))),
    }
    std::process::ExitCode::from(code)
}

/// The printing of a command that has changed state, every durable step of it done (saved,
/// audited, the daemon asked to reload): a failure to print says that `done` was done, so
/// that a script does not retry the change blindly. Still exit 2 (0 for a closed pipe).
pub(crate) fn after_change(done: &str, printed: Result<(), StdoutError>) -> anyhow::Result<()> {
    printed.map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "{done}; only its report could not be printed (do not run the command again)"
        ))
    })
}

/// serde_json's pretty printer for JSON shown to people as well as read by programs (`get`):
/// a character of [`crate::text::needs_escape`] that serde_json writes as it is (a line or
/// paragraph separator, a zero-width space, a byte-order mark, a bidirectional control, DEL,
/// C1) is written as its JSON escape (`\u2028`, a surrogate pair above U+FFFF), and a `[`
/// after `##` as `\u005b` (a CI log's workflow command); a reader of the JSON gets the same
/// text back, and a terminal shows no reordered or hidden text (Trojan Source,
/// CVE-2021-42574; twenty-fifth pass). Each run is written straight to the writer: no copy of
/// a fragment (a secret value among them) is made.
pub(crate) struct ShownJson(serde_json::ser::PrettyFormatter<'static>);

impl ShownJson {
    /// The pretty printer, escaping as the type says.
    pub(crate) fn new() -> ShownJson {
        ShownJson(serde_json::ser::PrettyFormatter::new())
    }
}

impl serde_json::ser::Formatter for ShownJson {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        s: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in s.char_indices() {
            let defuse = c == '[' && s[..i].ends_with("##");
            if !(defuse || crate::text::needs_escape(c)) {
                continue;
            }
            w.write_all(&s.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                write!(w, "\\u{:04x}", u)?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&s.as_bytes()[start..])
    }
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// `value` as pretty JSON ([`ShownJson`]) and a line break, to `w`.
pub(crate) fn write_shown_json<W: Write, T: serde::Serialize + ?Sized>(
    w: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *w, ShownJson::new());
    value.serialize(&mut ser).map_err(std::io::Error::from)?;
    w.write_all(b"\n")
}

/// `value` as pretty JSON ([`ShownJson`]) and a line break, on stdout: the JSON of `cred
/// show`, `cred list`, `key list` and `status` (twenty-fifth pass: they printed a line
/// separator, a zero-width space or a bidirectional control as it was). For metadata only: a
/// secret goes through [`write_shown_json`], which makes no copy.
pub(crate) fn print_shown_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<(), StdoutError> {
    let mut text = Vec::new();
    write_shown_json(&mut text, value).map_err(stdout_error)?;
    write_stdout(&text)
}

/// `println!` that returns a [`StdoutError`] instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::output::write_stdout(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::output::print_fmt(format_args!($($arg)*), true)
    };
}

/// `print!` that returns a [`StdoutError`] instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::print_fmt(format_args!($($arg)*), false)
    };
}

/// `eprintln!` that does not panic: a failed write to stderr is dropped.
macro_rules! errln {
    () => {
        $crate::cli::output::eprint_fmt(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::cli::output::eprint_fmt(format_args!($($arg)*), true)
    };
}

/// `eprint!` that does not panic: a failed write to stderr is dropped.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::cli::output::eprint_fmt(format_args!($($arg)*), false)
    };
}
