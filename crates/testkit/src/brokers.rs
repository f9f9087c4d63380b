//! Real message brokers for tests: `redis-server`, `nats-server -js` (JetStream) and a
//! standalone `rabbitmq-server` node, each on a free loopback port with its data in a
//! temporary directory. Never a system service: every test starts its own.
//!
//! ```text
//! pub struct Broker { pub url: String, pub port: u16, .. }   // killed (SIGKILL) on drop
//! impl Broker {
//!     pub fn redis() -> Option<Broker>;      // redis://127.0.0.1:<port>   (append-only file on)
//!     pub fn nats() -> Option<Broker>;       // nats://127.0.0.1:<port>    (JetStream, store in the temp dir)
//!     pub fn rabbitmq() -> Option<Broker>;   // amqp://guest:guest@127.0.0.1:<port>/%2f
//!     pub fn kill(&mut self);                // SIGKILL, as a crash
//!     pub fn restart(&mut self) -> anyhow::Result<()>;  // start again: same port, same data
//!     pub fn log(&self) -> String;
//! }
//! ```
//!
//! The constructors return `None` after [`crate::skip`] when the broker's program is not
//! installed (so they panic under `CI`, which installs them), and panic when it is installed
//! but does not come up.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::image::find_tool;

/// Which broker a [`Broker`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    Redis,
    Nats,
    Rabbitmq,
}

