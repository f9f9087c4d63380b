//! Containers' way out beyond the host: source NAT and forwarding for the bridge's subnet, as
//! Docker's default bridge has. [`set_up`] installs, in the nftables table `ip nimbus` (Nimbus's
//! own: no other table is read for anything but a warning, none is written), two base chains
//! per bridge, then enables IPv4 forwarding (`net.ipv4.ip_forward=1`) if it was off:
//!
//! ```text
//! table ip nimbus {
//!     chain forward-nimbus0 {
//!         type filter hook forward priority filter; policy accept;
//!         iifname "nimbus0" accept
//!         oifname "nimbus0" ct state established,related accept
//!         oifname "nimbus0" drop
//!     }
//!     chain postrouting-nimbus0 {
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 10.87.0.0/16 oifname != "nimbus0" masquerade
//!     }
//! }
//! ```
//!
//! Containers open connections out; only replies come back in: with forwarding on, a neighbour
//! routing the subnet through this host would otherwise reach containers directly, past the
//! router (Docker closed the same hole in its 28.0). Traffic between containers of the bridge is
//! switched, not forwarded (and accepted by the first rule where `br_netfilter` hands it to IP).
//!
//! One transaction adds the table and chains if missing, flushes this bridge's chains and fills
//! them: idempotent and atomic, so every server start re-creates them without duplicates while
//! the other servers sharing the bridge keep working, and other bridges' chains are untouched.
//! Nothing is removed on shutdown, as the bridge itself is not: other servers may share both,
//! and the rules match nothing once the bridge is gone.
//!
//! An `accept` here does not override a `drop` in another table's forward chain (nftables runs
//! every base chain of a hook; a drop is final), so [`set_up`] warns about forward chains of
//! other tables whose policy is drop (Docker sets iptables' `FORWARD` so). Rules are built and
//! chains read with the `nftables` crate (typed libnftables JSON rather than text to quote) and
//! applied by `nft -j -f -`.
//! Without `nft`, or when the rules are refused, nothing is enabled and a warning says that
//! containers have no outbound access and how to give it to them; containers still start.

use std::borrow::Cow;
use std::io::{self, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix};
use nftables::helper;
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::subnet::Subnet;

/// The nftables table Nimbus owns.
pub const TABLE: &str = "nimbus";

/// Where `nft` is looked for after `PATH` (a server started without the sbin directories on
/// it still finds Debian's).
const NFT_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// nftables' standard priorities `filter` and `srcnat`.
const PRIORITY_FILTER: i32 = 0;
const PRIORITY_SRCNAT: i32 = 100;

/// Why containers got no outbound access.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("`{0}` (nftables) is not installed")]
    NftMissing(String),
    #[error("cannot run `{program}`: {source}")]
    NftUnusable {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("`nft` refused Nimbus's rules: {0}")]
    Refused(String),
    #[error("cannot enable IPv4 forwarding (net.ipv4.ip_forward): {0}")]
    Forwarding(#[source] io::Error),
}

// === impl EgressError ===

impl EgressError {
    /// What the operator can do about it.
    fn fix(&self) -> &'static str {
        match self {
            Self::NftMissing(_) | Self::NftUnusable { .. } => {
                "install nftables (`apt-get install nftables`) and restart the server"
            }
            Self::Refused(_) => "check that the kernel has nf_tables with NAT and conntrack",
            Self::Forwarding(_) => "set `sysctl net.ipv4.ip_forward=1`",
        }
    }
}

/// Give the containers on `bridge` (subnet `subnet`) a way out, or warn that they have none.
/// Runs in the host's network namespace; never fails.
pub fn set_up(bridge: &str, subnet: &Subnet) {
    let nft = nft_program();
    match install(&nft, Path::new(IP_FORWARD), bridge, subnet) {
        Ok(enabled) => {
            if enabled {
                tracing::info!(
                    "enabled IPv4 forwarding (net.ipv4.ip_forward=1), as Docker does, so \
                     containers reach beyond the host"
                );
            }
            warn_forward_drops(&nft, bridge);
        }
        Err(e) => tracing::warn!(
            "containers on {bridge} have no outbound access beyond the host: {e}; {}, or run \
             `nimbus serve --container-host-network`",
            e.fix()
        ),
    }
}

