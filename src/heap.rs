//! Live heap bytes: the binary's allocator (mimalloc) wrapped by a counter
//! of the bytes handed out and not yet given back. The soak bench's
//! `heap-count` build installs it (`src/main.rs`, writing the count to
//! `CHATLOAD_HEAP_LOG`), and so does the memory test (`tests/memory.rs`).
//! A default build never counts. A leaf: imports nothing of the crate.

use std::alloc::{GlobalAlloc, Layout};
use std::io::Write;
use std::sync::atomic::{AtomicIsize, Ordering};

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// mimalloc, counting; install it with `#[global_allocator]`.
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

/// Bytes handed out by [`Counting`] and not yet given back (0 when it is
/// not the global allocator).
pub fn live_bytes() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a once-a-second writer of `<ms since start> <live bytes>` lines
/// when `CHATLOAD_HEAP_LOG` names a file (bench/soak_rss.py reads it).
pub fn start_log() {
    let Some(path) = std::env::var_os("CHATLOAD_HEAP_LOG") else {
        return;
    };
    let Ok(mut file) = std::fs::File::create(path) else {
        return;
    };
    let start = std::time::Instant::now();
    std::thread::spawn(move || loop {
        let ms = start.elapsed().as_millis();
        if writeln!(file, "{ms} {}", live_bytes()).is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    });
}
