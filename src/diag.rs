//! Diagnostics on stderr (the daemon's log lines, and warnings of library code the daemon
//! runs) that never panic and never hold their caller for good.
//!
//! `eprintln!` panics when stderr cannot be written (a closed terminal: EIO; a log reader
//! gone: EPIPE, since Rust's runtime ignores SIGPIPE; `2>/dev/full`: ENOSPC), and blocks while
//! stderr is a full pipe nobody reads. In the daemon that killed the thread that logged (the
//! worker of `reload` and `unlock`, the signal thread), and the daemon stayed up, silent,
//! reporting itself healthy (twenty-third pass, found by the twenty-third pass's attacker of
//! the documents' promises). Every daemon-side line goes through [`line`] (the [`diag!`]
//! macro): a write error is counted, never raised, and once the daemon started the writer
//! thread ([`start_writer`]) a caller waits at most [`WAIT`] for its line to be written (so the
//! log keeps its order with the answers in the common case), then goes on; while stderr stays
//! stuck later callers do not wait at all, and lines beyond [`QUEUE`] waiting are dropped
//! and counted ([`lost`]).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Lines that may wait for a stuck stderr; later ones are dropped (and counted).
pub const QUEUE: usize = 1024;

/// How long a caller waits for its line to reach stderr before it goes on without.
pub const WAIT: Duration = Duration::from_secs(1);

/// Write a line to stderr as `eprintln!` would, without ever panicking or blocking for good
/// (see the module docs).
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {
        $crate::diag::line(format_args!($($arg)*))
    };
}

struct Queue {
    lines: VecDeque<String>,
    /// Lines queued and lines done (written or failed), in total.
    queued: u64,
    done: u64,
    /// A caller's wait ran out: callers do not wait until the writer gets a line out again.
    stuck: bool,
    /// Lines dropped (queue full) or whose write failed.
    lost: u64,
}

struct Writer {
    queue: Mutex<Queue>,
    more: Condvar,
    written: Condvar,
}

static WRITER: Writer = Writer {
    queue: Mutex::new(Queue {
        lines: VecDeque::new(),
        queued: 0,
        done: 0,
        stuck: false,
        lost: 0,
    }),
    more: Condvar::new(),
    written: Condvar::new(),
};

static STARTED: AtomicBool = AtomicBool::new(false);

fn queue() -> MutexGuard<'static, Queue> {
    WRITER.queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// Write `text` to stderr; an error is returned, not raised.
fn write_out(text: &str) -> std::io::Result<()> {
    let mut err = std::io::stderr().lock();
    err.write_all(text.as_bytes())?;
    err.flush()
}

/// Start the thread that writes the lines to stderr (the daemon, at start; once per process).
/// Before it, and when it cannot be started, [`line`] writes on the caller's thread (still
/// without panicking).
pub fn start_writer() {
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("sv-log".into())
        .spawn(|| loop {
            let text = {
                let mut q = queue();
                loop {
                    if let Some(t) = q.lines.pop_front() {
                        break t;
                    }
                    q = WRITER.more.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let ok = write_out(&text).is_ok();
            let mut q = queue();
            q.done += 1;
            if !ok {
                q.lost += 1;
            }
            q.stuck = false;
            WRITER.written.notify_all();
        });
    if spawned.is_err() {
        STARTED.store(false, Ordering::SeqCst);
    }
}

/// Write one line (a newline is added) to stderr: see the module docs.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut text = args.to_string();
    text.push('\n');
    if !STARTED.load(Ordering::SeqCst) {
        if write_out(&text).is_err() {
            queue().lost += 1;
        }
        return;
    }
    let mut q = queue();
    if q.lines.len() >= QUEUE {
        q.lost += 1;
        return;
    }
    q.lines.push_back(text);
    q.queued += 1;
    let mine = q.queued;
    WRITER.more.notify_one();
    if q.stuck {
        return;
    }
    let (mut q, waited) = WRITER
        .written
        .wait_timeout_while(q, WAIT, |q| q.done < mine)
        .unwrap_or_else(|p| p.into_inner());
    if waited.timed_out() {
        q.stuck = true;
    }
}

/// Wait (at most `max`) until every queued line is out; the daemon calls it before it exits.
pub fn flush(max: Duration) {
    let q = queue();
    let upto = q.queued;
    let _ = WRITER
        .written
        .wait_timeout_while(q, max, |q| q.done < upto)
        .unwrap_or_else(|p| p.into_inner());
}

/// Lines lost since the start: dropped while stderr was stuck, or whose write failed.
pub fn lost() -> u64 {
    queue().lost
}
