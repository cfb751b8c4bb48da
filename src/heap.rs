//! Room in the calling thread's heap before a burst of small allocations.
//!
//! Rebuilding a state allocates a map node (about 800 bytes) for every few values, all on one
//! thread. With glibc, every thread but the main one allocates from an arena of its own, whose
//! heap is reserved inaccessible and made usable by `mprotect` exactly as far as each request
//! needs: one system call per 4 KiB page. (The main arena grows with `brk` and `M_TOP_PAD`
//! 128 KiB ahead; other arenas only grow ahead if the application sets `M_TOP_PAD` itself.)
//! `strace -f -c` of one open of the bench's 1 M-event store counted 31,583 `mprotect` calls,
//! 30,523 of them of one page by the applying thread, and each takes the address-space lock
//! that the other replay thread's page faults wait for.
//!
//! [`make_room`] allocates blocks of [`BLOCK`] bytes and frees them at once. glibc serves
//! them from the calling thread's heap, growing it in a few large steps, and remembers how far
//! the heap was made usable: after the free, later growth up to there needs no system call.
//! The free memory is returned with `MADV_DONTNEED`; only the allocator's header on the first
//! page of each block was ever touched. With it, the same open made ~4,400 `mprotect` calls
//! and rebuilt 2.97 M events/s instead of 2.69 M (medians of 10 alternating fresh-process
//! opens). Since replay's window went from 256 Ki to 128 Ki sets, it makes ~7,500 (replay's
//! room per set undershoots what its flushes grow; see `ROOM_PER_SET`).
//!
//! Where it does nothing, or would cost:
//! - Another allocator gets an allocation and a free per block, which costs it little.
//! - glibc's main arena (the main thread, or `MALLOC_ARENA_MAX=1`) trims the room straight
//!   back; that arena grows with `brk` and a 128 KiB pad anyway.
//! - With transparent huge pages set to `always`, each header a block writes would fault in a
//!   whole 2 MiB page, and the room would be resident until freed. [`make_room`] does nothing
//!   on such a host ([`room_enabled`]).

/// A block: below glibc's smallest threshold for serving an allocation with its own `mmap`
/// (128 KiB), so that it comes from the heap.
const BLOCK: usize = 96 << 10;

/// At most this much room at once: a glibc heap spans 64 MiB, and blocks past the current
/// heap's end start a new heap, which their free unmaps again.
const ROOM_MAX: usize = 48 << 20;

/// Makes room for about `bytes` (at most [`ROOM_MAX`]) of allocations by this thread; nothing
/// for less than a block, or where [`room_enabled`] says no.
pub fn make_room(bytes: usize) {
    if bytes < BLOCK || !room_enabled() {
        return;
    }
    let blocks = bytes.min(ROOM_MAX) / BLOCK;
    let held: Vec<Vec<u8>> = (0..blocks).map(|_| Vec::with_capacity(BLOCK)).collect();
    // Keeps the compiler from removing the allocations as unused; freed in allocation order,
    // so that they merge into one free run.
    drop(std::hint::black_box(held));
}

/// Whether [`make_room`] makes room on this host: not where transparent huge pages are always
/// on (read once from `/sys/kernel/mm/transparent_hugepage/enabled`; a host without that file
/// has none).
pub fn room_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .map_or(true, |mode| !mode.contains("[always]"))
    })
}
