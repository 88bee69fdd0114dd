//! Masquerade (source NAT to the host's address) for a container's
//! addresses, in the reference plugins' two forms, so that rules made by
//! the reference and by this suite are the same rules:
//!
//! - [`Backend::Iptables`]: per attachment a chain in the `nat` table named
//!   by [`chain_name`], rules commented with [`iptables_comment`]: an ACCEPT
//!   for the container's own subnet (and each `exclude` destination), a
//!   MASQUERADE for everything but multicast, and a POSTROUTING jump from
//!   each of the container's addresses. IPv6 through `ip6tables`.
//! - [`Backend::Nftables`]: table `inet cni_plugins_masquerade`, a
//!   `postrouting` NAT chain that skips multicast and jumps to
//!   `masq_checks`, and there one rule per address whose comment starts with
//!   [`nft_instance_hash`].
//!
//! Every change is one batch: one `iptables-restore --noflush` per address
//! family, or one `nft -f -` transaction. What costs time is the kernel
//! committing a transaction (about 15 ms each with iptables-nft), so the
//! reference's one process and one commit per rule is what makes it slow;
//! reading the current rules (`iptables-save -t nat`, `nft -j list`) is
//! cheap, and lets every change be exact: nothing added twice, nothing
//! written when everything is already there.
//!
//! The functions are synchronous: each waits for one or two short-lived
//! processes, which is fine for a plugin that lives for one call.

mod iptables;
mod nftables;

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

use crate::spec::Attachment;

/// Which netfilter interface holds the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `iptables-restore` / `ip6tables-restore` into the `nat` tables (the
    /// reference's historical form; works with iptables-legacy and iptables-nft).
    Iptables,
    /// One `nft` transaction on table `inet cni_plugins_masquerade`.
    Nftables,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        })
    }
}

/// A failure of a masquerade operation, naming the attachment, the program
/// and the rule or chain at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be started.
    #[error("masquerade for {attachment}: cannot run {program}: {source}")]
    Spawn {
        attachment: String,
        program: String,
        source: std::io::Error,
    },
    /// The program refused, `doing` says what it was asked (the failing rule
    /// when it names one).
    #[error("masquerade for {attachment}: {program} failed {doing}: {stderr}")]
    Tool {
        attachment: String,
        program: String,
        doing: String,
        stderr: String,
    },
    /// CHECK: a rule ADD writes is not there.
    #[error("masquerade for {attachment}: {what} is missing")]
    Missing { attachment: String, what: String },
    /// Several failures of one teardown or GC, which keeps going after each.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<Error>),
}

impl Error {
    fn several(mut errors: Vec<Error>) -> Result<(), Error> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Several(errors)),
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// One attachment's coordinates, as its rules are named.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    network: &'a str,
    container_id: &'a str,
    ifname: &'a str,
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "network {:?} container {:?} interface {:?}",
            self.network, self.container_id, self.ifname
        )
    }
}

/// A setup or check of the iptables form; `true` lets it decline (`Ok(false)`)
/// when iptables does not work here.
type IptablesStep = fn(Target, &[IpNet], &[IpNet], bool) -> Result<bool, Error>;
/// A setup or check of the nftables form.
type NftablesStep = fn(Target, &[IpNet], &[IpNet]) -> Result<(), Error>;

/// One attachment's masquerade: whose it is, the addresses to masquerade
/// (with their prefix, `10.1.0.5/24`: traffic to the own subnet is not
/// masqueraded) and destinations to leave alone besides multicast.
#[derive(Debug, Clone, Copy)]
pub struct Masquerade<'a> {
    /// `None` picks iptables when it works here, else nftables.
    pub backend: Option<Backend>,
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub addrs: &'a [IpNet],
    pub exclude: &'a [IpNet],
}

