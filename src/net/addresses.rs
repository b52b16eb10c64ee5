//! Which local IPs the media plane serves and which addresses it advertises for them
//! (spec media-plane §1.2, §1.6–§1.7).
//!
//! Owns: interface discovery (up interfaces; IPv6 only when enabled), the `ice_address_*`
//! filter, the `ice_host_override` mapping (IP, hostname, or `external/internal` pairs), STUN
//! discovered public IPs, and `ice_host_port_override` (single port or per-IP map). Pure
//! functions plus one resolver call; no sockets.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::config::{PortOverride, RtcConfig};

pub use crate::wire::{Advertised, Protocol};

/// Address planning failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("no valid address to listen on was found")]
    NoAddress,
    #[error("failed to list network interfaces: {0}")]
    Interfaces(String),
    #[error("failed to resolve ice_host_override {host:?}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("invalid ice_host_port_override: {0}")]
    PortOverride(String),
}

/// Up interface addresses: IPv4 always, IPv6 global unicast (and `::1`) when enabled.
pub fn interface_ips(enable_ipv6: bool) -> Result<Vec<IpAddr>, AddressError> {
    let interfaces =
        if_addrs::get_if_addrs().map_err(|e| AddressError::Interfaces(e.to_string()))?;
    let mut ips: Vec<IpAddr> = interfaces
        .into_iter()
        .filter(|i| {
            !matches!(
                i.oper_status,
                if_addrs::IfOperStatus::Down
                    | if_addrs::IfOperStatus::LowerLayerDown
                    | if_addrs::IfOperStatus::NotPresent
            )
        })
        .map(|i| i.ip())
        .filter(|ip| match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => enable_ipv6 && (v6.is_loopback() || is_global_unicast_v6(v6)),
        })
        .collect();
    ips.sort();
    ips.dedup();
    Ok(ips)
}

fn is_global_unicast_v6(ip: &std::net::Ipv6Addr) -> bool {
    // Go's IsGlobalUnicast: not unspecified, loopback, multicast or link-local.
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (ip.segments()[0] & 0xffc0) == 0xfe80)
}

/// Splits a comma-separated IP list (entries trimmed, empties skipped).
pub fn ip_list(list: &str) -> Vec<IpAddr> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The local IPs to serve: interface IPs, filtered by `ice_address_udp`/`ice_address_tcp`
/// when either is set (an IP listed in either list is kept).
pub fn local_ips(config: &RtcConfig, interfaces: &[IpAddr]) -> Result<Vec<IpAddr>, AddressError> {
    let mut wanted = ip_list(&config.ice_address_udp);
    wanted.extend(ip_list(&config.ice_address_tcp));
    let ips: Vec<IpAddr> = if wanted.is_empty() {
        interfaces.to_vec()
    } else {
        interfaces
            .iter()
            .copied()
            .filter(|ip| wanted.contains(ip))
            .collect()
    };
    if ips.is_empty() {
        return Err(AddressError::NoAddress);
    }
    Ok(ips)
}

/// Resolves a host override (IP literal or hostname) to one IP of the wanted families.
pub fn resolve_override(host: &str, enable_ipv6: bool) -> Result<IpAddr, AddressError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    let err = |reason: String| AddressError::Resolve {
        host: host.to_owned(),
        reason,
    };
    (host, 0)
        .to_socket_addrs()
        .map_err(|e| err(e.to_string()))?
        .map(|a| a.ip())
        .find(|ip| ip.is_ipv4() || enable_ipv6)
        .ok_or_else(|| err("no usable address".into()))
}

/// local IP → advertised IP (a local IP absent from the map is not advertised), plus the set
/// of "external" addresses the port override applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatMap {
    pub map: HashMap<IpAddr, IpAddr>,
    pub external: std::collections::HashSet<IpAddr>,
}

impl NatMap {
    fn from_pairs(
        pairs: impl IntoIterator<Item = (IpAddr, IpAddr)>,
        external: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        Self {
            map: pairs.into_iter().collect(),
            external: external.into_iter().collect(),
        }
    }

    /// The advertised IP of a local IP.
    pub fn get(&self, local: &IpAddr) -> Option<&IpAddr> {
        self.map.get(local)
    }
}

