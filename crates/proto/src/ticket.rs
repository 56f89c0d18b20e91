//! Tracker tickets: the API's proof to the tracker that a peer joined.
//!
//! `POST /v1/join` returns a ticket binding the peer id, stream, session id and an expiry. The
//! client presents it when it connects to a tracker; the tracker checks it with the shared
//! secret and no call back to the API, so API and tracker nodes scale independently.
//!
//! Text form (URL- and header-safe, ~130 bytes):
//!
//! ```text
//! t1.<kid>.<base64url(payload)>.<base64url(HMAC-SHA256(secret, DOMAIN || "t1.<kid>.<payload b64>"))>
//! payload = expires_ms u64 BE | len u8 + stream | len u8 + peer_id | len u8 + session_id
//! ```
//!
//! Several secrets may be configured at once, each under a key id (`kid`): tickets are minted
//! with one of them and verified with whichever their `kid` names, so a secret rotates by
//! adding the new key everywhere, then minting with it, then removing the old one.
//!
//! The same [`HmacKeys`] type holds the API's viewer-token keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::valid_name;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "t1";
const DOMAIN: &[u8] = b"SHOAL-TICKET-1\0";
/// Longest ticket text accepted (three 64-byte names, a kid and a MAC fit well below).
pub const MAX_TICKET_LEN: usize = 512;
/// Longest key id.
pub const MAX_KID_LEN: usize = 32;
/// Shortest secret accepted: HMAC-SHA256 with a guessable secret protects nothing.
pub const MIN_SECRET_LEN: usize = 16;
/// Most keys one ring holds.
pub const MAX_KEYS: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    #[error("malformed ticket: {0}")]
    Malformed(&'static str),
    #[error("ticket key id {0:?} is not configured")]
    UnknownKey(String),
    #[error("ticket signature does not verify")]
    BadSignature,
    #[error("ticket expired")]
    Expired,
    #[error("ticket was issued for another {0}")]
    Mismatch(&'static str),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key must be written `kid:secret`")]
    NoColon,
    #[error("key id must be 1..={MAX_KID_LEN} characters of [A-Za-z0-9_-]")]
    BadKid,
    #[error("secret of key {0:?} is shorter than {MIN_SECRET_LEN} bytes")]
    ShortSecret(String),
    #[error("key id {0:?} appears twice")]
    DuplicateKid(String),
    #[error("no keys configured")]
    Empty,
    #[error("more than {MAX_KEYS} keys")]
    TooMany,
    #[error("minting key id {0:?} is not among the configured keys")]
    UnknownMintKid(String),
}

/// Key ids travel inside tokens and tickets; keep them boring.
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A ring of HMAC-SHA256 secrets, each named by a key id; one of them mints.
#[derive(Clone)]
pub struct HmacKeys {
    keys: Vec<(String, Vec<u8>)>,
    mint: usize,
}

impl std::fmt::Debug for HmacKeys {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacKeys").field("kids", &self.kids()).field("mint", &self.mint_kid()).finish()
    }
}

impl HmacKeys {
    /// Parse `kid:secret` entries (the secret is the UTF-8 bytes after the first colon).
    /// `mint_kid` empty means the first key mints.
    pub fn parse<S: AsRef<str>>(entries: &[S], mint_kid: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::with_capacity(entries.len());
        for e in entries {
            let (kid, secret) = e.as_ref().split_once(':').ok_or(KeyError::NoColon)?;
            keys.push((kid.to_owned(), secret.as_bytes().to_vec()));
        }
        Self::new(keys, mint_kid)
    }

