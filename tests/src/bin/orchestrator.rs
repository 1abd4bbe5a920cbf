//! The real orchestrator entry point, built as a bin of this package so that the
//! end-to-end tests can start it (Cargo gives them its path as CARGO_BIN_EXE_sm-test-orchestrator).

fn main() -> std::process::ExitCode {
    orchestrator::cli_main()
}
