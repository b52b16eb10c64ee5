//! The AV1 RTP payload's aggregation header (AV1 RTP specification §4.4): keyframe detection
//! for receivers that wait for a decodable start.

/// Whether `payload` is the first packet of a new coded video sequence (a keyframe): the
/// aggregation header's N bit set and Z clear (the first OBU element starts here).
pub fn is_keyframe(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|header| header & 0x08 != 0 && header & 0x80 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_start_of_a_coded_video_sequence() {
        // Z=0 Y=0 W=1 N=1: a new sequence starting in this packet.
        assert!(is_keyframe(&[0x18, 0x0a]));
        // N=0: a delta frame.
        assert!(!is_keyframe(&[0x10, 0x32]));
        // Z=1: continues an OBU of the previous packet.
        assert!(!is_keyframe(&[0x88]));
        assert!(!is_keyframe(&[]));
    }
}
