//! Room in the calling thread's heap before a burst of small allocations.
//!
//! Rebuilding a state allocates a map node (about 800 bytes) for every few values, all on one
//! thread. With glibc, every thread but the main one allocates from an arena of its own, whose
//! heap is reserved inaccessible and made usable by `mprotect` exactly as far as each request
//! needs: one system call per 4 KiB page. (The main arena grows with `brk` and `M_TOP_PAD`
//! 128 KiB ahead; other arenas only grow ahead if the application sets `M_TOP_PAD` itself.)
//! `strace -f -c` of one open of the bench's 1 M-event store counted 31,760 `mprotect` calls,
//! 30,523 of them of one page by the applying thread, and each takes the address-space lock
//! that the other replay thread's page faults wait for.
//!
//! [`make_room`] allocates blocks of [`BLOCK`] bytes and frees them at once. glibc serves
//! them from the calling thread's heap, growing it in a few large steps, and remembers how far
//! the heap was made usable: after the free, later growth up to there needs no system call
//! (the free memory itself is returned with `MADV_DONTNEED`, so resident memory does not
//! change). With it, the same open made ~2,500 `mprotect` calls and rebuilt 3.03 M events/s
//! instead of 2.74 M (medians of 8 alternating fresh-process opens). Another allocator gets
//! an allocation and a free per block, which costs it little; an allocation is never touched
//! beyond the allocator's own header.

/// A block: below glibc's smallest threshold for serving an allocation with its own `mmap`
/// (128 KiB), so that it comes from the heap.
const BLOCK: usize = 96 << 10;

/// At most this much room at once: a glibc heap spans 64 MiB, and blocks past the current
/// heap's end start a new heap, which their free unmaps again.
const ROOM_MAX: usize = 48 << 20;

/// Makes room for about `bytes` (at most [`ROOM_MAX`]) of allocations by this thread; nothing
/// for less than a block.
pub fn make_room(bytes: usize) {
    let blocks = bytes.min(ROOM_MAX) / BLOCK;
    let held: Vec<Vec<u8>> = (0..blocks).map(|_| Vec::with_capacity(BLOCK)).collect();
    // Keeps the compiler from removing the allocations as unused; freed in allocation order,
    // so that they merge into one free run.
    drop(std::hint::black_box(held));
}
