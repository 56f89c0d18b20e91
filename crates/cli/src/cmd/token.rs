//! `shoal token`: mint a viewer token (HS256 JWT) with the configured `auth.keys`.
//!
//! Keys come from `--key`, or from the same sources as `shoal serve` (`--config`,
//! `SHOAL_AUTH_KEYS`, `SHOAL_AUTH_MINT_KID`), so the token verifies on a server started with
//! the same configuration. The token goes to stdout alone, for scripts.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use shoal_api::token::{self, Claims};
use shoal_proto::api::MintTokenResponse;
use shoal_proto::ticket::HmacKeys;

use super::serve::{load, Sources};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Stream the token admits to.
    #[arg(long)]
    pub stream: String,
    /// Lifetime: seconds, or with a unit (90s, 15m, 2h, 7d).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Viewer id (the `sub` claim).
    #[arg(long)]
    pub viewer: Option<String>,
    /// Page origin allowed to use the token (repeatable; `https://*.example.com` allowed).
    #[arg(long = "origin")]
    pub origins: Vec<String>,
    /// Signing key `kid:secret` (repeatable; default: auth.keys from config and environment).
    #[arg(long = "key")]
    pub keys: Vec<String>,
    /// Key id to sign with (default: auth.mint_kid, else the first key).
    #[arg(long)]
    pub kid: Option<String>,
    /// `shoal serve` configuration file to read auth.keys from.
    #[arg(long, short = 'c', env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print `{"token","kid","expires_at"}` as JSON instead of the bare token.
    #[arg(long)]
    pub json: bool,
}

/// `90`, `90s`, `15m`, `2h`, `7d` → seconds.
pub fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    let n: u64 = num.parse().with_context(|| format!("--ttl {s:?}: expected e.g. 3600, 90s, 15m, 2h, 7d"))?;
    let secs = n.checked_mul(mult).context("--ttl too large")?;
    if secs == 0 {
        bail!("--ttl must be positive");
    }
    Ok(secs)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (entries, mint_kid) = if args.keys.is_empty() {
        let cfg =
            load(&Sources { file: args.config.as_deref(), env: std::env::vars().collect(), set: vec![] })?;
        (cfg.auth.keys, cfg.auth.mint_kid)
    } else {
        (args.keys.clone(), String::new())
    };
    if entries.is_empty() {
        bail!("no signing key: pass --key kid:secret, set SHOAL_AUTH_KEYS, or give --config with auth.keys");
    }
    let kid = args.kid.clone().unwrap_or(mint_kid);
    let keys = HmacKeys::parse(&entries, &kid).context("signing keys")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("clock before 1970")?.as_secs();
    let claims = Claims {
        stream: args.stream.clone(),
        exp: now + parse_ttl(&args.ttl)?,
        nbf: None,
        iat: Some(now),
        sub: args.viewer.clone(),
        origins: args.origins.clone(),
    };
    let t = token::mint(&claims, &keys).context("minting")?;
    if args.json {
        let out = MintTokenResponse { token: t, kid: keys.mint_kid().to_owned(), expires_at: claims.exp };
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{t}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("3600").expect("plain"), 3600);
        assert_eq!(parse_ttl("90s").expect("s"), 90);
        assert_eq!(parse_ttl("15m").expect("m"), 900);
        assert_eq!(parse_ttl("2h").expect("h"), 7200);
        assert_eq!(parse_ttl("7d").expect("d"), 604_800);
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("99999999999999999999d").is_err());
    }
}
