/// jemalloc rather than glibc's malloc: on 10,000 idle agents it cut the orchestrator's CPU
/// and its memory per parked poll (README, Performance).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    orchestrator::cli_main()
}
