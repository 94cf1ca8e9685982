#![allow(dead_code)]
//! Mutual TLS for the tests: a throwaway PKI made with rcgen (a directory CA issuing TPP client
//! certificates with arbitrary subject attributes, and Envoy's listener certificate) and a
//! blocking HTTPS/1.1 client over rustls that can present a client certificate.
//!
//! Everything is loopback only: the client connects to 127.0.0.1 with SNI `localhost` and trusts
//! nothing but the CA it is given.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PrintableString,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::http::Response;

/// Client connect, read and write timeout.
const TIMEOUT: Duration = Duration::from_secs(10);

/// OID of `UID` (userId, RFC 4519).
pub const OID_UID: &[u64] = &[0, 9, 2342, 19_200_300, 100, 1, 1];
/// OID of `organizationIdentifier` (X.520, 2.5.4.97).
pub const OID_ORGANIZATION_IDENTIFIER: &[u64] = &[2, 5, 4, 97];

/// A subject attribute type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnKind {
    Cn,
    O,
    Ou,
    /// Country: encoded as a PrintableString, as X.520 requires.
    C,
    /// `UID` (0.9.2342.19200300.100.1.1), a UTF8String.
    Uid,
    /// `organizationIdentifier` (2.5.4.97), a UTF8String.
    OrganizationIdentifier,
    /// Any other attribute, by OID, as a UTF8String.
    Oid(Vec<u64>),
}

impl DnKind {
    fn dn_type(&self) -> DnType {
        match self {
            DnKind::Cn => DnType::CommonName,
            DnKind::O => DnType::OrganizationName,
            DnKind::Ou => DnType::OrganizationalUnitName,
            DnKind::C => DnType::CountryName,
            DnKind::Uid => DnType::CustomDnType(OID_UID.to_vec()),
            DnKind::OrganizationIdentifier => {
                DnType::CustomDnType(OID_ORGANIZATION_IDENTIFIER.to_vec())
            }
            DnKind::Oid(oid) => DnType::CustomDnType(oid.clone()),
        }
    }

    /// The RFC 4514 attribute type (a short name, or the dotted OID).
    pub fn rfc4514_name(&self) -> String {
        match self {
            DnKind::Cn => "CN".into(),
            DnKind::O => "O".into(),
            DnKind::Ou => "OU".into(),
            DnKind::C => "C".into(),
            DnKind::Uid => "UID".into(),
            DnKind::OrganizationIdentifier => "organizationIdentifier".into(),
            DnKind::Oid(oid) => oid.iter().map(u64::to_string).collect::<Vec<_>>().join("."),
        }
    }
}

/// RFC 4514 escaping of an attribute value.
fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A client (or server) certificate and its key.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    /// PKCS#8.
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// The subject attributes in certificate order (first = first RDN).
    pub subject: Vec<(DnKind, String)>,
}

