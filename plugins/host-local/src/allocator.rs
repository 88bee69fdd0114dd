//! Range arithmetic: what a range holds and in which order its addresses
//! are tried. Pure functions over addresses; the files live in `store`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// One range: a subnet and the addresses of it that may be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    /// First address handed out (inclusive).
    pub start: IpAddr,
    /// Last address handed out (inclusive).
    pub end: IpAddr,
    /// Never handed out; returned as the gateway of every address of the range.
    pub gateway: IpAddr,
}

/// The four fields of a range as configured, before defaults and checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeSpec {
    pub subnet: Option<IpNet>,
    pub start: Option<IpAddr>,
    pub end: Option<IpAddr>,
    pub gateway: Option<IpAddr>,
}

impl Range {
    /// Fills in the defaults as the reference does (gateway and start: the
    /// subnet's first address after the network address; end: the last
    /// address before the IPv4 broadcast address, or the subnet's last IPv6
    /// address) and checks the range. Errors are plain sentences; the
    /// caller adds which range is at fault.
    pub fn new(spec: RangeSpec) -> Result<Range, String> {
        let subnet = spec.subnet.ok_or("it has no subnet")?;
        if subnet.prefix_len() + 2 > subnet.max_prefix_len() {
            return Err(format!("subnet {subnet} is too small to allocate from"));
        }
        if subnet.trunc() != subnet {
            return Err(format!(
                "subnet {subnet} has host bits set; for a prefix length of {} the network address is {}",
                subnet.prefix_len(),
                subnet.network()
            ));
        }
        let v4 = subnet.addr().is_ipv4();
        let first = offset(subnet.network(), 1);
        let last = if v4 {
            offset(subnet.broadcast(), -1)
        } else {
            subnet.broadcast()
        };
        let inside = |field: &str, ip: Option<IpAddr>, default: IpAddr| match ip {
            None => Ok(default),
            Some(ip) if subnet.contains(&ip) => Ok(ip),
            Some(ip) => Err(format!("{field} {ip} is not in subnet {subnet}")),
        };
        let range = Range {
            subnet,
            start: inside("rangeStart", spec.start, first)?,
            end: inside("rangeEnd", spec.end, last)?,
            gateway: inside("gateway", spec.gateway, first)?,
        };
        if to_u128(range.start) > to_u128(range.end) {
            return Err(format!(
                "rangeStart {} is after rangeEnd {}",
                range.start, range.end
            ));
        }
        Ok(range)
    }

