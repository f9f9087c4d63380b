//! A network namespace per container, against the real runc (as root; otherwise `SKIPPED: …`,
//! and a failure when `CI` is set): two containers listen on the same port at addresses of
//! their own; a container's loopback is not the host's, so a port the host binds on loopback
//! is out of its reach; `host_network` keeps the host's network and a loopback port; cleanup
//! gives the address back; a container reaches a network beyond the host (a namespace of the
//! test's own), masqueraded as the host; its resolv.conf has no loopback nameserver.

mod support;

use std::fs::File;
use std::io::{ErrorKind, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use futures::TryStreamExt as _;
use nimbus_runtime_container::{CONTAINER_PORT, OciConfig};
use nimbus_runtime_process::Launcher;
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};
use support::*;

/// What `bash -c script` prints in a one-shot container, its launcher's config changed by
/// `tweak`.
async fn run_in_a_container(
    script: String,
    host_network: bool,
    test: &str,
    tweak: impl FnOnce(&mut OciConfig),
) -> String {
    let fixture = Fixture::new();
    add_host_program(&fixture.rootfs, "/usr/bin/bash");
    let mut spec = spec(&format!("{test}-00001"));
    spec.command = vec!["/usr/bin/bash".into(), "-c".into(), script];
    spec.security.host_network = host_network;
    let mut config = fixture.config();
    tweak(&mut config);
    let launcher = fixture.launcher(config, &spec, fixture.image(image_config()));
    let ctx = fixture.context(&instance_id(test), free_port(), None);
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    running.exit_code().await;
    tokio::time::sleep(Duration::from_millis(50)).await; // let stdout drain
    let output = running.output();
    launcher.cleanup(&ctx).await;
    output
}

/// What `bash` inside a one-shot container sees when it connects to `target`.
async fn connect_from_a_container(target: SocketAddr, host_network: bool, test: &str) -> String {
    let script = format!(
        "if exec 3<>/dev/tcp/{}/{}; then echo reached; else echo unreachable; fi",
        target.ip(),
        target.port()
    );
    run_in_a_container(script, host_network, test, |_| {}).await
}

#[tokio::test]
async fn two_containers_serve_the_same_port_at_their_own_addresses() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let spec = spec("pair-00001");
    let launcher = fixture.launcher(fixture.config(), &spec, fixture.image(image_config()));
    let (one, two) = (instance_id("pair-1"), instance_id("pair-2"));
    let ctx_one = fixture.context(&one, free_port(), None);
    let ctx_two = fixture.context(&two, free_port(), None);
    let first = Running::start(&launcher, &spec, &ctx_one).await;
    let second = Running::start(&launcher, &spec, &ctx_two).await;
    wait_hello(&first).await;
    wait_hello(&second).await;

    assert_eq!(first.addr.port(), CONTAINER_PORT);
    assert_eq!(second.addr.port(), CONTAINER_PORT);
    assert_ne!(first.addr.ip(), second.addr.ip());
    assert!(!first.addr.ip().is_loopback(), "{}", first.addr);
    for (running, id) in [(&first, &one), (&second, &two)] {
        let (_, env) = get(running.addr, "/env").await.expect("/env");
        assert!(env.contains(&format!("PORT={CONTAINER_PORT}\n")), "{env}");
        assert!(env.contains(&format!("HOSTNAME={id}\n")), "{env}");
    }

    let entry = format!("/run/nimbus/ipam/nimbus0/{}", first.addr.ip());
    assert!(
        std::path::Path::new(&entry).exists(),
        "the address is recorded"
    );
    launcher.cleanup(&ctx_one).await;
    launcher.cleanup(&ctx_two).await;
    assert!(
        !std::path::Path::new(&entry).exists(),
        "the address is given back"
    );
    assert!(
        get(first.addr, "/").await.is_none(),
        "nothing serves after cleanup"
    );
}

