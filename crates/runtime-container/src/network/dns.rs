//! The /etc/resolv.conf of a container with a network namespace of its own. The host's
//! nameservers on loopback (systemd-resolved's 127.0.0.53, a dnsmasq on 127.0.0.1) are the
//! container's own loopback there, where nothing answers, and its network is IPv4 only. So, as
//! Docker does, the container gets a copy of the host's file without loopback and IPv6
//! nameservers; when the host's file names systemd-resolved's stub, the servers resolved
//! forwards to (`/run/systemd/resolve/resolv.conf`) are used instead; and when no nameserver
//! remains, [`FALLBACK_NAMESERVERS`] (Google Public DNS, Docker's default) are. Every other line
//! (`search`, `options`, comments) is kept. A host file that needs none of this is bound as it
//! is. [`rewrite`] is pure.

use std::net::IpAddr;

/// Where systemd-resolved lists the servers it forwards to.
pub const SYSTEMD_RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// The nameservers of a container whose host names none it can reach: Docker's default.
pub const FALLBACK_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// systemd-resolved's stub resolver.
const RESOLVED_STUB: &str = "127.0.0.53";

/// A container's resolv.conf that differs from the host's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The file's contents.
    pub text: String,
    /// The host's nameservers left out.
    pub dropped: Vec<String>,
    /// Where its nameservers come from.
    pub source: Source,
}

/// Where the nameservers of a [`Rewrite`] come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The host's file, less those dropped.
    Host,
    /// systemd-resolved's upstream servers ([`SYSTEMD_RESOLVED_UPSTREAM`]).
    SystemdResolved,
    /// [`FALLBACK_NAMESERVERS`].
    Fallback,
}

/// The container's resolv.conf for the host's `host` (and systemd-resolved's `upstream` file,
/// if there is one); `None` when the host's serves as it is.
pub fn rewrite(host: &str, upstream: Option<&str>) -> Option<Rewrite> {
    let (text, dropped, kept) = filter(host);
    if dropped.is_empty() && kept > 0 {
        return None;
    }
    let resolved = upstream
        .filter(|_| dropped.iter().any(|d| d == RESOLVED_STUB))
        .map(filter)
        .filter(|(_, _, kept)| *kept > 0);
    let (text, source) = match resolved {
        Some((upstream_text, _, _)) => (upstream_text, Source::SystemdResolved),
        None if kept > 0 => (text, Source::Host),
        None => {
            let mut text = text;
            for server in FALLBACK_NAMESERVERS {
                text.push_str(&format!("nameserver {server}\n"));
            }
            (text, Source::Fallback)
        }
    };
    Some(Rewrite {
        text,
        dropped,
        source,
    })
}

/// `text` less its unreachable nameserver lines, those left out, and how many remain.
fn filter(text: &str) -> (String, Vec<String>, usize) {
    let (mut kept_text, mut dropped, mut kept) = (String::new(), Vec::new(), 0);
    for line in text.lines() {
        match nameserver(line) {
            Some(server) if !reachable(server) => {
                dropped.push(server.to_owned());
                continue;
            }
            Some(_) => kept += 1,
            None => {}
        }
        kept_text.push_str(line);
        kept_text.push('\n');
    }
    (kept_text, dropped, kept)
}

/// The address of a `nameserver` line.
fn nameserver(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    (words.next() == Some("nameserver")).then(|| words.next())?
}

