//! The `chatload` binary: `cli::main` with mimalloc as the global allocator.

// mimalloc returns freed memory to the OS and fragments less than the system
// allocator under many threads, so a soak's RSS stays flat (bench/soak_rss.py).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    chatload::cli::main()
}
