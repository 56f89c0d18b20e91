//! Viewer tokens: JWTs signed with HMAC-SHA256 (`alg: HS256`), so a customer's backend can
//! mint them with any JWT library, and `shoal token` / `POST /v1/admin/tokens` mint them here.
//!
//! ```text
//! header  {"alg":"HS256","typ":"JWT","kid":"k1"}
//! claims  {"stream":"demo","exp":1764300000,"sub":"viewer-7","origins":["https://example.com"]}
//! ```
//!
//! - `stream` (required): the stream the token admits to.
//! - `exp` (required), `nbf`, `iat`: Unix seconds; `exp`/`nbf` are checked with a leeway.
//! - `sub` (optional): viewer id, passed on to the P2P policy and logs.
//! - `origins` (optional): page origins allowed to use the token; when present the request's
//!   `Origin` header must match one (`https://*.example.com` matches any subdomain).
//! - `kid` (header): which configured secret signed it. Without `kid` every configured secret
//!   is tried (fine for one key; rotation needs `kid`).
//!
//! Only `HS256` is accepted: the algorithm is fixed by the server, never chosen by the token
//! (no `none`, no public-key confusion). The signature is checked before the claims are read.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use shoal_proto::ids::valid_name;
use shoal_proto::ticket::{valid_kid, verify_with, HmacKeys};

