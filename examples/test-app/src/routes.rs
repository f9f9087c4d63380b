//! The endpoints: what each path answers, and the little state they share (health flag, start
//! time, memory held by `/alloc`, requests inside `/overlap`). `/stream` and `/slow-headers`
//! answer slowly on purpose, for the router's timeouts.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::contract;
use crate::http::{Response, log_line};

/// Spawn attempts `/forkbomb` makes at most, so it stops even with no pids limit.
const MAX_FORK_ATTEMPTS: usize = 100_000;

/// State shared by all connections.
pub struct State {
    started: Instant,
    healthy: AtomicBool,
    held: Mutex<Vec<Vec<u8>>>,
    /// Requests inside `/overlap` now.
    overlap_inside: AtomicUsize,
    /// Requests that ever entered `/overlap`.
    overlap_entries: AtomicUsize,
}

impl State {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            healthy: AtomicBool::new(true),
            held: Mutex::new(Vec::new()),
            overlap_inside: AtomicUsize::new(0),
            overlap_entries: AtomicUsize::new(0),
        }
    }
}

/// Answer one request.
pub fn handle(state: &State, method: &str, target: &str) -> Response {
    if !["GET", "HEAD", "POST"].contains(&method) {
        return Response::text(400, "only GET, HEAD and POST are served\n");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/" => hello(),
        "/env" => env(),
        "/contract" => Response::json(contract::report()),
        "/alloc" => alloc(state, query),
        "/spin" => spin(query),
        "/forkbomb" => forkbomb(),
        "/healthz" => healthz(state),
        "/healthz/fail" => {
            state.healthy.store(false, Ordering::SeqCst);
            Response::text(200, "healthz will now fail\n")
        }
        "/ready" => ready(state),
        "/exit" => exit(query),
        "/stream" => stream(query),
        "/slow-headers" => slow_headers(query),
        "/overlap" => overlap(state, query),
        "/file" => file(query),
        "/status" => status(query),
        "/record" => record(query),
        "/write" => write(query),
        _ => Response::text(404, format!("no route for {path}\n")),
    }
}

fn hello() -> Response {
    match std::env::var("MESSAGE") {
        Ok(m) => Response::text(200, format!("hello from test-app: {m}\n")),
        Err(_) => Response::text(200, "hello from test-app\n"),
    }
}

/// `/headers`: the request's header fields as it got them, `name: value` a line (names in
/// lowercase), e.g. to see the `traceparent` the router sent.
pub fn headers(headers: &[(String, String)]) -> Response {
    let lines: String = headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
    Response::text(200, lines)
}

fn env() -> Response {
    let mut vars: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}\n", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    vars.sort();
    Response::text(200, vars.concat())
}

/// `/status?<code>`: an empty answer with that status (retry tests).
fn status(code: &str) -> Response {
    match code.parse::<u16>() {
        Ok(code) if (200..600).contains(&code) => Response::text(code, format!("status {code}\n")),
        _ => Response::text(400, format!("{code:?} is not an HTTP status\n")),
    }
}

/// `/record?<file>,<token>`: append the token as a line to the file (counting deliveries; a
/// line this short is written at once, so concurrent requests do not mix).
fn record(query: &str) -> Response {
    let Some((path, token)) = query.rsplit_once(',') else {
        return Response::text(400, "use /record?<file>,<token>\n");
    };
    append_line(path, token)
}

/// Append `line` and a newline to the file at `path` in one write.
fn append_line(path: &str, line: &str) -> Response {
    let line = format!("{line}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    match written {
        Ok(()) => Response::text(200, "recorded\n"),
        Err(e) => Response::text(500, format!("cannot record in {path}: {e}\n")),
    }
}

