//! `scopevault demo`.
use std::process::ExitCode;

use super::args::GlobalArgs;

pub(crate) fn run(_g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    println!(
        "scopevault demo: not yet available (the daemon lands with the runtime-delivery issue)"
    );
    Ok(ExitCode::SUCCESS)
}
