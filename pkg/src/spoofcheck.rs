//! MAC spoof checking on a bridge port: frames entering the bridge from a
//! container's host veth must carry the container's MAC, or are dropped.
//!
//! The rules are the reference's, so either implementation removes the
//! other's: table `bridge nat`, base chain `PREROUTING` (filter hook,
//! priority -300), and per attachment a chain `cni-br-iface-<id>` jumped to
//! from `PREROUTING` by input interface, which jumps to
//! `cni-br-iface-<id>-mac`: `ether saddr <mac> return`, then `drop`. Every
//! rule carries the comment `macspoofchk-<id>`, where `<id>` is
//! `<container id>-<ifname>`.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::spec::Code;
use crate::{Error, Result};

/// The attachment's id in chain names and comments.
pub fn ref_id(container_id: &str, ifname: &str) -> String {
    format!("{container_id}-{ifname}")
}

fn chain(id: &str) -> String {
    format!("cni-br-iface-{id}")
}

/// Lets only frames from `mac` enter the bridge through `host_iface`: one
/// nft transaction. Repeating it replaces the attachment's rules.
pub fn setup(host_iface: &str, mac: &str, id: &str) -> Result<()> {
    let (iface_chain, comment) = (chain(id), format!("macspoofchk-{id}"));
    let mac_chain = format!("{iface_chain}-mac");
    let script = format!(
        "add table bridge nat\n\
         add chain bridge nat PREROUTING {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add chain bridge nat {iface_chain}\n\
         add chain bridge nat {mac_chain}\n\
         flush chain bridge nat {iface_chain}\n\
         flush chain bridge nat {mac_chain}\n\
         add rule bridge nat PREROUTING iifname \"{host_iface}\" jump {iface_chain} comment \"{comment}\"\n\
         add rule bridge nat {iface_chain} jump {mac_chain} comment \"{comment}\"\n\
         add rule bridge nat {mac_chain} ether saddr {mac} return comment \"{comment}\"\n\
         add rule bridge nat {mac_chain} drop comment \"{comment}\"\n"
    );
    nft_script(
        &script,
        &format!("set up MAC spoof check for {host_iface} ({mac})"),
    )
}

/// Removes the attachment's rules and chains; succeeds when none are there.
pub fn teardown(id: &str) -> Result<()> {
    let (iface_chain, comment) = (chain(id), format!("macspoofchk-{id}"));
    let listing = Command::new("nft")
        .args(["-a", "list", "table", "bridge", "nat"])
        .output()
        .map_err(|e| nft_missing(e, "list table bridge nat"))?;
    if !listing.status.success() {
        // No table: nothing of ours is there.
        return Ok(());
    }
    let text = String::from_utf8_lossy(&listing.stdout);
    let mut script = String::new();
    let mut in_prerouting = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("chain ") {
            in_prerouting = line.starts_with("chain PREROUTING ");
        }
        if in_prerouting && line.contains(&format!("comment \"{comment}\"")) {
            if let Some(handle) = line
                .rsplit("# handle ")
                .next()
                .filter(|h| h.chars().all(|c| c.is_ascii_digit()))
            {
                script.push_str(&format!(
                    "delete rule bridge nat PREROUTING handle {handle}\n"
                ));
            }
        }
    }
    for name in [format!("{iface_chain}-mac"), iface_chain.clone()] {
        if text.contains(&format!("chain {name} {{")) {
            script.push_str(&format!("flush chain bridge nat {name}\n"));
        }
    }
    // Rules before chains: a chain that is still jumped to cannot go.
    for name in [iface_chain.clone(), format!("{iface_chain}-mac")] {
        if text.contains(&format!("chain {name} {{")) {
            script.push_str(&format!("delete chain bridge nat {name}\n"));
        }
    }
    if script.is_empty() {
        return Ok(());
    }
    nft_script(&script, &format!("remove MAC spoof check {comment}"))
}

/// Fails when the attachment's spoof check is missing.
pub fn check(id: &str) -> Result<()> {
    let name = format!("{}-mac", chain(id));
    let out = Command::new("nft")
        .args(["list", "chain", "bridge", "nat", &name])
        .output()
        .map_err(|e| nft_missing(e, "list chain"))?;
    let listing = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && listing.lines().any(|l| l.trim_start().starts_with("drop")) {
        Ok(())
    } else {
        Err(Error::new(
            Code::Internal,
            format!("MAC spoof check chain bridge nat {name} is missing"),
        ))
    }
}

fn nft_missing(e: std::io::Error, what: &str) -> Error {
    Error::new(
        Code::Internal,
        format!("nft {what}: {e} (is nftables installed?)"),
    )
}

fn nft_script(script: &str, what: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| nft_missing(e, what))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| Error::new(Code::Internal, format!("{what}: writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::new(Code::Internal, format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::new(
            Code::Internal,
            format!(
                "{what}: nft: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ref_id_and_chain_names() {
        assert_eq!(ref_id("abc", "eth0"), "abc-eth0");
        assert_eq!(chain("abc-eth0"), "cni-br-iface-abc-eth0");
    }
}
