//! The iptables form: the reference's chain, comment and rules, written with
//! one `iptables-restore --noflush` per address family after one
//! `iptables-save -t nat` to see what is there.
//!
//! Rules are compared as `iptables-save` prints them, so the lines this
//! module writes are in exactly that form (`-s 10.1.0.5/32`, the comment
//! quoted with `\"` inside). Re-declaring a chain (`:NAME - [0:0]`) in a
//! `--noflush` batch empties it; that is how a chain's contents are
//! replaced in the same batch that refills them.

use std::collections::HashSet;

use ipnet::IpNet;

use super::{chain_name, iptables_comment, multicast, run, Attachment, Error, Result, Target};

/// An address family and its tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    const ALL: [Family; 2] = [Family::V4, Family::V6];

    fn of(net: &IpNet) -> Family {
        if net.addr().is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn save(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }
}

/// The `nat` table as `iptables-save -t nat` prints it.
#[derive(Debug, Default)]
struct Nat {
    /// Declared chains, built-in and user.
    chains: HashSet<String>,
    /// Rule lines (`-A CHAIN ...`), in order.
    rules: Vec<String>,
}

impl Nat {
    fn parse(text: &str) -> Nat {
        let mut nat = Nat::default();
        for line in text.lines() {
            if let Some(decl) = line.strip_prefix(':') {
                if let Some(name) = decl.split_whitespace().next() {
                    nat.chains.insert(name.to_string());
                }
            } else if line.starts_with("-A ") {
                nat.rules.push(line.to_string());
            }
        }
        nat
    }

    /// The rule lines of `chain`.
    fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.rules.iter().filter(move |r| rule_chain(r) == chain)
    }

    /// Every rule, in any chain, that jumps to `chain`.
    fn jumps_to<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.rules.iter().filter(move |r| {
            let tokens: Vec<&str> = r.split_whitespace().collect();
            tokens
                .windows(2)
                .any(|w| (w[0] == "-j" || w[0] == "-g") && w[1] == chain)
        })
    }

    /// The lines that remove `chain` and every jump to it (empty when absent).
    fn removal(&self, chain: &str) -> Vec<String> {
        let mut lines: Vec<String> = self
            .jumps_to(chain)
            .map(|r| format!("-D{}", &r[2..]))
            .collect();
        if self.chains.contains(chain) {
            lines.push(format!("-F {chain}"));
            lines.push(format!("-X {chain}"));
        }
        lines
    }
}

/// The chain a `-A CHAIN ...` line appends to.
fn rule_chain(line: &str) -> &str {
    line.split_whitespace().nth(1).unwrap_or("")
}

