//! Adjusts a client's SDP offer before the WebRTC core sees it.
//!
//! Owns one rule: RTX (RFC 4588) is taken out of the media sections the client **sends** on
//! (`sendonly`/`sendrecv`), so publishers retransmit on the media SSRC itself; sections the
//! client only receives on (our forwarded tracks) keep RTX. Two defects of the `rtc` 0.21.1
//! core make inbound RTX harmful:
//! - its NACK generator is bound to the repair SSRC as if it were media and runs before RTX
//!   is unwrapped, so it never sees a repaired packet and NACKs it again until it gives up
//!   (measured with Chromium at 10 % loss: 880 retransmissions in 12 s, and NACKs for 6 s
//!   after the loss ended);
//! - simulcast repair flows named only by the `rrid` header extension are never bound, so a
//!   simulcast publisher's retransmissions would be lost.

use std::io::Cursor;

use rtc::sdp::description::session::SessionDescription;

/// The offer with RTX removed from the sections the client sends on, or `None` when nothing
/// changes (no such section carries RTX, or the SDP does not parse: the core reports that).
pub fn without_publisher_rtx(sdp: &str) -> Option<String> {
    let mut parsed = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes())).ok()?;
    let mut changed = false;
    for media in &mut parsed.media_descriptions {
        // No direction attribute means sendrecv (RFC 8866 §6.7).
        let receives_only = ["recvonly", "inactive"]
            .iter()
            .any(|d| media.has_attribute(d));
        if receives_only {
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
        // The repair SSRCs (second and later of each `ssrc-group:FID`) go with their lines:
        // left behind they would read as another media source of the same track.
        let repair_ssrcs: Vec<String> = media
            .attributes
            .iter()
            .filter(|a| a.key == "ssrc-group")
            .filter_map(|a| a.value.as_deref()?.strip_prefix("FID "))
            .flat_map(|ssrcs| ssrcs.split_whitespace().skip(1).map(str::to_owned))
            .collect();
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
            let names_repair_ssrc = a.key == "ssrc"
                && a.value
                    .as_deref()
                    .and_then(|v| v.split(' ').next())
                    .is_some_and(|ssrc| repair_ssrcs.iter().any(|r| r == ssrc));
            let fid_group =
                a.key == "ssrc-group" && a.value.as_deref().is_some_and(|v| v.starts_with("FID"));
            !(names_rtx("rtpmap")
                || names_rtx("fmtp")
                || names_rtx("rtcp-fb")
                || names_repair_ssrc
                || fid_group)
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
a=recvonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 1 2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:2\r\n\
a=sendonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 11 22\r\n\
a=ssrc:11 cname:x\r\n\
a=ssrc:22 cname:x\r\n";

    #[test]
    fn removes_rtx_only_from_sections_the_client_sends_on() {
        let filtered = without_publisher_rtx(OFFER).expect("changed");
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
        let sender = sections[3];
        assert!(
            sender.starts_with(" 9 UDP/TLS/RTP/SAVPF 96\r\n"),
            "{sender}"
        );
        assert!(sender.contains("a=ssrc:11 cname:x"), "{sender}");
        assert!(
            !sender.contains("a=ssrc:22") && !sender.contains("FID"),
            "{sender}"
        );
    }

    #[test]
    fn leaves_offers_without_publisher_rtx_alone() {
        let receive_only = OFFER.replace("a=sendonly", "a=recvonly");
        assert_eq!(without_publisher_rtx(&receive_only), None);
        assert_eq!(without_publisher_rtx("not sdp"), None);
    }
}
