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

/// Note the vault path this process was given (`--vault` or `SCOPEVAULT_VAULT`), as given:
/// from now on [`command`] names it. Called once by the CLI; later calls change nothing.
pub fn note_vault_given(path: &Path) {
    let _ = VAULT_GIVEN.set(path.to_owned());
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

/// `s` as a POSIX shell reads it back as one word: as it is when it holds only characters no
/// shell treats specially, else in single quotes (a `'` in it written `'\''`); then escaped
/// for the terminal ([`crate::text::escape_for_log`]), so that a control character in a path
/// cannot drive the terminal or forge a line.
pub fn shell_quoted(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./,:@%+=".contains(c));
    let word = if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    };
    crate::text::escape_for_log(&word)
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

    #[test]
    fn a_vault_path_is_shell_quoted_and_escaped_for_the_terminal() {
        assert_eq!(
            command_for("cred list", Some(Path::new("/a b/it's $x.sv"))),
            r"scopevault cred list --vault '/a b/it'\''s $x.sv'"
        );
        assert_eq!(shell_quoted("/v/\u{1b}[2J"), r"'/v/\u{1b}[2J'");
        assert_eq!(shell_quoted(""), "''");
    }
}
