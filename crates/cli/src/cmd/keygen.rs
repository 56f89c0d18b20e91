//! `shoal keygen`: the origin's Ed25519 key pair.

use std::path::PathBuf;

use anyhow::Context;
use shoal_proto::manifest::{key_id, key_to_b64};
use shoal_proto::SigningKey;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write `origin.key` (secret, mode 0600) and `origin.pub` into. Without it,
    /// both are printed.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    getrandom_fill(&mut seed)?;
    let sk = SigningKey::from_bytes(&seed);
    let pk = sk.verifying_key();
    let secret = key_to_b64(&sk.to_bytes());
    let public = key_to_b64(pk.as_bytes());
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let key_path = dir.join("origin.key");
            write_private(&key_path, &secret)?;
            std::fs::write(dir.join("origin.pub"), format!("{public}\n"))?;
            println!("secret key: {}", key_path.display());
            println!("public key: {} (key id {})", dir.join("origin.pub").display(), key_id(&pk));
        }
        None => {
            println!("secret: {secret}");
            println!("public: {public}");
            println!("key_id: {}", key_id(&pk));
        }
    }
    Ok(())
}

fn write_private(path: &std::path::Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{content}")?;
    Ok(())
}

fn getrandom_fill(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf)).context("reading /dev/urandom")
}