/// A broker process on 127.0.0.1. Killed on drop.
pub struct Broker {
    pub kind: BrokerKind,
    /// The client URL (`redis://…`, `nats://…`, `amqp://…`).
    pub url: String,
    /// The client port.
    pub port: u16,
    /// RabbitMQ's Erlang distribution and epmd ports (0 for the others).
    extra_ports: [u16; 2],
    program: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The RabbitMQ server script run directly (the `/usr/sbin` wrapper switches to the
/// `rabbitmq` user, who cannot reach the test's temporary directory).
fn rabbitmq_program() -> Option<PathBuf> {
    let direct = Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
    if direct.is_file() {
        return Some(direct.to_path_buf());
    }
    find_tool("rabbitmq-server")
}

impl Broker {
    /// `redis-server` on a free port; `None` (skipped) when it is not installed.
    pub fn redis() -> Option<Self> {
        Self::start_or_skip(BrokerKind::Redis)
    }

    /// `nats-server -js` on a free port; `None` (skipped) when it is not installed.
    pub fn nats() -> Option<Self> {
        Self::start_or_skip(BrokerKind::Nats)
    }

    /// A standalone RabbitMQ node on a free port; `None` (skipped) when it is not installed.
    pub fn rabbitmq() -> Option<Self> {
        Self::start_or_skip(BrokerKind::Rabbitmq)
    }

    fn start_or_skip(kind: BrokerKind) -> Option<Self> {
        let (program, package) = match kind {
            BrokerKind::Redis => (find_tool("redis-server"), "redis-server"),
            BrokerKind::Nats => (find_tool("nats-server"), "nats-server"),
            BrokerKind::Rabbitmq => (rabbitmq_program(), "rabbitmq-server"),
        };
        let Some(program) = program else {
            crate::skip(&format!(
                "{package} is not installed (Debian package {package})"
            ));
            return None;
        };
        Some(
            Self::start(kind, program)
                .unwrap_or_else(|e| panic!("starting {package} for the test: {e:#}")),
        )
    }

    /// Start `kind` with `program` on free ports in a new temporary directory.
    pub fn start(kind: BrokerKind, program: PathBuf) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let extra_ports = match kind {
            BrokerKind::Rabbitmq => [free_port()?, free_port()?],
            _ => [0, 0],
        };
        let url = match kind {
            BrokerKind::Redis => format!("redis://127.0.0.1:{port}"),
            BrokerKind::Nats => format!("nats://127.0.0.1:{port}"),
            BrokerKind::Rabbitmq => format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        };
        let mut broker = Self {
            kind,
            url,
            port,
            extra_ports,
            program,
            child: None,
            dir,
        };
        broker.spawn()?;
        Ok(broker)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("broker.log")
    }

    /// What the broker printed (RabbitMQ's own log files are under `log/` in its directory).
    pub fn log(&self) -> String {
        let mut out = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        if self.kind == BrokerKind::Rabbitmq
            && let Ok(entries) = std::fs::read_dir(self.dir.path().join("log"))
        {
            for e in entries.flatten() {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let d = self.dir.path();
        let data = d.join("data");
        std::fs::create_dir_all(&data)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let port = self.port.to_string();
        let mut cmd = Command::new(&self.program);
        match self.kind {
            BrokerKind::Redis => {
                cmd.args(["--bind", "127.0.0.1", "--port", &port, "--dir"])
                    .arg(&data)
                    .args([
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                        "--save",
                        "",
                        "--daemonize",
                        "no",
                        "--protected-mode",
                        "no",
                    ]);
            }
            BrokerKind::Nats => {
                cmd.args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
                    .arg(&data);
            }
            BrokerKind::Rabbitmq => {
                let [dist, epmd] = self.extra_ports;
                let conf = d.join("rabbitmq.conf");
                std::fs::write(
                    &conf,
                    format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
                )?;
                let plugins = d.join("enabled_plugins");
                std::fs::write(&plugins, "[].\n")?;
                let node = format!("nimbus-test-{}-{port}@localhost", std::process::id());
                cmd.env("HOME", d)
                    .env("RABBITMQ_NODENAME", node)
                    .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                    .env("RABBITMQ_NODE_PORT", &port)
                    .env("RABBITMQ_DIST_PORT", dist.to_string())
                    .env("ERL_EPMD_PORT", epmd.to_string())
                    .env("ERL_EPMD_ADDRESS", "127.0.0.1")
                    .env("RABBITMQ_MNESIA_BASE", &data)
                    .env("RABBITMQ_LOG_BASE", d.join("log"))
                    .env("RABBITMQ_CONFIG_FILE", &conf)
                    .env("RABBITMQ_ENABLED_PLUGINS_FILE", &plugins)
                    .env("RABBITMQ_PLUGINS_EXPAND_DIR", d.join("plugins-expand"))
                    .env("RABBITMQ_PID_FILE", d.join("rabbitmq.pid"))
                    // The script then execs the Erlang VM: the child is the broker itself.
                    .env("RUNNING_UNDER_SYSTEMD", "true");
            }
        }
        let child = cmd
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        self.wait_up(Duration::from_secs(90))
    }

    /// Wait until the broker speaks its protocol on its port.
    fn wait_up(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("{:?} exited with {status}: {}", self.kind, self.log());
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{:?} not up on port {} in {timeout:?}: {}",
                    self.kind,
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One protocol exchange: Redis PING → +PONG, NATS's INFO greeting, AMQP's
    /// Connection.Start (a method frame) in answer to the protocol header.
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 16];
        match self.kind {
            BrokerKind::Redis => {
                s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
            }
            BrokerKind::Nats => s
                .read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"INFO")),
            BrokerKind::Rabbitmq => {
                s.write_all(b"AMQP\x00\x00\x09\x01").is_ok()
                    && s.read(&mut buf).is_ok_and(|n| n > 0 && buf[0] == 1)
            }
        }
    }

    /// SIGKILL the broker, as a crash would (RabbitMQ's epmd is stopped too).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.kind == BrokerKind::Rabbitmq {
            // The Erlang VM starts its own epmd daemon on our epmd port; it outlives the VM.
            for pid in crate::host::listeners(self.extra_ports[1]) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Kill (if running) and start again on the same port with the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(broker: Option<Broker>) {
        let Some(mut b) = broker else { return };
        assert!(b.answers(), "{:?} answers", b.kind);
        b.restart().expect("restart");
        assert!(b.answers(), "{:?} answers after restart", b.kind);
        let port = b.port;
        drop(b);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn redis_starts_restarts_and_stops() {
        check(Broker::redis());
    }

    #[test]
    fn nats_starts_restarts_and_stops() {
        check(Broker::nats());
    }

    #[test]
    fn rabbitmq_starts_restarts_and_stops() {
        check(Broker::rabbitmq());
    }
}
