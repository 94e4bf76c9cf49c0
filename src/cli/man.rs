//! `scopevault man [--dir DIR]`: the top-level page on stdout, or one page per command
//! (`scopevault.1`, `scopevault-lint.1`, `scopevault-cred-set.1`, …) written into DIR.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
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
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    write_pages(cmd, "scopevault", dir, &mut written)?;
    println!(
        "wrote {} man pages to {} (read one with `man -l {}`)",
        written.len(),
        super::shown(dir),
        super::shown(&dir.join("scopevault-lint.1"))
    );
    Ok(ExitCode::SUCCESS)
}

/// Write `name.1` for `cmd`, then recurse into its subcommands as `name-sub.1`.
fn write_pages(
    mut cmd: clap::Command,
    name: &str,
    dir: &Path,
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
    let file = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    std::fs::write(&file, buf).with_context(|| format!("cannot write {}", file.display()))?;
    written.push(name.to_owned());
    for sub in subs {
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub, &sub_name, dir, written)?;
    }
    Ok(())
}
