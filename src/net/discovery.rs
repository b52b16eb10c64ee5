//! Public-IP discovery through a STUN server at startup (spec media-plane §1.7): for each
//! served local IP, one Binding request sent from `localIP:ice_port_udp` (before the media
//! socket exists, so the mapping is the one clients will see), 5 s for the answer, and the
//! XOR-MAPPED-ADDRESS IP becomes that IP's advertised address. Failures are warnings.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use rtc::stun::message::{BINDING_REQUEST, Getter as _, Message, TransactionId};
use rtc::stun::xoraddr::XorMappedAddress;

use crate::config::IceServer;

/// Time to wait for a STUN answer.
pub const STUN_TIMEOUT: Duration = Duration::from_secs(5);

/// The first URL of the first server entry whose URLs are all STUN.
pub fn stun_url(servers: &[IceServer]) -> Option<&str> {
    servers
        .iter()
        .find(|s| {
            !s.urls.is_empty()
                && s.urls
                    .iter()
                    .all(|u| u.starts_with("stun:") || u.starts_with("stuns:"))
        })
        .and_then(|s| s.urls.first())
        .map(String::as_str)
}

/// `stun:host:port` → socket address (default port 3478).
fn resolve(url: &str, ipv6: bool) -> Option<SocketAddr> {
    server_address(url, ipv6).ok()
}

/// The address of a STUN/TURN URL (`scheme:host[:port][?query]`, default port 3478), IPv4
/// unless `ipv6`; the error names the cause.
pub fn server_address(url: &str, ipv6: bool) -> Result<SocketAddr, String> {
    let (_, rest) = url.split_once(':').ok_or("not a STUN/TURN URL")?;
    let host_port = rest.split('?').next().unwrap_or(rest);
    let host_port = if host_port
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.ends_with(':') && port.parse::<u16>().is_ok())
    {
        host_port.to_owned()
    } else {
        format!("{host_port}:3478")
    };
    host_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host_port}: {e}"))?
        .find(|a| a.is_ipv4() || ipv6)
        .ok_or_else(|| format!("{host_port} has no usable address"))
}

/// Asks the STUN server for the public address of each local IP (port `port`).
pub fn discover(local_ips: &[IpAddr], port: u16, url: &str, ipv6: bool) -> HashMap<IpAddr, IpAddr> {
    let mut discovered = HashMap::new();
    let Some(server) = resolve(url, ipv6) else {
        tracing::warn!(
            url,
            "rtc: STUN server address cannot be resolved; skipping public IP discovery"
        );
        return discovered;
    };
    for ip in local_ips
        .iter()
        .filter(|ip| ip.is_ipv4() == server.is_ipv4())
    {
        match query(SocketAddr::new(*ip, port), server) {
            Ok(public) => {
                tracing::info!(local_ip = %ip, public_ip = %public, url, "rtc: discovered public IP through STUN");
                discovered.insert(*ip, public);
            }
            Err(why) => {
                tracing::warn!(local_ip = %ip, url, "rtc: STUN public IP discovery failed: {why}")
            }
        }
    }
    discovered
}

pub fn query(local: SocketAddr, server: SocketAddr) -> Result<IpAddr, String> {
    let socket = UdpSocket::bind(local).map_err(|e| format!("bind {local}: {e}"))?;
    socket
        .set_read_timeout(Some(STUN_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut request = Message::new();
    request
        .build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .map_err(|e| e.to_string())?;
    socket
        .send_to(&request.raw, server)
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .map_err(|e| format!("no answer within {STUN_TIMEOUT:?}: {e}"))?;
        if from != server {
            continue;
        }
        let mut response = Message::new();
        response.raw = buf[..n].to_vec();
        response.decode().map_err(|e| e.to_string())?;
        if response.transaction_id != request.transaction_id {
            continue;
        }
        let mut mapped = XorMappedAddress::default();
        mapped
            .get_from(&response)
            .map_err(|e| format!("no XOR-MAPPED-ADDRESS: {e}"))?;
        return Ok(mapped.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_first_all_stun_entry() {
        let servers = vec![
            IceServer {
                urls: vec!["turn:t:3478".into()],
                ..Default::default()
            },
            IceServer {
                urls: vec!["stun:a.example:19302".into(), "stun:b".into()],
                ..Default::default()
            },
        ];
        assert_eq!(stun_url(&servers), Some("stun:a.example:19302"));
        assert_eq!(stun_url(&[]), None);
        assert_eq!(
            resolve("stun:127.0.0.1", false),
            Some("127.0.0.1:3478".parse().unwrap())
        );
        assert_eq!(
            resolve("stun:127.0.0.1:5349?transport=udp", false),
            Some("127.0.0.1:5349".parse().unwrap())
        );
    }
}
