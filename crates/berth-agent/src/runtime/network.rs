//! The addressing of task networks, the networks awsvpc tasks get their own
//! addresses on: IPv4 subnets in CIDR notation, and which subnets a host's
//! task network may take — /22s of 100.64.0.0/10 (RFC 6598's shared address
//! space, which hosts rarely route), probed in order on a real engine and
//! handed out by index to simulated hosts.

use std::fmt;
use std::net::Ipv4Addr;

/// The address space task networks come from.
const SPACE: Subnet = Subnet {
    network: Ipv4Addr::new(100, 64, 0, 0),
    prefix: 10,
};
/// A task network's size: 1,021 task addresses, more than a host runs.
const TASK_PREFIX: u8 = 22;
/// The smallest subnet a simulated host gets (5 task addresses) when the
/// fleet is too large for /22s.
const SMALLEST_PREFIX: u8 = 29;

/// An IPv4 subnet, `network/prefix`, with the host bits of `network` clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl Subnet {
    /// Parses `a.b.c.d/n`; host bits set in the address are cleared.
    pub fn parse(cidr: &str) -> Option<Self> {
        let (address, prefix) = cidr.trim().split_once('/')?;
        let address: Ipv4Addr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Self {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix)),
            prefix,
        })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == u32::from(self.network)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        u32::from(self.network) & mask(shorter) == u32::from(other.network) & mask(shorter)
    }

    /// The first host address, which the host itself takes as the task
    /// network's gateway (`100.64.0.0/22` → `100.64.0.1`). `None` for /31
    /// and /32, which have no room for one.
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        (self.prefix < 31).then(|| Ipv4Addr::from(u32::from(self.network) + 1))
    }

    /// The network's own address (`100.64.0.0` of `100.64.0.0/22`).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The last address (`100.64.3.255` of `100.64.0.0/22`).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Docker's limit on network names.
const MAX_NAME: usize = 64;

/// The name of the task network of agent `owner` (its instance id):
/// `berth-eni-` and as much of the id as fits, characters Docker does not
/// take in names replaced.
pub fn network_name(owner: &str) -> String {
    let mut name = String::from("berth-eni-");
    name.extend(
        owner
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .take(MAX_NAME - name.len()),
    );
    name
}

/// The `index`-th subnet of `/prefix` inside the task address space,
/// wrapping around when there are fewer.
fn nth(prefix: u8, index: usize) -> Subnet {
    let count = 1u64 << (prefix - SPACE.prefix);
    let index = u64::try_from(index).unwrap_or(u64::MAX) % count;
    let offset = u32::try_from(index << (32 - u32::from(prefix))).unwrap_or(0);
    Subnet {
        network: Ipv4Addr::from(u32::from(SPACE.network) + offset),
        prefix,
    }
}

/// The subnets a host's task network may take, in the order to try them:
/// `100.64.0.0/22`, `100.64.4.0/22`, … `100.127.252.0/22`.
pub fn candidates() -> impl Iterator<Item = Subnet> {
    (0..1usize << (TASK_PREFIX - SPACE.prefix)).map(|i| nth(TASK_PREFIX, i))
}

/// The subnet of simulated host `index` in a fleet of `hosts`: a /22 each
/// while the 4,096 of them go round, smaller subnets for larger fleets, so
/// no two hosts share one.
pub fn simulated(index: usize, hosts: usize) -> Subnet {
    let mut prefix = TASK_PREFIX;
    while prefix < SMALLEST_PREFIX && (1usize << (prefix - SPACE.prefix)) < hosts {
        prefix += 1;
    }
    nth(prefix, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_compare() {
        let subnet = Subnet::parse("100.64.4.7/22").unwrap();
        assert_eq!(subnet.to_string(), "100.64.4.0/22");
        assert_eq!(subnet.gateway(), Some(Ipv4Addr::new(100, 64, 4, 1)));
        assert_eq!(subnet.network(), Ipv4Addr::new(100, 64, 4, 0));
        assert_eq!(subnet.broadcast(), Ipv4Addr::new(100, 64, 7, 255));
        assert!(subnet.contains(Ipv4Addr::new(100, 64, 7, 255)));
        assert!(!subnet.contains(Ipv4Addr::new(100, 64, 8, 0)));
        assert!(subnet.overlaps(&Subnet::parse("100.64.0.0/16").unwrap()));
        assert!(!subnet.overlaps(&Subnet::parse("100.64.0.0/22").unwrap()));
        assert_eq!(
            Subnet::parse("172.17.0.0/16").unwrap().gateway(),
            Some(Ipv4Addr::new(172, 17, 0, 1))
        );
        assert_eq!(Subnet::parse("10.0.0.1/32").unwrap().gateway(), None);
        for bad in ["garbage", "1.2.3.4", "1.2.3.4/33", "1.2.3/8"] {
            assert_eq!(Subnet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn network_names_fit_docker() {
        assert_eq!(
            network_name("i-0123456789abcdef0"),
            "berth-eni-i-0123456789abcdef0"
        );
        let long = network_name(&"x/".repeat(40));
        assert_eq!(long.len(), 64);
        assert!(long.starts_with("berth-eni-x-x-"));
    }

    #[test]
    fn candidates_are_the_22s_of_the_shared_space() {
        let all: Vec<String> = candidates().map(|s| s.to_string()).collect();
        assert_eq!(all.len(), 4096);
        assert_eq!(all[0], "100.64.0.0/22");
        assert_eq!(all[1], "100.64.4.0/22");
        assert_eq!(all[64], "100.65.0.0/22");
        assert_eq!(all[4095], "100.127.252.0/22");
    }

    #[test]
    fn simulated_hosts_get_distinct_subnets() {
        assert_eq!(simulated(0, 10).to_string(), "100.64.0.0/22");
        assert_eq!(simulated(3, 10).to_string(), "100.64.12.0/22");
        assert_eq!(simulated(4095, 4096).prefix(), 22);
        let large: Vec<Subnet> = (0..5000).map(|i| simulated(i, 5000)).collect();
        assert!(large.iter().all(|s| s.prefix() == 23));
        let distinct: std::collections::HashSet<String> =
            large.iter().map(ToString::to_string).collect();
        assert_eq!(distinct.len(), 5000);
        assert!(
            large
                .iter()
                .all(|s| SPACE.overlaps(s) && s.prefix() > SPACE.prefix)
        );
    }
}
