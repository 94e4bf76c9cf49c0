// Every block the process frees is zeroed first, whoever allocated it: copies of a secret
// that never reach a zeroizing type (serde_json unescapes a string with `\n` or `\"`, every
// PEM key, in a scratch buffer it grows by reallocation and frees; a `String` or `format!`
// copy anywhere) are not left in freed memory after `lock` or a rotation (twenty-ninth pass;
// docs/security.md, "Limits", "Copies we cannot reach"). The wrapper's `realloc` is the
// trait's default: a new block, a copy, the old block zeroed and freed. No `unsafe` here.
#[global_allocator]
static ALLOC: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

fn main() -> std::process::ExitCode {
    // Before anything is written: SIGXFSZ ignored, the given signal mask recorded.
    scopevault::sys::start_process();
    scopevault::cli::main()
}