/// `nft` on `PATH` or in [`NFT_DIRS`]; plain `nft` (to fail as missing) when in neither.
fn nft_program() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(NFT_DIRS.map(Into::into));
    dirs.map(|dir| dir.join("nft"))
        .find(|candidate| candidate.is_file())
        .map_or_else(
            || "nft".to_owned(),
            |found| found.to_string_lossy().into_owned(),
        )
}

/// Apply the rules with `program`, then turn forwarding on at `ip_forward`; whether it was off.
fn install(
    program: &str,
    ip_forward: &Path,
    bridge: &str,
    subnet: &Subnet,
) -> Result<bool, EgressError> {
    apply(program, &ruleset(bridge, subnet))?;
    enable_forwarding(ip_forward).map_err(EgressError::Forwarding)
}

/// `program -j -f -` with `ruleset` on its stdin; what it says on stderr when it fails (the
/// `nftables` crate's own runner lets it through to the server's stderr instead).
fn apply(program: &str, ruleset: &Nftables<'_>) -> Result<(), EgressError> {
    let json = serde_json::to_vec(ruleset).expect("a ruleset serializes");
    let spawned = Command::new(program)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = spawned.map_err(|e| spawn_error(program, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&json); // if nft stopped reading, its status says why
    }
    let output = child
        .wait_with_output()
        .map_err(|e| spawn_error(program, e))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Err(EgressError::Refused(if stderr.is_empty() {
        output.status.to_string()
    } else {
        stderr
    }))
}

fn spawn_error(program: &str, error: io::Error) -> EgressError {
    match error.kind() {
        io::ErrorKind::NotFound => EgressError::NftMissing(program.to_owned()),
        _ => EgressError::NftUnusable {
            program: program.to_owned(),
            source: error,
        },
    }
}

/// Write `1` to `path` unless it holds it already; whether it was written.
fn enable_forwarding(path: &Path) -> io::Result<bool> {
    if std::fs::read_to_string(path)?.trim() == "1" {
        return Ok(false);
    }
    std::fs::write(path, "1")?;
    Ok(true)
}

/// Warn about forward chains of other tables whose policy is drop (best effort).
fn warn_forward_drops(program: &str, bridge: &str) {
    let chains = match helper::get_current_ruleset_with_args(Some(program), ["list", "chains"]) {
        Ok(chains) => chains,
        Err(e) => return tracing::debug!("cannot list nftables chains: {e}"),
    };
    for chain in forward_drops(&chains) {
        tracing::warn!(
            "{chain} drops forwarded packets its rules do not accept, whatever table `ip \
             {TABLE}` accepts: unless it accepts traffic from {bridge} and replies to it, \
             containers have no outbound access (for iptables: `iptables -I FORWARD -i {bridge} \
             -j ACCEPT; iptables -I FORWARD -o {bridge} -m conntrack --ctstate \
             RELATED,ESTABLISHED -j ACCEPT`)"
        );
    }
}

/// The forward chains of tables other than Nimbus's whose policy is drop, as `table <family>
/// <name> chain <name>`.
fn forward_drops(ruleset: &Nftables<'_>) -> Vec<String> {
    let chains = ruleset.objects.iter().filter_map(|object| match object {
        NfObject::ListObject(NfListObject::Chain(chain)) => Some(chain),
        _ => None,
    });
    chains
        .filter(|c| c.hook == Some(NfHook::Forward) && c.policy == Some(NfChainPolicy::Drop))
        .filter(|c| !(c.family == NfFamily::IP && c.table == TABLE))
        .map(|c| format!("table {} {} chain {}", family(c.family), c.table, c.name))
        .collect()
}

fn family(family: NfFamily) -> &'static str {
    match family {
        NfFamily::IP => "ip",
        NfFamily::IP6 => "ip6",
        NfFamily::INet => "inet",
        NfFamily::ARP => "arp",
        NfFamily::Bridge => "bridge",
        NfFamily::NetDev => "netdev",
    }
}

// === the ruleset ===

