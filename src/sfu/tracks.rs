//! Published tracks and their classification (spec media-plane §3.1–§3.2).
//!
//! Owns: the four track kinds (also the MediaMap `type` strings), the classification of an
//! incoming track by its stream ID, and the out-track ID format
//! `<kind>_<senderSessionID>_<8 chars>` that clients parse.

/// Kind of a forwarded track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Voice,
    Screen,
    ScreenAudio,
    Video,
}

impl TrackKind {
    /// The MediaMap / track-ID spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Voice => "voice",
            TrackKind::Screen => "screen",
            TrackKind::ScreenAudio => "screen-audio",
            TrackKind::Video => "video",
        }
    }
}

/// Classifies an incoming track. `screen_stream`/`video_stream` are the stream IDs announced
/// with ScreenOn/VideoOn. `None` = an unexpected video track (not forwarded).
pub fn classify(
    is_audio: bool,
    stream_id: &str,
    screen_stream: Option<&str>,
    video_stream: Option<&str>,
) -> Option<TrackKind> {
    let is = |announced: Option<&str>| !stream_id.is_empty() && announced == Some(stream_id);
    match (is_audio, is(screen_stream), is(video_stream)) {
        (true, true, _) => Some(TrackKind::ScreenAudio),
        (true, false, _) => Some(TrackKind::Voice),
        (false, true, _) => Some(TrackKind::Screen),
        (false, false, true) => Some(TrackKind::Video),
        (false, false, false) => None,
    }
}

/// A fresh out-track ID: `<kind>_<sender session>_<8 chars of the Mattermost ID alphabet>`.
pub fn out_track_id(kind: TrackKind, sender_session: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let random: [u8; 8] = rand::random();
    let suffix: String = random
        .iter()
        .map(|b| ALPHABET[(*b & 31) as usize] as char)
        .collect();
    format!("{}_{sender_session}_{suffix}", kind.as_str())
}

/// Whether a receiver gets `track` (spec media-plane §3.4): the AV1 variant only when both
/// ends support AV1; the VP8 variant is skipped when both support AV1 and the publisher sends
/// an AV1 variant of the same kind. Audio is always forwarded.
pub fn receiver_wants(
    track: &PublishedTrack,
    publisher_av1: bool,
    receiver_av1: bool,
    publisher_tracks: &[PublishedTrack],
) -> bool {
    let both_av1 = publisher_av1 && receiver_av1;
    if track.mime.eq_ignore_ascii_case("video/AV1") {
        return both_av1;
    }
    if track.mime.eq_ignore_ascii_case("video/VP8") && both_av1 {
        let has_av1 = publisher_tracks
            .iter()
            .any(|t| t.kind == track.kind && t.mime.eq_ignore_ascii_case("video/AV1"));
        return !has_av1;
    }
    true
}

/// A track a participant publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedTrack {
    /// Publisher's session ID.
    pub publisher: String,
    /// The library's ID of the incoming track on the publisher's connection.
    pub source_id: String,
    pub kind: TrackKind,
    /// Codec MIME type (e.g. `audio/opus`).
    pub mime: String,
    /// ID of the forwarded track at receivers.
    pub out_id: String,
    /// `(publisher, source_id)`, shared by every packet of the track so forwarding can look up
    /// receivers' legs without building or hashing a key per packet.
    pub key: TrackKey,
    /// Sent as simulcast layers (rids): each receiver gets exactly one layer at a time.
    pub simulcast: bool,
}

/// A published track's identity, `(publisher session, source track ID)`: one allocation shared
/// by the track, every packet of it and every receiver's leg. Hashed once when made; equal keys
/// are almost always the same allocation, so comparing checks the pointer before the names.
#[derive(Debug, Clone)]
pub struct TrackKey(std::sync::Arc<TrackName>);

#[derive(Debug)]
struct TrackName {
    publisher: String,
    source_id: String,
    hash: u64,
}

impl TrackKey {
    pub fn new(publisher: &str, source_id: &str) -> Self {
        use std::hash::{Hash, Hasher};
        let mut hasher = rustc_hash::FxHasher::default();
        (publisher, source_id).hash(&mut hasher);
        Self(std::sync::Arc::new(TrackName {
            publisher: publisher.to_owned(),
            source_id: source_id.to_owned(),
            hash: hasher.finish(),
        }))
    }

    pub fn publisher(&self) -> &str {
        &self.0.publisher
    }

    pub fn source_id(&self) -> &str {
        &self.0.source_id
    }
}

impl PartialEq for TrackKey {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hash == other.0.hash
                && self.0.publisher == other.0.publisher
                && self.0.source_id == other.0.source_id)
    }
}

impl Eq for TrackKey {}

impl std::hash::Hash for TrackKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_keys_are_equal_by_name_whichever_allocation_they_are() {
        use std::collections::HashMap;
        let key = TrackKey::new("session-a", "track-1");
        let mut legs = HashMap::new();
        legs.insert(key.clone(), "leg");
        assert_eq!(legs.get(&key), Some(&"leg")); // the packet's key: the same allocation
        assert_eq!(
            legs.get(&TrackKey::new("session-a", "track-1")),
            Some(&"leg")
        );
        assert_eq!(legs.get(&TrackKey::new("session-a", "track-2")), None);
        assert_eq!(legs.get(&TrackKey::new("session-atrack-1", "")), None);
        assert_eq!((key.publisher(), key.source_id()), ("session-a", "track-1"));
    }

    #[test]
    fn classification_and_ids() {
        assert_eq!(classify(true, "s", None, None), Some(TrackKind::Voice));
        assert_eq!(
            classify(true, "scr", Some("scr"), None),
            Some(TrackKind::ScreenAudio)
        );
        assert_eq!(
            classify(false, "scr", Some("scr"), None),
            Some(TrackKind::Screen)
        );
        assert_eq!(
            classify(false, "cam", Some("scr"), Some("cam")),
            Some(TrackKind::Video)
        );
        assert_eq!(classify(false, "other", Some("scr"), Some("cam")), None);
        assert_eq!(classify(false, "", Some(""), None), None);
        let id = out_track_id(TrackKind::ScreenAudio, "sess1");
        let parts: Vec<&str> = id.split('_').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            (parts[0], parts[1], parts[2].len()),
            ("screen-audio", "sess1", 8)
        );
    }

    #[test]
    fn av1_variant_only_when_both_ends_support_it() {
        let track = |mime: &str| PublishedTrack {
            publisher: "p".into(),
            source_id: mime.into(),
            kind: TrackKind::Screen,
            mime: mime.into(),
            out_id: "x".into(),
            key: TrackKey::new("p", mime),
            simulcast: false,
        };
        let both = [track("video/VP8"), track("video/AV1")];
        let vp8_only = [track("video/VP8")];
        assert!(!receiver_wants(&both[0], true, true, &both));
        assert!(receiver_wants(&both[1], true, true, &both));
        assert!(receiver_wants(&both[0], true, false, &both));
        assert!(!receiver_wants(&both[1], true, false, &both));
        assert!(!receiver_wants(&both[1], false, true, &both));
        assert!(receiver_wants(&vp8_only[0], true, true, &vp8_only));
        assert!(receiver_wants(&track("audio/opus"), true, true, &both));
    }
}
