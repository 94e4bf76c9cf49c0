//! A python3 driver that runs the binary on a real pseudo-terminal (python3's standard `pty`
//! module), answers its prompts, and prints everything the terminal showed. Shared by
//! tests/it/vault/prompt.rs and the leak audit (tests/it/leak_audit.rs).

use std::ffi::OsStr;
use std::process::Command;

/// The driver script: `python3 -c DRIVER <binary> "<args, space-separated>"`, with the
/// `prompt=answer` pairs on stdin, one a line (never in argv, where `ps` would show them).
pub const DRIVER: &str = r#"
import os, pty, sys, time, select
binary = sys.argv[1]
args = sys.argv[2].split()
# prompt=answer pairs on stdin, one a line (never in argv)
answers = [a for a in sys.stdin.read().split("\n") if a]
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary] + args)
out = b""
def read_until(marker, timeout=20):
    global out
    end = time.time() + timeout
    while marker not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            out += chunk
for a in answers:
    prompt, answer = a.split("=", 1)
    read_until(prompt.encode())
    os.write(fd, answer.encode() + b"\n")
while True:
    r, _, _ = select.select([fd], [], [], 5)
    if not r:
        break
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#;

/// Whether python3 with its `pty` module is here (a test without it reports a skip,
/// tests/it/common/skip.rs).
pub fn available() -> bool {
    Command::new("python3")
        .args(["-c", "import pty"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Turn `python3` (a command whose environment the caller has set) into the driver running
/// `binary` with `args` (space-separated); the answers go on its stdin.
pub fn drive<'c>(
    python3: &'c mut Command,
    binary: impl AsRef<OsStr>,
    args: &str,
) -> &'c mut Command {
    python3.arg("-c").arg(DRIVER).arg(binary).arg(args)
}
