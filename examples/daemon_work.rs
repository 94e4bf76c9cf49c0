//! The daemon's per-request work as a fixed amount of work, for counting instructions (the
//! criterion bench `benches/daemon.rs` measures time, which a shared VM makes noisy): `N`
//! batches of 64 `fetch`es, each parsed, decided, audited (sync off) and answered, as one turn
//! of the event loop does. Instructions per request are the difference between two runs:
//!
//! ```text
//! cargo build --release --example daemon_work
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/daemon_work 10
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/daemon_work 60
//! # (Ir of 60 - Ir of 10) / (50 × 64)
//! ```
//!
//! Under valgrind SHA-256 runs its portable code, not the CPU's SHA extensions, so the chain's
//! and the HMACs' share is larger than on the machine (docs/security.md, "Daemon throughput").

use scopevault::protocol::Request;

// The binary's allocator (src/main.rs), as in benches/daemon.rs: every block zeroed before it
// is freed (twenty-ninth pass).
#[global_allocator]
static ALLOC: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

#[path = "../benches/support/daemon_vault.rs"]
mod daemon_vault;
use daemon_vault::{handler, runner, FETCH};

fn main() {
    let batches: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 100,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: daemon_work [BATCHES]");
            std::process::exit(2);
        }
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::env::set_var("XDG_STATE_HOME", dir.path().join("state"));
    let h = handler(dir.path());
    let peer = runner();
    let mut bytes = 0usize;
    for _ in 0..batches {
        let batch = (0..64)
            .map(|_| h.prepare_followed(&peer, Request::parse(FETCH).expect("a valid line")))
            .collect();
        bytes += h
            .commit(batch, false)
            .iter()
            .map(|a| a.len())
            .sum::<usize>();
    }
    println!("{} requests, {bytes} bytes of answers", batches * 64);
}
