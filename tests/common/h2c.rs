#![allow(dead_code)]
//! A small HTTP/2 client for the Envoy tests: cleartext with prior knowledge (h2c, what Envoy's
//! `codec_type: AUTO` listener accepts), on the `h2` crate and a current-thread tokio runtime.
//! Loopback (127.0.0.1) only. Answers are `http::Response`s, like the HTTP/1.1 client's.
//!
//! Beyond plain requests it can send what a hostile client would: header values that are not
//! UTF-8, repeated headers, bodies in slow pieces, and streams reset part-way through their body.
//! Many requests can share one connection as concurrent streams (`Client::send_all`).

use std::io;
use std::time::Duration;

use ::h2::client::SendRequest;
use ::h2::Reason;
use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

use super::http::Response;

/// How long one request (or one `send_all` batch) may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest response body read.
const MAX_BODY: usize = 1 << 20;

/// One HTTP/2 request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// `:path` (with query); must start with `/`.
    pub path: String,
    /// `:authority`; `localhost` unless set.
    pub authority: String,
    /// Header names must be lower case; values may be any bytes h2 lets through (no CR/LF/NUL).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The body in this many pieces (at least 1) with `pause` before each but the first.
    pub pieces: usize,
    pub pause: Duration,
    /// Reset the stream (CANCEL) after sending this many body bytes instead of ending it.
    pub reset_after: Option<usize>,
    /// Send no `content-length` (one is added for a body unless given or this is set).
    pub no_length: bool,
    /// Leave the stream open after the body (a client that promised more and waits).
    pub hold_open: bool,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            authority: "localhost".to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            pieces: 1,
            pause: Duration::ZERO,
            reset_after: None,
            no_length: false,
            hold_open: false,
        }
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    pub fn headers(mut self, headers: &[(&str, &str)]) -> Request {
        for (k, v) in headers {
            self = self.header(k, v);
        }
        self
    }

    pub fn body(mut self, body: impl AsRef<[u8]>) -> Request {
        self.body = body.as_ref().to_vec();
        self
    }

    /// Sends the body in `pieces` pieces, waiting `pause` before each after the first.
    pub fn slow(mut self, pieces: usize, pause: Duration) -> Request {
        self.pieces = pieces.max(1);
        self.pause = pause;
        self
    }

    /// Sends the body without a `content-length` (it ends with the stream).
    pub fn without_length(mut self) -> Request {
        self.no_length = true;
        self
    }

    /// Leaves the stream open after the body: the answer must come before the request ends.
    pub fn hold_open(mut self) -> Request {
        self.hold_open = true;
        self
    }

    /// Resets the stream after `n` body bytes.
    pub fn reset_after(mut self, n: usize) -> Request {
        self.reset_after = Some(n);
        self
    }

    fn build(&self) -> io::Result<http::Request<()>> {
        let uri = format!("http://{}{}", self.authority, self.path);
        let mut b = http::Request::builder()
            .method(http::Method::from_bytes(self.method.as_bytes()).map_err(invalid)?)
            .uri(uri);
        for (k, v) in &self.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(invalid)?;
            let value = http::HeaderValue::from_bytes(v).map_err(invalid)?;
            b = b.header(name, value);
        }
        let has_length = self.headers.iter().any(|(k, _)| k == "content-length");
        if !self.body.is_empty()
            && !has_length
            && !self.no_length
            && self.reset_after.is_none()
            && !self.hold_open
        {
            b = b.header("content-length", self.body.len());
        }
        b.body(()).map_err(invalid)
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

fn h2_error(e: ::h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("h2 I/O error"));
    }
    io::Error::other(format!("h2: {e}"))
}

/// One HTTP/2 connection to 127.0.0.1:`port`.
pub struct Client {
    rt: Runtime,
    sender: SendRequest<Bytes>,
    port: u16,
}

