//! `nimbus-test-app`: a tiny HTTP/1.1 server used as the program inside test container images
//! and as a host process. It listens on `0.0.0.0:$PORT` (default 8080), serves one thread per
//! connection and answers with `Connection: close`. Its endpoints report what the runtime
//! contract tests check (`/contract`, `/env`), misbehave on demand (`/alloc`, `/forkbomb`,
//! `/exit`, `/status?<code>`), detect concurrent requests (`/overlap`), read and write files
//! (`/file`, `/write`: mounted volumes), count deliveries (`/record`, `/event`: CloudEvents), echo request headers (`/headers`) and model health
//! (`/healthz`, `/ready`). Run as `test-app task` it is a Job's task instead: it prints its task
//! variables and exits with `$EXIT_CODE` (default 0) after `$SLEEP_SECONDS` (default 0), or
//! with 3 on the first attempt of task `$FAIL_FIRST_ATTEMPT_OF`. It
//! must never need anything beyond std and libc, so it runs in a minimal root filesystem.

mod contract;
mod http;
mod routes;

use std::io::Write as _;
use std::net::TcpListener;
use std::sync::Arc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("task") {
        task();
    }
    if args.get(1).map(String::as_str) == Some("sleep-forever") {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    if std::env::var("IGNORE_SIGTERM").as_deref() == Ok("1") {
        ignore_sigterm();
    } else {
        exit_on_sigterm();
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("test-app: cannot listen on 0.0.0.0:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("test-app listening on {port}");
    let _ = std::io::stdout().flush();
    let state = Arc::new(routes::State::new());
    for stream in listener.incoming().flatten() {
        let state = Arc::clone(&state);
        std::thread::spawn(move || http::serve(stream, &state));
    }
}

/// Exit at once on SIGTERM, as servers do. Needed explicitly because in a container the program
/// is pid 1, for which the kernel ignores signals that have no handler.
fn exit_on_sigterm() {
    extern "C" fn on_term(_: libc::c_int) {
        // SAFETY: `_exit` is async-signal-safe and takes any status.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: the handler only calls the async-signal-safe `_exit`; it is installed on the main
    // thread before any other thread exists; SIGTERM is a valid signal to handle.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
}

/// Make the process ignore SIGTERM (for grace-period tests).
fn ignore_sigterm() {
    // SAFETY: `signal` with `SIG_IGN` installs no Rust handler, so no code can run in signal
    // context; it is called on the main thread before any other thread is spawned, and
    // SIGTERM/SIG_IGN are valid arguments.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

/// A Job's task: report the task variables, wait, exit with the requested status.
fn task() -> ! {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "unset".into());
    println!(
        "task index={} count={} attempt={} job={} execution={}",
        var("CLOUD_RUN_TASK_INDEX"),
        var("CLOUD_RUN_TASK_COUNT"),
        var("CLOUD_RUN_TASK_ATTEMPT"),
        var("CLOUD_RUN_JOB"),
        var("CLOUD_RUN_EXECUTION"),
    );
    let _ = std::io::stdout().flush();
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    // One task's first attempt fails (to see it retried).
    if number("FAIL_FIRST_ATTEMPT_OF").is_some()
        && number("FAIL_FIRST_ATTEMPT_OF") == number("CLOUD_RUN_TASK_INDEX")
        && number("CLOUD_RUN_TASK_ATTEMPT") == Some(0)
    {
        eprintln!("failing the first attempt");
        std::process::exit(3);
    }
    if let Some(secs) = number("SLEEP_SECONDS") {
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    std::process::exit(number("EXIT_CODE").unwrap_or(0) as i32)
}
