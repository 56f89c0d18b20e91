//! A minimal STUN Binding client for learning one's server-reflexive address.
//!
//! Built for a caller that owns the UDP socket and demultiplexes it (the native SDK, whose
//! socket also carries WebRTC): [`BindingRequest::new`] gives the bytes to send and the
//! transaction id to remember; every incoming datagram can be offered to
//! [`BindingRequest::match_response`], which says whether it was the answer, another STUN
//! message (an ICE check for the WebRTC stack), or not STUN at all. [`query`] is the
//! convenience loop for a socket used by nobody else meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use stun_rs::attributes::stun::Fingerprint;
use stun_rs::attributes::StunAttribute;
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder, TransactionId,
};
use tokio::net::UdpSocket;

use crate::header::{self, Class};

/// One outstanding Binding transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRequest {
    transaction_id: [u8; 12],
    bytes: Vec<u8>,
}

/// What an incoming datagram means for a [`BindingRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseMatch {
    /// The success response to this request: our address as the server saw it.
    Mapped(SocketAddr),
    /// An error response to this request (e.g. 420 Unknown Attribute).
    Error { code: u16, reason: String },
    /// A response with our transaction id that cannot be used (no address, bad fingerprint,
    /// undecodable). Keep waiting: a forged packet must not end the transaction.
    Invalid,
    /// A STUN message, but not an answer to this request (hand it to the WebRTC stack).
    OtherStun,
    /// Not STUN (DTLS, SCTP, RTP, garbage): hand it to whoever else reads the socket.
    NotStun,
}

impl Default for BindingRequest {
    fn default() -> Self {
        Self::new()
    }
}

impl BindingRequest {
    /// A Binding request with a random transaction id and a FINGERPRINT.
    pub fn new() -> Self {
        Self::with_transaction_id(rand::random())
    }

    pub fn with_transaction_id(transaction_id: [u8; 12]) -> Self {
        let msg = StunMessageBuilder::new(BINDING, MessageClass::Request)
            .with_transaction_id(TransactionId::from(transaction_id))
            .with_attribute(Fingerprint::default())
            .build();
        let mut buf = [0u8; 64];
        let n = MessageEncoderBuilder::default()
            .build()
            .encode(&mut buf, &msg)
            .expect("a Binding request with one FINGERPRINT fits 64 bytes");
        BindingRequest { transaction_id, bytes: buf[..n].to_vec() }
    }

    pub fn transaction_id(&self) -> [u8; 12] {
        self.transaction_id
    }

    /// The datagram to send (send it again unchanged to retransmit).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Classify an incoming datagram; see [`ResponseMatch`].
    pub fn match_response(&self, datagram: &[u8]) -> ResponseMatch {
        match_response(datagram, &self.transaction_id)
    }
}

/// Classify `datagram` against the transaction `transaction_id`.
pub fn match_response(datagram: &[u8], transaction_id: &[u8; 12]) -> ResponseMatch {
    if !header::is_stun(datagram) {
        return ResponseMatch::NotStun;
    }
    let Some(h) = header::parse(datagram) else { return ResponseMatch::OtherStun };
    if h.transaction_id != *transaction_id || h.method != header::BINDING {
        return ResponseMatch::OtherStun;
    }
    if !matches!(h.class, Class::Success | Class::Error) {
        return ResponseMatch::OtherStun;
    }
    let Ok((msg, _)) = MessageDecoderBuilder::default().build().decode(datagram) else {
        return ResponseMatch::Invalid;
    };
    let mut mapped = None;
    let mut legacy = None;
    let mut error = None;
    for attr in msg.attributes() {
        match attr {
            StunAttribute::XorMappedAddress(a) => mapped = mapped.or(Some(*a.socket_address())),
            StunAttribute::MappedAddress(a) => legacy = legacy.or(Some(*a.socket_address())),
            StunAttribute::ErrorCode(e) => {
                let c = e.error_code();
                error = Some((c.error_code(), c.reason().to_owned()));
            }
            StunAttribute::Fingerprint(fp) => {
                let ok = stun_rs::get_input_text::<Fingerprint>(datagram).is_some_and(|i| fp.validate(&i));
                if !ok {
                    return ResponseMatch::Invalid;
                }
            }
            _ => {}
        }
    }
    match h.class {
        Class::Error => match error {
            Some((code, reason)) => ResponseMatch::Error { code, reason },
            None => ResponseMatch::Invalid,
        },
        _ => match mapped.or(legacy) {
            Some(a) => ResponseMatch::Mapped(a),
            None => ResponseMatch::Invalid,
        },
    }
}

/// Retransmission schedule of [`query`].
#[derive(Clone, Copy, Debug)]
pub struct QueryOptions {
    /// First retransmission timeout; doubles after each try (RFC 8489 §6.2.1).
    pub initial_rto: Duration,
    /// Requests sent in total.
    pub attempts: u32,
    /// Wait after the last request.
    pub last_wait: Duration,
}

