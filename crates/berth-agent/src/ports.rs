//! Host port bookkeeping: which host ports the agent's tasks hold, and the
//! choice of dynamic host ports for bridge-mode mappings from the ephemeral
//! range, so no port is ever handed out twice while a task holds it.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use berth_types::TransportProtocol;

/// The Linux fallback when `/proc/sys/net/ipv4/ip_local_port_range` cannot
/// be read (as in the ECS agent).
pub const FALLBACK_RANGE: RangeInclusive<u16> = 49153..=65535;

/// The host's ephemeral port range.
pub fn ephemeral_range() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or(FALLBACK_RANGE)
}

fn parse_range(text: &str) -> Option<RangeInclusive<u16>> {
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    let (low, high) = (parts.next()?.ok()?, parts.next()?.ok()?);
    (low <= high).then_some(low..=high)
}

type Key = (u16, TransportProtocol);

/// Ports held by tasks, keyed by port and protocol, valued by task ARN.
#[derive(Debug)]
pub struct PortAllocator {
    range: RangeInclusive<u16>,
    next: u16,
    held: HashMap<Key, String>,
    probe_host: bool,
}

impl PortAllocator {
    /// `probe_host`: skip ports another process of the host has bound
    /// (true for real runtimes, false for simulated hosts).
    pub fn new(range: RangeInclusive<u16>, probe_host: bool) -> Self {
        Self {
            next: *range.start(),
            range,
            held: HashMap::new(),
            probe_host,
        }
    }

    /// Books a port the task named itself (static host port, host mode).
    /// Returns false when another task holds it.
    pub fn book(&mut self, task: &str, port: u16, protocol: TransportProtocol) -> bool {
        match self.held.get(&(port, protocol)) {
            Some(owner) => owner == task,
            None => {
                self.held.insert((port, protocol), task.to_owned());
                true
            }
        }
    }

    /// Picks and books a free port of the range, round robin so a port just
    /// released is not reused at once.
    pub fn allocate(&mut self, task: &str, protocol: TransportProtocol) -> Option<u16> {
        let (start, end) = (*self.range.start(), *self.range.end());
        let size = u32::from(end - start) + 1;
        for _ in 0..size {
            let port = self.next;
            self.next = if port >= end { start } else { port + 1 };
            if self.held.contains_key(&(port, protocol)) || !self.free_on_host(port, protocol) {
                continue;
            }
            self.held.insert((port, protocol), task.to_owned());
            return Some(port);
        }
        None
    }

    fn free_on_host(&self, port: u16, protocol: TransportProtocol) -> bool {
        if !self.probe_host {
            return true;
        }
        match protocol {
            TransportProtocol::Tcp => std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
            TransportProtocol::Udp => std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok(),
        }
    }

    /// Frees every port of `task`.
    pub fn release(&mut self, task: &str) {
        self.held.retain(|_, owner| owner != task);
    }

    pub fn held_by(&self, task: &str) -> Vec<(u16, TransportProtocol)> {
        let mut ports: Vec<_> = self
            .held
            .iter()
            .filter(|(_, owner)| owner.as_str() == task)
            .map(|(key, _)| *key)
            .collect();
        ports.sort_by_key(|(port, _)| *port);
        ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_parsed_or_falls_back() {
        assert_eq!(parse_range("32768\t60999\n"), Some(32768..=60999));
        assert_eq!(parse_range("garbage"), None);
        assert_eq!(parse_range("10 5"), None);
        assert!(!ephemeral_range().is_empty());
    }

    #[test]
    fn ports_are_never_double_booked() {
        let mut ports = PortAllocator::new(50000..=50002, false);
        let tcp = TransportProtocol::Tcp;
        assert!(ports.book("a", 50001, tcp));
        assert_eq!(ports.allocate("b", tcp), Some(50000));
        assert_eq!(ports.allocate("b", tcp), Some(50002));
        assert_eq!(ports.allocate("c", tcp), None);
        // UDP is a separate space.
        assert_eq!(ports.allocate("c", TransportProtocol::Udp), Some(50000));
        assert!(!ports.book("c", 50001, tcp));
        ports.release("b");
        assert_eq!(ports.held_by("b"), vec![]);
        // Round robin: the cursor moves on before reusing a freed port.
        assert_eq!(ports.allocate("c", tcp), Some(50002));
        assert_eq!(ports.allocate("c", tcp), Some(50000));
        assert_eq!(ports.held_by("a"), vec![(50001, tcp)]);
    }
}