/// `/event?<file>[,flaky]` (any method): append one line for a CloudEvent to the file:
/// `ce-id ce-type ce-source ce-subject ce-specversion ce-time content-type body`, tab-separated
/// (`-` for a missing header). With `flaky`, the first request of each `ce-id` answers 500
/// instead (it leaves `<file>.seen-<id>`), so the event must come again. With `stamp`
/// (`/event?<file>,stamp`), a last field is added: when the request arrived, in microseconds
/// since the Unix epoch (for latency benchmarks).
pub fn event(query: &str, headers: &[(String, String)], body: &[u8]) -> Response {
    let arrived = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let (query, stamp) = match query.strip_suffix(",stamp") {
        Some(path) => (path, true),
        None => (query, false),
    };
    let (path, flaky) = match query.strip_suffix(",flaky") {
        Some(path) => (path, true),
        None => (query, false),
    };
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("-", |(_, v)| v.as_str())
    };
    let id = get("ce-id");
    if flaky {
        let seen = format!("{path}.seen-{}", id.replace(['/', '.'], "_"));
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&seen)
            .is_ok()
        {
            return Response::text(500, "failing the first delivery of this event\n");
        }
    }
    let fields = [
        id,
        get("ce-type"),
        get("ce-source"),
        get("ce-subject"),
        get("ce-specversion"),
        get("ce-time"),
        get("content-type"),
    ];
    let body = String::from_utf8_lossy(body).replace(['\n', '\t'], " ");
    let line = format!("{}\t{body}", fields.join("\t"));
    match stamp {
        true => append_line(path, &format!("{line}\t{arrived}")),
        false => append_line(path, &line),
    }
}

/// `/file?<path>`: the file's contents (mounted volumes), or why it cannot be read.
fn file(path: &str) -> Response {
    match std::fs::read(path) {
        Ok(bytes) => Response::text(200, String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => Response::text(404, format!("cannot read {path}: {e}\n")),
    }
}

/// `/write?<path>`: try to create the file (read-only volumes refuse).
fn write(path: &str) -> Response {
    match std::fs::write(path, "written") {
        Ok(()) => Response::text(200, "written\n"),
        Err(e) => Response::text(403, format!("cannot write {path}: {e}\n")),
    }
}

fn healthz(state: &State) -> Response {
    if state.healthy.load(Ordering::SeqCst) {
        Response::text(200, "ok")
    } else {
        Response::text(500, "unhealthy")
    }
}

fn ready(state: &State) -> Response {
    let delay = std::env::var("READY_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if state.started.elapsed() >= Duration::from_millis(delay) {
        Response::text(200, "ready")
    } else {
        Response::text(503, "not ready yet")
    }
}

/// Allocate `mb` MiB, write to every page so it is resident, and keep it.
fn alloc(state: &State, query: &str) -> Response {
    let Some(mb) = param(query, "mb").and_then(|v| v.parse::<usize>().ok()) else {
        return Response::text(400, "usage: /alloc?mb=N\n");
    };
    let mut held = state.held.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..mb {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        held.push(chunk);
    }
    Response::text(
        200,
        format!("allocated {mb} MiB, holding {} MiB\n", held.len()),
    )
}

/// Keep a CPU busy for `ms` milliseconds of wall time (metering tests: CPU used).
fn spin(query: &str) -> Response {
    let Some(ms) = param(query, "ms").and_then(|v| v.parse::<u64>().ok()) else {
        return Response::text(400, "usage: /spin?ms=N\n");
    };
    let until = Instant::now() + Duration::from_millis(ms.min(60_000));
    let mut turns: u64 = 0;
    while Instant::now() < until {
        turns = std::hint::black_box(turns.wrapping_add(1));
    }
    Response::text(200, format!("spun {ms} ms ({turns} turns)\n"))
}

/// Start copies of this binary (`sleep-forever`) until that fails or the cap is reached, then
/// kill them all again so the app keeps serving; answers how many were running at once.
fn forkbomb() -> Response {
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return Response::text(500, format!("current_exe: {e}\n")),
    };
    let mut children = Vec::new();
    let mut failure = String::from("cap reached");
    while children.len() < MAX_FORK_ATTEMPTS {
        match std::process::Command::new(&exe)
            .arg("sleep-forever")
            .spawn()
        {
            Ok(c) => children.push(c),
            Err(e) => {
                failure = e.to_string();
                break;
            }
        }
    }
    let spawned = children.len();
    log_line(&format!("forkbomb: spawned {spawned} ({failure})"));
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Response::text(200, format!("spawned {spawned}\nstopped by: {failure}\n"))
}

fn exit(query: &str) -> Response {
    let code = param(query, "code")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    log_line(&format!("exiting with code {code}"));
    std::process::exit(code);
}

/// `/stream?chunks=N&every_ms=M`: a chunked body of `N` chunks (default 10), each after a pause
/// of `M` ms (default 100), the first one after the headers.
fn stream(query: &str) -> Response {
    let chunks = number(query, "chunks").unwrap_or(10);
    let every = Duration::from_millis(number(query, "every_ms").unwrap_or(100) as u64);
    Response::chunked(chunks, every)
}