    pub fn new(keys: Vec<(String, Vec<u8>)>, mint_kid: &str) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        if keys.len() > MAX_KEYS {
            return Err(KeyError::TooMany);
        }
        for (i, (kid, secret)) in keys.iter().enumerate() {
            if !valid_kid(kid) {
                return Err(KeyError::BadKid);
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(KeyError::ShortSecret(kid.clone()));
            }
            if keys[..i].iter().any(|(k, _)| k == kid) {
                return Err(KeyError::DuplicateKid(kid.clone()));
            }
        }
        let mint = if mint_kid.is_empty() {
            0
        } else {
            keys.iter()
                .position(|(k, _)| k == mint_kid)
                .ok_or_else(|| KeyError::UnknownMintKid(mint_kid.to_owned()))?
        };
        Ok(HmacKeys { keys, mint })
    }

    pub fn mint_kid(&self) -> &str {
        &self.keys[self.mint].0
    }

    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn secret(&self, kid: &str) -> Option<&[u8]> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, s)| s.as_slice())
    }

    /// Secrets in configuration order, for formats whose key id is optional.
    pub fn all(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.keys.iter().map(|(k, s)| (k.as_str(), s.as_slice()))
    }

    /// HMAC-SHA256 of `parts` (concatenated) under the minting key.
    pub fn sign_with_mint(&self, parts: &[&[u8]]) -> (&str, [u8; 32]) {
        let (kid, secret) = &self.keys[self.mint];
        (kid, hmac_sha256(secret, parts))
    }

    /// Constant-time check of `mac` over `parts` under key `kid`. `None` if `kid` is unknown.
    pub fn verify(&self, kid: &str, parts: &[&[u8]], mac: &[u8]) -> Option<bool> {
        let secret = self.secret(kid)?;
        Some(verify_with(secret, parts, mac))
    }
}

/// HMAC-SHA256 of the concatenation of `parts`.
pub fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time comparison of an HMAC-SHA256 tag.
pub fn verify_with(secret: &[u8], parts: &[&[u8]], mac: &[u8]) -> bool {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.verify_slice(mac).is_ok()
}

/// What a ticket asserts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub peer_id: String,
    pub stream: String,
    pub session_id: String,
    /// Unix milliseconds after which the ticket is refused.
    pub expires_ms: u64,
}

impl Ticket {
    /// Sign with the ring's minting key. Names must be valid ([`valid_name`]).
    pub fn mint(&self, keys: &HmacKeys) -> Result<String, TicketError> {
        for n in [&self.peer_id, &self.stream, &self.session_id] {
            if !valid_name(n) {
                return Err(TicketError::Malformed("invalid peer id, stream or session id"));
            }
        }
        let mut payload = Vec::with_capacity(8 + 3 + 3 * 64);
        payload.extend_from_slice(&self.expires_ms.to_be_bytes());
        for n in [&self.stream, &self.peer_id, &self.session_id] {
            payload.push(n.len() as u8);
            payload.extend_from_slice(n.as_bytes());
        }
        let kid = keys.mint_kid();
        let signed = format!("{PREFIX}.{kid}.{}", B64URL.encode(&payload));
        let (_, mac) = keys.sign_with_mint(&[DOMAIN, signed.as_bytes()]);
        Ok(format!("{signed}.{}", B64URL.encode(mac)))
    }

    /// Check signature, shape and expiry (`now_ms` is Unix milliseconds). The payload is only
    /// decoded once the MAC has verified.
    pub fn verify(text: &str, keys: &HmacKeys, now_ms: u64) -> Result<Ticket, TicketError> {
        if text.len() > MAX_TICKET_LEN {
            return Err(TicketError::Malformed("too long"));
        }
        let (signed, mac_b64) = text.rsplit_once('.').ok_or(TicketError::Malformed("no signature"))?;
        let mut parts = signed.splitn(3, '.');
        let (Some(prefix), Some(kid), Some(payload_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TicketError::Malformed("expected four dot-separated parts"));
        };
        if prefix != PREFIX {
            return Err(TicketError::Malformed("unknown ticket version"));
        }
        if !valid_kid(kid) {
            return Err(TicketError::Malformed("key id"));
        }
        let mac = B64URL.decode(mac_b64).map_err(|_| TicketError::Malformed("signature base64"))?;
        match keys.verify(kid, &[DOMAIN, signed.as_bytes()], &mac) {
            None => return Err(TicketError::UnknownKey(kid.to_owned())),
            Some(false) => return Err(TicketError::BadSignature),
            Some(true) => {}
        }
        let payload = B64URL.decode(payload_b64).map_err(|_| TicketError::Malformed("payload base64"))?;
        let t = decode_payload(&payload)?;
        if now_ms > t.expires_ms {
            return Err(TicketError::Expired);
        }
        Ok(t)
    }
}

