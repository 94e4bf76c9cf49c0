//! `scopevault man [--dir DIR]`: the top-level page on stdout, or one page per command
//! (`scopevault.1`, `scopevault-lint.1`, `scopevault-cred-set.1`, …) written into DIR.

use std::process::ExitCode;

use clap::CommandFactory;

use super::args::{Cli, ManArgs};

pub(crate) fn run(a: &ManArgs) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    let Some(dir) = &a.dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        super::write_stdout(&buf)?;
        return Ok(ExitCode::SUCCESS);
    };
    // Checked and opened as `publish --out` is: root often writes man pages, and a directory
    // another user may write or owns (or a link of theirs on the way) would let them swap a
    // page for a link to a file of root's between its creation and its rename.
    let out = crate::vault::SafeDir::open_output(dir)?;
    let mut written = Vec::new();
    write_pages(cmd, "scopevault", &out, &mut written)?;
    outln!(
        "wrote {} man pages to {} (read one with `man -l {}`)",
        written.len(),
        super::shown(dir),
        super::shown(&dir.join("scopevault-lint.1"))
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Write `name.1` for `cmd`, then recurse into its subcommands as `name-sub.1`.
fn write_pages(
    mut cmd: clap::Command,
    name: &str,
    dir: &crate::vault::SafeDir,
    written: &mut Vec<String>,
) -> anyhow::Result<()> {
    // The page's title is the dashed name (scopevault-cred-set), as `man` looks it up.
    // clap takes names as `&'static str` (without its `string` feature): a man run builds a
    // few dozen pages once, so leaking them is the simple way.
    let title: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let bin: &'static str = Box::leak(name.replace('-', " ").into_boxed_str());
    cmd = cmd.name(title).bin_name(bin);
    cmd.build();
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
        .cloned()
        .collect();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    // A new file (`O_EXCL | O_NOFOLLOW`, 0644 through its descriptor) renamed over the name:
    // whatever was there, a link included, is replaced, never written through.
    dir.replace_with_mode(
        format!("{name}.1").as_ref(),
        ".scopevault-man-",
        &buf,
        0o644,
    )?;
    written.push(name.to_owned());
    for sub in subs {
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub, &sub_name, dir, written)?;
    }
    Ok(())
}
