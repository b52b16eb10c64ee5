//! Adjusts a client's SDP offer before the WebRTC core sees it.
//!
//! Owns one rule: RTX (RFC 4588) is taken out of media sections that send **simulcast**
//! (`a=simulcast`). Chromium pairs each rid-based layer with an RTX stream it names only by
//! the `rrid` header extension, and the `rtc` 0.21.1 core binds repair flows only from SDP
//! `ssrc-group:FID` lines: with RTX in the answer, a simulcast publisher's retransmissions
//! (and its padding probes) would arrive on SSRCs the core never maps and be lost. Without
//! RTX in that section the browser retransmits on the layer's own SSRC, which the core's
//! NACK generator already handles. Every other section keeps RTX.

use std::io::Cursor;

use rtc::sdp::description::session::SessionDescription;

/// The offer with RTX removed from its simulcast sections, or `None` when nothing changes
/// (no simulcast section carries RTX, or the SDP does not parse: the core reports that).
pub fn without_simulcast_rtx(sdp: &str) -> Option<String> {
    let mut parsed = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes())).ok()?;
    let mut changed = false;
    for media in &mut parsed.media_descriptions {
        if !media.has_attribute("simulcast") {
            continue;
        }
        let rtx: Vec<String> = media
            .attributes
            .iter()
            .filter(|a| a.key == "rtpmap")
            .filter_map(|a| {
                let value = a.value.as_deref()?;
                let (pt, codec) = value.split_once(' ')?;
                codec
                    .to_ascii_lowercase()
                    .starts_with("rtx/")
                    .then(|| pt.to_owned())
            })
            .collect();
        if rtx.is_empty() {
            continue;
        }
        changed = true;
        media
            .media_name
            .formats
            .retain(|format| !rtx.contains(format));
        media.attributes.retain(|a| {
            let names_rtx = |key: &str| {
                a.key == key
                    && a.value
                        .as_deref()
                        .and_then(|v| v.split([' ', '\t']).next())
                        .is_some_and(|pt| rtx.iter().any(|r| r == pt))
            };
            !(names_rtx("rtpmap") || names_rtx("fmtp") || names_rtx("rtcp-fb"))
                && !(a.key == "ssrc-group"
                    && a.value.as_deref().is_some_and(|v| v.starts_with("FID")))
        });
    }
    changed.then(|| parsed.marshal())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 45 46\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:45 AV1/90000\r\n\
a=rtpmap:46 rtx/90000\r\n\
a=fmtp:46 apt=45\r\n\
a=rid:l send\r\n\
a=rid:h send\r\n\
a=simulcast:send l;h\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 1 2\r\n";

    #[test]
    fn removes_rtx_only_from_simulcast_sections() {
        let filtered = without_simulcast_rtx(OFFER).expect("changed");
        let sections: Vec<&str> = filtered.split("m=video").collect();
        let (simulcast, plain) = (sections[1], sections[2]);
        assert!(
            simulcast.starts_with(" 9 UDP/TLS/RTP/SAVPF 96 45\r\n"),
            "{simulcast}"
        );
        assert!(!simulcast.contains("rtx"), "{simulcast}");
        assert!(!simulcast.contains("apt="), "{simulcast}");
        assert!(simulcast.contains("a=rtcp-fb:96 nack"));
        assert!(simulcast.contains("a=simulcast:send l;h"));
        assert!(plain.contains("a=rtpmap:97 rtx/90000"));
        assert!(plain.contains("a=ssrc-group:FID 1 2"));
        assert!(plain.starts_with(" 9 UDP/TLS/RTP/SAVPF 96 97\r\n"));
    }

    #[test]
    fn leaves_offers_without_simulcast_rtx_alone() {
        let plain = OFFER.split("m=video").take(1).collect::<String>();
        assert_eq!(without_simulcast_rtx(&plain), None);
        assert_eq!(without_simulcast_rtx("not sdp"), None);
    }
}
