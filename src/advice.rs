//! The `scopevault` commands an error, a warning or a report advises, rendered so that copied
//! as they are they act on the vault the command that printed them acted on.
//!
//! Twenty-fifth pass (found by the attacker of advice): `policy apply --vault master.sv`
//! advised "run `scopevault cred set shop-buyer --secret password`", which, copied, changed
//! the default vault (the host's live one), not the master. The CLI notes the vault path it
//! was given ([`note_vault_given`]), on the command line or through `SCOPEVAULT_VAULT` (the
//! variable may not be set in the shell the advice is run in); every advised command that
//! opens the vault is rendered by [`command`], which adds `--vault PATH`, shell-quoted and
//! escaped for the terminal. A vault at its default path is left out.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static VAULT_GIVEN: OnceLock<PathBuf> = OnceLock::new();
static SOCKET_GIVEN: OnceLock<PathBuf> = OnceLock::new();

/// Note the vault path this process was given (`--vault` or `SCOPEVAULT_VAULT`), as given:
/// from now on [`command`] names it. Called once by the CLI; later calls change nothing.
pub fn note_vault_given(path: &Path) {
    let _ = VAULT_GIVEN.set(path.to_owned());
}

/// Note the daemon's socket this process was given (`--socket` or `SCOPEVAULT_SOCKET`), as
/// given: from now on [`daemon_command`] and [`in_daemon_text`] name it. Called once by the
/// CLI; later calls change nothing.
pub fn note_socket_given(path: &Path) {
    let _ = SOCKET_GIVEN.set(path.to_owned());
}

/// [`command`] for a command that talks to the daemon: `--socket PATH` added too when this
/// process was given its socket ([`note_socket_given`]).
pub fn daemon_command(args: &str) -> String {
    let mut c = command(args);
    if let Some(s) = SOCKET_GIVEN.get() {
        c.push_str(" --socket ");
        c.push_str(&shell_quoted(&s.to_string_lossy()));
    }
    c
}

/// A text of the daemon's (a refusal's message, a hand-out's warning, a reason in `health`)
/// with every command it advises, `` `scopevault ARGS` ``, naming the vault and the socket
/// this process was given ([`note_vault_given`], [`note_socket_given`]): `--vault PATH` and
/// `--socket PATH` added before the closing backquote, shell-quoted, unless the command names
/// them already. The daemon does not know which paths its reader gave (nor may it name its
/// vault to a peer that is not an admin), so its advice said `scopevault unlock`, which,
/// copied from `get --socket S`, acted on the default daemon (twenty-eighth pass). Not
/// escaped: the caller escapes the whole text for the terminal, as any text of the daemon's.
pub fn in_daemon_text(text: &str) -> String {
    in_daemon_text_for(
        text,
        VAULT_GIVEN.get().map(PathBuf::as_path),
        SOCKET_GIVEN.get().map(PathBuf::as_path),
    )
}

