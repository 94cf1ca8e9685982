#![allow(dead_code)]
//! A tiny threaded HTTP/1.1 server that records every request, and a raw
//! HTTP/1.1 client. Loopback (127.0.0.1) only.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Largest request/response head accepted.
const MAX_HEAD: usize = 1 << 20;
/// Client read/write timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------
// Recorded / Reply

/// One request as seen by a `TestServer`.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub method: String,
    /// The request target, verbatim (path and query).
    pub path: String,
    /// Header names lower-cased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked), or what arrived of it.
    pub body: Vec<u8>,
    /// False while (or if) the body has not fully arrived, e.g. because the
    /// connection was reset mid-body.
    pub complete: bool,
}

impl Recorded {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "recorded {} {} body is not JSON ({e}): {}",
                self.method,
                self.path,
                self.text()
            )
        })
    }
}

/// What a `TestServer` handler answers.
///
/// `status == 0` is special: the server closes the connection without
/// answering (after `delay`), to simulate a broken upstream.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Option<Duration>,
}

impl Reply {
    /// An empty reply with `status`.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: None,
        }
    }

    /// A JSON reply (`content-type: application/json`).
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::text(
            status,
            "application/json",
            serde_json::to_vec(body).unwrap_or_default(),
        )
    }

    /// A reply with the given content type and body.
    pub fn text(status: u16, content_type: &str, body: impl AsRef<[u8]>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".to_string(), content_type.to_string())],
            body: body.as_ref().to_vec(),
            delay: None,
        }
    }

    /// Close the connection without any answer.
    pub fn hang_up() -> Reply {
        Reply::status(0)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sleep `delay` before answering.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

// ---------------------------------------------------------------------------
// TestServer

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync + 'static;

struct Shared {
    handler: Box<Handler>,
    stop: AtomicBool,
    /// (record id, record); ids are never reused, `clear` just drops entries.
    requests: Mutex<Vec<(u64, Recorded)>>,
    next_id: AtomicU64,
    /// Live connections (clones used to shut them down on drop).
    conns: Mutex<HashMap<u64, TcpStream>>,
    accepted: AtomicU64,
}

impl Shared {
    fn begin(&self, rec: Recorded) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        lock(&self.requests).push((id, rec));
        id
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Recorded)) {
        let mut reqs = lock(&self.requests);
        if let Some((_, rec)) = reqs.iter_mut().rev().find(|(i, _)| *i == id) {
            f(rec);
        }
    }
}

/// A threaded HTTP/1.1 server on 127.0.0.1:<ephemeral>, with keep-alive,
/// Content-Length and chunked request bodies. Records every request,
/// including ones whose body never fully arrived.
pub struct TestServer {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> TestServer {
        TestServer::start_on(0, handler)
    }

    /// Like `start`, on the fixed port 127.0.0.1:`port` (0: any free port).
    /// Panics if the port cannot be bound.
    pub fn start_on(
        port: u16,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        TestServer::start_at("127.0.0.1", port, handler)
    }

    /// Bind `addr:port` (the demo in a container binds 0.0.0.0; tests always use 127.0.0.1).
    pub fn start_at(
        addr: &str,
        port: u16,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> TestServer {
        let listener =
            TcpListener::bind((addr, port)).unwrap_or_else(|e| panic!("bind {addr}:{port}: {e}"));
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            accepted: AtomicU64::new(0),
        });
        let s = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name(format!("test-server-{port}"))
            .spawn(move || accept_loop(listener, s))
            .expect("spawn accept thread");
        TestServer {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// A server that answers every request with `reply`.
    pub fn always(reply: Reply) -> TestServer {
        TestServer::start(move |_| reply.clone())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request seen so far, in arrival order (including incomplete).
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests)
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<Recorded> {
        lock(&self.shared.requests).last().map(|(_, r)| r.clone())
    }

    /// Number of requests (complete or not) whose path starts with `path_prefix`.
    pub fn count(&self, path_prefix: &str) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|(_, r)| r.path.starts_with(path_prefix))
            .count()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Number of TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have been recorded (or `timeout`
    /// passes) and returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let reqs = self.requests();
            if reqs.len() >= n || Instant::now() >= deadline {
                return reqs;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock accept().
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for (_, c) in lock(&self.shared.conns).drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_conn: u64 = 0;
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let id = next_conn;
        next_conn += 1;
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).insert(id, clone);
        }
        let s = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("test-conn-{id}"))
            .spawn(move || {
                let _ = serve_connection(stream, &s);
                lock(&s.conns).remove(&id);
            });
        if spawned.is_err() {
            lock(&shared.conns).remove(&id);
        }
    }
}

/// Reads one CRLF (or LF) terminated line, without the terminator.
/// `Ok(None)` on EOF before any byte.
fn read_line(r: &mut impl BufRead, limit: usize) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(limit as u64).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated line",
        ));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Reads header lines up to the empty line.
