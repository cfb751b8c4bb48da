//! `heap::make_room` (the room replay makes in its thread's heap before building state) must
//! make room, cost no resident memory and leave nothing behind. Its own test binary, so that
//! no other test's allocations move the process's memory while this one reads it.

/// A field of /proc/self/status, in KiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn room_is_made_never_resident_and_given_back() {
    // A thread of its own: with glibc, a heap that is not the main one (the case the room is
    // for; the main arena trims it straight back).
    std::thread::spawn(|| {
        let (peak, data) = (status_kib("VmHWM:"), status_kib("VmData:"));
        ctxlog::heap::make_room(48 << 20);
        let data_made = status_kib("VmData:");
        if ctxlog::heap::room_enabled() {
            // The heap was made usable 48 MiB further, and stays so: that is the room.
            assert!(
                data_made >= data + 40 * 1024,
                "no room was made: data {data} KiB, then {data_made} KiB"
            );
        } else {
            assert!(data_made < data + 1024, "room made where it must not be");
        }
        for _ in 0..50 {
            ctxlog::heap::make_room(48 << 20);
        }
        // Touching the blocks would raise the peak by 48 MiB; keeping them would leave 2.4 GB
        // of data. A few pages of allocator headers may be touched.
        let (peak_after, data_after) = (status_kib("VmHWM:"), status_kib("VmData:"));
        assert!(
            peak_after < peak + 8 * 1024,
            "peak resident memory grew from {peak} KiB to {peak_after} KiB"
        );
        assert!(
            data_after < data + 128 * 1024,
            "data grew from {data} KiB to {data_after} KiB"
        );
        // The heap still serves ordinary allocations after it.
        let blocks: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 800]).collect();
        assert!(blocks
            .iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|&x| x == i as u8)));
    })
    .join()
    .expect("the thread ran");
}