fn in_daemon_text_for(text: &str, vault: Option<&Path>, socket: Option<&Path>) -> String {
    const OPEN: &str = "`scopevault ";
    if vault.is_none() && socket.is_none() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(OPEN) {
        let after = &rest[i + OPEN.len()..];
        let Some(end) = after.find('`') else { break };
        let args = &after[..end];
        out.push_str(&rest[..i + OPEN.len()]);
        out.push_str(args);
        for (flag, path) in [("--vault", vault), ("--socket", socket)] {
            let named = args
                .split_whitespace()
                .any(|w| w == flag || w.starts_with(&format!("{flag}=")));
            if let (Some(p), false) = (path, named) {
                out.push(' ');
                out.push_str(flag);
                out.push(' ');
                out.push_str(&shell_word(&p.to_string_lossy()));
            }
        }
        out.push('`');
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `scopevault ARGS`, with `--vault PATH` added when this process was given its vault path
/// ([`note_vault_given`]). `args` is the rest of the advised command as it is to be typed
/// (placeholders such as `NAME` included); the path is shell-quoted and escaped for the
/// terminal.
pub fn command(args: &str) -> String {
    command_for(args, VAULT_GIVEN.get().map(PathBuf::as_path))
}

fn command_for(args: &str, vault: Option<&Path>) -> String {
    match vault {
        Some(v) => format!(
            "scopevault {args} --vault {}",
            shell_quoted(&v.to_string_lossy())
        ),
        None => format!("scopevault {args}"),
    }
}

/// The vault file the daemon and a command without `--vault` use: `SCOPEVAULT_VAULT`, else the
/// default path ([`crate::paths::vault`]). A file given with `--vault` elsewhere (a backup
/// copy being checked) is not it.
pub fn live_vault() -> PathBuf {
    match std::env::var_os("SCOPEVAULT_VAULT") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => crate::paths::vault(),
    }
}

/// The live vault ([`live_vault`]) when the vault path this process was given
/// ([`note_vault_given`]) is another file and the file at the live path is the same vault
/// (its header's id, not authenticated: this only chooses advice): the file given is a copy
/// (a backup), which is checked where it lies and restored by copying it there first
/// (twenty-seventh pass, found by the attacker of multi-admin work and backups).
///
/// The file this machine's rollback record names for the vault ([`recorded_elsewhere`]) comes
/// first: the live vault at a custom path (`--vault /var/lib/scopevault/vault.scopevault`, as
/// the sudo commands give it) was not the file at `SCOPEVAULT_VAULT` or the default path, and
/// the copy's refusal advised adopting it where it lay (twenty-seventh pass, found by the
/// re-attacker of its fixes). Returns the live file and how to name it in a message.
pub fn given_is_not_live() -> Option<(PathBuf, String)> {
    let given = VAULT_GIVEN.get().cloned().unwrap_or_else(live_vault);
    if let Some(id) = crate::vault::file_vault_id(&given).ok().flatten() {
        if let Some(at) = recorded_elsewhere(&given, &id) {
            let what = recorded_what(&at);
            return Some((at, what));
        }
    }
    VAULT_GIVEN.get()?;
    let live = live_vault();
    let what = format!(
        "the vault at {} (SCOPEVAULT_VAULT, else the default path), which the daemon and commands without --vault use",
        crate::text::shown(&live)
    );
    copy_of(&given, &live).then_some((live, what))
}

/// The file of vault `id` that this machine's rollback record names
/// ([`crate::vault::recorded_path`]: the one saved last, or loaded at a newer generation),
/// when `file` is another file and the one there still holds vault `id` (its header's id):
/// `file` is then a copy of the live vault, whatever path the command was given.
pub fn recorded_elsewhere(file: &Path, id: &str) -> Option<PathBuf> {
    let at = crate::vault::recorded_path(id)?;
    if crate::paths::same_file(file, &at) {
        return None;
    }
    (crate::vault::file_vault_id(&at).ok().flatten().as_deref() == Some(id)).then_some(at)
}

/// How a message names the recorded vault file `at` ([`recorded_elsewhere`]).
pub fn recorded_what(at: &Path) -> String {
    format!(
        "the vault at {}, the file of this vault that this machine saved or loaded last at its newest generation (its rollback record in the state directory says so)",
        crate::text::shown(at)
    )
}

/// Whether `file` is another file than `live` holding the same vault (header ids).
pub fn copy_of(file: &Path, live: &Path) -> bool {
    if crate::paths::same_file(file, live) {
        return false;
    }
    let id = |p: &Path| crate::vault::file_vault_id(p).ok().flatten();
    matches!((id(file), id(live)), (Some(a), Some(b)) if a == b)
}

/// `scopevault ARGS` for the vault file at `path`: `--vault PATH` added unless it is the
/// default path.
pub fn command_at(args: &str, path: &Path) -> String {
    command_for(args, (path != crate::paths::vault()).then_some(path))
}

/// `s` as a shell reads it back as one word: as it is when it holds only characters no
/// shell treats specially, else in single quotes (a `'` in it written `'\''`), and a word
/// holding a control or invisible character ([`crate::text::needs_escape`]) in ANSI-C quotes,
/// `$'…'` (bash, zsh, ksh, POSIX 2024), with each such character written as the `\xHH` escapes
/// of its UTF-8 bytes; then escaped for the terminal ([`crate::text::escape_for_log`]), so that
/// a control character in a path cannot drive the terminal or forge a line. In single quotes
/// the terminal's escape `\n` was read by the shell as a backslash and an `n`, so the copied
/// command named another path (twenty-eighth pass, found by the re-attacker of its fixes).
pub fn shell_quoted(s: &str) -> String {
    crate::text::escape_for_log(&shell_word(s))
}

/// `s` as a POSIX shell reads it back as one word ([`shell_quoted`] before its escaping for
/// the terminal).
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./,:@%+=".contains(c));
    if plain {
        s.to_owned()
    } else if s.chars().any(crate::text::needs_escape) || s.contains("##[") {
        // Every character the terminal escaping or the defusing of a CI runner's workflow
        // commands would rewrite is written as an escape the shell reads back: the word is
        // printed as it is, and means the path.
        let mut out = String::from("$'");
        for c in s.chars() {
            match c {
                '\\' => out.push_str(r"\\"),
                '\'' => out.push_str(r"\'"),
                '[' => out.push_str(r"\x5b"),
                c if crate::text::needs_escape(c) => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advised_command_names_the_vault_given_and_no_default() {
        assert_eq!(
            command_for("cred list", Some(Path::new("/m/master.sv"))),
            "scopevault cred list --vault /m/master.sv"
        );
        assert_eq!(command_for("cred list", None), "scopevault cred list");
    }

    /// Twenty-eighth pass: the daemon's advice (`an admin must run `scopevault unlock``)
    /// named neither the vault nor the socket the reader's command was given; each advised
    /// command now names those given, shell-quoted, and no flag it already has.
    #[test]
    fn the_daemons_advice_names_the_vault_and_socket_given() {
        let text = "locked; an admin must run `scopevault unlock` or `scopevault reload --socket /s` (`scopevault cred set c --secret KEY`)";
        assert_eq!(
            in_daemon_text_for(
                text,
                Some(Path::new("/v/it's.sv")),
                Some(Path::new("/r/s.sock"))
            ),
            r"locked; an admin must run `scopevault unlock --vault '/v/it'\''s.sv' --socket /r/s.sock` or `scopevault reload --socket /s --vault '/v/it'\''s.sv'` (`scopevault cred set c --secret KEY --vault '/v/it'\''s.sv' --socket /r/s.sock`)"
        );
        assert_eq!(
            in_daemon_text_for(text, None, Some(Path::new("/r/s.sock"))),
            "locked; an admin must run `scopevault unlock --socket /r/s.sock` or `scopevault reload --socket /s` (`scopevault cred set c --secret KEY --socket /r/s.sock`)"
        );
        assert_eq!(in_daemon_text_for(text, None, None), text);
        // An unclosed command and text with none are left as they are.
        let odd = "see `scopevault status";
        assert_eq!(in_daemon_text_for(odd, None, Some(Path::new("/s"))), odd);
    }

    #[test]
    fn a_vault_path_is_shell_quoted_and_escaped_for_the_terminal() {
        assert_eq!(
            command_for("cred list", Some(Path::new("/a b/it's $x.sv"))),
            r"scopevault cred list --vault '/a b/it'\''s $x.sv'"
        );
        assert_eq!(shell_quoted("/v/\u{1b}[2J"), r"$'/v/\x1b\x5b2J'");
        assert_eq!(shell_quoted(""), "''");
    }
}