/// One transaction: the table and `bridge`'s chains (added if missing), flushed and filled.
fn ruleset(bridge: &str, subnet: &Subnet) -> Nftables<'static> {
    let (forward, postrouting) = (format!("forward-{bridge}"), format!("postrouting-{bridge}"));
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(Table {
        family: NfFamily::IP,
        name: TABLE.into(),
        handle: None,
    }));
    let chains = [
        base_chain(
            &forward,
            NfChainType::Filter,
            NfHook::Forward,
            PRIORITY_FILTER,
        ),
        base_chain(
            &postrouting,
            NfChainType::NAT,
            NfHook::Postrouting,
            PRIORITY_SRCNAT,
        ),
    ];
    for chain in &chains {
        batch.add(NfListObject::Chain(chain.clone()));
    }
    for chain in chains {
        batch.add_cmd(NfCmd::Flush(FlushObject::Chain(chain)));
    }
    let bridge = Expression::String(bridge.to_owned().into());
    let (iif, oif) = (meta(MetaKey::Iifname), meta(MetaKey::Oifname));
    let rules = [
        (&forward, vec![is(iif, &bridge), Statement::Accept(None)]),
        (
            &forward,
            vec![is(oif.clone(), &bridge), reply(), Statement::Accept(None)],
        ),
        (
            &forward,
            vec![is(oif.clone(), &bridge), Statement::Drop(None)],
        ),
        (
            &postrouting,
            vec![
                from(subnet),
                matches(oif, Operator::NEQ, bridge),
                Statement::Masquerade(None),
            ],
        ),
    ];
    for (chain, expr) in rules {
        batch.add(rule(chain, expr));
    }
    batch.to_nftables()
}

fn base_chain(name: &str, kind: NfChainType, hook: NfHook, prio: i32) -> Chain<'static> {
    Chain {
        family: NfFamily::IP,
        table: TABLE.into(),
        name: name.to_owned().into(),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn rule(chain: &str, expr: Vec<Statement<'static>>) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: NfFamily::IP,
        table: TABLE.into(),
        chain: chain.to_owned().into(),
        expr: Cow::Owned(expr),
        ..Rule::default()
    })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn is(left: Expression<'static>, right: &Expression<'static>) -> Statement<'static> {
    matches(left, Operator::EQ, right.clone())
}

/// `ct state established,related`.
fn reply() -> Statement<'static> {
    let state = Expression::Named(NamedExpression::CT(nftables::expr::CT {
        key: "state".into(),
        family: None,
        dir: None,
    }));
    let states = ["established", "related"].map(|s| Expression::String(s.into()));
    matches(state, Operator::IN, Expression::List(states.to_vec()))
}

