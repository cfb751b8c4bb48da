//! Tamper evidence: an attacker with write access rewrites history the way one would (a
//! payload changed with its CRC recomputed, a record dropped and the rest renumbered, two
//! segments swapped, and each of these with every later chain hash recomputed too). The chain
//! catches the naive rewrites on open or read; a digest kept elsewhere catches the thorough
//! ones.

use ctxlog::{create_manager_with_config, Config, ContextManager, Digest, Error, Offset};
use ctxlog_format::layout::{body_start, HEADER_LEN};
use ctxlog_format::{chain_next, encode_frame, FileHeader, FileKind, FrameLayout, FrameReader};
use std::path::{Path, PathBuf};

const CHAIN: FrameLayout = FrameLayout { chain_hash: true };

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.segment_bytes = 64 * 1024;
    c.record_bytes_max = 8 * 1024;
    c.tamper_evident = true;
    c.snapshot_every_commits = None;
    c.snapshot_every_bytes = None;
    c
}

async fn store_with_history(dir: &Path) -> (Digest, Vec<PathBuf>) {
    let m = create_manager_with_config(config(dir)).await.unwrap();
    m.create("ledger").await.unwrap();
    for i in 0..800u32 {
        m.set(
            "ledger",
            &format!("entry-{}", i % 50),
            &format!("amount {i} {}", "x".repeat(200)),
        )
        .await
        .unwrap();
    }
    let digest = m.digest().unwrap();
    assert_eq!(digest.offset, Offset(801));
    m.verify_against(digest).await.unwrap();
    m.close().await.unwrap();
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    assert!(segs.len() >= 3, "rotation happened: {segs:?}");
    (digest, segs)
}

/// One decoded record of a segment file.
struct Rec {
    offset: u64,
    payload: Vec<u8>,
}

fn read_segment(path: &Path) -> (FileHeader, [u8; 32], Vec<Rec>) {
    let bytes = std::fs::read(path).unwrap();
    let header = FileHeader::decode_kind(&bytes, FileKind::Segment, u32::MAX).unwrap();
    let seed: [u8; 32] = bytes[HEADER_LEN..body_start(true)].try_into().unwrap();
    let start = body_start(true);
    let recs = FrameReader::new(&bytes[start..], start as u64, header.first_offset, CHAIN)
        .map(|f| {
            let f = f.unwrap();
            Rec {
                offset: f.offset,
                payload: f.payload.to_vec(),
            }
        })
        .collect();
    (header, seed, recs)
}

/// Writes a segment back with valid CRCs; `rechain` recomputes every chain hash from `seed`
/// (a thorough attacker), otherwise the original chain hashes are kept where records are
/// unchanged (a naive one: only the changed record's CRC is made valid).
fn write_segment(
    path: &Path,
    header: &FileHeader,
    seed: [u8; 32],
    recs: &[Rec],
    old: Option<&[[u8; 32]]>,
) -> [u8; 32] {
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&seed);
    let mut chain = seed;
    for (i, r) in recs.iter().enumerate() {
        chain = match old {
            Some(hashes) => hashes[i],
            None => chain_next(&chain, r.offset, &r.payload),
        };
        encode_frame(&mut out, CHAIN, r.offset, Some(&chain), &r.payload).unwrap();
    }
    let len = std::fs::metadata(path).unwrap().len() as usize;
    out.resize(out.len().max(len), 0);
    std::fs::write(path, out).unwrap();
    chain
}

fn chains(path: &Path) -> Vec<[u8; 32]> {
    let bytes = std::fs::read(path).unwrap();
    let start = body_start(true);
    FrameReader::new(
        &bytes[start..],
        start as u64,
        FileHeader::decode(&bytes, u32::MAX).unwrap().first_offset,
        CHAIN,
    )
    .map(|f| *f.unwrap().chain_hash.unwrap())
    .collect()
}

/// Rewrites every segment from `from` on with recomputed chains (the thorough attacker).
fn rechain_from(segs: &[PathBuf], from: usize, mut seed: [u8; 32]) {
    for path in &segs[from..] {
        let (header, _, recs) = read_segment(path);
        seed = write_segment(path, &header, seed, &recs, None);
    }
}

async fn open(dir: &Path) -> ctxlog::Result<ContextManager> {
    create_manager_with_config(config(dir)).await
}