impl ClientIdentity {
    /// SHA-256 of the DER certificate (the `x5t#S256` thumbprint).
    pub fn sha256(&self) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.cert_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// [`ClientIdentity::sha256`] as lower-case hex (what Envoy and XFCC `Hash` show).
    pub fn sha256_hex(&self) -> String {
        self.sha256().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The subject as an RFC 4514 string: the last RDN first (`CN=…,…,C=…`).
    pub fn subject_rfc4514(&self) -> String {
        self.subject
            .iter()
            .rev()
            .map(|(k, v)| format!("{}={}", k.rfc4514_name(), escape_value(v)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The subject in certificate order (`C=…,…,CN=…`), as some tools print it.
    pub fn subject_cert_order(&self) -> String {
        self.subject
            .iter()
            .map(|(k, v)| format!("{}={}", k.rfc4514_name(), escape_value(v)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Paths of the files Envoy's `DownstreamTlsContext` reads.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that client certificates must chain to.
    pub ca: PathBuf,
}

static DIR_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A certificate authority with a temp dir for its PEM files (removed on drop).
pub struct Pki {
    pub name: String,
    ca_key: KeyPair,
    ca_cert: rcgen::Certificate,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    dir: PathBuf,
}

fn long_validity(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2060, 1, 1);
}

impl Pki {
    /// The trusted directory CA, "Test Directory CA".
    pub fn new() -> Pki {
        Pki::named("Test Directory CA")
    }

    /// A second CA that no Envoy in the tests trusts.
    pub fn untrusted() -> Pki {
        Pki::named("Untrusted Test CA")
    }

    /// A CA with common name `name` (P-256), `ca.pem` written to a fresh temp dir.
    pub fn named(name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CountryName,
            DnValue::PrintableString(PrintableString::try_from("BR").expect("printable")),
        );
        dn.push(DnType::OrganizationName, "dcr-guard tests");
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        long_validity(&mut params);
        let ca_cert = params.self_signed(&ca_key).expect("CA certificate");
        let ca_pem = ca_cert.pem();

        let dir = std::env::temp_dir().join(format!(
            "dcr-guard-pki-{}-{}",
            std::process::id(),
            DIR_COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        fs::write(dir.join("ca.pem"), &ca_pem).expect("write ca.pem");
        Pki {
            name: name.to_string(),
            ca_key,
            ca_cert,
            ca_pem,
            dir,
        }
    }

    /// The temp dir holding the PEM files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ca.pem` in [`Pki::dir`].
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn issue(
        &self,
        subject: &[(DnKind, &str)],
        sans: Vec<String>,
        eku: ExtendedKeyUsagePurpose,
    ) -> ClientIdentity {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(sans).expect("subject alternative names");
        let mut dn = DistinguishedName::new();
        for (kind, value) in subject {
            let v = if *kind == DnKind::C {
                DnValue::PrintableString(
                    PrintableString::try_from(*value).expect("printable country"),
                )
            } else {
                DnValue::Utf8String((*value).to_string())
            };
            dn.push(kind.dn_type(), v);
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        long_validity(&mut params);
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("issue certificate");
        ClientIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            subject: subject
                .iter()
                .map(|(k, v)| (k.clone(), (*v).to_string()))
                .collect(),
        }
    }

    /// A client certificate (EKU clientAuth) with exactly these subject attributes, in this
    /// (certificate) order. Each attribute type at most once.
    pub fn client(&self, subject: &[(DnKind, &str)]) -> ClientIdentity {
        self.issue(subject, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A server certificate (EKU serverAuth) for `hostnames` (DNS names), kept in memory (for
    /// [`HttpsServer`]).
    pub fn server_identity(&self, hostnames: &[&str]) -> ClientIdentity {
        self.issue(
            &[(
                DnKind::Cn,
                hostnames.first().copied().unwrap_or("localhost"),
            )],
            hostnames.iter().map(|h| (*h).to_string()).collect(),
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A server certificate (EKU serverAuth) for `hostnames` (DNS names or IP addresses), with
    /// `server.pem` and `server-key.pem` written next to `ca.pem`.
    pub fn server(&self, hostnames: &[&str]) -> ServerFiles {
        let id = self.issue(
            &[(
                DnKind::Cn,
                hostnames.first().copied().unwrap_or("localhost"),
            )],
            hostnames.iter().map(|h| (*h).to_string()).collect(),
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let files = ServerFiles {
            cert: self.dir.join("server.pem"),
            key: self.dir.join("server-key.pem"),
            ca: self.ca_path(),
        };
        fs::write(&files.cert, &id.cert_pem).expect("write server.pem");
        fs::write(&files.key, &id.key_pem).expect("write server-key.pem");
        files
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// HTTPS client

fn client_config(
    identity: Option<&ClientIdentity>,
    ca_pem: &str,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("CA PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate in the PEM".to_string());
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS versions: {e}"))?
    .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(id) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from(id.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone())),
            )
            .map_err(|e| format!("client certificate: {e}")),
    }
}

fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if (!body.is_empty() || matches!(method, "POST" | "PUT")) && !has("content-length") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body; `None` while incomplete.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(data, b"\r\n")?;
        let size_line = std::str::from_utf8(data.get(..eol)?).ok()?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        data = data.get(eol + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Parses a complete response out of `buf` (`eof`: the peer has closed). `None` while
/// incomplete. Interim 1xx responses are skipped.
fn parse_response(mut buf: &[u8], method: &str, eof: bool) -> Option<Response> {
    loop {
        let head_end = find(buf, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(buf.get(..head_end)?).into_owned();
        let rest = buf.get(head_end + 4..)?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        if (100..200).contains(&status) {
            buf = rest;
            continue;
        }
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            dechunk(rest)?
        } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            rest.get(..n)?.to_vec()
        } else if eof {
            rest.to_vec()
        } else {
            return None;
        };
        return Some(Response {
            status,
            headers,
            body,
        });
    }
}

/// One HTTPS/1.1 request to 127.0.0.1:`port` (SNI `localhost`), trusting only `ca_pem`, presenting
/// `identity`'s certificate when given. Adds `Host: localhost`, `Content-Length` and
/// `Connection: close`. Reads until the response is complete or the connection closes.
///
/// `Err` when no complete response arrived: a refused handshake (with TLS 1.3 the server's
/// verdict on the client certificate comes as an alert after the client's side of the handshake,
/// so it surfaces while reading), a reset, a timeout.
pub fn https_send(
    port: u16,
    identity: Option<&ClientIdentity>,
    ca_pem: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let config = client_config(identity, ca_pem)?;
    let server_name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), server_name)
        .map_err(|e| format!("TLS client: {e}"))?;
    let tcp = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), TIMEOUT)
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let mut tls = rustls::StreamOwned::new(conn, tcp);

    // The first write drives the handshake.
    tls.write_all(&request_bytes(method, path, headers, body))
        .and_then(|()| tls.flush())
        .map_err(|e| format!("TLS handshake or write: {e}"))?;

    let deadline = Instant::now() + TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let outcome: Result<(), io::Error> = loop {
        if parse_response(&buf, method, false).is_some() {
            break Ok(());
        }
        if Instant::now() >= deadline {
            break Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete response",
            ));
        }
        match tls.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    let _ = tls.sock.shutdown(Shutdown::Both);
    match (parse_response(&buf, method, true), outcome) {
        (Some(r), _) => Ok(r),
        (None, Err(e)) => Err(format!("TLS/read error before a complete response: {e}")),
        (None, Ok(())) => Err(format!(
            "connection closed before a complete response ({} bytes)",
            buf.len()
        )),
    }
}

/// [`https_send`], panicking on errors.
pub fn https(
    port: u16,
    identity: Option<&ClientIdentity>,
    ca_pem: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    https_send(port, identity, ca_pem, method, path, headers, body)
        .unwrap_or_else(|e| panic!("HTTPS {method} {path}: {e}"))
}

// ---------------------------------------------------------------------------
// HTTPS server

/// What an [`HttpsServer`] saw on one connection.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// `None` when the handshake failed (e.g. the client refused the certificate).
    pub request: Option<(String, Option<String>)>,
}

/// A threaded HTTPS/1.1 server on 127.0.0.1 presenting `identity`'s certificate, answering every
/// request with 200 and `body` (JSON), recording the SNI, path and `Host` of each connection.
pub struct HttpsServer {
    port: u16,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl HttpsServer {
    pub fn start(identity: &ClientIdentity, body: serde_json::Value) -> HttpsServer {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(identity.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.clone())),
        )
        .expect("server certificate");
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let body = body.to_string();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let stream = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let (config, seen, body) = (Arc::clone(&config), Arc::clone(&seen2), body.clone());
                std::thread::spawn(move || serve_one(stream, config, &seen, &body));
            }
        });
        HttpsServer { port, seen, stop }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_one(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    seen: &std::sync::Mutex<Vec<Seen>>,
    body: &str,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let complete = loop {
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => break false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if find(&buf, b"\r\n\r\n").is_some() {
                    break true;
                }
            }
        }
    };
    let sni = tls.conn.server_name().map(str::to_string);
    if !complete {
        seen.lock().unwrap().push(Seen { sni, request: None });
        return;
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_string();
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_string());
    seen.lock().unwrap().push(Seen {
        sni,
        request: Some((path, host)),
    });
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(reply.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = tls.sock.shutdown(Shutdown::Both);
}
