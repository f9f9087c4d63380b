//! The real `nimbus-hello` binary: start-up line, `$PORT`, socket activation, stdin, exiting.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use common::get;

const BIN: &str = env!("CARGO_BIN_EXE_nimbus-hello");

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the binary and wait for its `listening on` line (no sleeping: the line is the signal).
fn start(command: &mut Command) -> (Running, String) {
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    let mut child = command.spawn().expect("spawn nimbus-hello");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    (Running(child), line)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn listens_on_port_and_reads_contract_env() {
    let port = free_port();
    let mut command = Command::new(BIN);
    command
        .env("PORT", port.to_string())
        .env("K_REVISION", "r-1")
        .env("TARGET", "Test");
    let (_child, line) = start(&mut command);
    assert_eq!(line, format!("listening on 0.0.0.0:{port}\n"));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let answer = get(addr, "/").await;
    assert!(
        answer.body.starts_with("Hello Test!\nrevision: r-1\n"),
        "{}",
        answer.body
    );
    assert_eq!(get(addr, "/stdin").await.body, "stdin: 0 bytes\n");
}

#[tokio::test]
async fn adopts_a_socket_activated_listener() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let mut command = Command::new("sh");
    // `exec` keeps the shell's pid, so `$$` is the pid nimbus-hello will have.
    command
        .args(["-c", "LISTEN_PID=$$ exec \"$0\"", BIN])
        .env("LISTEN_FDS", "1");
    command.env("PORT", "1"); // would fail to bind: proves the handed-over socket is used
    // SAFETY: the closure runs in the forked child before exec and only calls `dup2` and `fcntl`,
    // which are async-signal-safe; `fd` stays open in the parent until after spawn returns.
    unsafe {
        command.pre_exec(move || {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (_child, line) = start(&mut command);
    assert_eq!(line, format!("listening on {addr} (socket activation)\n"));
    drop(listener);
    assert_eq!(get(addr, "/status/204").await.status, 204);
}

#[test]
fn exit_immediately_exits_with_code_and_says_why() {
    let output = Command::new(BIN)
        .env("EXIT_IMMEDIATELY", "3")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("EXIT_IMMEDIATELY"));
}

#[tokio::test]
async fn exit_endpoint_answers_then_exits() {
    let port = free_port();
    let mut command = Command::new(BIN);
    command.env("PORT", port.to_string());
    let (mut child, _) = start(&mut command);
    let answer = get(([127, 0, 0, 1], port).into(), "/exit?code=7").await;
    assert_eq!(answer.body, "exiting with code 7\n");
    let status = tokio::task::spawn_blocking(move || child.0.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(7));
}
