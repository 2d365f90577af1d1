//! The `chatload` binary: `cli::main` with mimalloc as the global allocator.

// mimalloc returns freed memory to the OS and fragments less than the system
// allocator under many threads, so a soak's RSS stays flat (bench/soak_rss.py).
#[cfg(not(feature = "heap-count"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "heap-count")]
#[global_allocator]
static GLOBAL: heap_count::Counting = heap_count::Counting;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "heap-count")]
    heap_count::start_log();
    chatload::cli::main()
}

/// Live heap bytes for the soak bench (`--features heap-count`, never in a
/// default build): mimalloc wrapped by a counter of the bytes handed out and
/// not yet given back, written with `CHATLOAD_HEAP_LOG=FILE` as one line
/// `<ms since start> <live bytes>` a second (bench/soak_rss.py reads it).
#[cfg(feature = "heap-count")]
mod heap_count {
    use std::alloc::{GlobalAlloc, Layout};
    use std::io::Write;
    use std::sync::atomic::{AtomicIsize, Ordering};

    static LIVE: AtomicIsize = AtomicIsize::new(0);

    pub struct Counting;

    // SAFETY (all four): forwarded unchanged to mimalloc; only the count is ours.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                let grown = new_size as isize - layout.size() as isize;
                LIVE.fetch_add(grown, Ordering::Relaxed);
            }
            p
        }
    }

    /// Starts the once-a-second writer when `CHATLOAD_HEAP_LOG` names a file.
    pub fn start_log() {
        let Some(path) = std::env::var_os("CHATLOAD_HEAP_LOG") else {
            return;
        };
        let Ok(mut file) = std::fs::File::create(path) else {
            return;
        };
        let start = std::time::Instant::now();
        std::thread::spawn(move || loop {
            let live = LIVE.load(Ordering::Relaxed);
            let ms = start.elapsed().as_millis();
            if writeln!(file, "{ms} {live}").is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        });
    }
}
