//! Run one shell command line (`sh -c LINE`) on a real pseudo-terminal, which becomes its
//! controlling terminal (`/dev/tty`), answer its prompts, and return the exit code and
//! everything the terminal showed. Unlike tests/it/common/pty.rs, the command is a shell line, so
//! a pipe (`printf … | scopevault cred set …`) feeds stdin while prompts still reach the
//! terminal, as for a user at a shell. Answers go on the driver's stdin (never in argv).

use std::process::Command;

const DRIVER: &str = r#"
import os, pty, sys, time, select
line = sys.argv[1]
answers = [a for a in sys.stdin.read().split("\n") if a]
pid, fd = pty.fork()
if pid == 0:
    os.execv("/bin/sh", ["sh", "-c", line])
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
    if prompt.encode() not in out:
        out += ("\n[driver: no prompt %r appeared]\n" % prompt).encode()
    os.write(fd, answer.encode() + b"\n")
while True:
    r, _, _ = select.select([fd], [], [], 10)
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

/// Whether python3 with its `pty` module is here.
pub fn available() -> bool {
    Command::new("python3")
        .args(["-c", "import pty"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Turn `python3` (whose environment the caller has set; `sh` and the binary inherit it) into
/// the driver running `line`; write the `prompt=answer` lines to its stdin.
pub fn drive<'c>(python3: &'c mut Command, line: &str) -> &'c mut Command {
    python3.arg("-c").arg(DRIVER).arg(line)
}

/// `PATH` with the directory of the binary under test first, so `scopevault` in a shell line
/// is the binary under test.
pub fn path_with_binary() -> std::ffi::OsString {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_scopevault"));
    let mut paths = vec![bin.parent().unwrap().to_path_buf()];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(paths).unwrap()
}
