//! `nimbus-hello`: the sample function used by the quick start, the integration tests and the
//! benchmarks.
//!
//! A small hyper 1 server speaking HTTP/1.1 and h2c on one port. It follows the Knative runtime
//! contract (listen on `$PORT`, read `K_*` variables, expect stdin at EOF) and also accepts a
//! systemd-style socket-activated listener on fd 3, which is how a runtime can hand it a port that
//! is already bound. Its endpoints exist to make platform behaviour observable from outside:
//! echoing requests, sleeping, streaming, failing on purpose, exiting, detecting concurrent
//! requests. It holds no state worth keeping and must never need configuration to start.
//!
//! [`run`] is the whole program; the `nimbus` binary runs it as a hidden subcommand too.

mod control;
mod facts;
mod handlers;
mod introspect;
mod listen;
mod respond;
mod server;
mod settings;
mod upgrade;

pub use server::{App, serve};
pub use settings::Settings;

/// Read the environment, apply the failure-simulation knobs, bind (or adopt fd 3) and serve
/// forever. Returns only on a listening error.
pub async fn run() -> std::io::Result<()> {
    let settings = Settings::from_env();
    if let Some(code) = settings.exit_immediately {
        eprintln!("nimbus-hello: exiting immediately with code {code} (EXIT_IMMEDIATELY)");
        std::process::exit(code);
    }
    if let Some(delay) = settings.startup_delay {
        tokio::time::sleep(delay).await;
    }
    let listener = listen::listener(settings.port)?;
    let how = if listener.activated {
        " (socket activation)"
    } else {
        ""
    };
    println!("listening on {}{how}", listener.listener.local_addr()?);
    serve(listener.listener, App::new(settings)).await
}
