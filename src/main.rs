fn main() -> std::process::ExitCode {
    // Before anything is written: SIGXFSZ ignored, the given signal mask recorded.
    scopevault::sys::start_process();
    scopevault::cli::main()
}
