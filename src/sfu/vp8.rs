//! The VP8 RTP payload descriptor (RFC 7741 §4.2): keyframe detection and rewriting of the
//! picture ID and TL0PICIDX, which simulcast layer switching needs so a receiver sees one
//! continuous stream (its decoder drops frames whose picture ID runs backwards).

use bytes::{Bytes, BytesMut};

/// Where the rewritable fields sit in a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// Start of a VP8 partition (S bit) with partition index 0.
    pub starts_frame: bool,
    /// Picture ID: (offset, 15-bit?) and value.
    pub picture_id: Option<(usize, bool, u16)>,
    /// TL0PICIDX: offset and value.
    pub tl0: Option<(usize, u8)>,
    /// Length of the descriptor (the VP8 payload header follows).
    pub len: usize,
}

/// Parses the descriptor at the start of `payload`; `None` if it is truncated.
pub fn descriptor(payload: &[u8]) -> Option<Descriptor> {
    let first = *payload.first()?;
    let mut d = Descriptor {
        starts_frame: first & 0x10 != 0 && first & 0x07 == 0,
        ..Default::default()
    };
    let mut at = 1;
    if first & 0x80 != 0 {
        let x = *payload.get(at)?;
        at += 1;
        if x & 0x80 != 0 {
            let b = *payload.get(at)?;
            if b & 0x80 != 0 {
                let low = *payload.get(at + 1)?;
                d.picture_id = Some((at, true, u16::from(b & 0x7f) << 8 | u16::from(low)));
                at += 2;
            } else {
                d.picture_id = Some((at, false, u16::from(b)));
                at += 1;
            }
        }
        if x & 0x40 != 0 {
            d.tl0 = Some((at, *payload.get(at)?));
            at += 1;
        }
        if x & 0x30 != 0 {
            payload.get(at)?;
            at += 1;
        }
    }
    d.len = at;
    Some(d)
}

/// Whether `payload` starts a VP8 keyframe (descriptor S=1, PID=0, and the payload header's
/// P bit clear).
pub fn is_keyframe(payload: &[u8]) -> bool {
    descriptor(payload).is_some_and(|d| is_keyframe_after(payload, &d))
}

/// [`is_keyframe`] with the descriptor already parsed.
pub fn is_keyframe_after(payload: &[u8], d: &Descriptor) -> bool {
    d.starts_frame && payload.get(d.len).is_some_and(|header| header & 0x01 == 0)
}

/// `payload` with its picture ID and TL0PICIDX replaced (keeping their widths); a copy, as
/// payloads are shared between receivers.
pub fn rewrite(payload: &Bytes, d: &Descriptor, picture_id: Option<u16>, tl0: Option<u8>) -> Bytes {
    let mut out = BytesMut::from(&payload[..]);
    if let (Some((at, wide, _)), Some(id)) = (d.picture_id, picture_id) {
        if wide {
            out[at] = 0x80 | ((id >> 8) as u8 & 0x7f);
            out[at + 1] = id as u8;
        } else {
            out[at] = id as u8 & 0x7f;
        }
    }
    if let (Some((at, _)), Some(value)) = (d.tl0, tl0) {
        out[at] = value;
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    // X=1 S=1 PID=0 | I=1 L=1 | M=1 picture ID 0x1234 | TL0PICIDX 7 | VP8 header (key: P=0)
    const KEY: [u8; 6] = [0x90, 0xc0, 0x92, 0x34, 0x07, 0x10];

    #[test]
    fn parses_and_detects_keyframes() {
        let d = descriptor(&KEY).unwrap();
        assert!(d.starts_frame);
        assert_eq!(d.picture_id, Some((2, true, 0x1234)));
        assert_eq!(d.tl0, Some((4, 7)));
        assert_eq!(d.len, 5);
        assert!(is_keyframe(&KEY));
        let mut delta = KEY;
        delta[5] = 0x11; // P=1: interframe
        assert!(!is_keyframe(&delta));
        let mut middle = KEY;
        middle[0] = 0x80; // not the start of the frame
        assert!(!is_keyframe(&middle));
        // Short form: no extensions, S=1.
        assert!(is_keyframe(&[0x10, 0x00]));
        assert_eq!(descriptor(&[0x90, 0x80]), None); // truncated picture ID
        assert!(!is_keyframe(&[]));
    }

    #[test]
    fn rewrites_in_place_keeping_widths() {
        let d = descriptor(&KEY).unwrap();
        let out = rewrite(&Bytes::from_static(&KEY), &d, Some(0x7ffe), Some(200));
        assert_eq!(&out[..], &[0x90, 0xc0, 0xff, 0xfe, 200, 0x10]);
        const NARROW: [u8; 4] = [0x90, 0x80, 0x05, 0x10];
        let narrow = NARROW;
        let d = descriptor(&narrow).unwrap();
        assert_eq!(d.picture_id, Some((2, false, 5)));
        let out = rewrite(&Bytes::from_static(&NARROW), &d, Some(0x1ff), None);
        assert_eq!(&out[..], &[0x90, 0x80, 0x7f, 0x10]);
    }
}