impl Default for QueryOptions {
    fn default() -> Self {
        // 0 + 0.25 + 0.75 + 1.75 s, then 1.6 s: an answer within ~3.4 s or none.
        QueryOptions {
            initial_rto: Duration::from_millis(250),
            attempts: 4,
            last_wait: Duration::from_millis(1600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no STUN response from {0} in time")]
    Timeout(SocketAddr),
    #[error("STUN error response {code} {reason}")]
    ErrorResponse { code: u16, reason: String },
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Send a Binding request to `server` from `socket` and wait for the answer, retransmitting
/// on the RFC schedule. Datagrams from other addresses or for other transactions are read
/// and dropped, so only use this while nobody else reads the socket.
pub async fn query(
    socket: &UdpSocket,
    server: SocketAddr,
    opts: QueryOptions,
) -> Result<SocketAddr, QueryError> {
    let req = BindingRequest::new();
    let mut buf = vec![0u8; header::MAX_MESSAGE_LEN + 1];
    let mut rto = opts.initial_rto;
    for attempt in 0..opts.attempts.max(1) {
        socket.send_to(req.bytes(), server).await?;
        let wait = if attempt + 1 == opts.attempts.max(1) { opts.last_wait } else { rto };
        let deadline = tokio::time::Instant::now() + wait;
        // Each pass consumes one datagram; the deadline bounds the loop.
        while let Ok(r) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            let (n, from) = r?;
            if from != server {
                continue;
            }
            match req.match_response(&buf[..n]) {
                ResponseMatch::Mapped(a) => return Ok(a),
                ResponseMatch::Error { code, reason } => {
                    return Err(QueryError::ErrorResponse { code, reason })
                }
                _ => continue,
            }
        }
        rto *= 2;
    }
    Err(QueryError::Timeout(server))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.2 sample IPv4 response (MESSAGE-INTEGRITY is ignored: no credentials).
    const RFC5769_IPV4_RESPONSE: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa,
        0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f,
        0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00,
        0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53,
        0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];
    const RFC5769_TID: [u8; 12] = [0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae];

    #[test]
    fn rfc5769_response_vector() {
        let expected: SocketAddr = "192.0.2.1:32853".parse().expect("addr");
        assert_eq!(match_response(&RFC5769_IPV4_RESPONSE, &RFC5769_TID), ResponseMatch::Mapped(expected));
        let mut other = RFC5769_TID;
        other[0] ^= 1;
        assert_eq!(match_response(&RFC5769_IPV4_RESPONSE, &other), ResponseMatch::OtherStun);
        let mut bad_fp = RFC5769_IPV4_RESPONSE;
        bad_fp[79] ^= 1;
        assert_eq!(match_response(&bad_fp, &RFC5769_TID), ResponseMatch::Invalid, "forged answer");
    }

    #[test]
    fn request_shape() {
        let r = BindingRequest::with_transaction_id([9; 12]);
        let b = r.bytes();
        // Header + FINGERPRINT (8 bytes).
        assert_eq!(b.len(), 28);
        assert_eq!(&b[..4], &[0x00, 0x01, 0x00, 0x08]);
        assert_eq!(&b[4..8], &header::MAGIC_COOKIE.to_be_bytes());
        assert_eq!(&b[8..20], &[9; 12]);
        assert_eq!(&b[20..24], &[0x80, 0x28, 0x00, 0x04]);
        assert_ne!(BindingRequest::new().transaction_id(), BindingRequest::new().transaction_id());
    }

    #[test]
    fn demux_classes() {
        let r = BindingRequest::new();
        assert_eq!(r.match_response(&[22, 0xfe, 0xfd, 0, 0]), ResponseMatch::NotStun, "DTLS");
        assert_eq!(r.match_response(&[]), ResponseMatch::NotStun);
        // Our own request echoed back is a request, not an answer.
        assert_eq!(r.match_response(r.bytes()), ResponseMatch::OtherStun);
        // An error response for our transaction.
        let reply =
            crate::server::respond(&with_unknown_attr(&r), "198.51.100.1:5000".parse().expect("addr"), "")
                .expect("420 reply");
        assert_eq!(
            r.match_response(&reply),
            ResponseMatch::Error { code: 420, reason: "Unknown Attribute".into() }
        );
    }

    /// The request with a comprehension-required attribute 0x0003 (CHANGE-REQUEST) and no
    /// fingerprint.
    fn with_unknown_attr(r: &BindingRequest) -> Vec<u8> {
        let mut m = r.bytes()[..20].to_vec();
        m[2..4].copy_from_slice(&8u16.to_be_bytes());
        m.extend_from_slice(&[0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0]);
        m
    }

    proptest::proptest! {
        #[test]
        fn classify_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), tid in proptest::array::uniform12(0u8..)) {
            let _ = match_response(&data, &tid);
        }
    }
}
