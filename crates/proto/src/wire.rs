//! The peer wire protocol: binary messages on one reliable, ordered DataChannel per peer pair.
//!
//! Every message is one DataChannel message of at most [`MAX_MESSAGE`] bytes: a one-byte type
//! tag followed by the body. Integers are big-endian; strings are a one-byte length and UTF-8.
//! Decoding is strict: every length and count is bounded, unknown tags and trailing bytes are
//! errors. The format is written down in `docs/protocol.md`.

use bytes::Bytes;

use crate::ids::valid_name;
use crate::manifest::{ManifestError, SegmentEntry};

/// Largest message either side may send (16 KiB: the size every browser accepts).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Bytes in front of a chunk payload in a [`Message::Data`].
pub const DATA_HEADER: usize = 1 + 4 + 4;
/// Largest chunk payload one message can carry.
pub const MAX_CHUNK_PAYLOAD: usize = MAX_MESSAGE - DATA_HEADER;
/// Protocol versions this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// Most renditions a peer lists in its hello.
pub const MAX_RENDITIONS: usize = 16;
/// Most segments one [`Message::HaveMap`] describes.
pub const MAX_HAVE_MAP: usize = 64;
/// Longest free-text reason in a [`Message::Bye`].
pub const MAX_REASON: usize = 200;

/// Capability bits in [`Hello::caps`].
pub mod caps {
    /// The peer serves requests (not consume-only).
    pub const UPLOAD: u32 = 1;
    /// The peer relays chunks of segments it is still receiving.
    pub const CUT_THROUGH: u32 = 2;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Oldest and newest protocol version the sender speaks.
    pub version_min: u16,
    pub version_max: u16,
    pub peer_id: String,
    pub stream: String,
    /// Renditions the sender currently plays or holds, most relevant first.
    pub renditions: Vec<String>,
    pub caps: u32,
    /// The sender's upload capacity estimate (0 = unknown or consume-only).
    pub upload_kbps: u32,
}

/// Progress of a segment at the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HaveState {
    /// Being received (from the CDN or a peer); `chunks` leading chunks are already there.
    Arriving { chunks: u32 },
    /// Complete and verified.
    Complete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ByeReason {
    Normal = 0,
    IncompatibleVersion = 1,
    WrongStream = 2,
    ProtocolError = 3,
    BadData = 4,
    TooManyPeers = 5,
}

impl ByeReason {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Normal,
            1 => Self::IncompatibleVersion,
            2 => Self::WrongStream,
            3 => Self::ProtocolError,
            4 => Self::BadData,
            5 => Self::TooManyPeers,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// First message on a new channel, from both sides.
    Hello(Hello),
    /// The origin-signed entry of a segment (sent before the first data of a request that
    /// asked for it).
    Entry(Box<SegmentEntry>),
    /// The sender has, or is receiving, a segment.
    Have {
        rendition: String,
        seq: u64,
        state: HaveState,
    },
    /// Complete segments of one rendition: bit i of `bits` (LSB of byte 0 first) = `base + i`.
    HaveMap {
        rendition: String,
        base: u64,
        count: u8,
        bits: [u8; 8],
    },
    /// Send chunks `[first, end)` of a segment as they become available (`end = u32::MAX`
    /// means "to the last chunk"). `want_entry` asks for the signed entry first.
    Request {
        req_id: u32,
        rendition: String,
        seq: u64,
        first: u32,
        end: u32,
        want_entry: bool,
    },
    /// One chunk of the segment named by `req_id`.
    Data {
        req_id: u32,
        chunk: u32,
        payload: Bytes,
    },
    /// Every chunk of the request was sent.
    Done {
        req_id: u32,
    },
    /// The sender does not have the segment and will not get it.
    Absent {
        req_id: u32,
    },
    /// The sender is at its upload limit; try elsewhere or after `retry_ms`.
    Busy {
        req_id: u32,
        retry_ms: u16,
    },
    /// The requester no longer wants the rest of `req_id`.
    Cancel {
        req_id: u32,
    },
    /// Round-trip measurement.
    Ping {
        nonce: u32,
    },
    Pong {
        nonce: u32,
    },
    /// The sender is closing the channel.
    Bye {
        reason: ByeReason,
        text: String,
    },
}