fn read_headers(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    let mut total = 0usize;
    loop {
        let line = read_line(r, MAX_HEAD)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in headers"))?;
        if line.is_empty() {
            return Ok(headers);
        }
        total += line.len();
        if total > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too big"));
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    })
}

fn content_length(headers: &[(String, String)]) -> Option<usize> {
    find_header(headers, "content-length").and_then(|v| v.trim().parse().ok())
}

/// Reads a chunked body, calling `sink` with every piece of data.
fn read_chunked(r: &mut impl BufRead, mut sink: impl FnMut(&[u8])) -> io::Result<()> {
    loop {
        let line = read_line(r, 4096)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in chunk size"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers up to the empty line.
            read_headers(r)?;
            return Ok(());
        }
        read_exact_into(r, size, &mut sink)?;
        let crlf = read_line(r, 16)?;
        if crlf.as_deref() != Some("") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk end"));
        }
    }
}

/// Reads exactly `n` bytes, passing them to `sink` as they arrive.
fn read_exact_into(
    r: &mut impl Read,
    mut n: usize,
    sink: &mut impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    while n > 0 {
        let want = n.min(buf.len());
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in body"));
        }
        sink(&buf[..got]);
        n -= got;
    }
    Ok(())
}

fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Request line (skip stray empty lines between requests).
        let line = loop {
            match read_line(&mut reader, MAX_HEAD)? {
                None => return Ok(()),
                Some(l) if l.is_empty() => continue,
                Some(l) => break l,
            }
        };
        let mut parts = line.splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("HTTP/1.1").trim().to_string();
        let headers = read_headers(&mut reader)?;

        let chunked = is_chunked(&headers);
        let length = if chunked {
            None
        } else {
            content_length(&headers)
        };
        let has_body = chunked || length.unwrap_or(0) > 0;
        let id = shared.begin(Recorded {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            body: Vec::new(),
            complete: !has_body,
        });

        if has_body
            && find_header(&headers, "expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }

        let mut body = Vec::new();
        {
            let mut sink = |data: &[u8]| {
                body.extend_from_slice(data);
                shared.update(id, |r| r.body.extend_from_slice(data));
            };
            if chunked {
                read_chunked(&mut reader, &mut sink)?;
            } else if let Some(n) = length {
                read_exact_into(&mut reader, n, &mut sink)?;
            }
        }
        shared.update(id, |r| r.complete = true);

        let rec = Recorded {
            method: method.clone(),
            path,
            headers: headers.clone(),
            body,
            complete: true,
        };
        // A panicking handler answers 500 instead of leaving the peer waiting.
        let reply =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (shared.handler)(&rec)))
                .unwrap_or_else(|_| Reply::text(500, "text/plain", "test server handler panicked"));

        if let Some(delay) = reply.delay {
            let deadline = Instant::now() + delay;
            while Instant::now() < deadline {
                if shared.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                thread::sleep(Duration::from_millis(20).min(deadline - Instant::now()));
            }
        }
        if reply.status == 0 {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }

        let conn_header = find_header(&headers, "connection").map(|v| v.to_ascii_lowercase());
        let close = match conn_header.as_deref() {
            Some(v) if v.contains("close") => true,
            Some(v) if v.contains("keep-alive") => false,
            _ => version.eq_ignore_ascii_case("HTTP/1.0"),
        } || find_header(&reply.headers, "connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));

        let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        let no_body_status = reply.status < 200 || reply.status == 204 || reply.status == 304;
        if find_header(&reply.headers, "content-length").is_none()
            && find_header(&reply.headers, "transfer-encoding").is_none()
            && !no_body_status
        {
            out.push_str(&format!("content-length: {}\r\n", reply.body.len()));
        }
        if close && find_header(&reply.headers, "connection").is_none() {
            out.push_str("connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !method.eq_ignore_ascii_case("HEAD") && !no_body_status {
            bytes.extend_from_slice(&reply.body);
        }
        writer.write_all(&bytes)?;
        writer.flush()?;
        if close {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------
// client

/// A response read by the raw client.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as JSON; panics with status and body text if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}, body: {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Builds the raw request bytes as `send` writes them.
fn build_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str("Host: localhost\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close && !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads one response (skipping 1xx interim responses). `to_eof` allows a
/// body delimited by connection close.
fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<Response> {
    loop {
        let line = read_line(reader, MAX_HEAD)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before any response",
            )
        })?;
        let mut parts = line.splitn(3, ' ');
        let _version = parts.next();
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
        let headers = read_headers(reader)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let mut body = Vec::new();
        let no_body = method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304;
        if !no_body {
            if is_chunked(&headers) {
                read_chunked(reader, |d| body.extend_from_slice(d))?;
            } else if let Some(n) = content_length(&headers) {
                read_exact_into(reader, n, &mut |d: &[u8]| body.extend_from_slice(d))?;
            } else {
                reader.read_to_end(&mut body)?;
            }
        }
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    )?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Turns the read timeout's EAGAIN into a readable error.
fn describe_timeout(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no complete response within {} s", CLIENT_TIMEOUT.as_secs()),
        ),
        _ => e,
    }
}

