//! `/env`, `/cwd`, `/argv`, `/stdin`: the process's own view of its runtime contract, so tests can
//! check what a runtime gave it.

use std::io::Read;

use http::{Response, StatusCode};

use crate::respond::{Body, text};

/// `/env`: every environment variable as a sorted `K=V` line.
pub(crate) fn env() -> Response<Body> {
    let mut lines: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}\n", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    lines.sort();
    text(StatusCode::OK, lines.concat())
}

/// `/cwd`: the current working directory.
pub(crate) fn cwd() -> Response<Body> {
    match std::env::current_dir() {
        Ok(dir) => text(StatusCode::OK, format!("{}\n", dir.display())),
        Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cwd: {error}\n")),
    }
}

/// `/argv`: the arguments, one per line, starting with argv\[0\].
pub(crate) fn argv() -> Response<Body> {
    let lines: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    text(StatusCode::OK, format!("{}\n", lines.join("\n")))
}

/// `/stdin`: read stdin to EOF and report how many bytes it held (the contract says: none, at
/// once). Blocks the request, not the server, if stdin never ends.
pub(crate) async fn stdin() -> Response<Body> {
    let read = tokio::task::spawn_blocking(|| {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .map(|_| buf.len())
    });
    match read.await {
        Ok(Ok(n)) => text(StatusCode::OK, format!("stdin: {n} bytes\n")),
        Ok(Err(error)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stdin: {error}\n"),
        ),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stdin: {error}\n"),
        ),
    }
}
