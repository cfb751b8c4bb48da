//! Tamper evidence from the shell: `digest`, `verify --digest`, `audit export`, `audit check`.
//!
//! A store is tamper-evident if it was created with `--tamper-evident` (every record then
//! carries a BLAKE3 chain hash). `digest` prints `OFFSET:HASH`; keep it somewhere the store's
//! owner cannot rewrite. `verify --digest` proves the local history up to OFFSET is the one
//! that produced HASH. `audit export` writes a proof file that `audit check` re-checks offline,
//! without the store.

use super::args::Cli;
use super::output::{CliError, CliResult, Out};
use super::{close, open};
use ctxlog::audit::AuditProof;
use ctxlog::{Digest, Offset};
use serde_json::json;
use std::path::Path;

fn parse_digest(text: &str) -> CliResult<Digest> {
    text.parse::<Digest>()
        .map_err(|e| CliError::new(e.to_string()))
}

/// `digest [--at OFFSET]`.
pub async fn digest(cli: &Cli, out: Out, at: Option<u64>) -> CliResult {
    let m = open(cli, out, false).await?;
    let digest = match at {
        Some(at) => m.digest_at(Offset(at)),
        None => m.digest(),
    };
    close(m).await?;
    let digest = digest?;
    out.emit(
        &json!({"offset": digest.offset.0, "digest": digest.to_string()}),
        || digest.to_string(),
    );
    Ok(())
}

/// `verify --digest OFFSET:HASH` (after the file checks of `verify`).
pub async fn verify_digest(cli: &Cli, out: Out, text: &str) -> CliResult {
    let digest = parse_digest(text)?;
    let m = open(cli, out, false).await?;
    let result = m.verify_against(digest).await;
    close(m).await?;
    match result {
        Ok(()) => {
            out.emit(
                &json!({"digest": digest.to_string(), "matches": true}),
                || {
                    format!(
                        "history up to offset {} matches digest {digest}",
                        digest.offset
                    )
                },
            );
            Ok(())
        }
        Err(e) if e.is_corruption() => Err(CliError::corrupt(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// `audit export --at OFFSET --out FILE`.
pub async fn export(cli: &Cli, out: Out, at: Option<u64>, file: &Path) -> CliResult {
    let m = open(cli, out, false).await?;
    let at = at.map_or_else(|| m.last_offset(), Offset);
    let proof = m.audit_export(at).await;
    close(m).await?;
    let proof = proof?;
    std::fs::write(file, proof.encode())
        .map_err(|e| CliError::new(format!("cannot write {}: {e}", file.display())))?;
    let json = json!({
        "file": file.display().to_string(),
        "digest": proof.digest.to_string(),
        "records": proof.records.len(),
        "from_snapshot": !proof.base.is_empty(),
    });
    out.emit(&json, || {
        format!(
            "wrote {} ({} records{}) proving digest {}",
            file.display(),
            proof.records.len(),
            if proof.base.is_empty() {
                ""
            } else {
                " after a snapshot"
            },
            proof.digest
        )
    });
    Ok(())
}

/// `audit check FILE [--digest OFFSET:HASH]`: needs no store.
pub fn check(out: Out, file: &Path, trusted: Option<&str>) -> CliResult {
    let bytes = std::fs::read(file)
        .map_err(|e| CliError::new(format!("cannot read {}: {e}", file.display())))?;
    let proof = AuditProof::decode(&bytes)?;
    let checked = match trusted {
        Some(text) => proof.check_against(&parse_digest(text)?),
        None => proof.check(),
    };
    let checked = checked.map_err(|e| CliError::corrupt(format!("{}: {e}", file.display())))?;
    let contexts: Vec<&str> = checked.state.contexts().map(|(n, _)| n).collect();
    let json = json!({
        "file": file.display().to_string(),
        "digest": checked.digest.to_string(),
        "first_offset": checked.first.0,
        "trusted_digest": trusted.is_some(),
        "contexts": contexts,
    });
    out.emit(&json, || {
        let mut s = format!(
            "{}: {} records from offset {} produce digest {}",
            file.display(),
            proof.records.len(),
            checked.first,
            checked.digest
        );
        s.push_str(if trusted.is_some() {
            " — matches the digest given"
        } else {
            " — consistent; pass --digest with a digest you trust to prove it authentic"
        });
        s.push_str(&format!(
            "\nstate at {}: {} contexts",
            checked.digest.offset,
            contexts.len()
        ));
        s
    });
    Ok(())
}
