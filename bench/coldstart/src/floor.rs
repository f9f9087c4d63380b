//! The spawn floor: start the sample binary as a plain child process and poll it until its first
//! response byte. The poll loop is shared with the runc floor ([`crate::container`]).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;

/// How often a floor polls for the first byte. Nimbus's own runtime polls every 150 µs; a busy
/// loop would steal the CPU the starting process needs on a 2-core machine.
const POLL_EVERY: Duration = Duration::from_micros(100);

/// How long a floor run may take before it counts as failed.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// Spawn `hello` with `PORT` set to a free port and time until its first response byte.
pub fn spawn(hello: &Path) -> Result<Duration, String> {
    let port = http::free_port().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let child = quiet(Command::new(hello).env("PORT", port.to_string()))
        .spawn()
        .map_err(|e| e.to_string())?;
    let _guard = KillOnDrop(child);
    poll_first_byte(port, start)
}

/// Null stdio, as a supervisor that discards output would set it.
pub fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

/// Connect + `GET /` on `127.0.0.1:port` every [`POLL_EVERY`] until a response byte arrives;
/// the time since `start`.
pub fn poll_first_byte(port: u16, start: Instant) -> Result<Duration, String> {
    let addr = format!("127.0.0.1:{port}");
    let deadline = start + GIVE_UP_AFTER;
    loop {
        if http::first_byte(&addr, "localhost", "/").is_ok() {
            return Ok(start.elapsed());
        }
        if Instant::now() > deadline {
            return Err(format!("nothing answered on {addr} in {GIVE_UP_AFTER:?}"));
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// A child killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
