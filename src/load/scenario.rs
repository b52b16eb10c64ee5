//! A load scenario: how many participants in how many calls, who speaks and who shares, for
//! how long; its validation (impossible parameters are refused with the reason) and the
//! per-participant plans.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::LoadError;
use super::peer::PeerPlan;

/// Most participants one run may simulate (keeps runs bounded).
pub const MAX_PARTICIPANTS: usize = 5_000;
/// Longest steady window.
pub const MAX_DURATION: Duration = Duration::from_secs(3_600);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub participants: usize,
    pub calls: usize,
    /// Unmuted participants per call (the first ones of each call).
    pub speakers_per_call: usize,
    /// One call in every `screen_every` has a screen share (0 = none).
    pub screen_every: usize,
    pub screen_kbps: u64,
    /// The steady measuring window.
    pub duration: Duration,
    /// Time between everyone connecting and the window.
    pub warmup: Duration,
    /// Joins per second.
    pub join_rate: f64,
    /// How long to wait for all peers to connect.
    pub connect_timeout: Duration,
    /// Local address of the simulated participants.
    pub bind_ip: IpAddr,
    /// Participant `i` binds UDP port `port_base + i` (so a test can shape one of them);
    /// `None` = ephemeral ports.
    pub port_base: Option<u16>,
    /// The SRTP profile the participants negotiate.
    pub srtp: SrtpProfile,
}

/// SRTP profiles a simulated participant can insist on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SrtpProfile {
    /// AEAD_AES_128_GCM (rtcd's first choice; what the floor uses).
    #[default]
    Gcm,
    /// AES_CM_128_HMAC_SHA1_80 (what Chromium negotiates).
    Cm,
}

impl SrtpProfile {
    pub fn dtls_profile(self) -> rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile {
        use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
        match self {
            Self::Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            Self::Cm => SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        }
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            participants: 20,
            calls: 1,
            speakers_per_call: 1,
            screen_every: 0,
            screen_kbps: 1_500,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            join_rate: 100.0,
            connect_timeout: Duration::from_secs(30),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_base: None,
            srtp: SrtpProfile::Gcm,
        }
    }
}

impl Scenario {
    /// Refuses impossible or unbounded parameters, naming the problem.
    pub fn validate(&self) -> Result<(), LoadError> {
        let invalid = |m: String| Err(LoadError::Invalid(m));
        if self.participants == 0 || self.participants > MAX_PARTICIPANTS {
            return invalid(format!(
                "--participants must be 1..={MAX_PARTICIPANTS} (got {})",
                self.participants
            ));
        }
        if self.calls == 0 || self.calls > self.participants {
            return invalid(format!(
                "--calls must be 1..=participants ({}) (got {})",
                self.participants, self.calls
            ));
        }
        let smallest_call = self.participants / self.calls;
        if self.speakers_per_call > smallest_call {
            return invalid(format!(
                "--speakers-per-call {} exceeds the smallest call's {smallest_call} participants",
                self.speakers_per_call
            ));
        }
        if smallest_call < 2 {
            return invalid(format!(
                "{} participants in {} calls leaves calls with fewer than 2 participants: nothing would be forwarded",
                self.participants, self.calls
            ));
        }
        if self.screen_every > 0 && !(100..=20_000).contains(&self.screen_kbps) {
            return invalid(format!(
                "--screen-kbps must be 100..=20000 (got {})",
                self.screen_kbps
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return invalid(format!(
                "--duration must be between 1 s and {} s (got {:?})",
                MAX_DURATION.as_secs(),
                self.duration
            ));
        }
        if !(self.join_rate > 0.0 && self.join_rate <= 10_000.0) {
            return invalid(format!(
                "--join-rate must be in (0, 10000] per second (got {})",
                self.join_rate
            ));
        }
        if self
            .port_base
            .is_some_and(|base| base < 1024 || usize::from(base) + self.participants > 65_535)
        {
            return invalid(format!(
                "--port-base must leave room for {} ports between 1024 and 65535",
                self.participants
            ));
        }
        if !self.bind_ip.is_loopback() {
            return invalid(format!(
                "--bind-ip must be a loopback address (got {}): load stays on this machine",
                self.bind_ip
            ));
        }
        Ok(())
    }

    /// Participants in call order: call `c` gets every `calls`-th participant; its first
    /// `speakers_per_call` speak and, in one call of every `screen_every`, the last shares.
    pub fn plans(&self) -> Vec<PeerPlan> {
        let run: u32 = rand::random();
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); self.calls];
        for participant in 0..self.participants {
            members[participant % self.calls].push(participant);
        }
        let mut plans = Vec::with_capacity(self.participants);
        for (call, participants) in members.iter().enumerate() {
            let shares = self.screen_every > 0 && call % self.screen_every == 0;
            for (position, participant) in participants.iter().enumerate() {
                plans.push(PeerPlan {
                    port: self.port_base.map(|base| base + *participant as u16),
                    session_id: format!("load{run:08x}s{participant:05}"),
                    call_id: format!("load{run:08x}c{call:04}"),
                    speaker: position < self.speakers_per_call,
                    screen_bps: (shares && position + 1 == participants.len())
                        .then_some(self.screen_kbps * 1_000),
                    srtp: self.srtp,
                });
            }
        }
        plans
    }

