//! `rtcd check-network`: what an operator needs to know before the first call fails.
//!
//! Owns the checks (and their wording: one line per finding, each problem with its fix,
//! `docs/troubleshooting.md` for the longer story): the candidates the daemon would advertise
//! and why (interface, override, STUN), whether the API and media ports can be bound, the
//! socket buffers the media sockets ask for against the kernel's `rmem_max`/`wmem_max`, and
//! whether the configured STUN/TURN servers answer. Read-only: binds and releases ports,
//! sends one STUN request per configured server, changes nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

use crate::config::Config;
use crate::net::addresses::{self, Protocol};
use crate::net::{discovery, plan, runtime};

/// How a finding weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Works, but may hurt (calls from other networks, bursts under load).
    Warning,
    /// Something that stops calls or the daemon; the command exits non-zero.
    Problem,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.level {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Problem => "problem",
        };
        write!(f, "{tag}: {}", self.text)
    }
}

/// Everything `check-network` found, in the order it checked.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn push(&mut self, level: Level, text: impl Into<String>) {
        self.findings.push(Finding {
            level,
            text: text.into(),
        });
    }

    pub fn problems(&self) -> usize {
        self.count(Level::Problem)
    }

    pub fn warnings(&self) -> usize {
        self.count(Level::Warning)
    }

    fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }
}

/// Runs every check for `config`.
pub fn check_network(config: &Config) -> Report {
    let mut report = Report::default();
    let rtc = &config.rtc;
    match plan::plan(rtc) {
        Ok(plan) => {
            for a in &plan.advertised {
                let origin = plan
                    .origins
                    .get(&a.local_ip)
                    .map_or_else(|| "interface address".into(), ToString::to_string);
                let protocol = match a.protocol {
                    Protocol::Udp => "udp",
                    Protocol::Tcp => "tcp (ICE-TCP)",
                };
                report.push(
                    Level::Ok,
                    format!(
                        "advertises {protocol} {} for local {} ({origin})",
                        a.address, a.local_ip
                    ),
                );
            }
            if let Some((url, answered)) = &plan.stun
                && *answered == 0
            {
                report.push(
                    Level::Problem,
                    format!(
                        "STUN server {url} gave no public IP for any local address, so the \
                         interface addresses are advertised — fix: check the URL and that UDP \
                         from this host to it is allowed, or set RTCD_RTC_ICEHOSTOVERRIDE"
                    ),
                );
            }
            let reachable = plan
                .advertised
                .iter()
                .any(|a| !addresses::is_private(a.address.ip()));
            if !reachable {
                report.push(
                    Level::Warning,
                    "every advertised address is private, loopback or a container bridge \
                     address: clients on other networks cannot reach the media port — fix: set \
                     RTCD_RTC_ICEHOSTOVERRIDE to the public IP or hostname clients should use \
                     (behind 1:1 NAT or in Kubernetes with hostNetwork, the node's external IP), \
                     or add a STUN server to rtc.ice_servers; fine if every client is on this \
                     network",
                );
            }
            check_media_ports(&mut report, config, &plan.local_ips);
        }
        Err(e) => report.push(
            Level::Problem,
            format!(
                "no media address plan: {e} — fix: check rtc.ice_address_udp/tcp \
                 (RTCD_RTC_ICEADDRESSUDP/TCP) and rtc.ice_host_override (RTCD_RTC_ICEHOSTOVERRIDE)"
            ),
        ),
    }
    check_api_port(&mut report, config);
    check_buffers(&mut report);
    check_servers(&mut report, config);
    report
}

fn check_api_port(report: &mut Report, config: &Config) {
    let address = config.api.http.socket_addr_string();
    match TcpListener::bind(&address) {
        Ok(_) => report.push(
            Level::Ok,
            format!("API address {address} (tcp) can be bound"),
        ),
        Err(e) => report.push(
            Level::Problem,
            format!(
                "cannot listen on the API address {address}: {e} — fix: stop what listens there \
                 (another rtcd? `ss -ltnp`), or set RTCD_API_HTTP_LISTENADDRESS"
            ),
        ),
    }
}

