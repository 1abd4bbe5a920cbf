//! `scriptmesh-orchestrator healthcheck`: asks the orchestrator on this host for `GET /health`,
//! so container images need no curl for their HEALTHCHECK. Exit status 0 means a 2xx answer.

use crate::config::Config;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Well inside Docker's default 30 s HEALTHCHECK timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes the server that `config.bind_addr` describes.
pub fn run(config: &Config) -> Result<(), String> {
    let address = probe_address(config.bind_addr)?;
    probe(address)?;
    println!("ok: http://{address}/health");
    Ok(())
}

/// Where a server bound to `bind` is reached from the same host: a wildcard bind is reached
/// over loopback of its family.
pub fn probe_address(bind: SocketAddr) -> Result<SocketAddr, String> {
    if bind.port() == 0 {
        return Err("BIND_ADDR has port 0 (a random port): there is no fixed port to probe".into());
    }
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, bind.port()))
}

/// `GET http://{address}/health`; an error says what went wrong (no answer, or its status).
fn probe(address: SocketAddr) -> Result<(), String> {
    // awc builds its TLS connector up front, which needs the process's rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("http://{address}/health");
    actix_rt::System::new().block_on(async {
        let client = awc::Client::builder().timeout(PROBE_TIMEOUT).finish();
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|error| format!("{url}: {error}"))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("{url} answered {}", response.status()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_bind_is_probed_over_loopback() {
        let probe = |bind: &str| probe_address(bind.parse().expect("a socket address"));
        assert_eq!(probe("0.0.0.0:8080"), Ok("127.0.0.1:8080".parse().expect("literal")));
        assert_eq!(probe("[::]:8080"), Ok("[::1]:8080".parse().expect("literal")));
        assert_eq!(probe("10.1.2.3:9000"), Ok("10.1.2.3:9000".parse().expect("literal")));
        assert!(probe("0.0.0.0:0").is_err());
    }
}
