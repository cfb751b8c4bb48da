use ctxlog::storage::{CrashMode, MemStorage, Storage};
use ctxlog::wal::{Wal, WalConfig};
use std::ops::ControlFlow;
use std::sync::Arc;

fn read_all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    wal.reader()
        .scan(ctxlog::Offset(1), ctxlog::Offset(u64::MAX), |r| {
            out.push((r.offset.0, r.payload.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

#[test]
fn append_rotate_reopen_crash() {
    let mem = MemStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(mem.clone());
    let cfg = WalConfig {
        segment_bytes: 64 * 1024,
        record_bytes_max: 1000,
        ..WalConfig::default()
    };
    let wal = Wal::open(storage.clone(), "s".as_ref(), cfg.clone()).unwrap();
    for i in 0..1000u32 {
        let a = wal
            .append_blocking(format!("rec-{i}-{}", "x".repeat(100)).into_bytes())
            .unwrap();
        assert_eq!(a.offset.0, u64::from(i) + 1);
    }
    let all = read_all(&wal);
    assert_eq!(all.len(), 1000);
    assert!(storage.list("s/wal".as_ref()).unwrap().len() > 1, "rotated");
    // Crash with nothing unsynced lost.
    let img = mem.crash_image(CrashMode::DropUnsynced);
    drop(wal);
    let wal2 = Wal::open(Arc::new(img), "s".as_ref(), cfg.clone()).unwrap();
    assert_eq!(read_all(&wal2).len(), 1000);
    let a = wal2.append_blocking(b"after".to_vec()).unwrap();
    assert_eq!(a.offset.0, 1001);
    wal2.close();
    let wal3 = Wal::open(storage, "s".as_ref(), cfg).unwrap();
    let all = read_all(&wal3);
    assert_eq!(all.len(), 1000, "original store unaffected by the image");
}
