//! The SFU core, sans-IO: sessions (one peer connection each), calls, the data-channel
//! protocol, negotiation and forwarding. Time is passed in; datagrams come in as values and
//! transmits go out as values. No sockets, threads, store or clock inside.

pub mod av1;
pub mod dc_protocol;
pub mod direct_rtp;
pub mod direct_video;
pub mod engine;
pub mod nack_budget;
pub mod offer_filter;
pub mod relay;
pub mod sender_reports;
pub mod sent_window;
pub mod session;
pub mod simulcast;
pub mod srtp_cm;
pub mod srtp_gcm;
pub mod srtp_keys;
pub mod testkit;
pub mod tracks;
pub mod vad;
pub mod vp8;
pub mod worker;
