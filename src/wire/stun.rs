//! Just enough STUN (RFC 8489) to route a datagram: recognise a message and read its USERNAME
//! without allocating; and, before the SFU keeps any state for a new flow or ICE-TCP
//! connection, check a Binding request's MESSAGE-INTEGRITY against the session's ICE password
//! ([`authenticated`], with the STUN crate of the `rtc` stack). Responses are the ICE agent's
//! job.
//! Hand-written because the demux runs per packet on the receive thread and only needs these
//! few bytes; the STUN crate's parser allocates a message per call.

/// STUN magic cookie (bytes 4..8 of every RFC 5389+ message).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// Size of the STUN header.
const HEADER_LEN: usize = 20;
/// USERNAME attribute type.
const ATTR_USERNAME: u16 = 0x0006;
/// Binding request message type.
const BINDING_REQUEST: u16 = 0x0001;

/// True if `packet` looks like a STUN message (RFC 7983 first-byte range, cookie, length).
pub fn is_stun(packet: &[u8]) -> bool {
    packet.len() >= HEADER_LEN
        && packet[0] < 2
        && packet[4..8] == MAGIC_COOKIE
        && usize::from(u16::from_be_bytes([packet[2], packet[3]])) + HEADER_LEN == packet.len()
}

/// True if `packet` is a STUN Binding request.
pub fn is_binding_request(packet: &[u8]) -> bool {
    is_stun(packet) && u16::from_be_bytes([packet[0], packet[1]]) == BINDING_REQUEST
}

/// The USERNAME attribute's value of a STUN message, if present and valid UTF-8.
pub fn username(packet: &[u8]) -> Option<&str> {
    if !is_stun(packet) {
        return None;
    }
    let mut rest = &packet[HEADER_LEN..];
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == ATTR_USERNAME {
            return std::str::from_utf8(value).ok();
        }
        // Attributes are padded to 4 bytes.
        let padded = 4 + len.div_ceil(4) * 4;
        rest = rest.get(padded..)?;
    }
    None
}

/// Our ICE ufrag from a Binding request's USERNAME (`<our ufrag>:<their ufrag>`).
pub fn local_ufrag(packet: &[u8]) -> Option<&str> {
    if !is_binding_request(packet) {
        return None;
    }
    username(packet)?.split(':').next()
}

/// Whether `packet` is a Binding request carrying a MESSAGE-INTEGRITY made with `password`
/// (the ICE password of the session its USERNAME names: RFC 8445 short-term credentials).
pub fn authenticated(packet: &[u8], password: &str) -> bool {
    use rtc::crypto::providers::RingCrypto;
    use rtc::stun::integrity::MessageIntegrity;
    if !is_binding_request(packet) {
        return false;
    }
    let mut message = rtc::stun::message::Message::new();
    if message.unmarshal_binary(packet).is_err() {
        return false;
    }
    MessageIntegrity::check(&mut message, password.as_bytes(), &RingCrypto).is_ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a Binding request with a USERNAME (and a trailing dummy attribute).
    pub(crate) fn binding_request(user: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(user.len() as u16).to_be_bytes());
        attrs.extend_from_slice(user.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        attrs.extend_from_slice(&[0x80, 0x2a, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]); // ICE-CONTROLLING
        let mut packet = vec![0, 1];
        packet.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        packet.extend_from_slice(&MAGIC_COOKIE);
        packet.extend_from_slice(&[7; 12]);
        packet.extend_from_slice(&attrs);
        packet
    }

    #[test]
    fn reads_the_local_ufrag() {
        let packet = binding_request("w01abcdef:theirs");
        assert!(is_stun(&packet));
        assert_eq!(username(&packet), Some("w01abcdef:theirs"));
        assert_eq!(local_ufrag(&packet), Some("w01abcdef"));
        let odd = binding_request("abc:de");
        assert_eq!(local_ufrag(&odd), Some("abc"));
    }

    /// A Binding request as an ICE agent sends it: USERNAME, MESSAGE-INTEGRITY, FINGERPRINT.
    pub(crate) fn signed_binding_request(user: &str, password: &str) -> Vec<u8> {
        use rtc::crypto::providers::RingCrypto;
        use rtc::stun::fingerprint::FINGERPRINT;
        use rtc::stun::integrity::MessageIntegrity;
        use rtc::stun::message::{BINDING_REQUEST, Message, Setter, TransactionId};
        use rtc::stun::textattrs::Username;
        let crypto = RingCrypto;
        let mut message = Message::new();
        let integrity =
            MessageIntegrity::new_short_term_integrity_with_provider(password.to_owned(), &crypto);
        let username = Username::new(rtc::stun::attributes::ATTR_USERNAME, user.to_owned());
        let setters: Vec<Box<dyn Setter + '_>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(username),
            Box::new(integrity),
            Box::new(FINGERPRINT),
        ];
        message.build(&setters).unwrap();
        message.raw.clone()
    }

    #[test]
    fn integrity_is_checked_against_the_password() {
        let packet = signed_binding_request("w01abcdef:theirs", "the-ice-password");
        assert_eq!(local_ufrag(&packet), Some("w01abcdef"));
        assert!(authenticated(&packet, "the-ice-password"));
        assert!(!authenticated(&packet, "another-password"));
        let mut tampered = packet.clone();
        tampered[30] ^= 1; // inside USERNAME
        assert!(!authenticated(&tampered, "the-ice-password"));
        // No MESSAGE-INTEGRITY at all.
        assert!(!authenticated(
            &binding_request("w01abcdef:theirs"),
            "the-ice-password"
        ));
        assert!(!authenticated(
            &packet[..packet.len() - 4],
            "the-ice-password"
        ));
        assert!(!authenticated(&[0u8; 64], "x"));
    }

    #[test]
    fn rejects_non_stun_and_truncation() {
        assert!(!is_stun(&[0x80; 40])); // RTP
        assert!(!is_stun(&[22; 40])); // DTLS
        let packet = binding_request("a:b");
        assert_eq!(username(&packet[..packet.len() - 1]), None);
        let mut lying = packet.clone();
        lying[2] = 0xff; // length beyond the datagram
        assert_eq!(username(&lying), None);
        let mut huge_attr = packet.clone();
        huge_attr[22] = 0xff; // USERNAME length beyond the message
        assert_eq!(username(&huge_attr), None);
        assert_eq!(username(&[]), None);
    }
}
