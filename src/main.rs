fn main() -> std::process::ExitCode {
    scopevault::cli::main()
}
