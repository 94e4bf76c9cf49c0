//! `scopevault audit`.
use std::process::ExitCode;

use super::args::{AuditCommand, GlobalArgs};

pub(crate) fn run(_g: &GlobalArgs, _a: &AuditCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("audit: not yet available")
}
