//! The SSRF guard: URLs that tenants give (integration endpoints, schedule webhooks) must not
//! reach the orchestrator's own network. A host is checked after name resolution, every
//! address it resolves to, and the request then goes to a checked address (never to a
//! second, possibly different, answer of the resolver).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a URL may not be contacted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The policy refuses it: trying again will not help.
    #[error("{0}")]
    Refused(String),
    /// The host name did not resolve (possibly a passing DNS failure).
    #[error("{0}")]
    Unresolvable(String),
}

/// The hint every refusal ends with.
const ALLOW_HINT: &str = "set ALLOW_PRIVATE_WEBHOOKS=true on the orchestrator to allow internal addresses";

/// Why `ip` is not a public address, or `None` when it may be contacted.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = ip.octets();
    if a == 0 {
        Some("an unspecified (\"this network\") address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        Some("a private address")
    } else if a == 169 && b == 254 {
        Some("a link-local address (where cloud metadata services answer)")
    } else if a == 100 && (64..=127).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if a >= 240 {
        Some("a reserved address")
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if let Some(v4) = embedded_v4(ip) {
        classify_v4(v4)
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if first & 0xffc0 == 0xfec0 {
        Some("a site-local address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a unique local (private) address")
    } else if first & 0xff00 == 0xff00 {
        Some("a multicast address")
    } else {
        None
    }
}

/// The IPv4 address inside an IPv6 one that leads to it: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, deprecated), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if s[..6] == [0; 6] {
        return Some(v4(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(v4(s[1], s[2]));
    }
    None
}

/// Checks `url`'s host. With `allow_private` nothing is refused and no addresses are
/// returned (the HTTP client resolves the name itself). Otherwise the addresses to connect
/// to, every one of them public.
pub async fn check_url(url: &url::Url, allow_private: bool) -> Result<Vec<SocketAddr>, GuardError> {
    if allow_private {
        return Ok(Vec::new());
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| GuardError::Refused(format!("{} has no port", url.scheme())))?;
    let addresses: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(domain)) => {
            let found = tokio::net::lookup_host((domain, port))
                .await
                .map_err(|e| GuardError::Unresolvable(format!("{domain} could not be resolved: {e}")))?;
            let found: Vec<SocketAddr> = found.collect();
            if found.is_empty() {
                return Err(GuardError::Unresolvable(format!("{domain} resolves to no address")));
            }
            found
        }
        None => return Err(GuardError::Refused("the URL has no host".into())),
    };
    check_addresses(url.host_str().unwrap_or_default(), &addresses)?;
    Ok(addresses)
}

/// Refuses the whole host if any address is internal: a name that resolves to a public and
/// a private address must not be usable to reach the private one.
pub fn check_addresses(host: &str, addresses: &[SocketAddr]) -> Result<(), GuardError> {
    for address in addresses {
        if let Some(why) = classify(address.ip()) {
            let shown = if host.trim_matches(['[', ']']) == address.ip().to_string() {
                format!("{host} is {why}")
            } else {
                format!("{host} resolves to {}, {why}", address.ip())
            };
            return Err(GuardError::Refused(format!("refused: {shown}; {ALLOW_HINT}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        classify(text.parse().unwrap()).is_some()
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "52.1.2.3",
            "172.15.255.255",
            "172.32.0.1",
            "192.167.1.1",
            "192.169.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "169.255.0.1",
            "223.255.255.255",
            "11.0.0.1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "fbff:ffff::1",
            "fe00::1",
        ] {
            assert!(!refused(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn ipv4_internal_ranges_are_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "192.168.255.255",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn ipv6_internal_ranges_are_refused() {
        for ip in [
            "::",
            "::1",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "ff02::1",
            "ff05::1:3",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::ffff:192.168.1.1",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "2002:a00:1::1",
            "2002:7f00:1::",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn reasons_name_the_range() {
        assert_eq!(classify("127.0.0.1".parse().unwrap()), Some("a loopback address"));
        assert!(classify("169.254.169.254".parse().unwrap())
            .unwrap()
            .contains("metadata"));
        assert_eq!(classify("10.0.0.1".parse().unwrap()), Some("a private address"));
        assert_eq!(
            classify("fd00::1".parse().unwrap()),
            Some("a unique local (private) address")
        );
    }

    #[actix_rt::test]
    async fn urls_are_checked_on_every_resolved_address() {
        let check = |text: &str| {
            let url = url::Url::parse(text).unwrap();
            async move { check_url(&url, false).await }
        };
        // The URL parser normalises the odd spellings of an address first.
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://017700000001/",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00::1]:9000/",
            "https://10.0.0.5/",
        ] {
            match check(url).await {
                Err(GuardError::Refused(message)) => {
                    assert!(message.contains("ALLOW_PRIVATE_WEBHOOKS"), "{message}")
                }
                other => panic!("{url}: expected a refusal, got {other:?}"),
            }
        }
        assert_eq!(
            check("http://8.8.8.8:81/x").await,
            Ok(vec!["8.8.8.8:81".parse().unwrap()])
        );
        let allowed = url::Url::parse("http://127.0.0.1/").unwrap();
        assert_eq!(check_url(&allowed, true).await, Ok(Vec::new()));
    }

    #[test]
    fn one_internal_address_refuses_the_host() {
        let addresses: Vec<SocketAddr> = vec!["8.8.8.8:443".parse().unwrap(), "10.0.0.1:443".parse().unwrap()];
        let error = check_addresses("rebind.example", &addresses).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("refused: rebind.example resolves to 10.0.0.1, a private address; {ALLOW_HINT}")
        );
    }
}
