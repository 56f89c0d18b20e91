//! The STUN Binding server (RFC 8489 §6.3, no authentication).
//!
//! [`respond`] is the whole protocol as a pure function from (datagram, source) to an optional
//! reply; [`StunServer`] is the tokio loop around it with per-source rate limiting.
//!
//! What gets an answer: a Binding request with a valid header, decodable attributes and (if
//! present) a correct FINGERPRINT. The success response carries XOR-MAPPED-ADDRESS, SOFTWARE and
//! FINGERPRINT. A request with an unknown comprehension-required attribute gets a 420 error
//! listing it (RFC 8489 §6.3.1.1). Everything else — indications, responses, other methods,
//! garbage, bad fingerprints, rate-limited sources — is dropped without a reply, so the server
//! can never be used to reflect traffic at anyone beyond one reply per accepted request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use stun_rs::attributes::stun::{ErrorCode, Fingerprint, Software, UnknownAttributes, XorMappedAddress};
use stun_rs::attributes::StunAttribute;
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder, TransactionId,
};
use tokio::net::UdpSocket;

use crate::header::{self, Class};
use crate::ratelimit::{KeyedLimiter, RateLimitConfig};

/// `[stun]` section of the server configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StunConfig {
    /// UDP address to bind (`0.0.0.0:3478`; port 0 picks a free port).
    pub listen: String,
    /// STUN URLs handed to clients (`stun:host:port`). Empty: derived from the bound address
    /// and the public host of the HTTP listener.
    pub public: Vec<String>,
    /// SOFTWARE attribute of responses (empty: none).
    pub software: String,
    /// Per-source limit on Binding requests.
    pub rate_limit: RateLimitConfig,
}

impl Default for StunConfig {
    fn default() -> Self {
        StunConfig {
            listen: "0.0.0.0:3478".into(),
            public: Vec::new(),
            software: "shoal".into(),
            rate_limit: RateLimitConfig::new(20.0, 100),
        }
    }
}

/// Why a datagram got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Not a single well-formed STUN message (bad header or attributes).
    Malformed,
    /// FINGERPRINT present but wrong.
    BadFingerprint,
    /// A STUN message but not a Binding request (indication, response, other method).
    NotBindingRequest,
}

impl Dropped {
    pub fn label(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::BadFingerprint => "bad_fingerprint",
            Dropped::NotBindingRequest => "ignored",
        }
    }
}

/// Most unknown attributes listed in a 420 response.
const MAX_UNKNOWN_LISTED: usize = 8;

/// Build the reply to one datagram from `from`, or say why there is none.
pub fn respond(datagram: &[u8], from: SocketAddr, software: &str) -> Result<Vec<u8>, Dropped> {
    let h = header::parse(datagram).ok_or(Dropped::Malformed)?;
    if h.class != Class::Request || h.method != header::BINDING {
        return Err(Dropped::NotBindingRequest);
    }
    let decoder = MessageDecoderBuilder::default().build();
    let (msg, used) = decoder.decode(datagram).map_err(|_| Dropped::Malformed)?;
    if used != datagram.len() {
        return Err(Dropped::Malformed);
    }
    let mut unknown = Vec::new();
    for attr in msg.attributes() {
        match attr {
            StunAttribute::Fingerprint(fp) => {
                let input = stun_rs::get_input_text::<Fingerprint>(datagram).ok_or(Dropped::Malformed)?;
                if !fp.validate(&input) {
                    return Err(Dropped::BadFingerprint);
                }
            }
            // Beyond the first few, more unknown attributes change nothing: the 420 goes out.
            StunAttribute::Unknown(u)
                if u.attribute_type().is_comprehension_required() && unknown.len() < MAX_UNKNOWN_LISTED =>
            {
                unknown.push(u.attribute_type().as_u16());
            }
            _ => {}
        }
    }
    let tid = TransactionId::from(h.transaction_id);
    // A client behind a dual-stack socket shows up as ::ffff:a.b.c.d; it needs its IPv4 address.
    let mapped = SocketAddr::new(from.ip().to_canonical(), from.port());
    let mut b = if unknown.is_empty() {
        StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
            .with_transaction_id(tid)
            .with_attribute(XorMappedAddress::from(mapped))
    } else {
        let code = stun_rs::ErrorCode::new(420, "Unknown Attribute").map_err(|_| Dropped::Malformed)?;
        StunMessageBuilder::new(BINDING, MessageClass::ErrorResponse)
            .with_transaction_id(tid)
            .with_attribute(ErrorCode::from(code))
            .with_attribute(UnknownAttributes::from(unknown.as_slice()))
    };
    if !software.is_empty() {
        if let Ok(s) = Software::new(software) {
            b = b.with_attribute(s);
        }
    }
    let reply = b.with_attribute(Fingerprint::default()).build();
    let mut buf = [0u8; 512];
    let n =
        MessageEncoderBuilder::default().build().encode(&mut buf, &reply).map_err(|_| Dropped::Malformed)?;
    Ok(buf[..n].to_vec())
}

