//! The `chatload` binary: `cli::main` with mimalloc as the global allocator.

// mimalloc returns freed memory to the OS and fragments less than the system
// allocator under many threads, so a soak's RSS stays flat (bench/soak_rss.py).
#[cfg(not(feature = "heap-count"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "heap-count")]
#[global_allocator]
static GLOBAL: chatload::heap::Counting = chatload::heap::Counting;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "heap-count")]
    chatload::heap::start_log();
    chatload::cli::main()
}
