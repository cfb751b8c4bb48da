//! Tamper evidence from the shell: `--tamper-evident`, `digest`, `verify --digest`,
//! `audit export`, `audit check`.

mod cli_support;

use cli_support::Store;
use ctxlog_format::layout::body_start;
use ctxlog_format::{chain_next, encode_frame, FileHeader, FrameLayout, FrameReader};

const CHAIN: FrameLayout = FrameLayout { chain_hash: true };

/// Rewrites record `offset` of the first segment with `payload` changed by `edit`, recomputing
/// its CRC and every chain hash after it: a thorough forger.
fn forge(store: &Store, offset: u64, edit: impl Fn(&mut Vec<u8>)) {
    let path = store.first_segment();
    let bytes = std::fs::read(&path).unwrap();
    let header = FileHeader::decode(&bytes, u32::MAX).unwrap();
    let start = body_start(true);
    let seed: [u8; 32] = bytes[64..start].try_into().unwrap();
    let mut records: Vec<(u64, Vec<u8>)> =
        FrameReader::new(&bytes[start..], start as u64, 1, CHAIN)
            .map(|f| {
                let f = f.unwrap();
                (f.offset, f.payload.to_vec())
            })
            .collect();
    let target = records.iter_mut().find(|(o, _)| *o == offset).unwrap();
    edit(&mut target.1);
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&seed);
    let mut chain = seed;
    for (o, p) in &records {
        chain = chain_next(&chain, *o, p);
        encode_frame(&mut out, CHAIN, *o, Some(&chain), p).unwrap();
    }
    out.resize(bytes.len(), 0);
    std::fs::write(&path, out).unwrap();
}

#[test]
fn digest_verify_and_offline_proofs() {
    let s = Store::new();
    s.ok(&["--tamper-evident", "create", "ledger"]);
    s.ok(&["set", "ledger", "alice", "100"]);
    s.ok(&["set", "ledger", "bob", "250"]);
    let digest = s.ok(&["digest"]).trim().to_string();
    assert!(digest.starts_with("3:"), "{digest}");
    let json = s.json(&["digest", "--at", "2"]);
    assert_eq!(json["offset"], 2);

    // The history matches its digest.
    let out = s.ok(&["verify", "--digest", &digest]);
    assert!(out.contains("matches digest"), "{out}");

    // A proof file, checked offline with and without the trusted digest.
    let proof = s.tmp.path().join("proof.bin");
    let proof_arg = proof.to_str().unwrap();
    s.ok(&["audit", "export", "--at", "3", "--out", proof_arg]);
    let checked = cli_support::bin()
        .args(["--json", "audit", "check", proof_arg, "--digest", &digest])
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let checked: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(checked["digest"], digest);
    assert_eq!(checked["contexts"], serde_json::json!(["ledger"]));
    let wrong = format!("3:{}", "0".repeat(64));
    let refused = cli_support::bin()
        .args(["audit", "check", proof_arg, "--digest", &wrong])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3));

    // A forger changes bob's balance and recomputes every CRC and chain hash.
    forge(&s, 3, |p| {
        let at = p
            .windows(3)
            .rposition(|w| w == b"250".as_slice() || w == [0xcd, 0x00, 0xfa])
            .unwrap_or(p.len() - 1);
        p[at] ^= 1;
    });
    // The files are self-consistent again...
    s.ok(&["verify"]);
    // ...but not the history the digest was taken of.
    let err = s.fails(&["verify", "--digest", &digest], 3);
    assert!(err.contains("does not match the digest"), "{err}");
    // Bad digests are usage-level errors with a clear message.
    let err = s.fails(&["verify", "--digest", "nonsense"], 1);
    assert!(err.contains("OFFSET:HASH"), "{err}");
}

#[test]
fn digest_needs_a_tamper_evident_store() {
    let s = Store::new();
    s.ok(&["create", "plain"]);
    let err = s.fails(&["digest"], 1);
    assert!(err.contains("not tamper-evident"), "{err}");
}

#[test]
fn verify_reports_a_naive_rewrite_by_its_chain() {
    let s = Store::new();
    s.ok(&["--tamper-evident", "create", "ledger"]);
    s.ok(&["set", "ledger", "alice", "100"]);
    s.ok(&["set", "ledger", "bob", "250"]);
    // Change record 2's payload and make its CRC valid again, keeping the stored chain hashes.
    let path = s.first_segment();
    let bytes = std::fs::read(&path).unwrap();
    let start = body_start(true);
    let frames: Vec<(u64, Vec<u8>, [u8; 32])> =
        FrameReader::new(&bytes[start..], start as u64, 1, CHAIN)
            .map(|f| {
                let f = f.unwrap();
                (f.offset, f.payload.to_vec(), *f.chain_hash.unwrap())
            })
            .collect();
    let mut out = bytes[..start].to_vec();
    for (o, mut p, c) in frames {
        if o == 2 {
            let last = p.len() - 1;
            p[last] ^= 1;
        }
        encode_frame(&mut out, CHAIN, o, Some(&c), &p).unwrap();
    }
    out.resize(bytes.len(), 0);
    std::fs::write(&path, out).unwrap();
    let o = s.run(&["verify"]);
    assert_eq!(o.status.code(), Some(3));
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("chain"), "{text}");
}