/// `ip saddr <subnet>`.
fn from(subnet: &Subnet) -> Statement<'static> {
    let saddr = Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: "ip".into(),
            field: "saddr".into(),
        },
    )));
    let prefix = Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(subnet.base().to_string().into())),
        len: u32::from(subnet.prefix()),
    }));
    matches(saddr, Operator::EQ, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet() -> Subnet {
        "10.87.0.0/16".parse().unwrap()
    }

    #[test]
    fn the_ruleset_is_one_idempotent_transaction_scoped_to_the_bridge() {
        let json = serde_json::to_value(ruleset("nimbus0", &subnet())).unwrap();
        let commands = json["nftables"].as_array().unwrap();
        let verbs: Vec<String> = commands
            .iter()
            .map(|c| {
                let (verb, object) = c.as_object().unwrap().iter().next().unwrap();
                let kind = object.as_object().unwrap().keys().next().unwrap();
                format!("{verb} {kind}")
            })
            .collect();
        let expected = [
            "add table",
            "add chain",
            "add chain",
            "flush chain",
            "flush chain",
            "add rule",
            "add rule",
            "add rule",
            "add rule",
        ];
        assert_eq!(verbs, expected);
        assert_eq!(commands[0]["add"]["table"]["name"], "nimbus");
        assert_eq!(commands[0]["add"]["table"]["family"], "ip");
        let nat = &commands[2]["add"]["chain"];
        assert_eq!(nat["name"], "postrouting-nimbus0");
        assert_eq!(
            (&nat["type"], &nat["hook"]),
            (&"nat".into(), &"postrouting".into())
        );
        assert_eq!(
            (&nat["prio"], &nat["policy"]),
            (&100.into(), &"accept".into())
        );
        let forward = &commands[1]["add"]["chain"];
        assert_eq!(
            (&forward["hook"], &forward["policy"]),
            (&"forward".into(), &"accept".into())
        );
    }

    #[test]
    fn the_masquerade_rule_names_the_subnet_and_spares_the_bridge() {
        let json = serde_json::to_value(ruleset("nimbus0", &subnet())).unwrap();
        let masquerade = &json["nftables"][8]["add"]["rule"];
        assert_eq!(masquerade["chain"], "postrouting-nimbus0");
        let expected = serde_json::json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                       "right": {"prefix": {"addr": "10.87.0.0", "len": 16}}}},
            {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "nimbus0"}},
            {"masquerade": null},
        ]);
        assert_eq!(masquerade["expr"], expected);
    }

    #[test]
    fn forwarding_lets_containers_out_and_only_replies_in() {
        let json = serde_json::to_value(ruleset("nb1", &subnet())).unwrap();
        let rules: Vec<_> = (5..8)
            .map(|i| &json["nftables"][i]["add"]["rule"])
            .collect();
        assert!(rules.iter().all(|r| r["chain"] == "forward-nb1"));
        let out = serde_json::json!([
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "nb1"}},
            {"accept": null},
        ]);
        assert_eq!(rules[0]["expr"], out);
        let replies = &rules[1]["expr"];
        assert_eq!(replies[1]["match"]["op"], "in");
        assert_eq!(replies[1]["match"]["left"]["ct"]["key"], "state");
        assert_eq!(
            replies[1]["match"]["right"],
            serde_json::json!(["established", "related"])
        );
        assert_eq!(replies[2], serde_json::json!({"accept": null}));
        assert_eq!(rules[2]["expr"][1], serde_json::json!({"drop": null}));
    }

    #[test]
    fn a_missing_nft_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let forward = dir.path().join("ip_forward");
        std::fs::write(&forward, "0\n").unwrap();
        let err = install("/nonexistent/nft", &forward, "nimbus0", &subnet()).unwrap_err();
        assert!(matches!(err, EgressError::NftMissing(_)), "{err:?}");
        assert_eq!(
            std::fs::read_to_string(&forward).unwrap(),
            "0\n",
            "forwarding left off"
        );
    }

    #[test]
    fn refused_rules_report_nfts_complaint() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let nft = dir.path().join("nft");
        let script = "#!/bin/sh\ncat >/dev/null\necho 'Error: no such hook' >&2\nexit 1\n";
        std::fs::write(&nft, script).unwrap();
        std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755)).unwrap();
        let forward = dir.path().join("ip_forward");
        let err = install(nft.to_str().unwrap(), &forward, "nimbus0", &subnet()).unwrap_err();
        assert!(
            matches!(&err, EgressError::Refused(why) if why == "Error: no such hook"),
            "{err:?}"
        );
    }

    #[test]
    fn forwarding_is_enabled_once() {
        let dir = tempfile::tempdir().unwrap();
        let forward = dir.path().join("ip_forward");
        std::fs::write(&forward, "0\n").unwrap();
        assert!(enable_forwarding(&forward).unwrap());
        assert_eq!(std::fs::read_to_string(&forward).unwrap(), "1");
        assert!(!enable_forwarding(&forward).unwrap());
    }

    #[test]
    fn forward_chains_of_other_tables_that_drop_are_found() {
        let listing = serde_json::json!({"nftables": [
            {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
            {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1,
                       "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
            {"chain": {"family": "inet", "table": "fw", "name": "fwd", "handle": 2,
                       "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
            {"chain": {"family": "ip", "table": "filter", "name": "DOCKER", "handle": 3}},
            {"chain": {"family": "ip", "table": "nimbus", "name": "forward-nimbus0", "handle": 4,
                       "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
        ]});
        let ruleset: Nftables<'static> = serde_json::from_value(listing).unwrap();
        assert_eq!(forward_drops(&ruleset), ["table ip filter chain FORWARD"]);
    }
}