/// `/slow-headers?ms=M`: nothing for `M` ms (default 1000), then the whole answer.
fn slow_headers(query: &str) -> Response {
    let ms = number(query, "ms").unwrap_or(1000);
    std::thread::sleep(Duration::from_millis(ms as u64));
    Response::text(200, format!("answered after {ms} ms\n"))
}

/// The number `name` in a query string, if given and valid.
fn number(query: &str, name: &str) -> Option<usize> {
    param(query, name).and_then(|v| v.parse().ok())
}

/// `/overlap?ms=N` (default 50): stay inside for N ms; answer 500 `overlap` if any other request
/// was inside `/overlap` at any moment of that time, else 200 `ok` (Knative's single-threaded
/// test image, for `containerConcurrency: 1`).
fn overlap(state: &State, query: &str) -> Response {
    let ms = param(query, "ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let ticket = state.overlap_entries.fetch_add(1, Ordering::SeqCst) + 1;
    let others_at_entry = state.overlap_inside.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(ms));
    let entered_since = state.overlap_entries.load(Ordering::SeqCst) != ticket;
    state.overlap_inside.fetch_sub(1, Ordering::SeqCst);
    if others_at_entry > 0 || entered_since {
        Response::text(500, "overlap\n")
    } else {
        Response::text(200, "ok\n")
    }
}

/// The value of `name` in a query string such as `a=1&b=2`.
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_stamp_adds_the_arrival_time() {
        let file = std::env::temp_dir().join(format!("test-app-stamp-{}", std::process::id()));
        let headers = vec![("ce-id".to_string(), "e-1".to_string())];
        let r = event(&format!("{},stamp", file.display()), &headers, b"12 345");
        assert_eq!(r.status, 200);
        let line = std::fs::read_to_string(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(fields.len(), 9, "{line:?}");
        assert_eq!(fields[0], "e-1");
        assert_eq!(fields[7], "12 345");
        assert!(fields[8].parse::<u128>().unwrap() > 1_600_000_000_000_000);
    }

    #[test]
    fn param_finds_values() {
        assert_eq!(param("mb=5&x=1", "mb"), Some("5"));
        assert_eq!(param("x=1&mb=7", "mb"), Some("7"));
        assert_eq!(param("", "mb"), None);
    }

    #[test]
    fn health_flips_once_failed() {
        let s = State::new();
        assert_eq!(handle(&s, "GET", "/healthz").status, 200);
        assert_eq!(handle(&s, "GET", "/healthz/fail").status, 200);
        assert_eq!(handle(&s, "GET", "/healthz").status, 500);
    }

    #[test]
    fn stream_takes_its_shape_from_the_query() {
        let r = handle(&State::new(), "GET", "/stream?chunks=3&every_ms=7");
        assert!(matches!(
            r.body,
            crate::http::Body::Chunked { chunks: 3, every } if every == Duration::from_millis(7)
        ));
    }

    #[test]
    fn unknown_path_is_404() {
        assert_eq!(handle(&State::new(), "GET", "/nope").status, 404);
    }

    #[test]
    fn overlap_sees_a_request_inside() {
        let s = State::new();
        assert_eq!(handle(&s, "GET", "/overlap?ms=0").status, 200);
        let inside = std::thread::scope(|scope| {
            let long = scope.spawn(|| handle(&s, "GET", "/overlap?ms=300").status);
            while s.overlap_inside.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            let short = handle(&s, "GET", "/overlap?ms=0").status;
            (long.join().unwrap(), short)
        });
        assert_eq!(inside, (500, 500));
    }

    #[test]
    fn alloc_holds_memory() {
        let s = State::new();
        assert_eq!(handle(&s, "GET", "/alloc?mb=2").status, 200);
        assert_eq!(s.held.lock().unwrap().len(), 2);
        assert_eq!(handle(&s, "GET", "/alloc").status, 400);
    }

    #[test]
    fn spin_keeps_busy_for_its_time() {
        let s = State::new();
        let started = Instant::now();
        assert_eq!(handle(&s, "GET", "/spin?ms=20").status, 200);
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(handle(&s, "GET", "/spin").status, 400);
    }
}