/// Builds the NAT map of §1.6 from the override (already resolved when it is a single host)
/// or from STUN-discovered public IPs.
pub fn nat_map(
    local_ips: &[IpAddr],
    host_override: &str,
    resolved_override: Option<IpAddr>,
    discovered: &HashMap<IpAddr, IpAddr>,
) -> NatMap {
    if host_override.contains('/') {
        // `external/internal` pairs, used verbatim; externals that differ from their internal
        // address take the port override.
        let mut pairs = Vec::new();
        for pair in host_override.split(',') {
            if let Some((external, internal)) = pair.split_once('/')
                && let (Ok(external), Ok(internal)) = (
                    external.trim().parse::<IpAddr>(),
                    internal.trim().parse::<IpAddr>(),
                )
                && local_ips.contains(&internal)
            {
                pairs.push((internal, external));
            }
        }
        let external: Vec<IpAddr> = pairs
            .iter()
            .filter(|(i, e)| i != e)
            .map(|(_, e)| *e)
            .collect();
        return NatMap::from_pairs(pairs, external);
    }
    if let Some(external) = resolved_override {
        let same_family: Vec<IpAddr> = local_ips
            .iter()
            .copied()
            .filter(|ip| ip.is_ipv4() == external.is_ipv4())
            .collect();
        // The resolved override is the external address (upstream compared the unresolved
        // string, so a hostname override never took the port override).
        if same_family.len() == 1 {
            return NatMap::from_pairs([(same_family[0], external)], [external]);
        }
        let pairs = same_family
            .into_iter()
            .map(|ip| (ip, if ip.is_loopback() { ip } else { external }));
        return NatMap::from_pairs(pairs, [external]);
    }
    if !discovered.is_empty() {
        let pairs = local_ips
            .iter()
            .map(|ip| (*ip, discovered.get(ip).copied().unwrap_or(*ip)));
        return NatMap::from_pairs(pairs, discovered.values().copied());
    }
    NatMap::from_pairs(local_ips.iter().map(|ip| (*ip, *ip)), [])
}

/// The single advertised port override, if any (a map form picks the first local IP that
/// has an entry).
pub fn port_override(
    config: &RtcConfig,
    local_ips: &[IpAddr],
) -> Result<Option<u16>, AddressError> {
    match config.port_override().map_err(AddressError::PortOverride)? {
        PortOverride::None => Ok(None),
        PortOverride::Port(port) => Ok(Some(port)),
        PortOverride::Mapping(pairs) => Ok(local_ips.iter().find_map(|ip| {
            pairs
                .iter()
                .find(|(key, _)| key.parse::<IpAddr>().ok() == Some(*ip))
                .and_then(|(_, port)| u16::try_from(*port).ok())
        })),
    }
}

/// Every host candidate to advertise: one UDP and one TCP (passive) per mapped local IP.
/// The port override applies to candidates whose advertised IP is an external address.
pub fn advertised(
    local_ips: &[IpAddr],
    nat: &NatMap,
    udp_port: u16,
    tcp_port: u16,
    port_override: Option<u16>,
) -> Vec<Advertised> {
    let mut out = Vec::new();
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        let listen_port = if protocol == Protocol::Udp {
            udp_port
        } else {
            tcp_port
        };
        for local_ip in local_ips {
            let Some(external) = nat.get(local_ip) else {
                continue;
            };
            let port = match port_override {
                Some(port) if nat.external.contains(external) => port,
                _ => listen_port,
            };
            out.push(Advertised {
                protocol,
                local_ip: *local_ip,
                address: SocketAddr::new(*external, port),
            });
        }
    }
    out
}

