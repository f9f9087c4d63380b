//! The sample Nimbus function as a WebAssembly component: it exports
//! `wasi:http/incoming-handler` and answers every request from a fresh instance.
//!
//! Routes:
//! - any path: `Hello <TARGET>! You asked for <path>` (`TARGET` from the manifest's `env`,
//!   default `World`);
//! - `/trap`: panics (the runtime answers 500, other requests are unaffected);
//! - `/loop`: spins forever (the runtime answers 504 once the request timeout passes);
//! - `/alloc`: allocates without bound (the runtime answers 500 at the memory limit);
//! - `/echo`: reads the whole request body and answers with its length;
//! - `/log?<text>`: prints `<text>` on stdout, `<text> on stderr` on stderr and
//!   `<text> without newline` on stdout with no newline after it, then answers `logged`
//!   (Nimbus puts the lines in the instance's log, shown by `nimbus logs`);
//! - `/fetch?<host:port>`: sends `GET /` to that host and answers with the status it got, or
//!   the error (outgoing HTTP is denied unless the runtime allows the host);
//! - `/file?<path>`: answers with the file's contents, or why it cannot be read (a mounted
//!   Secret or ConfigMap volume is a preopened directory).

use std::io::{Read as _, Write as _};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let body = match path.as_str() {
            "/trap" => panic!("asked to trap"),
            "/loop" => spin(),
            "/alloc" => allocate_forever(),
            "/echo" => format!("{} bytes\n", read_body(request)),
            p if p.starts_with("/log?") => log(&p["/log?".len()..]),
            p if p.starts_with("/fetch?") => fetch(&p["/fetch?".len()..]),
            p if p.starts_with("/file?") => read_file(&p["/file?".len()..]),
            _ => greeting(&path),
        };
        respond(response_out, 200, body.as_bytes());
    }
}

fn greeting(path: &str) -> String {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "World".to_owned());
    format!("Hello {target}! You asked for {path}\n")
}

fn read_file(path: &str) -> String {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("cannot read {path}: {e}\n"),
    }
}

fn log(text: &str) -> String {
    println!("{text}");
    eprintln!("{text} on stderr");
    print!("{text} without newline");
    // std buffers stdout by line; a component never exits, so flush by hand.
    let _ = std::io::stdout().flush();
    "logged\n".to_owned()
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn allocate_forever() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

fn read_body(request: IncomingRequest) -> usize {
    let Ok(body) = request.consume() else {
        return 0;
    };
    let Ok(mut stream) = body.stream() else {
        return 0;
    };
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    bytes.len()
}

fn fetch(authority: &str) -> String {
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some("/"));
    let pending = match outgoing_handler::handle(request, None) {
        Ok(pending) => pending,
        Err(e) => return format!("fetch failed: {e:?}\n"),
    };
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(response))) => format!("fetched: {}\n", response.status()),
        Some(Ok(Err(e))) => format!("fetch failed: {e:?}\n"),
        other => format!("fetch failed: {other:?}\n"),
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[(
        "content-type".to_owned(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let mut stream = outgoing.write().expect("stream taken once");
    stream.write_all(body).expect("write body");
    stream.flush().expect("flush body");
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finish body");
}