#[tokio::test]
async fn the_hosts_loopback_is_out_of_a_containers_reach() {
    if cannot_run().is_some() {
        return;
    }
    // A loopback-only port of the host, as the API server's is.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    let output = connect_from_a_container(loopback, false, "loopback").await;
    assert!(output.lines().any(|line| line == "unreachable"), "{output}");
    // Nor through the bridge's address, the host's side of the container's network (the
    // kernel answers a loopback-bound port on no other address; this documents that the
    // bridge opens no way around it, it does not exercise Nimbus code).
    let gateway = SocketAddr::from(([10, 87, 0, 1], port));
    let output = connect_from_a_container(gateway, false, "gateway").await;
    assert!(output.lines().any(|line| line == "unreachable"), "{output}");
    // With the host's network, the host's loopback is the container's.
    let output = connect_from_a_container(loopback, true, "hostnet").await;
    assert!(output.lines().any(|line| line == "reached"), "{output}");
    drop(listener);
}

#[tokio::test]
async fn host_network_serves_on_a_loopback_port_of_the_host() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let mut spec = spec("hostnet-00001");
    spec.security.host_network = true;
    let launcher = fixture.launcher(fixture.config(), &spec, fixture.image(image_config()));
    let (id, port) = (instance_id("hostnet"), free_port());
    let ctx = fixture.context(&id, port, None);
    let running = Running::start(&launcher, &spec, &ctx).await;
    assert_eq!(launcher.address(&ctx), None);
    assert_eq!(running.addr, SocketAddr::from(([127, 0, 0, 1], port)));
    wait_hello(&running).await;
    let (_, env) = get(running.addr, "/env").await.expect("/env");
    assert!(env.contains(&format!("PORT={port}\n")), "{env}");
    launcher.cleanup(&ctx).await;
}

#[tokio::test]
async fn a_container_reaches_beyond_the_host_masqueraded_as_the_host() {
    if cannot_run().is_some() {
        return;
    }
    let outside = Outside::new();
    // Without the NAT rule the outside has no route back to the bridge's subnet (and without
    // forwarding the host drops the packets): the connection times out and the test fails.
    let script = format!(
        "exec 3<>/dev/tcp/{}/{} && read -r seen <&3 && echo \"seen $seen\"",
        outside.server.ip(),
        outside.server.port()
    );
    let output = run_in_a_container(script, false, "egress", |_| {}).await;
    let expected = format!("seen {}", outside.host);
    assert!(output.lines().any(|line| line == expected), "{output}");
    assert_eq!(outside.peers(), [IpAddr::V4(outside.host)], "{output}");
}

#[tokio::test]
async fn a_containers_resolv_conf_has_no_loopback_nameserver() {
    if cannot_run().is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let host = dir.path().join("resolv.conf");
    let host_text = "nameserver 127.0.0.1\nnameserver ::1\nsearch corp.example\n";
    std::fs::write(&host, host_text).expect("write");
    let readable = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&host, readable).expect("chmod");
    let show = || "while read -r line; do echo \"$line\"; done </etc/resolv.conf".to_owned();
    let use_host = |config: &mut OciConfig| config.resolv_conf = host.clone();
    let own = run_in_a_container(show(), false, "dns", use_host).await;
    let expected = "search corp.example\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n";
    assert!(own.contains(expected), "{own}");
    assert!(!own.contains("127.0.0.1") && !own.contains("::1"), "{own}");
    // With the host's network, the host's loopback resolver is the container's.
    let shared = run_in_a_container(show(), true, "dnshost", use_host).await;
    assert!(shared.contains(host_text), "{shared}");
}

