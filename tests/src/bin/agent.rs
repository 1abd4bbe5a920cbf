//! The real agent entry point, built as a bin of this package so that the end-to-end
//! tests can start it (Cargo gives them its path as CARGO_BIN_EXE_sm-test-agent).

fn main() -> std::process::ExitCode {
    agent::cli_main()
}
