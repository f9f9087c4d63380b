//! A Job task for tests, plain `std` so that it runs both as a host process and, built with
//! `cargo build --target wasm32-wasip2`, as a WASI command component on the Wasm runtime.
//!
//! It prints `CLOUD_RUN_TASK_INDEX`, `CLOUD_RUN_TASK_COUNT` and `CLOUD_RUN_TASK_ATTEMPT` and its
//! arguments to stdout, then, driven by its environment:
//!
//! - `READ_FILE=<path>`: prints the file's contents (`file <path>: <contents>`), or exits with
//!   code 2 when it cannot be read;
//! - `SPIN` set: loops forever without sleeping (to test timeouts and cancellation);
//! - `EXIT_CODE=<n>`: exits with status `n` (after a line on stderr);
//!
//! and otherwise exits with status 0.

use std::env;
use std::process::ExitCode;

fn main() -> ExitCode {
    let var = |name: &str| env::var(name).unwrap_or_else(|_| "unset".into());
    println!(
        "task index={} count={} attempt={}",
        var("CLOUD_RUN_TASK_INDEX"),
        var("CLOUD_RUN_TASK_COUNT"),
        var("CLOUD_RUN_TASK_ATTEMPT")
    );
    let args: Vec<String> = env::args().skip(1).collect();
    println!("args={args:?}");
    if let Ok(path) = env::var("READ_FILE") {
        match std::fs::read_to_string(&path) {
            Ok(contents) => println!("file {path}: {}", contents.trim_end()),
            Err(e) => {
                eprintln!("cannot read {path}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if env::var_os("SPIN").is_some() {
        spin();
    }
    match env::var("EXIT_CODE").map(|code| code.parse::<u8>()) {
        Ok(Ok(code)) => {
            eprintln!("exiting with code {code}");
            std::process::exit(i32::from(code))
        }
        Ok(Err(e)) => {
            eprintln!("EXIT_CODE is not a number from 0 to 255: {e}");
            ExitCode::from(2)
        }
        Err(_) => ExitCode::SUCCESS,
    }
}

/// Busy forever: a task that never ends by itself.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
