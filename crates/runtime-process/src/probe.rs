//! One probe check, as Kubernetes' kubelet does it: an HTTP GET that must answer 200–399, a TCP
//! connection that must be accepted, or a command run inside the instance that must exit 0 —
//! each within the probe's timeout. Checks are blocking (they run on blocking threads, like the
//! start-up readiness checks) and never decide anything: [`crate::health`] counts the results.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nimbus_runtime::ProbeAction;

/// Builds the command that runs a probe's `argv` inside the instance.
pub(crate) type ExecBuilder = Arc<dyn Fn(&[String]) -> std::process::Command + Send + Sync>;

/// Where a probe goes: the instance's address and port (for handlers without their own) and
/// how to run a command inside it.
#[derive(Clone)]
pub(crate) struct ProbeTarget {
    pub ip: std::net::IpAddr,
    pub port: u16,
    pub exec: ExecBuilder,
}

/// How often a running exec probe is checked for having exited.
const EXEC_POLL: Duration = Duration::from_millis(2);
/// The most of an HTTP answer read to find its status line.
const STATUS_LINE_MAX: usize = 1024;

/// Run one check; `Err` says why it failed, in words for the revision's status.
pub(crate) fn check(
    action: &ProbeAction,
    target: &ProbeTarget,
    timeout: Duration,
) -> Result<(), String> {
    match action {
        ProbeAction::TcpSocket { port } => tcp(target.at(*port), timeout),
        ProbeAction::HttpGet {
            path,
            port,
            headers,
        } => http_get(target.at(*port), path, headers, timeout),
        ProbeAction::Exec { command } => exec((target.exec)(command), command, timeout),
    }
}

/// [`check`] on a blocking thread.
pub(crate) async fn check_async(
    action: &ProbeAction,
    target: &ProbeTarget,
    timeout: Duration,
) -> Result<(), String> {
    let (action, target) = (action.clone(), target.clone());
    tokio::task::spawn_blocking(move || check(&action, &target, timeout))
        .await
        .unwrap_or_else(|e| Err(format!("probe did not run: {e}")))
}

impl ProbeTarget {
    /// The instance's own address and port.
    pub fn addr(&self) -> SocketAddr {
        self.at(None)
    }

    /// `port` (the instance's own when `None`) at the instance's address.
    fn at(&self, port: Option<u16>) -> SocketAddr {
        SocketAddr::new(self.ip, port.unwrap_or(self.port))
    }
}

fn tcp(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    connect(addr, timeout).map(drop)
}

/// A connection to `addr`; one from the port to itself (TCP simultaneous open on an ephemeral
/// port nobody listens on) proves nothing and fails.
fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    if stream.local_addr().ok() == Some(addr) {
        return Err(format!("connecting to {addr}: nothing listens"));
    }
    Ok(stream)
}

fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr, timeout)?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let _ = stream.set_write_timeout(Some(left()));
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map_or_else(|| addr.to_string(), |(_, v)| v.clone());
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("GET http://{addr}{path}: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while !answer.contains(&b'\n') && answer.len() < STATUS_LINE_MAX {
        let _ = stream.set_read_timeout(Some(left()));
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("GET http://{addr}{path}: {e}")),
        }
    }
    let code = status_code(&answer)
        .ok_or_else(|| format!("GET http://{addr}{path}: no HTTP status line in the answer"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET http://{addr}{path} answered {code}"))
    }
}

/// The status code of `HTTP/1.x NNN …`.
fn status_code(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

fn exec(mut cmd: std::process::Command, argv: &[String], timeout: Duration) -> Result<(), String> {
    let shown = argv.join(" ");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("exec {shown:?}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("exec {shown:?}: {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("exec {shown:?}: timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(EXEC_POLL),
            Err(e) => return Err(format!("exec {shown:?}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn target(port: u16) -> ProbeTarget {
        ProbeTarget {
            ip: [127, 0, 0, 1].into(),
            port,
            exec: Arc::new(|argv: &[String]| {
                let mut cmd = std::process::Command::new(&argv[0]);
                cmd.args(&argv[1..]);
                cmd
            }),
        }
    }

    /// A one-shot HTTP server answering `status` to every request, on a thread.
    fn server(status: u16) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = write!(conn, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
            }
        });
        port
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn http_get_passes_on_2xx_3xx_and_fails_otherwise() {
        let get = |status| {
            let action = ProbeAction::HttpGet {
                path: "/healthz".into(),
                port: None,
                headers: vec![("Host".into(), "x".into())],
            };
            check(&action, &target(server(status)), SECOND)
        };
        assert_eq!(get(200), Ok(()));
        assert_eq!(get(302), Ok(()));
        let err = get(500).unwrap_err();
        assert!(err.ends_with("answered 500"), "{err}");
    }

    #[test]
    fn tcp_fails_when_nothing_listens() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let action = ProbeAction::TcpSocket { port: None };
        assert!(check(&action, &target(port), SECOND).is_err());
        let live = server(200);
        assert_eq!(
            check(
                &ProbeAction::TcpSocket { port: Some(live) },
                &target(port),
                SECOND
            ),
            Ok(())
        );
    }

    #[test]
    fn exec_uses_the_exit_status_and_the_timeout() {
        let run = |argv: &[&str], timeout| {
            let command = argv.iter().map(|s| s.to_string()).collect();
            check(&ProbeAction::Exec { command }, &target(1), timeout)
        };
        assert_eq!(run(&["true"], SECOND), Ok(()));
        assert!(
            run(&["false"], SECOND)
                .unwrap_err()
                .contains("exit status: 1")
        );
        let slow = run(&["sleep", "5"], Duration::from_millis(50)).unwrap_err();
        assert!(slow.contains("timed out"), "{slow}");
        assert!(run(&["/no/such/program"], SECOND).is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"garbage"), None);
        assert_eq!(status_code(b""), None);
    }
}