mod tag {
    pub const HELLO: u8 = 1;
    pub const ENTRY: u8 = 2;
    pub const HAVE: u8 = 3;
    pub const HAVE_MAP: u8 = 4;
    pub const REQUEST: u8 = 5;
    pub const DATA: u8 = 6;
    pub const DONE: u8 = 7;
    pub const ABSENT: u8 = 8;
    pub const BUSY: u8 = 9;
    pub const CANCEL: u8 = 10;
    pub const PING: u8 = 11;
    pub const PONG: u8 = 12;
    pub const BYE: u8 = 13;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("empty message")]
    Empty,
    #[error("message of {0} bytes exceeds the 16 KiB limit")]
    TooLarge(usize),
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("truncated message")]
    Truncated,
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("invalid field: {0}")]
    Invalid(&'static str),
    #[error("bad entry: {0}")]
    Entry(#[from] ManifestError),
}

impl Message {
    /// Serialize into a fresh buffer. Fails only if the message would exceed [`MAX_MESSAGE`]
    /// or carries a field the decoder would refuse (so a peer never sends what it would reject).
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let mut b = Vec::with_capacity(self.encoded_len_hint());
        match self {
            Message::Hello(h) => {
                b.push(tag::HELLO);
                b.extend_from_slice(&h.version_min.to_be_bytes());
                b.extend_from_slice(&h.version_max.to_be_bytes());
                put_name(&mut b, &h.peer_id)?;
                put_name(&mut b, &h.stream)?;
                if h.renditions.len() > MAX_RENDITIONS {
                    return Err(WireError::Invalid("too many renditions"));
                }
                b.push(h.renditions.len() as u8);
                for r in &h.renditions {
                    put_name(&mut b, r)?;
                }
                b.extend_from_slice(&h.caps.to_be_bytes());
                b.extend_from_slice(&h.upload_kbps.to_be_bytes());
            }
            Message::Entry(e) => {
                b.push(tag::ENTRY);
                e.encode(&mut b);
            }
            Message::Have { rendition, seq, state } => {
                b.push(tag::HAVE);
                put_name(&mut b, rendition)?;
                b.extend_from_slice(&seq.to_be_bytes());
                match state {
                    HaveState::Complete => b.push(1),
                    HaveState::Arriving { chunks } => {
                        b.push(0);
                        b.extend_from_slice(&chunks.to_be_bytes());
                    }
                }
            }
            Message::HaveMap { rendition, base, count, bits } => {
                if *count as usize > MAX_HAVE_MAP {
                    return Err(WireError::Invalid("have map too long"));
                }
                b.push(tag::HAVE_MAP);
                put_name(&mut b, rendition)?;
                b.extend_from_slice(&base.to_be_bytes());
                b.push(*count);
                b.extend_from_slice(bits);
            }
            Message::Request { req_id, rendition, seq, first, end, want_entry } => {
                if first >= end {
                    return Err(WireError::Invalid("empty chunk range"));
                }
                b.push(tag::REQUEST);
                b.extend_from_slice(&req_id.to_be_bytes());
                put_name(&mut b, rendition)?;
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&first.to_be_bytes());
                b.extend_from_slice(&end.to_be_bytes());
                b.push(*want_entry as u8);
            }
            Message::Data { req_id, chunk, payload } => {
                if payload.is_empty() {
                    return Err(WireError::Invalid("empty chunk"));
                }
                b.push(tag::DATA);
                b.extend_from_slice(&req_id.to_be_bytes());
                b.extend_from_slice(&chunk.to_be_bytes());
                b.extend_from_slice(payload);
            }
            Message::Done { req_id } => put_id(&mut b, tag::DONE, *req_id),
            Message::Absent { req_id } => put_id(&mut b, tag::ABSENT, *req_id),
            Message::Busy { req_id, retry_ms } => {
                put_id(&mut b, tag::BUSY, *req_id);
                b.extend_from_slice(&retry_ms.to_be_bytes());
            }
            Message::Cancel { req_id } => put_id(&mut b, tag::CANCEL, *req_id),
            Message::Ping { nonce } => put_id(&mut b, tag::PING, *nonce),
            Message::Pong { nonce } => put_id(&mut b, tag::PONG, *nonce),
            Message::Bye { reason, text } => {
                if text.len() > MAX_REASON {
                    return Err(WireError::Invalid("reason too long"));
                }
                b.push(tag::BYE);
                b.push(*reason as u8);
                b.push(text.len() as u8);
                b.extend_from_slice(text.as_bytes());
            }
        }
        if b.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge(b.len()));
        }
        Ok(b)
    }

    fn encoded_len_hint(&self) -> usize {
        match self {
            Message::Data { payload, .. } => DATA_HEADER + payload.len(),
            Message::Entry(e) => 200 + e.chunk_hashes.len() * 32,
            _ => 64,
        }
    }

    /// Parse one message. `msg` is a whole DataChannel message; a [`Message::Data`] payload
    /// shares `msg`'s buffer without copying.
    pub fn decode(msg: &Bytes) -> Result<Message, WireError> {
        if msg.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge(msg.len()));
        }
        let (&t, _) = msg.split_first().ok_or(WireError::Empty)?;
        let mut r = Reader { buf: msg, pos: 1 };
        let m = match t {
            tag::HELLO => {
                let version_min = r.u16()?;
                let version_max = r.u16()?;
                if version_min > version_max {
                    return Err(WireError::Invalid("version range"));
                }
                let peer_id = r.name()?;
                let stream = r.name()?;
                let n = r.u8()? as usize;
                if n > MAX_RENDITIONS {
                    return Err(WireError::Invalid("too many renditions"));
                }
                let mut renditions = Vec::with_capacity(n);
                for _ in 0..n {
                    renditions.push(r.name()?);
                }
                let caps = r.u32()?;
                let upload_kbps = r.u32()?;
                Message::Hello(Hello {
                    version_min,
                    version_max,
                    peer_id,
                    stream,
                    renditions,
                    caps,
                    upload_kbps,
                })
            }
            tag::ENTRY => {
                let (e, used) = SegmentEntry::decode(&msg[1..])?;
                r.pos += used;
                Message::Entry(Box::new(e))
            }
            tag::HAVE => {
                let rendition = r.name()?;
                let seq = r.u64()?;
                let state = match r.u8()? {
                    1 => HaveState::Complete,
                    0 => HaveState::Arriving { chunks: r.u32()? },
                    _ => return Err(WireError::Invalid("have state")),
                };
                Message::Have { rendition, seq, state }
            }
            tag::HAVE_MAP => {
                let rendition = r.name()?;
                let base = r.u64()?;
                let count = r.u8()?;
                if count as usize > MAX_HAVE_MAP {
                    return Err(WireError::Invalid("have map too long"));
                }
                let bits: [u8; 8] = r.take(8)?.try_into().map_err(|_| WireError::Truncated)?;
                Message::HaveMap { rendition, base, count, bits }
            }
            tag::REQUEST => {
                let req_id = r.u32()?;
                let rendition = r.name()?;
                let seq = r.u64()?;
                let first = r.u32()?;
                let end = r.u32()?;
                if first >= end {
                    return Err(WireError::Invalid("empty chunk range"));
                }
                let want_entry = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Invalid("want_entry flag")),
                };
                Message::Request { req_id, rendition, seq, first, end, want_entry }
            }
            tag::DATA => {
                let req_id = r.u32()?;
                let chunk = r.u32()?;
                if r.pos >= msg.len() {
                    return Err(WireError::Invalid("empty chunk"));
                }
                let payload = msg.slice(r.pos..);
                r.pos = msg.len();
                Message::Data { req_id, chunk, payload }
            }
            tag::DONE => Message::Done { req_id: r.u32()? },
            tag::ABSENT => Message::Absent { req_id: r.u32()? },
            tag::BUSY => Message::Busy { req_id: r.u32()?, retry_ms: r.u16()? },
            tag::CANCEL => Message::Cancel { req_id: r.u32()? },
            tag::PING => Message::Ping { nonce: r.u32()? },
            tag::PONG => Message::Pong { nonce: r.u32()? },
            tag::BYE => {
                let reason = ByeReason::from_u8(r.u8()?).ok_or(WireError::Invalid("bye reason"))?;
                let n = r.u8()? as usize;
                if n > MAX_REASON {
                    return Err(WireError::Invalid("reason too long"));
                }
                let text = std::str::from_utf8(r.take(n)?)
                    .map_err(|_| WireError::Invalid("reason not utf-8"))?
                    .to_owned();
                Message::Bye { reason, text }
            }
            other => return Err(WireError::UnknownType(other)),
        };
        if r.pos != msg.len() {
            return Err(WireError::Trailing(msg.len() - r.pos));
        }
        Ok(m)
    }
}