    /// Number of calls with a screen share.
    pub fn sharing_calls(&self) -> usize {
        if self.screen_every == 0 {
            0
        } else {
            self.calls.div_ceil(self.screen_every)
        }
    }
}

/// Refuses a daemon URL that is not on this machine's loopback.
pub fn require_loopback_url(url: &str) -> Result<(), LoadError> {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = host
        .rsplit_once(':')
        .map_or(
            host,
            |(h, port)| if port.parse::<u16>().is_ok() { h } else { host },
        )
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(LoadError::Invalid(format!(
            "--url must point at this machine's loopback (got {url}): load stays on this machine"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(participants: usize, calls: usize) -> Scenario {
        Scenario {
            participants,
            calls,
            ..Default::default()
        }
    }

    #[test]
    fn impossible_parameters_name_the_problem() {
        let err = |s: Scenario| s.validate().unwrap_err().to_string();
        assert!(err(scenario(0, 1)).contains("--participants"));
        assert!(err(scenario(10, 11)).contains("--calls"));
        assert!(err(scenario(3, 2)).contains("fewer than 2"));
        assert!(
            err(Scenario {
                speakers_per_call: 30,
                ..scenario(20, 1)
            })
            .contains("--speakers-per-call")
        );
        assert!(
            err(Scenario {
                duration: Duration::ZERO,
                ..scenario(20, 1)
            })
            .contains("--duration")
        );
        assert!(
            err(Scenario {
                bind_ip: "10.0.0.1".parse().unwrap(),
                ..scenario(20, 1)
            })
            .contains("loopback")
        );
        assert!(scenario(20, 1).validate().is_ok());
    }

    #[test]
    fn plans_put_speakers_and_sharers_in_each_call() {
        let s = Scenario {
            screen_every: 10,
            ..scenario(200, 10)
        };
        let plans = s.plans();
        assert_eq!(plans.len(), 200);
        assert_eq!(plans.iter().filter(|p| p.speaker).count(), 10);
        assert_eq!(plans.iter().filter(|p| p.screen_bps.is_some()).count(), 1);
        assert_eq!(s.sharing_calls(), 1);
    }

    #[test]
    fn only_loopback_urls() {
        assert!(require_loopback_url("http://127.0.0.1:8045").is_ok());
        assert!(require_loopback_url("http://localhost:8045/").is_ok());
        assert!(require_loopback_url("http://[::1]:8045").is_ok());
        assert!(require_loopback_url("http://10.1.2.3:8045").is_err());
        assert!(require_loopback_url("https://example.com").is_err());
    }
}