/// A comment quoted as `iptables-save` prints it.
fn quote(comment: &str) -> String {
    format!("\"{}\"", comment.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The lines an attachment's setup wants in one family: the chain's rules
/// (ACCEPTs, then the MASQUERADE last) and the POSTROUTING jumps.
struct Wanted {
    chain: String,
    accepts: Vec<String>,
    masquerade: String,
    jumps: Vec<String>,
}

fn wanted(t: Target, family: Family, addrs: &[IpNet], exclude: &[IpNet]) -> Wanted {
    let chain = chain_name(t.network, t.container_id);
    let comment = quote(&iptables_comment(t.network, t.container_id));
    let mut accepts = Vec::new();
    for dst in addrs
        .iter()
        .chain(exclude)
        .filter(|n| Family::of(n) == family)
    {
        let line = format!(
            "-A {chain} -d {} -m comment --comment {comment} -j ACCEPT",
            dst.trunc()
        );
        if !accepts.contains(&line) {
            accepts.push(line);
        }
    }
    let masquerade = format!(
        "-A {chain} ! -d {} -m comment --comment {comment} -j MASQUERADE",
        multicast(family == Family::V4)
    );
    let mut jumps = Vec::new();
    for a in addrs.iter().filter(|n| Family::of(n) == family) {
        let host = IpNet::new(a.addr(), a.max_prefix_len()).expect("max prefix is valid");
        let line = format!("-A POSTROUTING -s {host} -m comment --comment {comment} -j {chain}");
        if !jumps.contains(&line) {
            jumps.push(line);
        }
    }
    Wanted {
        chain,
        accepts,
        masquerade,
        jumps,
    }
}

/// Reads the `nat` table of `family`.
fn read(t: Target, family: Family) -> Result<Nat> {
    let program = family.save();
    let ran = run(program, &["-t", "nat"], None).map_err(|source| Error::Spawn {
        attachment: t.to_string(),
        program: program.into(),
        source,
    })?;
    if !ran.ok {
        return Err(Error::Tool {
            attachment: t.to_string(),
            program: program.into(),
            doing: "reading the nat table".into(),
            stderr: ran.stderr,
        });
    }
    Ok(Nat::parse(&ran.stdout))
}

/// Writes `lines` to the `nat` table of `family` in one batch. A refused
/// line is named in the error.
fn write(t: Target, family: Family, lines: &[String], what: &str) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut batch = String::from("*nat\n");
    for l in lines {
        batch.push_str(l);
        batch.push('\n');
    }
    batch.push_str("COMMIT\n");
    let program = family.restore();
    let ran =
        run(program, &["--noflush", "--wait=10"], Some(&batch)).map_err(|source| Error::Spawn {
            attachment: t.to_string(),
            program: program.into(),
            source,
        })?;
    if ran.ok {
        return Ok(());
    }
    let failed_line = failed_line_number(&ran.stderr)
        .and_then(|n| n.checked_sub(2))
        .and_then(|i| lines.get(i));
    let doing = match failed_line {
        Some(l) => format!("{what} at `{l}`"),
        None => what.to_string(),
    };
    Err(Error::Tool {
        attachment: t.to_string(),
        program: program.into(),
        doing,
        stderr: ran.stderr,
    })
}

/// The batch line `iptables-restore` names in its complaint, counting the
/// `*nat` line as 1: "line 3 failed: ..." (legacy) or "line 4: CHAIN_ADD
/// failed ..." (iptables-nft).
fn failed_line_number(stderr: &str) -> Option<usize> {
    let after = &stderr[stderr.find("line ")? + "line ".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The lines that bring `nat` to what `w` wants, keeping rules already in
/// the chain (another interface of the same container, an older ADD):
/// everything but the MASQUERADE stays in order, missing ACCEPTs follow,
/// the MASQUERADE comes last.
fn setup_lines(nat: &Nat, w: &Wanted) -> Vec<String> {
    let mut lines = Vec::new();
    let existing: Vec<&String> = nat.rules_of(&w.chain).collect();
    let mut content: Vec<&String> = existing
        .iter()
        .copied()
        .filter(|r| **r != w.masquerade)
        .collect();
    for a in &w.accepts {
        if !content.contains(&a) {
            content.push(a);
        }
    }
    content.push(&w.masquerade);
    if !nat.chains.contains(&w.chain) || content != existing {
        lines.push(format!(":{} - [0:0]", w.chain));
        lines.extend(content.into_iter().cloned());
    }
    for j in &w.jumps {
        if !nat.rules.contains(j) {
            lines.push(j.clone());
        }
    }
    lines
}

/// How one family's setup ended.
enum Outcome {
    Written,
    /// `iptables-save` failed: iptables may not work here at all.
    Unreadable(Error),
    Refused(Error),
}

fn setup_family(t: Target, family: Family, addrs: &[IpNet], exclude: &[IpNet]) -> Outcome {
    let nat = match read(t, family) {
        Ok(nat) => nat,
        Err(e) => return Outcome::Unreadable(e),
    };
    let w = wanted(t, family, addrs, exclude);
    let what = format!("setting up chain {}", w.chain);
    match write(t, family, &setup_lines(&nat, &w), &what) {
        Ok(()) => Outcome::Written,
        Err(e) => Outcome::Refused(e),
    }
}

/// Runs `f` for each family at once (one thread each): the processes of
/// IPv4 and IPv6 overlap, the kernel serialises the commits.
fn per_family<T: Send>(families: &[Family], f: impl Fn(Family) -> T + Sync) -> Vec<T> {
    match families {
        [one] => vec![f(*one)],
        _ => std::thread::scope(|s| {
            let f = &f;
            let handles: Vec<_> = families
                .iter()
                .map(|fam| s.spawn(move || f(*fam)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("iptables thread panicked"))
                .collect()
        }),
    }
}

/// Sets up every family of `addrs`, the families at once. With `probe`,
/// when no family's `iptables-save` works, iptables does not work here:
/// returns `Ok(false)` having changed nothing, so the caller can use
/// nftables. When a family fails, the others' rules are removed again.
pub(super) fn setup(t: Target, addrs: &[IpNet], exclude: &[IpNet], probe: bool) -> Result<bool> {
    let families: Vec<Family> = Family::ALL
        .into_iter()
        .filter(|f| addrs.iter().any(|a| Family::of(a) == *f))
        .collect();
    let outcomes = per_family(&families, |f| setup_family(t, f, addrs, exclude));
    if probe && outcomes.iter().all(|o| matches!(o, Outcome::Unreadable(_))) {
        return Ok(false);
    }
    let mut written = Vec::new();
    let mut first_error = None;
    for (family, outcome) in families.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Written => written.push(family),
            Outcome::Unreadable(e) | Outcome::Refused(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => Ok(true),
        Some(e) => {
            // Nothing of a failed setup stays.
            for f in written {
                let _ = teardown_family(t, f);
            }
            Err(e)
        }
    }
}

/// Removes the attachment's chain and the jumps to it in one family. A
/// batch fails as a whole when a rule in it went between the read and the
/// write (a concurrent DEL, the reference's or ours): read again and retry (twice).
fn teardown_family(t: Target, family: Family) -> Result<()> {
    let chain = chain_name(t.network, t.container_id);
    let what = format!("removing chain {chain}");
    let mut last = Ok(());
    for _ in 0..3 {
        let nat = match read(t, family) {
            Ok(nat) => nat,
            Err(e) if unusable(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        last = write(t, family, &nat.removal(&chain), &what);
        if last.is_ok() {
            break;
        }
    }
    last
}

/// A read failure meaning this family's iptables is not there at all (tool
/// not installed, table unknown to the kernel): nothing can be left in it.
fn unusable(e: &Error) -> bool {
    match e {
        Error::Spawn { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        Error::Tool { stderr, .. } => !stderr.contains("ermission"),
        _ => false,
    }
}

/// Removes the attachment's chain and every jump to it, in both families.
pub(super) fn teardown(t: Target) -> Result<()> {
    let errors: Vec<Error> = per_family(&Family::ALL, |f| teardown_family(t, f))
        .into_iter()
        .filter_map(Result::err)
        .collect();
    Error::several(errors)
}

/// Fails naming the first missing line. With `probe`, `Ok(false)` when
/// iptables does not work here.
pub(super) fn check(t: Target, addrs: &[IpNet], exclude: &[IpNet], probe: bool) -> Result<bool> {
    for family in Family::ALL {
        if !addrs.iter().any(|a| Family::of(a) == family) {
            continue;
        }
        let nat = match read(t, family) {
            Ok(nat) => nat,
            Err(_) if probe => return Ok(false),
            Err(e) => return Err(e),
        };
        let w = wanted(t, family, addrs, exclude);
        let missing = |what: String| Error::Missing {
            attachment: t.to_string(),
            what,
        };
        if !nat.chains.contains(&w.chain) {
            return Err(missing(format!(
                "{} chain {} in the nat table",
                family.save().trim_end_matches("-save"),
                w.chain
            )));
        }
        let chain_rules: Vec<&String> = nat.rules_of(&w.chain).collect();
        for line in w.accepts.iter().chain(&w.jumps) {
            if !nat.rules.contains(line) {
                return Err(missing(format!("rule `{line}`")));
            }
        }
        if chain_rules.last() != Some(&&w.masquerade) {
            return Err(missing(format!(
                "rule `{}` (last in its chain)",
                w.masquerade
            )));
        }
    }
    Ok(true)
}

/// The container id in a rule line commented `name: "<network>" id: "<cid>"`.
fn commented_container(line: &str, network: &str) -> Option<String> {
    let start = format!("--comment {}", quote(&format!("name: {network:?} id: \"")));
    // The quoted prefix ends in `\""`: drop the closing quote to keep it open.
    let start = &start[..start.len() - 1];
    let rest = &line[line.find(start)? + start.len()..];
    let end = rest.find("\\\"\"")?;
    Some(rest[..end].to_string())
}

/// Removes the chains (and jumps) of `network`'s containers that no valid
/// attachment names. A chain is recognised by its comment naming the
/// network and a container id, and only when its name is the one
/// [`chain_name`] gives for them.
pub(super) fn gc(network: &str, valid: &[Attachment]) -> Result<()> {
    let keep: HashSet<&str> = valid.iter().map(|a| a.container_id.as_str()).collect();
    let t = Target {
        network,
        container_id: "",
        ifname: "",
    };
    let mut errors = Vec::new();
    for family in Family::ALL {
        let nat = match read(t, family) {
            Ok(nat) => nat,
            Err(e) if unusable(&e) => continue,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut stale = Vec::new();
        for line in &nat.rules {
            let Some(cid) = commented_container(line, network) else {
                continue;
            };
            let chain = chain_name(network, &cid);
            if rule_chain(line) == chain && !keep.contains(cid.as_str()) && !stale.contains(&chain)
            {
                stale.push(chain);
            }
        }
        let lines: Vec<String> = stale.iter().flat_map(|c| nat.removal(c)).collect();
        if let Err(e) = write(t, family, &lines, "removing stale chains") {
            errors.push(e);
        }
    }
    Error::several(errors)
}

/// Whether `iptables-save -t nat` works here.
pub(super) fn works() -> bool {
    run("iptables-save", &["-t", "nat"], None).is_ok_and(|r| r.ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVED: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-2bbe0c48b91a7d1b8a6753a8 - [0:0]
-A POSTROUTING -s 10.22.0.2/32 -m comment --comment "name: \"test\" id: \"1234\"" -j CNI-2bbe0c48b91a7d1b8a6753a8
-A CNI-2bbe0c48b91a7d1b8a6753a8 -d 10.22.0.0/24 -m comment --comment "name: \"test\" id: \"1234\"" -j ACCEPT
-A CNI-2bbe0c48b91a7d1b8a6753a8 ! -d 224.0.0.0/4 -m comment --comment "name: \"test\" id: \"1234\"" -j MASQUERADE
COMMIT
"#;

    fn target() -> Target<'static> {
        Target {
            network: "test",
            container_id: "1234",
            ifname: "eth0",
        }
    }

    fn addr(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn test_setup_lines_match_reference_save_output() {
        let w = wanted(target(), Family::V4, &[addr("10.22.0.2/24")], &[]);
        let lines = setup_lines(&Nat::default(), &w);
        let saved: Vec<&str> = SAVED.lines().filter(|l| l.starts_with("-A")).collect();
        assert_eq!(lines[0], ":CNI-2bbe0c48b91a7d1b8a6753a8 - [0:0]");
        assert_eq!(lines[1], saved[1]);
        assert_eq!(lines[2], saved[2]);
        assert_eq!(lines[3], saved[0]);
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn test_setup_lines_nothing_when_present() {
        let w = wanted(target(), Family::V4, &[addr("10.22.0.2/24")], &[]);
        assert!(setup_lines(&Nat::parse(SAVED), &w).is_empty());
    }

    #[test]
    fn test_setup_lines_keeps_existing_accepts_masquerade_last() {
        let w = wanted(
            target(),
            Family::V4,
            &[addr("10.23.0.7/16")],
            &[addr("192.168.0.0/16")],
        );
        let lines = setup_lines(&Nat::parse(SAVED), &w);
        let chain = "CNI-2bbe0c48b91a7d1b8a6753a8";
        assert_eq!(lines[0], format!(":{chain} - [0:0]"));
        assert!(lines[1].contains("-d 10.22.0.0/24"), "{lines:?}");
        assert!(lines[2].contains("-d 10.23.0.0/16"), "{lines:?}");
        assert!(lines[3].contains("-d 192.168.0.0/16"), "{lines:?}");
        assert!(lines[4].ends_with("-j MASQUERADE"), "{lines:?}");
        assert!(lines[5].starts_with("-A POSTROUTING -s 10.23.0.7/32 "));
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn test_wanted_ipv6_forms() {
        let w = wanted(target(), Family::V6, &[addr("fd00:22::2/64")], &[]);
        assert!(w.accepts[0].contains("-d fd00:22::/64 "));
        assert!(w.masquerade.contains("! -d ff00::/8 "));
        assert!(w.jumps[0].contains("-s fd00:22::2/128 "));
    }

    #[test]
    fn test_removal_deletes_jumps_then_chain() {
        let lines = Nat::parse(SAVED).removal("CNI-2bbe0c48b91a7d1b8a6753a8");
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("-D POSTROUTING -s 10.22.0.2/32 "));
        assert_eq!(lines[1], "-F CNI-2bbe0c48b91a7d1b8a6753a8");
        assert_eq!(lines[2], "-X CNI-2bbe0c48b91a7d1b8a6753a8");
        assert!(Nat::parse(SAVED).removal("CNI-other").is_empty());
    }

    #[test]
    fn test_failed_line_number_both_variants() {
        assert_eq!(
            failed_line_number("iptables-restore: line 3 failed: No chain"),
            Some(3)
        );
        assert_eq!(
            failed_line_number(
                "ip6tables-restore v1.8.9 (nf_tables): \nline 4: CHAIN_ADD failed (Operation not supported): chain POSTROUTING"
            ),
            Some(4)
        );
        assert_eq!(
            failed_line_number("Another app is currently holding the xtables lock"),
            None
        );
    }

    #[test]
    fn test_commented_container_reads_id() {
        let line = SAVED
            .lines()
            .find(|l| l.starts_with("-A POSTROUTING"))
            .unwrap();
        assert_eq!(commented_container(line, "test").as_deref(), Some("1234"));
        assert_eq!(commented_container(line, "other"), None);
    }
}
