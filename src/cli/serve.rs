//! `scopevault serve`.
use std::process::ExitCode;

use super::args::{GlobalArgs, ServeArgs};

pub(crate) fn run(_g: &GlobalArgs, _a: &ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("serve: not yet available")
}
