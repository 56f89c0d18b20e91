//! The origin's Ed25519 signing key: read from a file `shoal keygen` wrote, or ephemeral.

use std::path::Path;

use anyhow::Context;
use shoal_proto::manifest::signing_key_from_b64;
use shoal_proto::SigningKey;

/// Read a secret key file: base64 of the 32-byte seed (surrounding whitespace ignored).
pub fn load(path: &Path) -> anyhow::Result<SigningKey> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading key file {}", path.display()))?;
    if meta.len() > 4096 {
        anyhow::bail!("key file {} is too large to be a key", path.display());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))?;
    signing_key_from_b64(&text).map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))
}

/// A fresh random key (from the OS random source).
pub fn ephemeral() -> anyhow::Result<SigningKey> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("reading /dev/urandom")?;
    Ok(SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::manifest::key_to_b64;

    #[test]
    fn load_roundtrip_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = ephemeral().expect("key");
        let p = dir.path().join("origin.key");
        std::fs::write(&p, format!("{}\n", key_to_b64(&k.to_bytes()))).expect("write");
        assert_eq!(load(&p).expect("loads").to_bytes(), k.to_bytes());
        std::fs::write(&p, "not a key").expect("write");
        assert!(load(&p).is_err());
        assert!(load(&dir.path().join("missing")).is_err());
        assert_ne!(ephemeral().expect("a").to_bytes(), ephemeral().expect("b").to_bytes());
    }
}