impl Masquerade<'_> {
    /// Writes the rules in one batch per family (iptables) or one
    /// transaction (nftables). Finding out which backend works costs no
    /// extra process (the iptables form reads the `nat` table first
    /// anyway). Repeating a setup changes nothing. When it fails, nothing it
    /// wrote stays. No addresses: nothing to do.
    pub fn setup(&self) -> crate::Result<()> {
        self.by_backend(iptables::setup, nftables::setup)
    }

    /// Fails, naming the rule, when a rule [`Masquerade::setup`] writes is
    /// missing; checks the form setup would pick.
    pub fn check(&self) -> crate::Result<()> {
        self.by_backend(iptables::check, nftables::check)
    }

    /// Runs the iptables form or the nftables form, as `backend` says, or
    /// (`None`) iptables when it works here, else nftables. The iptables
    /// form is told whether it may decline (`true`: it returns `false` when
    /// iptables does not work, instead of failing).
    fn by_backend(&self, iptables: IptablesStep, nftables: NftablesStep) -> crate::Result<()> {
        if self.addrs.is_empty() {
            return Ok(());
        }
        let t = Target {
            network: self.network,
            container_id: self.container_id,
            ifname: self.ifname,
        };
        let (addrs, exclude) = (self.addrs, self.exclude);
        match self.backend {
            Some(Backend::Nftables) => nftables(t, addrs, exclude)?,
            Some(Backend::Iptables) => {
                iptables(t, addrs, exclude, false)?;
            }
            None => {
                if !iptables(t, addrs, exclude, true)? {
                    nftables(t, addrs, exclude)?;
                }
            }
        }
        Ok(())
    }
}

/// Removes the masquerade of one attachment in both forms, found from the
/// network name and container id alone (and, for the nftables form, the
/// interface name): rules the reference wrote go too. Succeeds when there is
/// nothing to remove, or when a backend's tool is not installed. Keeps
/// going after a failure and reports them all.
pub fn teardown(network: &str, container_id: &str, ifname: &str) -> crate::Result<()> {
    let t = Target {
        network,
        container_id,
        ifname,
    };
    // Both forms at once: the reads (one process each) overlap.
    let (ipt, nft) = std::thread::scope(|s| {
        let ipt = s.spawn(|| iptables::teardown(t));
        let nft = nftables::teardown(t);
        (ipt.join().expect("iptables teardown panicked"), nft)
    });
    Ok(Error::several(
        [ipt.err(), nft.err()].into_iter().flatten().collect(),
    )?)
}

/// Removes the masquerade of every attachment of `network` not in `valid`,
/// in both forms. The iptables form is per container (its chain name has
/// no interface): a container keeps its chain while any of its attachments
/// is valid. Only chains named by [`chain_name`] are touched, never other
/// `CNI-` chains (portmap's, for example) with the same comment.
pub fn gc(network: &str, valid: &[Attachment]) -> crate::Result<()> {
    let mut errors = Vec::new();
    errors.extend(iptables::gc(network, valid).err());
    errors.extend(nftables::gc(network, valid).err());
    Ok(Error::several(errors)?)
}

/// Whether `backend` (`None`: either) can be used here, for STATUS: costs
/// one `iptables-save` or `nft` run, two when the first fails.
pub fn available(backend: Option<Backend>) -> bool {
    match backend {
        Some(Backend::Iptables) => iptables::works(),
        Some(Backend::Nftables) => nftables::works(),
        None => iptables::works() || nftables::works(),
    }
}

/// The reference's iptables chain for an attachment: `CNI-` and the first
/// 24 hex digits of SHA-512 of the network name followed by the container id.
pub fn chain_name(network: &str, container_id: &str) -> String {
    format!(
        "CNI-{}",
        &sha512_hex(&format!("{network}{container_id}"))[..24]
    )
}

/// The reference's comment on each iptables rule: `name: "<net>" id: "<cid>"`.
pub fn iptables_comment(network: &str, container_id: &str) -> String {
    format!("name: {network:?} id: {container_id:?}")
}

/// The 16 hex digits that start the comment of every nftables rule of a network.
pub fn nft_network_hash(network: &str) -> String {
    sha512_hex(network)[..16].to_string()
}

