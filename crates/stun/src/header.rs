//! The fixed 20-byte STUN header, checked by hand before anything else looks at a datagram.
//!
//! This is the cheap filter every packet goes through (on the server and in the SDK's socket
//! demultiplexer): only datagrams that are exactly one well-formed STUN message reach the
//! attribute decoder.

/// RFC 8489 magic cookie.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const HEADER_LEN: usize = 20;
/// Largest STUN datagram handled. Binding requests and responses are tens of bytes; RFC 8489
/// keeps messages under the path MTU (548 bytes for IPv4 without discovery).
pub const MAX_MESSAGE_LEN: usize = 1280;

pub const BINDING: u16 = 0x0001;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub method: u16,
    pub class: Class,
    pub transaction_id: [u8; 12],
}

/// RFC 7983 demultiplexing: a datagram whose first byte is 0..=3 and that carries the magic
/// cookie is STUN (DTLS starts at 20, SRTP at 128). Cheaper and stricter than [`parse`]'s
/// caller needs for routing; use [`parse`] before trusting it.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN
        && datagram[0] < 4
        && u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]) == MAGIC_COOKIE
}

/// Parse and check the header of a datagram holding exactly one STUN message: leading zero
/// bits, magic cookie, body length a multiple of 4 that matches the datagram, size bound.
pub fn parse(datagram: &[u8]) -> Option<Header> {
    if datagram.len() < HEADER_LEN || datagram.len() > MAX_MESSAGE_LEN || !is_stun(datagram) {
        return None;
    }
    let msg_type = u16::from_be_bytes([datagram[0], datagram[1]]);
    let body_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if body_len % 4 != 0 || HEADER_LEN + body_len != datagram.len() {
        return None;
    }
    // Type bits: M11..M7 C1 M6..M4 C0 M3..M0 (RFC 8489 §5).
    let class = match ((msg_type >> 7) & 0b10) | ((msg_type >> 4) & 0b01) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    let method = (msg_type & 0x000F) | ((msg_type >> 1) & 0x0070) | ((msg_type >> 2) & 0x0F80);
    let mut transaction_id = [0u8; 12];
    transaction_id.copy_from_slice(&datagram[8..20]);
    Some(Header { method, class, transaction_id })
}

/// Transaction id of a datagram that passes [`parse`].
pub fn transaction_id(datagram: &[u8]) -> Option<[u8; 12]> {
    parse(datagram).map(|h| h.transaction_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(msg_type: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&msg_type.to_be_bytes());
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&[7u8; 12]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn classes_and_methods() {
        let h = parse(&msg(0x0001, &[])).expect("binding request");
        assert_eq!((h.method, h.class), (BINDING, Class::Request));
        assert_eq!(parse(&msg(0x0011, &[])).map(|h| h.class), Some(Class::Indication));
        assert_eq!(parse(&msg(0x0101, &[])).map(|h| h.class), Some(Class::Success));
        assert_eq!(parse(&msg(0x0111, &[])).map(|h| h.class), Some(Class::Error));
        // TURN Allocate (0x003) request.
        assert_eq!(parse(&msg(0x0003, &[])).map(|h| h.method), Some(0x003));
        assert_eq!(transaction_id(&msg(0x0001, &[])), Some([7u8; 12]));
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(parse(&[]).is_none());
        assert!(parse(&msg(0x0001, &[])[..19]).is_none());
        assert!(parse(&msg(0xC001, &[])).is_none(), "leading bits set");
        let mut bad_cookie = msg(0x0001, &[]);
        bad_cookie[4] ^= 1;
        assert!(parse(&bad_cookie).is_none());
        assert!(parse(&msg(0x0001, &[0, 0])).is_none(), "body not multiple of 4");
        let mut long = msg(0x0001, &[0; 4]);
        long.push(0);
        assert!(parse(&long).is_none(), "length mismatch");
        assert!(parse(&msg(0x0001, &vec![0; MAX_MESSAGE_LEN])).is_none(), "too large");
        assert!(!is_stun(&[20u8; 40]), "DTLS record is not STUN");
    }
}
