//! Identifiers every viewer computes the same way.

use serde::{Deserialize, Serialize};

/// Maximum length of a stream or rendition name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A segment is named by its rendition and media sequence number, never by its URL: URLs carry
/// CDN tokens and differ between viewers, the sequence number does not.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SegmentId {
    pub rendition: String,
    pub seq: u64,
}

/// Stream and rendition names: 1..=64 bytes of `[A-Za-z0-9_.-]`, not starting with a dot.
/// They appear in URLs and file names, so anything else is refused rather than escaped.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("demo"));
        assert!(valid_name("720p"));
        assert!(valid_name("a.b-c_d"));
        assert!(!valid_name(""));
        assert!(!valid_name(".."));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
