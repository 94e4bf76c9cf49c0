//! `scopevault lint`.
use std::process::ExitCode;

use super::args::{GlobalArgs, LintArgs};

pub(crate) fn run(_g: &GlobalArgs, _a: &LintArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("lint: not yet available")
}
