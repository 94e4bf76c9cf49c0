//! Commands that talk to the running daemon: status, lock, unlock, reload, get, totp, exec.
use std::process::ExitCode;

use super::args::{ExecArgs, GetArgs, GlobalArgs, StatusArgs, TotpArgs};

fn unavailable() -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet available: the daemon lands with the runtime-delivery issue")
}
pub(crate) fn status(_g: &GlobalArgs, _a: &StatusArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
pub(crate) fn lock(_g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
pub(crate) fn unlock(_g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
pub(crate) fn reload(_g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
pub(crate) fn get(_g: &GlobalArgs, _a: &GetArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
pub(crate) fn totp(_g: &GlobalArgs, _a: &TotpArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
pub(crate) fn exec(_g: &GlobalArgs, _a: &ExecArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
