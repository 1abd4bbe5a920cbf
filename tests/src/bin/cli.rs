//! The real `scriptmesh` command-line client, built as a bin of this package so that the
//! end-to-end tests can run it (Cargo gives them its path as CARGO_BIN_EXE_sm-test-cli).

fn main() -> std::process::ExitCode {
    scriptmesh_cli::main()
}