impl Client {
    /// Connects and completes the HTTP/2 handshake (preface and SETTINGS).
    pub fn connect(port: u16) -> io::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let sender = rt.block_on(handshake(port))?;
        Ok(Client { rt, sender, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends one request and reads its answer.
    pub fn send(&mut self, req: &Request) -> io::Result<Response> {
        self.send_all(std::slice::from_ref(req))
            .pop()
            .unwrap_or_else(|| Err(io::Error::other("no result")))
    }

    /// Sends every request as its own stream, all at once on this connection (h2 queues streams
    /// beyond the server's concurrency limit), and returns the answers in order.
    pub fn send_all(&mut self, reqs: &[Request]) -> Vec<io::Result<Response>> {
        let sender = self.sender.clone();
        self.rt.block_on(async move {
            let mut tasks = Vec::with_capacity(reqs.len());
            for req in reqs {
                let req = req.clone();
                let sender = sender.clone();
                tasks.push(tokio::spawn(async move {
                    match tokio::time::timeout(TIMEOUT, exchange(sender, req)).await {
                        Ok(r) => r,
                        Err(_) => Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no complete HTTP/2 answer within {} s", TIMEOUT.as_secs()),
                        )),
                    }
                }));
            }
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(
                    t.await
                        .unwrap_or_else(|e| Err(io::Error::other(e.to_string()))),
                );
            }
            out
        })
    }
}

/// Connects to 127.0.0.1:`port` (5 s bound) and completes the HTTP/2 handshake; the connection
/// is driven by a task of the current runtime.
async fn handshake(port: u16) -> io::Result<SendRequest<Bytes>> {
    let tcp = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let (sender, connection) = ::h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .max_header_list_size(1 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .map_err(h2_error)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn exchange(sender: SendRequest<Bytes>, req: Request) -> io::Result<Response> {
    let request = req.build()?;
    let mut sender = sender.ready().await.map_err(h2_error)?;
    let no_body = req.body.is_empty() && req.reset_after.is_none() && !req.hold_open;
    let (response, mut stream) = sender.send_request(request, no_body).map_err(h2_error)?;
    if !no_body {
        let limit = req
            .reset_after
            .unwrap_or(req.body.len())
            .min(req.body.len());
        let body = req.body.get(..limit).unwrap_or(&[]);
        let piece = body.len().div_ceil(req.pieces).max(1);
        let mut chunks = body.chunks(piece).peekable();
        let mut first = true;
        let ends = req.reset_after.is_none() && !req.hold_open;
        if chunks.peek().is_none() && ends {
            stream.send_data(Bytes::new(), true).map_err(h2_error)?;
        }
        while let Some(chunk) = chunks.next() {
            if !first && !req.pause.is_zero() {
                tokio::time::sleep(req.pause).await;
            }
            first = false;
            let last = chunks.peek().is_none() && ends;
            // The server may already have answered and reset the stream: stop sending then.
            if stream
                .send_data(Bytes::copy_from_slice(chunk), last)
                .is_err()
            {
                break;
            }
        }
        if req.reset_after.is_some() {
            stream.send_reset(Reason::CANCEL);
        }
    }
    let response = response.await.map_err(h2_error)?;
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(h2_error)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response body too large",
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).trim().to_string(),
            )
        })
        .collect();
    Ok(Response {
        status: parts.status.as_u16(),
        headers,
        body: bytes,
    })
}

/// Sends every request on a connection of its own, `parallel` connections at a time, and returns
/// the answers in order. For requests that may make the server close the connection (after a
/// connection error Envoy waits for its delayed-close timeout, a second, before it does).
pub fn send_each(port: u16, reqs: &[Request], parallel: usize) -> Vec<io::Result<Response>> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return reqs
                .iter()
                .map(|_| Err(io::Error::other(e.to_string())))
                .collect()
        }
    };
    rt.block_on(async move {
        let mut out = Vec::with_capacity(reqs.len());
        for group in reqs.chunks(parallel.max(1)) {
            let mut tasks = Vec::with_capacity(group.len());
            for req in group {
                let req = req.clone();
                tasks.push(tokio::spawn(async move {
                    let once = async { exchange(handshake(port).await?, req).await };
                    match tokio::time::timeout(TIMEOUT, once).await {
                        Ok(r) => r,
                        Err(_) => Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no complete HTTP/2 answer within {} s", TIMEOUT.as_secs()),
                        )),
                    }
                }));
            }
            for t in tasks {
                out.push(
                    t.await
                        .unwrap_or_else(|e| Err(io::Error::other(e.to_string()))),
                );
            }
        }
        out
    })
}

/// Sends one request on a fresh connection.
pub fn try_send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let req = Request::new(method, path).headers(headers).body(body);
    Client::connect(port)?.send(&req)
}

/// `try_send`, panicking on errors.
pub fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_send(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("HTTP/2 {method} {path} to 127.0.0.1:{port} failed: {e}"))
}