/// The prefix of the nftables rule comments of one attachment: the network's
/// hash, `-`, and 16 hex digits of SHA-512 of `ifname:containerID`.
pub fn nft_instance_hash(network: &str, ifname: &str, container_id: &str) -> String {
    format!(
        "{}-{}",
        nft_network_hash(network),
        &sha512_hex(&format!("{ifname}:{container_id}"))[..16]
    )
}

/// The full comment of an attachment's nftables rules: the instance hash,
/// then a readable description, at most 128 bytes as the reference writes it.
pub fn nft_comment(network: &str, ifname: &str, container_id: &str) -> String {
    let clean = |s: &str| s.replace('"', "");
    let mut c = format!(
        "{}, net: {}, if: {}, id: {}",
        nft_instance_hash(network, ifname, container_id),
        clean(network),
        clean(ifname),
        clean(container_id)
    );
    if c.len() > 128 {
        let mut end = 128;
        while !c.is_char_boundary(end) {
            end -= 1;
        }
        c.truncate(end);
    }
    c
}

fn sha512_hex(s: &str) -> String {
    Sha512::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Multicast destinations, never masqueraded.
fn multicast(v4: bool) -> &'static str {
    if v4 {
        "224.0.0.0/4"
    } else {
        "ff00::/8"
    }
}

/// What a finished program said.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `program` (from `PATH`, else `/usr/sbin`, `/sbin`) with `stdin`.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<Ran> {
    let mut last = None;
    for candidate in [
        program.to_string(),
        format!("/usr/sbin/{program}"),
        format!("/sbin/{program}"),
    ] {
        let mut cmd = Command::new(&candidate);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(input) = stdin {
            // A write error shows up as the program's failure below.
            let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        }
        let out = child.wait_with_output()?;
        return Ok(Ran {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: one_line(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Err(last.expect("at least one candidate"))
}

/// A tool's complaint on one line, without nft's `^^^^` markers.
fn one_line(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == '~'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_one_line_drops_markers() {
        assert_eq!(
            one_line("Error: No such file\nlist table inet x\n           ^^^^^\n"),
            "Error: No such file list table inet x"
        );
    }

    #[test]
    fn test_chain_name_reference_vector() {
        assert_eq!(chain_name("test", "1234"), "CNI-2bbe0c48b91a7d1b8a6753a8");
        assert_eq!(chain_name("test", "1234").len(), 28);
    }

    #[test]
    fn test_iptables_comment_format() {
        assert_eq!(
            iptables_comment("test", "1234"),
            r#"name: "test" id: "1234""#
        );
    }

    #[test]
    fn test_nft_instance_hash_reference_vector() {
        assert_eq!(
            nft_instance_hash("unit-test", "eth0", "one"),
            "6fd94d501e58f0aa-287fc69eff0574a2"
        );
        assert!(nft_instance_hash("unit-test", "eth0", "one")
            .starts_with(&nft_network_hash("unit-test")));
    }

    #[test]
    fn test_nft_comment_truncated_to_128() {
        assert_eq!(
            nft_comment("unit-test", "eth0", "one"),
            "6fd94d501e58f0aa-287fc69eff0574a2, net: unit-test, if: eth0, id: one"
        );
        let long = "c".repeat(200);
        let c = nft_comment("n", "eth0", &long);
        assert_eq!(c.len(), 128);
        assert!(c.starts_with(&nft_instance_hash("n", "eth0", &long)));
    }

    #[test]
    fn test_setup_and_check_without_addresses_do_nothing() {
        // Returns before running any tool: nothing to masquerade.
        let nothing = Masquerade {
            backend: None,
            network: "n",
            container_id: "c",
            ifname: "eth0",
            addrs: &[],
            exclude: &[],
        };
        assert!(nothing.setup().is_ok());
        let nft = Masquerade {
            backend: Some(Backend::Nftables),
            ..nothing
        };
        assert!(nft.check().is_ok());
    }

    #[test]
    fn test_backend_parse() {
        let b: Backend = serde_json::from_str(r#""nftables""#).unwrap();
        assert_eq!(b, Backend::Nftables);
        assert!(serde_json::from_str::<Backend>(r#""ipfw""#).is_err());
        assert_eq!(Backend::Iptables.to_string(), "iptables");
    }
}
