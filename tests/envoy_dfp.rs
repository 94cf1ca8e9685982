//! `software_jwks_hosts: [{"host": "*"}]` through a real Envoy: the software JWKS a verified SSA
//! names on any recipient's host is fetched through a dynamic forward proxy cluster
//! (`envoy.clusters.dynamic_forward_proxy` with a DNS cache, no DFP HTTP filter: callouts never
//! pass through HTTP filters), over TLS with SNI and SAN verification of the host from the URL.
//!
//! Host names resolve through Envoy's c-ares resolver pointed at a small DNS server of the test
//! (`tests/common/dns.rs`) answering 127.0.0.1; the keystores are HTTPS servers with certificates
//! from a throwaway CA. Ports are free loopback ports, so the `*` entries name them (`*:PORT`),
//! which also shows that any other port is refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::dcr::Tpp;
use common::dns::DnsServer;
use common::keys::TestKey;
use common::tls::{HttpsServer, Pki};
use common::{Envoy, EnvoyConfig, Reply, Response, TestServer, DIRECTORY_JWKS_PATH};
use serde_json::{json, Value};

const GOOD_HOST: &str = "jwks.adr.test";
/// Resolves like the good host, but its server presents a certificate for another name.
const WRONG_HOST: &str = "wrong.adr.test";

/// The dynamic forward proxy cluster of the README's kit: DNS cache (resolving `dns`), TLS with
/// SNI and SAN verification from the callout's `:authority`, validated against `ca`.
fn dfp_cluster(name: &str, dns: &DnsServer, ca: &std::path::Path) -> Value {
    json!({
        "name": name,
        "connect_timeout": "1s",
        "lb_policy": "CLUSTER_PROVIDED",
        "cluster_type": {
            "name": "envoy.clusters.dynamic_forward_proxy",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig",
                "dns_cache_config": {
                    "name": "adr_jwks_hosts",
                    "dns_lookup_family": "V4_ONLY",
                    "max_hosts": 1024,
                    "typed_dns_resolver_config": dns.cares_resolver()
                }
            }
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "upstream_http_protocol_options": {"auto_sni": true, "auto_san_validation": true},
                "explicit_http_config": {"http_protocol_options": {}}
            }
        },
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {
                    "validation_context": {"trusted_ca": {"filename": ca.to_string_lossy()}}
                }
            }
        }
    })
}

struct Stack {
    tpp: Tpp,
    good: HttpsServer,
    wrong: HttpsServer,
    dns: DnsServer,
    upstream: TestServer,
    envoy: Envoy,
    _directory: TestServer,
    _pki: Pki,
}

impl Stack {
    fn start() -> Stack {
        let tpp = Tpp::new(TestKey::ec("cdr-register-key"), TestKey::ec("adr-key"));
        let pki = Pki::named("Test Web PKI");
        // Both keystores serve the TPP's real keys: only the certificate check keeps the wrong
        // host's from being used.
        let good = HttpsServer::start(&pki.server_identity(&[GOOD_HOST]), tpp.software_jwks());
        let wrong = HttpsServer::start(
            &pki.server_identity(&["other.adr.test"]),
            tpp.software_jwks(),
        );
        let dns = DnsServer::start(&[GOOD_HOST, WRONG_HOST]);
        let directory_doc = tpp.directory_jwks();
        let directory = TestServer::start(move |r| {
            if r.path == DIRECTORY_JWKS_PATH {
                Reply::json(200, &directory_doc)
            } else {
                Reply::text(404, "text/plain", "not found")
            }
        });
        let upstream = TestServer::always(Reply::json(201, &json!({"client_id": "c-1"})));
        let mut filter = tpp.au_filter_config("directory", "unused");
        filter["software_jwks_hosts"] = json!([
            {"host": format!("*:{}", good.port()), "upstream": "adr_dfp"},
            {"host": format!("*:{}", wrong.port()), "upstream": "adr_dfp"}
        ]);
        let cluster = dfp_cluster("adr_dfp", &dns, &pki.ca_path());
        let cfg = EnvoyConfig::new(filter, upstream.port())
            .cluster("directory", directory.port())
            .edit(move |b| {
                b["static_resources"]["clusters"]
                    .as_array_mut()
                    .unwrap()
                    .push(cluster.clone());
            });
        let envoy = Envoy::start(&cfg);
        Stack {
            tpp,
            good,
            wrong,
            dns,
            upstream,
            envoy,
            _directory: directory,
            _pki: pki,
        }
    }

