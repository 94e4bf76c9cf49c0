//! `scopevault redact --task T PATH...`: scrub a task's secret values out of artefacts made
//! elsewhere (a runner that uploads later). The values are fetched from the daemon as this
//! runner, so the scrub is authorised and audited like any fetch.

use std::process::ExitCode;

use super::args::{GlobalArgs, RedactArgs};
use super::{Exit, EXIT_DAEMON};
use crate::agent::server::default_socket_path;
use crate::client::Client;
use crate::redact::Scrubber;
use crate::secret::Patterns;

/// Run `scopevault redact`: exit 0 when every file was scrubbed, 1 when some could not be
/// (named on stderr), 5 when the daemon refused the fetch. The scrub's counts are then sent
/// to the daemon's audit log (`scrub_report`); if that fails, a warning says so and the exit
/// code is still the scrub's.
pub(crate) fn run(g: &GlobalArgs, a: &RedactArgs) -> anyhow::Result<ExitCode> {
    super::exec::harden();
    let daemon = |e: crate::client::ClientError| {
        anyhow::Error::new(Exit {
            code: EXIT_DAEMON,
            message: e.to_string(),
        })
    };
    let socket = g.socket.clone().unwrap_or_else(default_socket_path);
    let fetched = Client::connect(&socket)
        .map_err(daemon)?
        .fetch(&a.task, a.credential.as_deref())
        .map_err(daemon)?;
    let patterns = std::sync::Arc::new(Patterns::new(&super::exec::targets(&fetched)));
    drop(fetched);
    let summary = Scrubber::new(patterns, a.artifacts_binary).scrub_paths(&a.paths);
    eprint!("{summary}");
    // The counts go to the audit log; a daemon gone since the fetch is a warning only.
    super::exec::report_scrub(&socket, &a.task, &summary);
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
