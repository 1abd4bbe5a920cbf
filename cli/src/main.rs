//! The `scriptmesh` binary; everything is in the library (`scriptmesh_cli::main`).

fn main() -> std::process::ExitCode {
    scriptmesh_cli::main()
}