/// A network of the test's own beyond the host: a network namespace joined to the host by a
/// veth pair on a private /30 (from 10.250.0.0/16, by pid, so concurrent runs differ), with a
/// TCP server inside that answers each connection with the peer address it sees. Dropped
/// (also when a test panics): the server stops, the namespace ends with its thread (it is held
/// by nothing else, so even a killed test leaves none), and the host end of the pair is deleted.
struct Outside {
    /// The host's address on the pair.
    host: Ipv4Addr,
    /// The server, at the outside end.
    server: SocketAddr,
    veth: String,
    peers: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Outside {
    fn new() -> Self {
        let pid = std::process::id();
        let base = u32::from(Ipv4Addr::new(10, 250, 0, 0)) + (pid % 16384) * 4;
        let outside = Ipv4Addr::from(base + 2);
        let mut me = Self {
            host: Ipv4Addr::from(base + 1),
            server: SocketAddr::from((outside, 0)),
            veth: format!("nbout{pid:x}"),
            peers: Arc::default(),
            stop: Arc::default(),
            thread: None,
        };
        let (ready, wait) = mpsc::channel();
        let (veth, host, peers, stop) = (
            me.veth.clone(),
            me.host,
            Arc::clone(&me.peers),
            Arc::clone(&me.stop),
        );
        me.thread = Some(std::thread::spawn(move || {
            let listener = match set_up_outside(&veth, host, outside) {
                Ok(listener) => listener,
                Err(e) => return ready.send(Err(e)).expect("the test waits"),
            };
            let port = listener
                .local_addr()
                .map(|a| a.port())
                .map_err(|e| e.to_string());
            ready.send(port).expect("the test waits");
            serve_peers(&listener, &peers, &stop);
        }));
        let port = wait.recv().expect("the outside thread answers");
        me.server
            .set_port(port.expect("setting up the outside network"));
        me
    }

    fn peers(&self) -> Vec<IpAddr> {
        self.peers.lock().expect("peers").clone()
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let veth = self.veth.clone();
        let deleted = std::thread::spawn(move || on_a_runtime(delete_link(&veth))?).join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("cannot delete the test's veth {}: {deleted:?}", self.veth);
        }
    }
}

/// On this thread: leave the host's network namespace for a new one, joined to the host by
/// the pair `veth` (`host`/30) – `eth0` (`outside`/30), and listen on `outside`.
fn set_up_outside(veth: &str, host: Ipv4Addr, outside: Ipv4Addr) -> Result<TcpListener, String> {
    on_a_runtime(async {
        let on_host = netlink()?; // opened before leaving: it stays in the host's namespace
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        let netns = File::open("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
        let inside = netlink()?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name("eth0")
            .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(&netns))
            .build();
        let pair = LinkVeth::new(veth, "eth0")
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .up()
            .build();
        let added = on_host.link().add(pair).execute().await;
        added.map_err(|e| format!("creating veth {veth}: {e}"))?;
        address_up(&on_host, veth, host).await?;
        address_up(&inside, "eth0", outside).await?;
        TcpListener::bind((outside, 0)).map_err(|e| format!("binding {outside}: {e}"))
    })?
}

/// Answer each connection with its peer's address, recording it, until `stop`.
fn serve_peers(listener: &TcpListener, peers: &Mutex<Vec<IpAddr>>, stop: &AtomicBool) {
    listener.set_nonblocking(true).expect("nonblocking");
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                peers.lock().expect("peers").push(peer.ip());
                let _ = writeln!(stream, "{}", peer.ip());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn on_a_runtime<T>(work: impl Future<Output = T>) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(rt.block_on(work))
}

/// A route netlink socket in this thread's network namespace.
fn netlink() -> Result<Handle, String> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(handle)
}

async fn index(handle: &Handle, name: &str) -> Option<u32> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    links
        .try_next()
        .await
        .ok()
        .flatten()
        .map(|l| l.header.index)
}

/// Give device `name` address `addr`/30 and bring it up.
async fn address_up(handle: &Handle, name: &str, addr: Ipv4Addr) -> Result<(), String> {
    let index = index(handle, name)
        .await
        .ok_or(format!("no device {name}"))?;
    let added = handle.address().add(index, IpAddr::V4(addr), 30).execute();
    added
        .await
        .map_err(|e| format!("adding {addr} to {name}: {e}"))?;
    let up = LinkUnspec::new_with_index(index).up().build();
    let set = handle.link().set(up).execute().await;
    set.map_err(|e| format!("bringing {name} up: {e}"))
}

/// Delete device `name` of this thread's namespace, if there is one.
async fn delete_link(name: &str) -> Result<(), String> {
    let handle = netlink()?;
    match index(&handle, name).await {
        Some(index) => handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(|e| e.to_string()),
        None => Ok(()),
    }
}