    /// True when `ip` lies between the range's start and end.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.start.is_ipv4()
            && (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(ip))
    }

    /// True when the two ranges share an address.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.contains(other.start)
            || self.contains(other.end)
            || other.contains(self.start)
            || other.contains(self.end)
    }

    /// How many addresses lie between start and end.
    fn size(&self) -> u128 {
        to_u128(self.end) - to_u128(self.start) + 1
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Ranges of one family from which one address is allocated per ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// Checks a set: not empty, one family, no two ranges sharing an address.
    pub fn new(ranges: Vec<Range>) -> Result<RangeSet, String> {
        let Some(first) = ranges.first() else {
            return Err("the range set is empty".into());
        };
        if ranges
            .iter()
            .any(|r| r.start.is_ipv4() != first.start.is_ipv4())
        {
            return Err("the range set mixes IPv4 and IPv6 ranges".into());
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(format!("ranges {a} and {b} overlap"));
                }
            }
        }
        Ok(RangeSet(ranges))
    }

    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    /// True when some range of each set holds an address of the other.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }

    /// Every address of the set once, each with its range, in the order the
    /// reference tries them: from the address after `last` (the set's last
    /// reservation), or from the first range's start when `last` is not in
    /// the set, through the end of each range into the next, wrapping
    /// around; gateways are left out.
    pub fn candidates(&self, last: Option<IpAddr>) -> impl Iterator<Item = (IpAddr, &Range)> {
        let (mut idx, mut cur) = (0, to_u128(self.0[0].start));
        let last = last.and_then(|ip| Some((self.0.iter().position(|r| r.contains(ip))?, ip)));
        if let Some((pos, ip)) = last {
            let ip = to_u128(ip);
            if ip == to_u128(self.0[pos].end) {
                idx = (pos + 1) % self.0.len();
                cur = to_u128(self.0[idx].start);
            } else {
                idx = pos;
                cur = ip + 1;
            }
        }
        let mut left = self.0.iter().fold(0u128, |n, r| n.saturating_add(r.size()));
        std::iter::from_fn(move || {
            while left > 0 {
                left -= 1;
                let r = &self.0[idx];
                let ip = from_u128(r.start.is_ipv4(), cur);
                if cur == to_u128(r.end) {
                    idx = (idx + 1) % self.0.len();
                    cur = to_u128(self.0[idx].start);
                } else {
                    cur += 1;
                }
                if ip != r.gateway {
                    return Some((ip, r));
                }
            }
            None
        })
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The address as a number (IPv4 in the low 32 bits).
fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// `ip` moved by `by` addresses (callers stay inside a subnet of at least 4).
fn offset(ip: IpAddr, by: i8) -> IpAddr {
    let n = to_u128(ip);
    let n = if by < 0 {
        n - by.unsigned_abs() as u128
    } else {
        n + by as u128
    };
    from_u128(ip.is_ipv4(), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn spec(subnet: &str) -> RangeSpec {
        RangeSpec {
            subnet: Some(subnet.parse().unwrap()),
            ..RangeSpec::default()
        }
    }

    fn range(subnet: &str) -> Range {
        Range::new(spec(subnet)).unwrap()
    }

    fn order(set: &RangeSet, last: Option<&str>) -> Vec<String> {
        set.candidates(last.map(ip))
            .map(|(a, _)| a.to_string())
            .collect()
    }

    #[test]
    fn test_range_new_defaults_v4() {
        let r = range("10.1.0.0/24");
        assert_eq!(r.start, ip("10.1.0.1"));
        assert_eq!(r.end, ip("10.1.0.254"));
        assert_eq!(r.gateway, ip("10.1.0.1"));
    }

    #[test]
    fn test_range_new_defaults_v6_end_is_last_address() {
        let r = range("fd00::/126");
        assert_eq!(r.start, ip("fd00::1"));
        assert_eq!(r.end, ip("fd00::3"));
        assert_eq!(r.gateway, ip("fd00::1"));
    }

    #[test]
    fn test_range_new_rejects_host_bits() {
        let e = Range::new(spec("10.1.0.5/24")).unwrap_err();
        assert!(e.contains("host bits") && e.contains("10.1.0.0"), "{e}");
    }

    #[test]
    fn test_range_new_rejects_small_subnets() {
        for s in ["10.1.0.0/31", "10.1.0.1/32", "fd00::/127", "fd00::1/128"] {
            let e = Range::new(spec(s)).unwrap_err();
            assert!(e.contains("too small"), "{s}: {e}");
        }
        assert!(Range::new(spec("10.1.0.0/30")).is_ok());
    }

    #[test]
    fn test_range_new_rejects_fields_outside_subnet() {
        for (field, value) in [
            ("rangeStart", "10.2.0.1"),
            ("rangeEnd", "10.2.0.1"),
            ("gateway", "10.2.0.1"),
        ] {
            let mut s = spec("10.1.0.0/24");
            let v = Some(ip(value));
            match field {
                "rangeStart" => s.start = v,
                "rangeEnd" => s.end = v,
                _ => s.gateway = v,
            }
            let e = Range::new(s).unwrap_err();
            assert_eq!(e, format!("{field} 10.2.0.1 is not in subnet 10.1.0.0/24"));
        }
    }

    #[test]
    fn test_range_new_rejects_start_after_end() {
        let mut s = spec("10.1.0.0/24");
        s.start = Some(ip("10.1.0.50"));
        s.end = Some(ip("10.1.0.20"));
        assert!(Range::new(s).unwrap_err().contains("after"));
    }

    #[test]
    fn test_range_set_new_checks() {
        assert!(RangeSet::new(vec![]).unwrap_err().contains("empty"));
        let mixed = RangeSet::new(vec![range("10.1.0.0/24"), range("fd00::/64")]);
        assert!(mixed.unwrap_err().contains("mixes"));
        let overlap = RangeSet::new(vec![range("10.1.0.0/24"), range("10.1.0.0/25")]);
        assert!(overlap.unwrap_err().contains("overlap"));
        let mut low = spec("10.1.0.0/24");
        low.end = Some(ip("10.1.0.99"));
        let mut high = spec("10.1.0.0/24");
        high.start = Some(ip("10.1.0.100"));
        let split = RangeSet::new(vec![Range::new(low).unwrap(), Range::new(high).unwrap()]);
        assert!(split.is_ok());
    }

    #[test]
    fn test_range_set_overlaps() {
        let a = RangeSet::new(vec![range("10.1.0.0/24")]).unwrap();
        let b = RangeSet::new(vec![range("10.1.0.0/16")]).unwrap();
        let c = RangeSet::new(vec![range("10.2.0.0/24")]).unwrap();
        let d = RangeSet::new(vec![range("fd00::/64")]).unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !a.overlaps(&d));
    }

    #[test]
    fn test_candidates_from_start_skipping_gateway() {
        let set = RangeSet::new(vec![range("10.1.0.0/29")]).unwrap();
        assert_eq!(
            order(&set, None),
            ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
        );
    }

    #[test]
    fn test_candidates_after_last_and_wrapping() {
        let set = RangeSet::new(vec![range("10.1.0.0/29")]).unwrap();
        assert_eq!(
            order(&set, Some("10.1.0.4")),
            ["10.1.0.5", "10.1.0.6", "10.1.0.2", "10.1.0.3", "10.1.0.4"]
        );
        assert_eq!(order(&set, Some("10.1.0.6"))[0], "10.1.0.2");
        // A last reservation outside the set (the config changed) starts over.
        assert_eq!(order(&set, Some("10.9.0.1"))[0], "10.1.0.2");
    }

    #[test]
    fn test_candidates_cross_ranges() {
        let mut a = spec("10.1.0.0/24");
        a.start = Some(ip("10.1.0.10"));
        a.end = Some(ip("10.1.0.11"));
        let mut b = spec("10.2.0.0/24");
        b.start = Some(ip("10.2.0.20"));
        b.end = Some(ip("10.2.0.21"));
        let set = RangeSet::new(vec![Range::new(a).unwrap(), Range::new(b).unwrap()]).unwrap();
        assert_eq!(
            order(&set, Some("10.1.0.11")),
            ["10.2.0.20", "10.2.0.21", "10.1.0.10", "10.1.0.11"]
        );
        let (_, r) = set.candidates(None).nth(2).unwrap();
        assert_eq!(r.gateway, ip("10.2.0.1"));
    }

    #[test]
    fn test_candidates_v6_is_lazy() {
        let set = RangeSet::new(vec![range("fd00::/64")]).unwrap();
        let first: Vec<_> = set.candidates(None).take(2).map(|(a, _)| a).collect();
        assert_eq!(first, [ip("fd00::2"), ip("fd00::3")]);
        assert_eq!(set.to_string(), "fd00::1-fd00::ffff:ffff:ffff:ffff");
    }

    #[test]
    fn test_range_set_display() {
        let set = RangeSet::new(vec![range("10.3.0.0/30"), range("10.4.0.0/30")]).unwrap();
        assert_eq!(set.to_string(), "10.3.0.1-10.3.0.2,10.4.0.1-10.4.0.2");
    }
}
