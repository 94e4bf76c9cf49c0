//! The integration tests: one test binary (as ripgrep does), one module per area, the shared
//! helpers in `common`. One binary links the crate and its dependencies once, where one binary
//! per file linked them 49 times: on this project's 2-core machine (2026-11-30, load ~2.5)
//! `cargo test --no-run` after `touch src/lib.rs` went from 27.8 s to 11.6 s, and the
//! integration-test executables from 718 MB to 57 MB.
//!
//! Run one area or one test with a filter: `cargo test --test it daemon::`,
//! `cargo test --test it vault::cli::`, `cargo test --test it -- --exact NAME`.
//!
//! The tests share one process now. None may change process-wide state that another test
//! could see: environment variables go to the child `Command`s (the one in-process use,
//! `SCOPEVAULT_STATE_DIR` for `Vault::open`, goes through `common::with_state_dir`, which
//! serialises it), and irreversible process changes (`sys::harden_process`) run in a child
//! copy of this binary (`audit::harden`). A test that runs this binary again as a child names
//! itself with `common::this_test`, the full path libtest knows it by.

// tests/it/fuzz/replay.rs includes the fuzz harnesses, whose `use libfuzzer_sys::fuzz_target;`
// must find this crate under that name: an `extern crate` in the extern prelude has to be at
// the crate root.
extern crate self as libfuzzer_sys;

mod common;

mod audit;
mod cli;
mod daemon;
mod durability_order;
mod fleet;
mod fuzz;
mod key_slots;
mod leak_audit;
mod lint;
mod open_regular;
mod openbao_sync;
mod prompt_echo_order;
mod readme;
mod redact;
mod security_citations;
mod storage_faults;
mod totp_vectors;
mod vault;