/// True for addresses a remote client on another network cannot reach: private, loopback,
/// link-local, CGNAT or container-bridge ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn override_pairs_single_and_discovered() {
        let locals = [ip("10.0.0.5"), ip("127.0.0.1")];
        let none = HashMap::new();
        // No override: identity.
        let map = nat_map(&locals, "", None, &none);
        assert_eq!(map.map[&ip("10.0.0.5")], ip("10.0.0.5"));
        // Single public IP: loopback keeps itself, the LAN IP maps.
        let map = nat_map(&locals, "203.0.113.7", Some(ip("203.0.113.7")), &none);
        assert_eq!(map.map[&ip("10.0.0.5")], ip("203.0.113.7"));
        assert_eq!(map.map[&ip("127.0.0.1")], ip("127.0.0.1"));
        // Exactly one local IP of the family: mapped, even loopback.
        let map = nat_map(
            &[ip("127.0.0.1")],
            "198.51.100.1",
            Some(ip("198.51.100.1")),
            &none,
        );
        assert_eq!(map.map[&ip("127.0.0.1")], ip("198.51.100.1"));
        // Pairs: only listed internals are advertised.
        let map = nat_map(&locals, "8.8.8.8/10.0.0.5,1.1.1.1/10.9.9.9", None, &none);
        assert_eq!(map.map.len(), 1);
        assert_eq!(map.map[&ip("10.0.0.5")], ip("8.8.8.8"));
        // STUN-discovered.
        let discovered = HashMap::from([(ip("10.0.0.5"), ip("192.0.2.44"))]);
        let map = nat_map(&locals, "", None, &discovered);
        assert_eq!(map.map[&ip("10.0.0.5")], ip("192.0.2.44"));
        assert_eq!(map.map[&ip("127.0.0.1")], ip("127.0.0.1"));
    }

    #[test]
    fn advertised_with_port_override() {
        let locals = [ip("10.0.0.5"), ip("127.0.0.1")];
        let map = nat_map(
            &locals,
            "203.0.113.7",
            Some(ip("203.0.113.7")),
            &HashMap::new(),
        );
        let list = advertised(&locals, &map, 8443, 8444, Some(30443));
        let udp: Vec<String> = list
            .iter()
            .filter(|a| a.protocol == Protocol::Udp)
            .map(|a| a.address.to_string())
            .collect();
        assert_eq!(udp, ["203.0.113.7:30443", "127.0.0.1:8443"]);
        let tcp: Vec<String> = list
            .iter()
            .filter(|a| a.protocol == Protocol::Tcp)
            .map(|a| a.address.to_string())
            .collect();
        assert_eq!(tcp, ["203.0.113.7:30443", "127.0.0.1:8444"]);
        // An override equal to the local IP still takes the port override (upstream).
        let map = nat_map(
            &[ip("127.0.0.1")],
            "127.0.0.1",
            Some(ip("127.0.0.1")),
            &HashMap::new(),
        );
        let list = advertised(&[ip("127.0.0.1")], &map, 8443, 8443, Some(30443));
        assert_eq!(list[0].address.to_string(), "127.0.0.1:30443");
        // No override: no external address, no port override.
        let map = nat_map(&[ip("127.0.0.1")], "", None, &HashMap::new());
        let list = advertised(&[ip("127.0.0.1")], &map, 8443, 8443, Some(30443));
        assert_eq!(list[0].address.to_string(), "127.0.0.1:8443");
    }

    #[test]
    fn filters_and_port_maps() {
        let interfaces = [ip("10.0.0.5"), ip("127.0.0.1"), ip("172.17.0.2")];
        let config = RtcConfig {
            ice_address_udp: " 10.0.0.5 , ".into(),
            ice_host_port_override: "172.17.0.2/31000,10.0.0.5/32000".into(),
            ..RtcConfig::default()
        };
        let locals = local_ips(&config, &interfaces).unwrap();
        assert_eq!(locals, [ip("10.0.0.5")]);
        assert_eq!(port_override(&config, &locals).unwrap(), Some(32000));
        let config = RtcConfig {
            ice_address_udp: "192.0.2.1".into(),
            ..RtcConfig::default()
        };
        assert_eq!(
            local_ips(&config, &interfaces),
            Err(AddressError::NoAddress)
        );
        assert!(is_private(ip("172.17.0.2")));
        assert!(!is_private(ip("203.0.113.7")));
        assert_eq!(
            resolve_override("localhost", false).unwrap(),
            ip("127.0.0.1")
        );
        assert!(interface_ips(false).unwrap().contains(&ip("127.0.0.1")));
    }
}