impl Ticket {
    /// [`verify`](Self::verify), then check that the ticket was issued to `peer_id` for
    /// `stream` — what a tracker asks on every announce.
    pub fn verify_for(
        text: &str,
        keys: &HmacKeys,
        now_ms: u64,
        peer_id: &str,
        stream: &str,
    ) -> Result<Ticket, TicketError> {
        let t = Self::verify(text, keys, now_ms)?;
        if t.peer_id != peer_id {
            return Err(TicketError::Mismatch("peer id"));
        }
        if t.stream != stream {
            return Err(TicketError::Mismatch("stream"));
        }
        Ok(t)
    }
}

fn decode_payload(p: &[u8]) -> Result<Ticket, TicketError> {
    let exp: [u8; 8] = p.get(..8).and_then(|s| s.try_into().ok()).ok_or(TicketError::Malformed("payload"))?;
    let mut pos = 8;
    let mut name = || -> Result<String, TicketError> {
        let n = *p.get(pos).ok_or(TicketError::Malformed("payload"))? as usize;
        let raw = p.get(pos + 1..pos + 1 + n).ok_or(TicketError::Malformed("payload"))?;
        pos += 1 + n;
        let s = std::str::from_utf8(raw).map_err(|_| TicketError::Malformed("payload utf-8"))?;
        if !valid_name(s) {
            return Err(TicketError::Malformed("payload name"));
        }
        Ok(s.to_owned())
    };
    let stream = name()?;
    let peer_id = name()?;
    let session_id = name()?;
    if pos != p.len() {
        return Err(TicketError::Malformed("trailing bytes"));
    }
    Ok(Ticket { peer_id, stream, session_id, expires_ms: u64::from_be_bytes(exp) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(entries: &[&str], mint: &str) -> HmacKeys {
        HmacKeys::parse(entries, mint).expect("valid keys")
    }

    fn ticket() -> Ticket {
        Ticket {
            peer_id: "0123456789abcdef".into(),
            stream: "demo".into(),
            session_id: "s-42".into(),
            expires_ms: 1_000_000,
        }
    }

    #[test]
    fn roundtrip_and_expiry() {
        let keys = ring(&["k1:0123456789abcdef0123"], "");
        let text = ticket().mint(&keys).expect("mint");
        assert!(text.starts_with("t1.k1."), "{text}");
        assert!(text.len() < 200, "compact: {}", text.len());
        assert_eq!(Ticket::verify(&text, &keys, 999_999), Ok(ticket()));
        assert_eq!(Ticket::verify(&text, &keys, 1_000_000), Ok(ticket()));
        assert_eq!(Ticket::verify(&text, &keys, 1_000_001), Err(TicketError::Expired));
    }

    #[test]
    fn verify_for_binds_peer_and_stream() {
        let keys = ring(&["k1:0123456789abcdef0123"], "");
        let text = ticket().mint(&keys).expect("mint");
        assert!(Ticket::verify_for(&text, &keys, 0, "0123456789abcdef", "demo").is_ok());
        assert_eq!(
            Ticket::verify_for(&text, &keys, 0, "fedcba9876543210", "demo"),
            Err(TicketError::Mismatch("peer id"))
        );
        assert_eq!(
            Ticket::verify_for(&text, &keys, 0, "0123456789abcdef", "other"),
            Err(TicketError::Mismatch("stream"))
        );
    }

    #[test]
    fn forged_and_tampered() {
        let keys = ring(&["k1:0123456789abcdef0123"], "");
        let other = ring(&["k1:another-secret-of-16+"], "");
        let text = ticket().mint(&other).expect("mint");
        assert_eq!(Ticket::verify(&text, &keys, 0), Err(TicketError::BadSignature));

        // Change the stream inside the payload and keep the MAC: refused before decoding.
        let good = ticket().mint(&keys).expect("mint");
        let mut evil = ticket();
        evil.stream = "demx".into();
        let evil_text = evil.mint(&other).expect("mint");
        let spliced = format!(
            "{}.{}",
            evil_text.rsplit_once('.').expect("dot").0,
            good.rsplit_once('.').expect("dot").1
        );
        assert_eq!(Ticket::verify(&spliced, &keys, 0), Err(TicketError::BadSignature));

        // Every single-character change is refused.
        let bytes = good.as_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let Ok(s) = String::from_utf8(b) else { continue };
            if s == good {
                continue;
            }
            assert!(Ticket::verify(&s, &keys, 0).is_err(), "flip at {i} accepted: {s}");
        }
    }

    #[test]
    fn kid_rotation() {
        let old = ring(&["old:0123456789abcdef0123"], "");
        let both_old_mints = ring(&["old:0123456789abcdef0123", "new:fedcba9876543210fedc"], "old");
        let both_new_mints = ring(&["old:0123456789abcdef0123", "new:fedcba9876543210fedc"], "new");
        let new_only = ring(&["new:fedcba9876543210fedc"], "");
        let t_old = ticket().mint(&old).expect("mint");
        let t_new = ticket().mint(&both_new_mints).expect("mint");
        assert!(t_new.starts_with("t1.new."));
        assert_eq!(both_old_mints.mint_kid(), "old");
        // During the overlap both verify everywhere the ring has both keys.
        assert!(Ticket::verify(&t_old, &both_new_mints, 0).is_ok());
        assert!(Ticket::verify(&t_new, &both_old_mints, 0).is_ok());
        // After the old key is removed its tickets are refused by kid.
        assert_eq!(Ticket::verify(&t_old, &new_only, 0), Err(TicketError::UnknownKey("old".into())));
        assert!(Ticket::verify(&t_new, &new_only, 0).is_ok());
    }

    #[test]
    fn garbage_is_refused() {
        let keys = ring(&["k1:0123456789abcdef0123"], "");
        for s in
            ["", ".", "t1", "t1.k1", "t1.k1.x", "t1.k1.x.y", "t2.k1.AA.AA", "t1.!.AA.AA", "t1.k1..", "...."]
        {
            assert!(Ticket::verify(s, &keys, 0).is_err(), "{s:?}");
        }
        assert!(Ticket::verify(&"a".repeat(MAX_TICKET_LEN + 1), &keys, 0).is_err());
    }

    #[test]
    fn key_parsing() {
        assert_eq!(HmacKeys::parse(&["nocolon"], "").err(), Some(KeyError::NoColon));
        assert_eq!(HmacKeys::parse(&["k:short"], "").err(), Some(KeyError::ShortSecret("k".into())));
        assert_eq!(HmacKeys::parse(&["b@d:0123456789abcdef"], "").err(), Some(KeyError::BadKid));
        assert_eq!(
            HmacKeys::parse(&["a:0123456789abcdef", "a:0123456789abcdefg"], "").err(),
            Some(KeyError::DuplicateKid("a".into()))
        );
        assert_eq!(HmacKeys::parse::<&str>(&[], "").err(), Some(KeyError::Empty));
        assert_eq!(
            HmacKeys::parse(&["a:0123456789abcdef"], "b").err(),
            Some(KeyError::UnknownMintKid("b".into()))
        );
        // Secrets may contain colons.
        let k = HmacKeys::parse(&["a:0123:456789abcdef"], "").expect("ok");
        assert_eq!(k.kids(), vec!["a"]);
        assert!(!format!("{k:?}").contains("0123"), "Debug must not print secrets");
        let invalid = Ticket { stream: "a/b".into(), ..ticket() };
        assert!(invalid.mint(&k).is_err());
    }
}