    /// A registration whose verified SSA names the software JWKS at `https://{jwks_host}/…`.
    fn register(&mut self, jwks_host: &str) -> Response {
        self.tpp.jwks_host = jwks_host.to_string();
        self.envoy.send(
            "POST",
            "/register",
            &[("content-type", "application/jwt")],
            self.tpp.au_request().as_bytes(),
        )
    }
}

fn refused(r: &Response, status: u16, code: &str, words: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], code, "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains(words), "{body}");
}

#[test]
fn any_host_fetches_through_a_dynamic_forward_proxy_with_the_hosts_certificate() {
    let mut s = Stack::start();
    let good = format!("{GOOD_HOST}:{}", s.good.port());

    // The host of the verified SSA's URL, resolved by the DFP cluster on first use (no DFP HTTP
    // filter), its certificate verified for that host: registered.
    let r = s.register(&good);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.upstream.requests().len(), 1);
    let jwks_path = s.tpp.jwks_path();
    let seen = s.good.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].sni.as_deref(), Some(GOOD_HOST), "SNI from the host");
    let (path, host) = seen[0].request.clone().expect("a request");
    assert_eq!(path, jwks_path);
    assert_eq!(host.as_deref(), Some(good.as_str()));
    assert!(s
        .dns
        .queries()
        .iter()
        .any(|(name, qtype)| name == GOOD_HOST && *qtype == 1));

    // A host whose server's certificate is for another name: the TLS handshake fails (SAN
    // verification), the keys it would have served are never used, the registration is refused
    // as a keystore that could not be reached.
    let wrong = format!("{WRONG_HOST}:{}", s.wrong.port());
    let r = s.register(&wrong);
    refused(&r, 503, "temporarily_unavailable", WRONG_HOST);
    assert!(r.header("retry-after").is_some());
    let seen = s.wrong.seen();
    assert!(!seen.is_empty(), "the wrong host was never contacted");
    assert!(
        seen.iter().all(|c| c.request.is_none()),
        "a request reached the server with the wrong certificate: {seen:?}"
    );
    assert_eq!(seen[0].sni.as_deref(), Some(WRONG_HOST));
    assert_eq!(s.upstream.requests().len(), 1);

    // Refused without a fetch: an IP literal, a port no entry allows.
    let before = (
        s.good.seen().len(),
        s.wrong.seen().len(),
        s.dns.queries().len(),
    );
    let port = s.good.port();
    for (what, jwks_host) in [
        ("IPv4 literal", format!("127.0.0.1:{port}")),
        ("IPv6 literal", format!("[::1]:{port}")),
        ("port not listed", format!("{GOOD_HOST}:{}", port ^ 1)),
        ("default port 443, not listed", GOOD_HOST.to_string()),
    ] {
        let r = s.register(&jwks_host);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        refused(&r, 400, "invalid_client_metadata", "is not allowed");
    }
    assert_eq!(
        (
            s.good.seen().len(),
            s.wrong.seen().len(),
            s.dns.queries().len()
        ),
        before,
        "something was fetched or resolved for a refused URL"
    );
    assert_eq!(s.upstream.requests().len(), 1);

    // The good host again: served from the JWKS cache, no second fetch.
    let r = s.register(&good);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.good.seen().len(), 1);
}
