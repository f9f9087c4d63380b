//! The HTTP/1.1 wire: read one request head from a connection, hand it to the routes, write
//! the answer with `Connection: close` — all at once, or chunk by chunk over time. Bodies of
//! requests are ignored.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use crate::routes::{self, State};

/// An answer to write back.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
}

/// What follows the head.
pub enum Body {
    /// Written at once, with `Content-Length`.
    Full(String),
    /// Written `Transfer-Encoding: chunked`: `chunks` chunks (`chunk <i>\n`), each after a
    /// pause of `every`, then the last chunk.
    Chunked { chunks: usize, every: Duration },
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Body::Full(body.into()),
        }
    }

    pub fn chunked(chunks: usize, every: Duration) -> Self {
        Self {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: Body::Chunked { chunks, every },
        }
    }

    pub fn json(body: String) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body: Body::Full(body),
        }
    }
}

/// Serve one connection: one request, one response.
pub fn serve(stream: TcpStream, state: &State) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let (length, headers) = skip_headers(&mut reader);
    // Read the body (kept for `/event`), so closing the connection after answering resets
    // nothing.
    let mut body = Vec::new();
    let _ = std::io::copy(
        &mut std::io::Read::take(&mut reader, length.min(1 << 20) as u64),
        &mut body,
    );
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    log_line(&format!("{method} {target}"));
    let response = match target.strip_prefix("/event?") {
        Some(query) => routes::event(query, &headers, &body),
        None if target.split('?').next() == Some("/headers") => routes::headers(&headers),
        None => routes::handle(state, &method, &target),
    };
    write_response(stream, &response);
}

/// Read the request's headers; returns its `Content-Length` (0 without one) and the headers
/// (names in lower case).
fn skip_headers(reader: &mut impl std::io::BufRead) -> (usize, Vec<(String, String)>) {
    let mut header = String::new();
    let mut length = 0;
    let mut headers = Vec::new();
    loop {
        header.clear();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return (length, headers),
            Ok(_) if header.trim().is_empty() => return (length, headers),
            Ok(_) => {
                if let Some((name, value)) = header.split_once(':') {
                    let name = name.trim().to_ascii_lowercase();
                    if name == "content-length" {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    headers.push((name, value.trim().to_string()));
                }
            }
        }
    }
}

fn write_response(mut stream: TcpStream, r: &Response) {
    let framing = match &r.body {
        Body::Full(text) => format!("Content-Length: {}", text.len()),
        Body::Chunked { .. } => "Transfer-Encoding: chunked".to_string(),
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n{framing}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
    );
    let _ = stream.write_all(head.as_bytes());
    match &r.body {
        Body::Full(text) => {
            let _ = stream.write_all(text.as_bytes());
        }
        Body::Chunked { chunks, every } => write_chunks(&mut stream, *chunks, *every),
    }
    let _ = stream.flush();
}

/// Writes the chunks as they fall due, then the last chunk; stops when the peer has gone, and
/// logs which way the body ended.
fn write_chunks(stream: &mut TcpStream, chunks: usize, every: Duration) {
    for i in 0..chunks {
        std::thread::sleep(every);
        let data = format!("chunk {i}\n");
        let frame = format!("{:x}\r\n{data}\r\n", data.len());
        if let Err(e) = stream
            .write_all(frame.as_bytes())
            .and_then(|()| stream.flush())
        {
            log_line(&format!("stream: stopped after {i} chunks: {e}"));
            return;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    log_line(&format!("stream: sent all {chunks} chunks"));
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Print one line on stdout and flush it at once, so log tests see it.
pub fn log_line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