/// The version both sides speak, or `None` if their ranges do not overlap.
pub fn negotiate(a_min: u16, a_max: u16, b_min: u16, b_max: u16) -> Option<u16> {
    let v = a_max.min(b_max);
    (v >= a_min.max(b_min)).then_some(v)
}

fn put_id(b: &mut Vec<u8>, tag: u8, id: u32) {
    b.push(tag);
    b.extend_from_slice(&id.to_be_bytes());
}

fn put_name(b: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    if !valid_name(s) {
        return Err(WireError::Invalid("name"));
    }
    b.push(s.len() as u8);
    b.extend_from_slice(s.as_bytes());
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().map_err(|_| WireError::Truncated)?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| WireError::Truncated)?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| WireError::Truncated)?))
    }
    fn name(&mut self) -> Result<String, WireError> {
        let n = self.u8()? as usize;
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| WireError::Invalid("name not utf-8"))?;
        if !valid_name(s) {
            return Err(WireError::Invalid("name"));
        }
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{EntryInput, SigningKey, DEFAULT_CHUNK_SIZE};
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,20}"
    }

    fn entry() -> SegmentEntry {
        let data = vec![9u8; 50_000];
        SegmentEntry::sign(
            EntryInput {
                stream: "demo",
                rendition: "360p",
                seq: 7,
                duration_ms: 2000,
                uri: "7.ts",
                data: &data,
                chunk_size: DEFAULT_CHUNK_SIZE,
                published_ms: 1,
            },
            &SigningKey::from_bytes(&[1; 32]),
        )
        .expect("sign")
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                any::<u16>(),
                any::<u16>(),
                name(),
                name(),
                prop::collection::vec(name(), 0..5),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(a, b, p, s, r, c, u)| Message::Hello(Hello {
                    version_min: a.min(b),
                    version_max: a.max(b),
                    peer_id: p,
                    stream: s,
                    renditions: r,
                    caps: c,
                    upload_kbps: u
                })),
            (name(), any::<u64>(), prop::option::of(any::<u32>())).prop_map(|(r, s, c)| Message::Have {
                rendition: r,
                seq: s,
                state: c.map_or(HaveState::Complete, |chunks| HaveState::Arriving { chunks })
            }),
            (name(), any::<u64>(), 0u8..=64, any::<[u8; 8]>())
                .prop_map(|(r, base, count, bits)| Message::HaveMap { rendition: r, base, count, bits }),
            (any::<u32>(), name(), any::<u64>(), any::<u32>(), 1u32..1000, any::<bool>()).prop_map(
                |(id, r, seq, first, len, w)| Message::Request {
                    req_id: id,
                    rendition: r,
                    seq,
                    first: first.min(u32::MAX - 1000),
                    end: first.min(u32::MAX - 1000) + len,
                    want_entry: w
                }
            ),
            (any::<u32>(), any::<u32>(), prop::collection::vec(any::<u8>(), 1..MAX_CHUNK_PAYLOAD))
                .prop_map(|(id, c, p)| Message::Data { req_id: id, chunk: c, payload: Bytes::from(p) }),
            any::<u32>().prop_map(|req_id| Message::Done { req_id }),
            any::<u32>().prop_map(|req_id| Message::Absent { req_id }),
            (any::<u32>(), any::<u16>()).prop_map(|(req_id, retry_ms)| Message::Busy { req_id, retry_ms }),
            any::<u32>().prop_map(|req_id| Message::Cancel { req_id }),
            any::<u32>().prop_map(|nonce| Message::Ping { nonce }),
            any::<u32>().prop_map(|nonce| Message::Pong { nonce }),
            "[a-z ]{0,50}".prop_map(|t| Message::Bye { reason: ByeReason::BadData, text: t }),
            Just(Message::Entry(Box::new(entry()))),
        ]
    }

    proptest! {
        #[test]
        fn roundtrip(m in message()) {
            let enc = m.encode().expect("encodes");
            prop_assert!(enc.len() <= MAX_MESSAGE);
            let dec = Message::decode(&Bytes::from(enc)).expect("decodes");
            prop_assert_eq!(dec, m);
        }

        #[test]
        fn truncation_is_an_error(m in message(), cut in 0usize..100) {
            let enc = m.encode().expect("encodes");
            // Data messages have no length field for the payload, so a cut there is a shorter
            // chunk, which the engine rejects by hash. Everything else must notice.
            if !matches!(m, Message::Data { .. }) {
                let cut = cut.min(enc.len() - 1);
                prop_assert!(Message::decode(&Bytes::copy_from_slice(&enc[..cut])).is_err());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::decode(&Bytes::from(b));
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(Message::decode(&Bytes::new()), Err(WireError::Empty));
        assert_eq!(Message::decode(&Bytes::from_static(&[99])), Err(WireError::UnknownType(99)));
        assert!(matches!(
            Message::decode(&Bytes::from(vec![tag::DATA; MAX_MESSAGE + 1])),
            Err(WireError::TooLarge(_))
        ));
        let mut done = Message::Done { req_id: 1 }.encode().expect("enc");
        done.push(0);
        assert_eq!(Message::decode(&Bytes::from(done)), Err(WireError::Trailing(1)));
        let big = Message::Data { req_id: 1, chunk: 0, payload: Bytes::from(vec![0; MAX_CHUNK_PAYLOAD + 1]) };
        assert!(matches!(big.encode(), Err(WireError::TooLarge(_))));
        let bad_name = Message::Have { rendition: "../x".into(), seq: 1, state: HaveState::Complete };
        assert!(bad_name.encode().is_err());
    }

    #[test]
    fn data_payload_is_zero_copy() {
        let enc = Bytes::from(
            Message::Data { req_id: 3, chunk: 4, payload: Bytes::from(vec![7u8; 1000]) }
                .encode()
                .expect("enc"),
        );
        let Message::Data { payload, .. } = Message::decode(&enc).expect("dec") else { panic!("not data") };
        assert_eq!(payload.as_ptr(), enc[DATA_HEADER..].as_ptr());
    }

    #[test]
    fn version_negotiation() {
        assert_eq!(negotiate(1, 1, 1, 1), Some(1));
        assert_eq!(negotiate(1, 3, 2, 5), Some(3));
        assert_eq!(negotiate(1, 1, 2, 3), None);
        assert_eq!(negotiate(4, 5, 1, 3), None);
    }

    #[test]
    fn a_full_entry_fits_one_message() {
        use crate::manifest::MAX_WIRE_CHUNKS;
        let data = vec![1u8; MAX_WIRE_CHUNKS * DEFAULT_CHUNK_SIZE as usize];
        let e = SegmentEntry::sign(
            EntryInput {
                stream: &"s".repeat(64),
                rendition: &"r".repeat(64),
                seq: u64::MAX,
                duration_ms: 2000,
                uri: &"u".repeat(256),
                data: &data,
                chunk_size: DEFAULT_CHUNK_SIZE,
                published_ms: 1,
            },
            &SigningKey::from_bytes(&[1; 32]),
        )
        .expect("sign");
        let enc = Message::Entry(Box::new(e)).encode().expect("fits");
        assert!(enc.len() <= MAX_MESSAGE, "{}", enc.len());
    }
}