/// Writes `bytes` on a separate thread (so an early response is read even if
/// the peer stops reading the body), then reads one response.
fn exchange(stream: TcpStream, bytes: Vec<u8>, method: &str) -> io::Result<Response> {
    let mut w = stream.try_clone()?;
    let writer = thread::spawn(move || {
        let _ = w.write_all(&bytes);
        let _ = w.flush();
    });
    let mut reader = BufReader::new(stream.try_clone()?);
    let result = read_response(&mut reader, method).map_err(describe_timeout);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = writer.join();
    result
}

/// Sends one raw HTTP/1.1 request to 127.0.0.1:`port` and reads the
/// response. The path is written verbatim. Adds `Host: localhost`,
/// `Content-Length` (for a non-empty body) and `Connection: close` unless
/// the caller gave that header (a given content-length or transfer-encoding
/// header suppresses the automatic Content-Length; a chunked body must then
/// be encoded by the caller). Errors (e.g. connection reset with no
/// response) are returned.
pub fn try_send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let stream = connect(port)?;
    exchange(
        stream,
        build_request(method, path, headers, body, true),
        method,
    )
}

/// `try_send`, panicking on I/O errors.
pub fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_send(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} to 127.0.0.1:{port} failed: {e}"))
}

/// Writes `raw` verbatim to 127.0.0.1:`port` and reads one response.
pub fn try_send_raw(port: u16, raw: &[u8]) -> io::Result<Response> {
    let stream = connect(port)?;
    let method = raw
        .split(|b| *b == b' ')
        .next()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default();
    exchange(stream, raw.to_vec(), &method)
}

/// Writes `parts` to 127.0.0.1:`port` one after the other, waiting `pause` before each but the
/// first (a slow client), then, with `half_close`, shuts down the writing side (a client that
/// hangs up mid-request), and reads one response. The writes run on a separate thread, so an early
/// response is read even if the peer stops reading.
pub fn try_send_raw_parts(
    port: u16,
    parts: Vec<Vec<u8>>,
    pause: Duration,
    half_close: bool,
) -> io::Result<Response> {
    let stream = connect(port)?;
    let method = parts
        .first()
        .and_then(|p| p.split(|b| *b == b' ').next())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default();
    let mut w = stream.try_clone()?;
    let writer = thread::spawn(move || {
        for (i, part) in parts.iter().enumerate() {
            if i > 0 && !pause.is_zero() {
                thread::sleep(pause);
            }
            if w.write_all(part).and_then(|()| w.flush()).is_err() {
                return;
            }
        }
        if half_close {
            let _ = w.shutdown(Shutdown::Write);
        }
    });
    let mut reader = BufReader::new(stream.try_clone()?);
    let result = read_response(&mut reader, &method).map_err(describe_timeout);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = writer.join();
    result
}

/// `try_send_raw`, panicking on I/O errors.
pub fn send_raw(port: u16, raw: &[u8]) -> Response {
    try_send_raw(port, raw)
        .unwrap_or_else(|e| panic!("raw request to 127.0.0.1:{port} failed: {e}"))
}

/// GET `path`.
pub fn get(port: u16, path: &str) -> Response {
    send(port, "GET", path, &[], b"")
}

/// POST `body` as `application/json`.
pub fn post_json(port: u16, path: &str, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    send(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &bytes,
    )
}

/// Encodes `body` as one chunk plus the last chunk (for raw chunked requests).
pub fn chunked(body: &[u8]) -> Vec<u8> {
    chunked_parts(&[body])
}

/// Encodes each part as its own chunk, then the last chunk.
pub fn chunked_parts(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts.iter().filter(|p| !p.is_empty()) {
        out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A persistent (keep-alive) client connection.
pub struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let stream = connect(port).unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
        let reader = BufReader::new(stream.try_clone().expect("clone stream"));
        Conn { stream, reader }
    }

    /// Sends a request without `Connection: close` and reads its response.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_send(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} on kept-alive connection failed: {e}"))
    }

    pub fn try_send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let bytes = build_request(method, path, headers, body, false);
        self.stream.write_all(&bytes)?;
        self.stream.flush()?;
        read_response(&mut self.reader, method).map_err(describe_timeout)
    }

    /// Writes raw bytes and reads one response.
    pub fn send_raw(&mut self, raw: &[u8]) -> io::Result<Response> {
        let method = raw
            .split(|b| *b == b' ')
            .next()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .unwrap_or_default();
        self.stream.write_all(raw)?;
        self.stream.flush()?;
        read_response(&mut self.reader, &method).map_err(describe_timeout)
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}