/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Most entries in `origins`.
pub const MAX_ORIGINS: usize = 32;
/// Longest origin pattern and viewer id.
pub const MAX_ORIGIN_LEN: usize = 256;
pub const MAX_VIEWER_ID_LEN: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub stream: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Viewer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token malformed: {0}")]
    Malformed(&'static str),
    #[error("token algorithm must be HS256")]
    BadAlgorithm,
    #[error("token key id is not configured")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token is for another stream")]
    WrongStream,
    #[error("page origin not allowed by the token")]
    OriginNotAllowed,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

impl Claims {
    /// Bounds every field a token may carry; minting and verifying both apply it.
    pub fn check_shape(&self) -> Result<(), TokenError> {
        if !valid_name(&self.stream) {
            return Err(TokenError::Malformed("stream name"));
        }
        if self.sub.as_ref().is_some_and(|s| s.is_empty() || s.len() > MAX_VIEWER_ID_LEN) {
            return Err(TokenError::Malformed("viewer id length"));
        }
        if self.origins.len() > MAX_ORIGINS {
            return Err(TokenError::Malformed("too many origins"));
        }
        if !self.origins.iter().all(|o| valid_origin_pattern(o)) {
            return Err(TokenError::Malformed("origin pattern"));
        }
        Ok(())
    }
}

/// Sign `claims` with the ring's minting key.
pub fn mint(claims: &Claims, keys: &HmacKeys) -> Result<String, TokenError> {
    claims.check_shape()?;
    let header =
        Header { alg: "HS256".into(), typ: Some("JWT".into()), kid: Some(keys.mint_kid().to_owned()) };
    let h = B64URL.encode(serde_json::to_vec(&header).expect("header serializes"));
    let c = B64URL.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signed = format!("{h}.{c}");
    let (_, mac) = keys.sign_with_mint(&[signed.as_bytes()]);
    Ok(format!("{signed}.{}", B64URL.encode(mac)))
}

/// Check signature, shape and time window (`now_s`, Unix seconds, with `leeway_s` either side).
/// Stream and origin are checked separately ([`Claims::admits`]) so the caller can tell a
/// forged token (401) from a valid one used in the wrong place (403).
pub fn verify(token: &str, keys: &HmacKeys, now_s: u64, leeway_s: u64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(c64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    let header_raw = B64URL.decode(h64).map_err(|_| TokenError::Malformed("header base64"))?;
    let header: Header =
        serde_json::from_slice(&header_raw).map_err(|_| TokenError::Malformed("header json"))?;
    if header.alg != "HS256" {
        return Err(TokenError::BadAlgorithm);
    }
    let mac = B64URL.decode(s64).map_err(|_| TokenError::Malformed("signature base64"))?;
    let signed = &token.as_bytes()[..h64.len() + 1 + c64.len()];
    match header.kid.as_deref() {
        Some(kid) => {
            if !valid_kid(kid) {
                return Err(TokenError::UnknownKey);
            }
            match keys.verify(kid, &[signed], &mac) {
                None => return Err(TokenError::UnknownKey),
                Some(false) => return Err(TokenError::BadSignature),
                Some(true) => {}
            }
        }
        None => {
            if !keys.all().any(|(_, secret)| verify_with(secret, &[signed], &mac)) {
                return Err(TokenError::BadSignature);
            }
        }
    }
    let claims_raw = B64URL.decode(c64).map_err(|_| TokenError::Malformed("claims base64"))?;
    let claims: Claims =
        serde_json::from_slice(&claims_raw).map_err(|_| TokenError::Malformed("claims json"))?;
    claims.check_shape()?;
    if now_s > claims.exp.saturating_add(leeway_s) {
        return Err(TokenError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| now_s.saturating_add(leeway_s) < nbf) {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

impl Claims {
    /// Does this (verified) token admit `stream` from a page at `origin`? A token that lists
    /// origins needs an `Origin` header matching one of them; a token without origins admits
    /// any origin (and native clients, which send none).
    pub fn admits(&self, stream: &str, origin: Option<&str>) -> Result<(), TokenError> {
        if self.stream != stream {
            return Err(TokenError::WrongStream);
        }
        if self.origins.is_empty() {
            return Ok(());
        }
        match origin {
            Some(o) if self.origins.iter().any(|p| origin_matches(p, o)) => Ok(()),
            _ => Err(TokenError::OriginNotAllowed),
        }
    }
}

/// `scheme://host[:port]`, where host may start with `*.`; no path, no trailing slash.
pub fn valid_origin_pattern(p: &str) -> bool {
    if p.is_empty() || p.len() > MAX_ORIGIN_LEN {
        return false;
    }
    let Some((scheme, rest)) = p.split_once("://") else { return false };
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        && !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// Case-insensitive origin match; `*.example.com` matches `a.example.com` and
/// `a.b.example.com`, not `example.com` itself.
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let origin = origin.to_ascii_lowercase();
    let (Some((ps, ph)), Some((os, oh))) = (pattern.split_once("://"), origin.split_once("://")) else {
        return false;
    };
    if ps != os {
        return false;
    }
    match ph.strip_prefix("*.") {
        Some(suffix) => {
            oh.len() > suffix.len() + 1
                && oh.ends_with(suffix)
                && oh[..oh.len() - suffix.len()].ends_with('.')
        }
        None => ph == oh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn keys(entries: &[&str], mint: &str) -> HmacKeys {
        HmacKeys::parse(entries, mint).expect("keys")
    }

    fn claims() -> Claims {
        Claims {
            stream: "demo".into(),
            exp: NOW + 60,
            nbf: None,
            iat: Some(NOW),
            sub: Some("viewer-7".into()),
            origins: vec!["https://example.com".into(), "https://*.example.org".into()],
        }
    }

    #[test]
    fn valid_token() {
        let k = keys(&["k1:0123456789abcdef0123"], "");
        let t = mint(&claims(), &k).expect("mint");
        let c = verify(&t, &k, NOW, 0).expect("verify");
        assert_eq!(c, claims());
        assert_eq!(c.admits("demo", Some("https://example.com")), Ok(()));
        assert_eq!(c.admits("demo", Some("https://live.example.org")), Ok(()));
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let k = keys(&["k1:0123456789abcdef0123"], "");
        let t = mint(&claims(), &k).expect("mint");
        assert_eq!(verify(&t, &k, NOW + 61, 0), Err(TokenError::Expired));
        assert!(verify(&t, &k, NOW + 61, 30).is_ok(), "leeway");
        assert_eq!(verify(&t, &k, NOW + 91, 30), Err(TokenError::Expired));
        let early = Claims { nbf: Some(NOW + 100), ..claims() };
        let t = mint(&early, &k).expect("mint");
        assert_eq!(verify(&t, &k, NOW, 30), Err(TokenError::NotYetValid));
        assert!(verify(&t, &k, NOW + 80, 30).is_ok());
    }

    #[test]
    fn forged() {
        let k = keys(&["k1:0123456789abcdef0123"], "");
        let attacker = keys(&["k1:guessed-secret-abcdef"], "");
        let t = mint(&claims(), &attacker).expect("mint");
        assert_eq!(verify(&t, &k, NOW, 0), Err(TokenError::BadSignature));
        // Swap in other claims under a genuine signature.
        let genuine = mint(&claims(), &k).expect("mint");
        let other = mint(&Claims { stream: "other".into(), ..claims() }, &attacker).expect("mint");
        let g: Vec<&str> = genuine.split('.').collect();
        let o: Vec<&str> = other.split('.').collect();
        assert_eq!(verify(&format!("{}.{}.{}", g[0], o[1], g[2]), &k, NOW, 0), Err(TokenError::BadSignature));
        // alg=none and other algorithms are refused whatever the signature.
        let none = format!("{}.{}.", B64URL.encode(r#"{"alg":"none","kid":"k1"}"#), g[1]);
        assert_eq!(verify(&none, &k, NOW, 0), Err(TokenError::BadAlgorithm));
        let rs = format!("{}.{}.{}", B64URL.encode(r#"{"alg":"RS256","kid":"k1"}"#), g[1], g[2]);
        assert_eq!(verify(&rs, &k, NOW, 0), Err(TokenError::BadAlgorithm));
        for junk in ["", "a", "a.b", "a.b.c.d", "!!.!!.!!", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(verify(junk, &k, NOW, 0).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn wrong_stream_and_origin() {
        let k = keys(&["k1:0123456789abcdef0123"], "");
        let c = verify(&mint(&claims(), &k).expect("mint"), &k, NOW, 0).expect("verify");
        assert_eq!(c.admits("other", Some("https://example.com")), Err(TokenError::WrongStream));
        assert_eq!(c.admits("demo", Some("https://evil.com")), Err(TokenError::OriginNotAllowed));
        assert_eq!(c.admits("demo", Some("http://example.com")), Err(TokenError::OriginNotAllowed), "scheme");
        assert_eq!(c.admits("demo", Some("https://example.org")), Err(TokenError::OriginNotAllowed), "apex");
        assert_eq!(c.admits("demo", Some("https://evilexample.org")), Err(TokenError::OriginNotAllowed));
        assert_eq!(
            c.admits("demo", None),
            Err(TokenError::OriginNotAllowed),
            "origin-bound token needs Origin"
        );
        let open = Claims { origins: vec![], ..claims() };
        assert_eq!(open.admits("demo", None), Ok(()));
        assert_eq!(open.admits("demo", Some("https://anything.test")), Ok(()));
    }

    #[test]
    fn kid_rotation() {
        let old = keys(&["old:0123456789abcdef0123"], "");
        let overlap = keys(&["old:0123456789abcdef0123", "new:fedcba9876543210fedc"], "new");
        let new_only = keys(&["new:fedcba9876543210fedc"], "");
        let t_old = mint(&claims(), &old).expect("mint");
        let t_new = mint(&claims(), &overlap).expect("mint");
        assert!(verify(&t_old, &overlap, NOW, 0).is_ok(), "old tokens still valid during overlap");
        assert!(verify(&t_new, &overlap, NOW, 0).is_ok());
        assert_eq!(verify(&t_old, &new_only, NOW, 0), Err(TokenError::UnknownKey), "retired key");
        assert!(verify(&t_new, &new_only, NOW, 0).is_ok());
        assert_eq!(verify(&t_new, &old, NOW, 0), Err(TokenError::UnknownKey));
    }

    #[test]
    fn token_without_kid_from_a_jwt_library() {
        // What a customer's JWT library produces when told only alg=HS256 and a secret.
        let secret = "0123456789abcdef0123";
        let k = keys(&["a:another-secret-0000", &format!("b:{secret}")], "");
        let h = B64URL.encode(r#"{"typ":"JWT","alg":"HS256"}"#);
        let c = B64URL.encode(format!(r#"{{"stream":"demo","exp":{}}}"#, NOW + 10));
        let mac = shoal_proto::ticket::hmac_sha256(secret.as_bytes(), &[format!("{h}.{c}").as_bytes()]);
        let t = format!("{h}.{c}.{}", B64URL.encode(mac));
        let claims = verify(&t, &k, NOW, 0).expect("verifies with the second key");
        assert_eq!(claims.stream, "demo");
    }

    #[test]
    fn shape_bounds() {
        let k = keys(&["k1:0123456789abcdef0123"], "");
        assert!(mint(&Claims { stream: "../x".into(), ..claims() }, &k).is_err());
        assert!(mint(&Claims { origins: vec!["example.com".into()], ..claims() }, &k).is_err());
        assert!(mint(&Claims { origins: vec!["https://a.com/path".into()], ..claims() }, &k).is_err());
        assert!(
            mint(&Claims { origins: vec!["https://a.com".into(); MAX_ORIGINS + 1], ..claims() }, &k).is_err()
        );
        assert!(mint(&Claims { sub: Some("x".repeat(MAX_VIEWER_ID_LEN + 1)), ..claims() }, &k).is_err());
        assert!(valid_origin_pattern("http://localhost:8080"));
        assert!(valid_origin_pattern("http://[::1]:8080"));
        assert!(origin_matches("HTTPS://Example.com", "https://example.COM"));
    }
}
