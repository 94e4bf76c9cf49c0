//! `scopevault redact --task T PATH...`: scrub a task's secret values out of artefacts made
//! elsewhere (a runner that uploads later). The values are fetched from the daemon as this
//! runner, so the scrub is authorised and audited like any fetch.

use std::process::ExitCode;

use super::args::{GlobalArgs, RedactArgs};
use crate::redact::Scrubber;
use crate::secret::Patterns;

/// Run `scopevault redact`: exit 0 when every file was scrubbed, 1 when some could not be
/// (named on stderr), 5 when the daemon refused the fetch or did not answer it within
/// `--timeout`. The scrub's counts are then sent to the daemon's audit log (`scrub_report`);
/// if that fails, a warning says so and the exit code is still the scrub's.
pub(crate) fn run(g: &GlobalArgs, a: &RedactArgs) -> anyhow::Result<ExitCode> {
    let socket = super::client_cmds::socket_path(g);
    let fetched = super::client_cmds::fetch_within(
        &socket,
        &a.task,
        a.credential.as_deref(),
        &a.wait,
        "nothing was fetched and nothing scrubbed",
    )?;
    let patterns = std::sync::Arc::new(Patterns::new(&super::exec::targets(&fetched)));
    drop(fetched);
    let summary = Scrubber::new(patterns, a.artifacts_binary).scrub_paths(&a.paths);
    err!("{summary}");
    // The counts go to the audit log; a daemon gone since the fetch is a warning only.
    super::exec::report_scrub(&socket, &a.task, &summary);
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
