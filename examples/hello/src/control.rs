//! Endpoints that make the process behave in a chosen way: `/sleep`, `/stream`, `/status/NNN`,
//! `/exit`, `/overlap`. They exist to exercise timeouts, streaming, error handling, crash recovery
//! and concurrency limits of the platform.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, Uri};
use http_body_util::BodyExt;
use http_body_util::channel::Channel;

use crate::App;
use crate::respond::{Body, query_number, text, with_type};

/// How long `/exit` waits after answering before exiting, so the answer reaches the client.
const EXIT_DELAY: Duration = Duration::from_millis(50);

/// `/sleep?ms=N`: answer after N milliseconds.
pub(crate) async fn sleep(uri: &Uri) -> Response<Body> {
    let ms = query_number(uri, "ms", 0);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    text(StatusCode::OK, format!("slept {ms} ms\n"))
}

/// `/stream?chunks=N&interval_ms=M`: N lines, the first at once, then one every M milliseconds.
pub(crate) fn stream(uri: &Uri) -> Response<Body> {
    let chunks = query_number(uri, "chunks", 5);
    let interval = Duration::from_millis(query_number(uri, "interval_ms", 100));
    let (mut tx, body) = Channel::<Bytes, hyper::Error>::new(1);
    tokio::spawn(async move {
        for i in 0..chunks {
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            if tx
                .send_data(Bytes::from(format!("chunk {i}\n")))
                .await
                .is_err()
            {
                return; // the client went away
            }
        }
    });
    with_type(StatusCode::OK, "text/plain; charset=utf-8", body.boxed())
}

/// `/status/NNN`: answer with that status code.
pub(crate) fn status(code: &str) -> Response<Body> {
    match code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
    {
        Some(status) => text(status, format!("status {}\n", status.as_u16())),
        None => text(
            StatusCode::BAD_REQUEST,
            format!("not a status code: {code}\n"),
        ),
    }
}

/// `/exit?code=N`: answer, then exit the whole process with code N shortly after.
pub(crate) fn exit(uri: &Uri) -> Response<Body> {
    let code = i32::try_from(query_number(uri, "code", 0)).unwrap_or(1);
    tokio::spawn(async move {
        tokio::time::sleep(EXIT_DELAY).await;
        eprintln!("nimbus-hello: exiting with code {code} (/exit)");
        std::process::exit(code);
    });
    text(StatusCode::OK, format!("exiting with code {code}\n"))
}

/// `/overlap?ms=N` (default 50): stay inside for N ms; answer 500 `overlap` if any other request
/// was inside at any moment of that time (proves `containerConcurrency: 1` is enforced).
pub(crate) async fn overlap(app: &App, uri: &Uri) -> Response<Body> {
    let inner = &app.inner;
    let ticket = inner.overlap_entries.fetch_add(1, Ordering::SeqCst) + 1;
    let guard = Inside::enter(app);
    tokio::time::sleep(Duration::from_millis(query_number(uri, "ms", 50))).await;
    let overlapped =
        guard.others_at_entry > 0 || inner.overlap_entries.load(Ordering::SeqCst) != ticket;
    drop(guard);
    if overlapped {
        text(StatusCode::INTERNAL_SERVER_ERROR, "overlap\n")
    } else {
        text(StatusCode::OK, "ok\n")
    }
}

/// Counts a request as inside `/overlap` until dropped (also when the client disconnects).
struct Inside<'a> {
    app: &'a App,
    others_at_entry: usize,
}

impl<'a> Inside<'a> {
    fn enter(app: &'a App) -> Self {
        let others_at_entry = app.inner.overlap_inside.fetch_add(1, Ordering::SeqCst);
        Self {
            app,
            others_at_entry,
        }
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.app.inner.overlap_inside.fetch_sub(1, Ordering::SeqCst);
    }
}