/// A bound STUN server; call [`run`](Self::run) to serve.
pub struct StunServer {
    socket: UdpSocket,
    software: String,
    limiter: KeyedLimiter,
    counters: Arc<StunCounters>,
}

/// Live counters of one server (the same events are exported as `shoal_stun_requests_total`).
#[derive(Debug, Default)]
pub struct StunCounters {
    pub answered: AtomicU64,
    pub errors_sent: AtomicU64,
    pub rate_limited: AtomicU64,
    pub dropped: AtomicU64,
}

impl StunCounters {
    fn bump(&self, c: &AtomicU64, outcome: &'static str) {
        c.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("shoal_stun_requests_total", "outcome" => outcome).increment(1);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

impl StunServer {
    pub async fn bind(cfg: &StunConfig) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(&cfg.listen).await?;
        Ok(Self::from_socket(socket, cfg))
    }

    pub fn from_socket(socket: UdpSocket, cfg: &StunConfig) -> Self {
        StunServer {
            socket,
            software: cfg.software.clone(),
            limiter: KeyedLimiter::new(&cfg.rate_limit),
            counters: Arc::default(),
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn counters(&self) -> Arc<StunCounters> {
        self.counters.clone()
    }

    /// Serve until `shutdown` completes. Bad input never ends the loop.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; header::MAX_MESSAGE_LEN + 1];
        loop {
            let (n, from) = tokio::select! {
                _ = &mut shutdown => return,
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    // ICMP port-unreachable from an earlier reply surfaces here on some
                    // platforms; it concerns one peer, not the socket.
                    Err(e) => {
                        tracing::debug!(error = %e, "stun recv error");
                        continue;
                    }
                },
            };
            self.handle(&buf[..n], from, Instant::now()).await;
        }
    }

    async fn handle(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) {
        let c = &*self.counters;
        // Cheap header check first, so garbage consumes neither a source's tokens nor a
        // rate-limiter slot.
        if header::parse(datagram).is_none() {
            c.bump(&c.dropped, Dropped::Malformed.label());
            return;
        }
        if !self.limiter.check(from.ip(), now).allowed() {
            c.bump(&c.rate_limited, "rate_limited");
            return;
        }
        match respond(datagram, from, &self.software) {
            Ok(reply) => {
                if header::parse(&reply).is_some_and(|h| h.class == Class::Error) {
                    c.bump(&c.errors_sent, "error_sent");
                } else {
                    c.bump(&c.answered, "answered");
                }
                if let Err(e) = self.socket.send_to(&reply, from).await {
                    tracing::debug!(error = %e, %from, "stun send failed");
                }
            }
            Err(d) => c.bump(&c.dropped, d.label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{BindingRequest, ResponseMatch};

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket addr literal")
    }

    /// A bare Binding request written by hand, answered, and the XOR-MAPPED-ADDRESS decoded by
    /// hand (RFC 8489 §14.2) — no shared code with the encoder on either side.
    #[test]
    fn bare_request_by_hand() {
        let tid = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        req.extend_from_slice(&tid);
        let from = addr("203.0.113.9:54321");
        let reply = respond(&req, from, "shoal").expect("answered");
        assert_eq!(&reply[..2], &[0x01, 0x01], "Binding success");
        assert_eq!(usize::from(u16::from_be_bytes([reply[2], reply[3]])) + 20, reply.len());
        assert_eq!(&reply[8..20], &tid);
        // Walk the attributes.
        let mut pos = 20;
        let mut xor = None;
        let mut types = Vec::new();
        while pos + 4 <= reply.len() {
            let t = u16::from_be_bytes([reply[pos], reply[pos + 1]]);
            let l = usize::from(u16::from_be_bytes([reply[pos + 2], reply[pos + 3]]));
            let v = &reply[pos + 4..pos + 4 + l];
            types.push(t);
            if t == 0x0020 {
                assert_eq!(v[1], 0x01, "IPv4 family");
                let port = u16::from_be_bytes([v[2], v[3]]) ^ 0x2112;
                let ip: [u8; 4] = std::array::from_fn(|i| v[4 + i] ^ [0x21, 0x12, 0xa4, 0x42][i]);
                xor = Some(SocketAddr::from((ip, port)));
            }
            pos += 4 + l.div_ceil(4) * 4;
        }
        assert_eq!(xor, Some(from));
        assert_eq!(types, vec![0x0020, 0x8022, 0x8028], "XOR-MAPPED-ADDRESS, SOFTWARE, FINGERPRINT last");
    }

    #[test]
    fn ipv6_and_mapped_v4() {
        let r = BindingRequest::new();
        let v6 = addr("[2001:db8::7]:40000");
        assert_eq!(r.match_response(&respond(r.bytes(), v6, "").expect("reply")), ResponseMatch::Mapped(v6));
        let mapped = addr("[::ffff:192.0.2.5]:4000");
        assert_eq!(
            r.match_response(&respond(r.bytes(), mapped, "").expect("reply")),
            ResponseMatch::Mapped(addr("192.0.2.5:4000")),
            "dual-stack socket reports the IPv4 address"
        );
    }

    #[test]
    fn drops() {
        let r = BindingRequest::new();
        let from = addr("192.0.2.1:1");
        let mut bad_fp = r.bytes().to_vec();
        let n = bad_fp.len();
        bad_fp[n - 1] ^= 1;
        assert_eq!(respond(&bad_fp, from, ""), Err(Dropped::BadFingerprint));
        let mut indication = r.bytes().to_vec();
        indication[1] = 0x11;
        assert_eq!(respond(&indication, from, ""), Err(Dropped::NotBindingRequest));
        let mut allocate = r.bytes().to_vec();
        allocate[1] = 0x03;
        assert_eq!(respond(&allocate, from, ""), Err(Dropped::NotBindingRequest));
        // Attribute length running past the end.
        let mut m = r.bytes()[..20].to_vec();
        m[2..4].copy_from_slice(&8u16.to_be_bytes());
        m.extend_from_slice(&[0x80, 0x22, 0x00, 0x40, b'a', b'b', b'c', b'd']);
        assert_eq!(respond(&m, from, ""), Err(Dropped::Malformed));
        assert_eq!(respond(&[], from, ""), Err(Dropped::Malformed));
    }

    proptest::proptest! {
        /// Any bytes: no panic; a reply only ever goes to a Binding request and echoes its
        /// transaction id.
        #[test]
        fn arbitrary_datagrams(data in proptest::collection::vec(proptest::num::u8::ANY, 0..120)) {
            if let Ok(reply) = respond(&data, addr("192.0.2.1:9"), "shoal") {
                let req = header::parse(&data).expect("replied only to a valid header");
                proptest::prop_assert_eq!(req.class, Class::Request);
                let h = header::parse(&reply).expect("reply is STUN");
                proptest::prop_assert_eq!(h.transaction_id, req.transaction_id);
            }
        }

        /// Valid requests with random bytes flipped.
        #[test]
        fn mutated_requests(flips in proptest::collection::vec((0usize..28, 1u8..=255), 1..4)) {
            let mut data = BindingRequest::with_transaction_id([5; 12]).bytes().to_vec();
            for (i, x) in flips {
                data[i] ^= x;
            }
            let _ = respond(&data, addr("192.0.2.1:9"), "shoal");
        }
    }
}
