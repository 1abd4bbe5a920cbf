fn main() -> std::process::ExitCode {
    orchestrator::cli_main()
}