fn check_media_ports(report: &mut Report, config: &Config, local_ips: &[IpAddr]) {
    let rtc = &config.rtc;
    for ip in local_ips {
        let udp = SocketAddr::new(*ip, rtc.ice_port_udp as u16);
        match UdpSocket::bind(udp) {
            Ok(_) => report.push(Level::Ok, format!("media address {udp} (udp) can be bound")),
            Err(e) => report.push(
                Level::Problem,
                format!(
                    "cannot bind the media port {udp} (udp): {e} — fix: stop what uses it \
                     (another rtcd? `ss -lunp`), or set RTCD_RTC_ICEPORTUDP"
                ),
            ),
        }
        let tcp = SocketAddr::new(*ip, rtc.ice_port_tcp as u16);
        match TcpListener::bind(tcp) {
            Ok(_) => report.push(
                Level::Ok,
                format!("media address {tcp} (tcp, ICE-TCP) can be bound"),
            ),
            Err(e) => report.push(
                Level::Problem,
                format!(
                    "cannot listen on the ICE-TCP port {tcp}: {e} — fix: stop what uses it \
                     (another rtcd? `ss -ltnp`), or set RTCD_RTC_ICEPORTTCP"
                ),
            ),
        }
    }
}

fn check_buffers(report: &mut Report) {
    let wanted = runtime::SOCKET_BUFFER_BYTES;
    for (name, direction) in [("rmem_max", "receive"), ("wmem_max", "send")] {
        let path = format!("/proc/sys/net/core/{name}");
        match std::fs::read_to_string(&path)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            Some(max) if max >= wanted => report.push(
                Level::Ok,
                format!("net.core.{name} = {max}: the media sockets get the {wanted}-byte {direction} buffer they ask for"),
            ),
            Some(max) => report.push(
                Level::Warning,
                format!(
                    "net.core.{name} = {max}, below the {wanted}-byte {direction} buffer the media \
                     sockets ask for: bursts of many calls may be dropped — fix: sysctl -w \
                     net.core.{name}={wanted} (persist it in /etc/sysctl.d/)"
                ),
            ),
            None => report.push(Level::Warning, format!("cannot read {path}")),
        }
    }
}

fn check_servers(report: &mut Report, config: &Config) {
    let rtc = &config.rtc;
    if rtc.ice_servers.is_empty() {
        report.push(
            Level::Ok,
            "no STUN/TURN servers configured (rtc.ice_servers): nothing to try",
        );
    }
    for url in rtc.ice_servers.iter().flat_map(|s| s.urls.iter()) {
        let kind = if url.starts_with("turn") {
            "TURN"
        } else {
            "STUN"
        };
        let server = match discovery::server_address(url, rtc.enable_ipv6) {
            Ok(server) => server,
            Err(why) => {
                report.push(
                    Level::Problem,
                    format!("{kind} server {url}: {why} — fix: correct the URL in rtc.ice_servers"),
                );
                continue;
            }
        };
        let any: IpAddr = if server.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        match discovery::query(SocketAddr::new(any, 0), server) {
            Ok(mapped) => report.push(
                Level::Ok,
                format!("{kind} server {url} ({server}) answered: this host is seen as {mapped}"),
            ),
            Err(why) => report.push(
                Level::Problem,
                format!(
                    "{kind} server {url} ({server}) did not answer a binding request: {why} — fix: \
                     check that the server runs and that UDP from this host to {server} is allowed"
                ),
            ),
        }
    }
    if !rtc.turn.static_auth_secret.is_empty()
        && !rtc
            .ice_servers
            .iter()
            .any(|s| s.urls.iter().any(|u| u.starts_with("turn")))
    {
        report.push(
            Level::Warning,
            "rtc.turn.static_auth_secret is set but rtc.ice_servers has no turn: URL, so no \
             session allocates a relay — fix: add the TURN server's URL to rtc.ice_servers",
        );
    }
}