fn change_payload(recs: &mut [Rec], at: usize) {
    let p = &mut recs[at].payload;
    let i = p.iter().rposition(|&b| b == b'x').unwrap();
    p[i] = b'y';
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_payload_with_its_crc_recomputed_breaks_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, segs) = store_with_history(tmp.path()).await;
    let (header, seed, mut recs) = read_segment(&segs[0]);
    let old = chains(&segs[0]);
    change_payload(&mut recs, 5);
    write_segment(&segs[0], &header, seed, &recs, Some(&old));
    // Without a snapshot, open replays (and so checks) every record: it finds the break.
    let err = open(tmp.path()).await.unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("chain hash"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_payload_with_every_hash_recomputed_fails_the_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let (digest, segs) = store_with_history(tmp.path()).await;
    let (header, seed, mut recs) = read_segment(&segs[1]);
    change_payload(&mut recs, 3);
    let chain = write_segment(&segs[1], &header, seed, &recs, None);
    rechain_from(&segs, 2, chain);
    // Locally consistent: it opens and reads...
    let m = open(tmp.path()).await.unwrap();
    assert_eq!(m.last_offset(), Offset(801));
    // ...but it is not the history the digest was taken of.
    match m.verify_against(digest).await {
        Err(Error::Tampered { offset, .. }) => assert_eq!(offset, Offset(801)),
        other => panic!("expected Tampered, got {other:?}"),
    }
    // Digests at offsets before the rewrite still verify.
    let before = m.digest_at(Offset(2)).unwrap();
    m.verify_against(before).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_and_renumbered_record_fails_the_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let (digest, segs) = store_with_history(tmp.path()).await;
    // Drop one record of the last segment and renumber the rest, recomputing everything.
    let last = segs.len() - 1;
    let (header, seed, mut recs) = read_segment(&segs[last]);
    recs.remove(2);
    for (i, r) in recs.iter_mut().enumerate() {
        r.offset = header.first_offset + i as u64;
    }
    write_segment(&segs[last], &header, seed, &recs, None);
    let m = open(tmp.path()).await.unwrap();
    assert_eq!(m.last_offset(), Offset(800), "one record fewer");
    // The digest's offset is now past the end.
    assert!(matches!(
        m.verify_against(digest).await,
        Err(Error::OffsetOutOfRange { .. })
    ));
    // And at an offset both histories have, the hashes differ.
    let mine = m.digest_at(Offset(800)).unwrap();
    drop(m);
    let tmp2 = tempfile::tempdir().unwrap();
    let (_, _) = store_with_history(tmp2.path()).await;
    let honest = open(tmp2.path()).await.unwrap();
    assert!(
        matches!(
            honest.verify_against(mine).await,
            Err(Error::Tampered { .. })
        ),
        "different stores never share a chain"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_segments_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, segs) = store_with_history(tmp.path()).await;
    // Swap the contents of the first two segments (names stay).
    let (a, b) = (
        std::fs::read(&segs[0]).unwrap(),
        std::fs::read(&segs[1]).unwrap(),
    );
    std::fs::write(&segs[0], b).unwrap();
    std::fs::write(&segs[1], a).unwrap();
    let err = open(tmp.path()).await.unwrap_err();
    assert!(err.is_corruption(), "{err}");
    // Swap them back and patch the headers so that each names its new place: the chain seeds
    // no longer follow (the second segment's seed is not the first one's last hash).
    let (mut h0, s0, r0) = read_segment(&segs[1]);
    let (mut h1, s1, r1) = read_segment(&segs[0]);
    std::mem::swap(&mut h0.first_offset, &mut h1.first_offset);
    let renumber = |recs: Vec<Rec>, first: u64| -> Vec<Rec> {
        recs.into_iter()
            .enumerate()
            .map(|(i, r)| Rec {
                offset: first + i as u64,
                payload: r.payload,
            })
            .collect()
    };
    let r0 = renumber(r0, h0.first_offset);
    let r1 = renumber(r1, h1.first_offset);
    write_segment(&segs[0], &h1, s1, &r1, None);
    write_segment(&segs[1], &h0, s0, &r0, None);
    let err = open(tmp.path()).await.map(|_| ()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_record_the_chain_and_a_mismatch_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let m = create_manager_with_config(config(tmp.path()))
        .await
        .unwrap();
    m.create("a").await.unwrap();
    m.set("a", "k", &1).await.unwrap();
    let at = m.snapshot_now().await.unwrap();
    let (state, digest) = m.state_at_verified(at).await.unwrap();
    assert_eq!(state.chain(), Some(digest.hash));
    m.set("a", "k", &2).await.unwrap();
    m.close().await.unwrap();
    // A snapshot from a different tamper-evident store, renamed to this store's offset, with
    // this store's id: its chain does not match the log's, so open skips it.
    let snap = tmp
        .path()
        .join("snapshots")
        .join(format!("{:020}.snap", at.0));
    let mut bytes = std::fs::read(&snap).unwrap();
    let other = tempfile::tempdir().unwrap();
    let o = create_manager_with_config(config(other.path()))
        .await
        .unwrap();
    o.create("a").await.unwrap();
    o.set("a", "k", &1).await.unwrap();
    let o_at = o.snapshot_now().await.unwrap();
    o.close().await.unwrap();
    let foreign = std::fs::read(
        other
            .path()
            .join("snapshots")
            .join(format!("{:020}.snap", o_at.0)),
    )
    .unwrap();
    // Keep our header (store id, offset), take their body (state with their chain hash).
    let keep = bytes[..HEADER_LEN].to_vec();
    bytes = foreign;
    bytes[..HEADER_LEN].copy_from_slice(&keep);
    std::fs::write(&snap, &bytes).unwrap();
    let m = open(tmp.path()).await.unwrap();
    let report = m.open_report();
    assert_eq!(report.snapshot, None, "{report:?}");
    assert_eq!(report.skipped_snapshots.len(), 1, "{report:?}");
    assert!(
        report.skipped_snapshots[0].reason.contains("chain hash"),
        "{report:?}"
    );
    assert_eq!(m.get_as::<i32>("a", "k").unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_print_parse_and_need_a_tamper_evident_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (digest, _) = store_with_history(tmp.path()).await;
    let text = digest.to_string();
    assert_eq!(text.parse::<Digest>().unwrap(), digest);
    assert!("12:zz".parse::<Digest>().is_err());
    let plain = tempfile::tempdir().unwrap();
    let m = ctxlog::create_manager(plain.path()).await.unwrap();
    assert!(matches!(m.digest(), Err(Error::NotTamperEvident { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_proofs_check_offline_and_catch_a_doctored_record() {
    use ctxlog::audit::AuditProof;
    let tmp = tempfile::tempdir().unwrap();
    let (digest, _) = store_with_history(tmp.path()).await;
    let m = open(tmp.path()).await.unwrap();
    let at = Offset(500);
    let proof = m.audit_export(at).await.unwrap();
    let bytes = proof.encode();
    // The third party has only the file and the digest it trusts.
    let trusted = m.digest_at(at).unwrap();
    let checked = AuditProof::decode(&bytes)
        .unwrap()
        .check_against(&trusted)
        .unwrap();
    assert_eq!(checked.state, m.state_at(at).await.unwrap());
    assert_eq!(checked.digest, trusted);
    // The proof of the whole history matches the digest taken before the store was closed.
    let whole = m.audit_export(digest.offset).await.unwrap();
    whole.check_against(&digest).unwrap();
    // A doctored record: the chain no longer reaches the digest.
    let mut doctored = AuditProof::decode(&bytes).unwrap();
    let last = doctored.records.len() - 1;
    doctored.records[last].1[3] ^= 1;
    assert!(doctored.check().is_err());
    // Every hash recomputed into a new digest: self-consistent, but not the trusted one.
    let mut forged = AuditProof::decode(&bytes).unwrap();
    forged.records.pop();
    let reforged = {
        let mut chain = ctxlog_format::chain_genesis(&forged.store_id);
        for (o, p) in &forged.records {
            chain = ctxlog_format::chain_next(&chain, o.0, p);
        }
        Digest {
            offset: Offset(at.0 - 1),
            hash: chain,
        }
    };
    forged.digest = reforged;
    forged.check().unwrap();
    assert!(matches!(
        forged.check_against(&trusted),
        Err(Error::Tampered { .. })
    ));
    assert!(AuditProof::decode(b"not a proof").is_err());
}
