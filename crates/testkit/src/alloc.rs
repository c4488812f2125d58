//! A counting global allocator, for tests that prove a path allocates nothing.
//!
//! The one place in ebb with `unsafe` code: a `GlobalAlloc` implementation cannot be written
//! without it. It forwards every call to the system allocator unchanged and counts
//! allocations per thread. A test installs it with
//! `#[global_allocator] static GLOBAL: Counting = Counting;` and reads [`allocations`] on the
//! thread it measures.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting every allocation (and reallocation) on the thread making it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

thread_local! {
    /// Allocations made by this thread. `const`-initialised and without a destructor, so
    /// reading it never allocates (no lazy registration) and it is usable from the allocator.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Allocations made so far by the calling thread (0 unless [`Counting`] is the global
/// allocator).
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn count_one() {
    // `try_with`: the slot may be gone while a thread exits.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the count
// is a thread-local cell that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` was allocated by this allocator, that is by `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}
