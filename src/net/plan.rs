//! The media plane's address plan: which local IPs are served and which addresses sessions
//! advertise for them, and why (spec media-plane §1.6–§1.7).
//!
//! Owns: putting together interface discovery, `rtc.ice_address_*`, `rtc.ice_host_override`
//! (IP, hostname, or `external/internal` pairs), STUN public-IP discovery and
//! `rtc.ice_host_port_override` into one plan, used both by the running SFU and by
//! `rtcd check-network`, so the diagnosis shows exactly what the daemon would advertise.

use std::collections::HashMap;
use std::net::IpAddr;

use super::addresses::{self, AddressError, Advertised};
use super::discovery;
use crate::config::RtcConfig;

/// Where an advertised address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The local interface address itself.
    Interface,
    /// `rtc.ice_host_override` (an IP, a resolved hostname, or an `external/internal` pair).
    Override,
    /// The public IP a STUN server reported for this local IP (the URL).
    Stun(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Interface => f.write_str("interface address"),
            Origin::Override => f.write_str("rtc.ice_host_override"),
            Origin::Stun(url) => write!(f, "public IP reported by STUN server {url}"),
        }
    }
}

/// The plan.
#[derive(Debug, Clone)]
pub struct AddressPlan {
    /// Local IPs the media sockets bind.
    pub local_ips: Vec<IpAddr>,
    /// What sessions advertise (one UDP and one TCP candidate per local IP).
    pub advertised: Vec<Advertised>,
    /// Why each local IP advertises what it does.
    pub origins: HashMap<IpAddr, Origin>,
    /// The STUN server asked, if any, and the local IPs it answered for.
    pub stun: Option<(String, usize)>,
}

/// Plans the addresses for `config` (asks the configured STUN server when there is no
/// override; that takes up to 5 s per local IP if it does not answer).
pub fn plan(config: &RtcConfig) -> Result<AddressPlan, AddressError> {
    let interfaces = addresses::interface_ips(config.enable_ipv6)?;
    let local_ips = addresses::local_ips(config, &interfaces)?;
    let resolved = if config.ice_host_override.is_empty() || config.ice_host_override.contains('/')
    {
        None
    } else {
        Some(addresses::resolve_override(
            &config.ice_host_override,
            config.enable_ipv6,
        )?)
    };
    // STUN discovery only without an explicit override (spec media-plane §1.7).
    let stun_url =
        discovery::stun_url(&config.ice_servers).filter(|_| config.ice_host_override.is_empty());
    let discovered = match stun_url {
        Some(url) => discovery::discover(
            &local_ips,
            config.ice_port_udp as u16,
            url,
            config.enable_ipv6,
        ),
        None => HashMap::new(),
    };
    let nat = addresses::nat_map(&local_ips, &config.ice_host_override, resolved, &discovered);
    let port_override = addresses::port_override(config, &local_ips)?;
    let advertised = addresses::advertised(
        &local_ips,
        &nat,
        config.ice_port_udp as u16,
        config.ice_port_tcp as u16,
        port_override,
    );
    let origins = local_ips
        .iter()
        .map(|ip| {
            let origin = if discovered.contains_key(ip) {
                Origin::Stun(stun_url.unwrap_or_default().to_owned())
            } else if !config.ice_host_override.is_empty() && nat.get(ip).is_some() {
                Origin::Override
            } else {
                Origin::Interface
            };
            (*ip, origin)
        })
        .collect();
    Ok(AddressPlan {
        local_ips,
        advertised,
        origins,
        stun: stun_url.map(|url| (url.to_owned(), discovered.len())),
    })
}