/// Whether a container in its own IPv4-only network can reach nameserver `server`; a value that
/// is no address (not for us to judge) counts as reachable.
fn reachable(server: &str) -> bool {
    let address = server.split('%').next().unwrap_or(server); // fe80::1%eth0
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => !v4.is_loopback(),
        Ok(IpAddr::V6(_)) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOLVED: &str = "# This is /run/systemd/resolve/stub-resolv.conf\n\
                            nameserver 127.0.0.53\n\
                            options edns0 trust-ad\n\
                            search corp.example\n";

    #[test]
    fn a_host_file_with_reachable_nameservers_is_kept() {
        let host = "nameserver 10.255.255.53\nsearch example.com\n";
        assert_eq!(rewrite(host, None), None);
        assert_eq!(rewrite(host, Some("nameserver 1.1.1.1\n")), None);
    }

    #[test]
    fn loopback_nameservers_are_dropped_and_the_others_kept() {
        let host = "nameserver 127.0.0.1\nnameserver 192.0.2.53\noptions ndots:2\n";
        let rewrite = rewrite(host, None).unwrap();
        assert_eq!(rewrite.text, "nameserver 192.0.2.53\noptions ndots:2\n");
        assert_eq!(rewrite.dropped, ["127.0.0.1"]);
        assert_eq!(rewrite.source, Source::Host);
    }

    #[test]
    fn only_loopback_falls_back_to_dockers_default_keeping_search_and_options() {
        let host = "nameserver 127.0.0.1\nnameserver ::1\nsearch a.example\noptions rotate\n";
        let rewrite = rewrite(host, None).unwrap();
        assert_eq!(
            rewrite.text,
            "search a.example\noptions rotate\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(rewrite.dropped, ["127.0.0.1", "::1"]);
        assert_eq!(rewrite.source, Source::Fallback);
    }

    #[test]
    fn systemd_resolveds_stub_is_replaced_by_its_upstream_servers() {
        let upstream = "nameserver 192.0.2.1\nnameserver 2001:db8::1\nsearch corp.example\n";
        let rewrite = rewrite(RESOLVED, Some(upstream)).unwrap();
        assert_eq!(rewrite.text, "nameserver 192.0.2.1\nsearch corp.example\n");
        assert_eq!(rewrite.dropped, ["127.0.0.53"]);
        assert_eq!(rewrite.source, Source::SystemdResolved);
    }

    #[test]
    fn without_upstream_servers_resolveds_stub_falls_back() {
        for upstream in [None, Some("# no servers\n"), Some("nameserver 127.0.0.1\n")] {
            let rewrite = rewrite(RESOLVED, upstream).unwrap();
            assert_eq!(rewrite.source, Source::Fallback, "{upstream:?}");
            assert!(rewrite.text.contains("options edns0 trust-ad\n"));
            assert!(
                rewrite
                    .text
                    .ends_with("nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
            );
            assert!(!rewrite.text.contains("127.0.0.53"));
        }
    }

    #[test]
    fn the_upstream_file_is_read_only_for_resolveds_stub() {
        let rewrite = rewrite("nameserver 127.0.0.1\n", Some("nameserver 192.0.2.1\n")).unwrap();
        assert_eq!(rewrite.source, Source::Fallback);
    }

    #[test]
    fn a_file_without_nameservers_falls_back() {
        // glibc would ask the container's own loopback.
        let rewrite = rewrite("", None).unwrap();
        assert_eq!(rewrite.text, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        assert!(rewrite.dropped.is_empty());
    }

    #[test]
    fn ipv6_and_link_local_nameservers_are_dropped_odd_values_kept() {
        let host = "nameserver fe80::1%eth0\nnameserver 2001:db8::53\n  nameserver 127.1.2.3 \n\
                    nameserver dns.example\n";
        let rewrite = rewrite(host, None).unwrap();
        assert_eq!(
            rewrite.dropped,
            ["fe80::1%eth0", "2001:db8::53", "127.1.2.3"]
        );
        assert_eq!(rewrite.text, "nameserver dns.example\n");
        assert_eq!(rewrite.source, Source::Host);
    }

    #[test]
    fn nameserver_lines_are_recognised_by_their_first_word() {
        assert_eq!(nameserver("nameserver 1.2.3.4"), Some("1.2.3.4"));
        assert_eq!(nameserver("\tnameserver\t1.2.3.4 # x"), Some("1.2.3.4"));
        assert_eq!(nameserver("nameserver"), None);
        assert_eq!(nameserver("# nameserver 127.0.0.1"), None);
        assert_eq!(nameserver("nameservers 1.2.3.4"), None);
    }
}
