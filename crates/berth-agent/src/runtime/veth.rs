//! How an awsvpc task's namespace gets its address without Docker's
//! libnetwork, whose endpoint setup was ~70 ms of every pause container's
//! start: the way a CNI bridge plugin does it, with a veth pair whose host
//! end joins the task network's Linux bridge and whose other end becomes
//! the namespace's `eth0`, with the task's MAC and address, up, and a
//! default route via the network's gateway. Docker still owns the network
//! itself, so its iptables rules (forwarding, traffic between tasks,
//! outbound NAT), which match on the bridge, apply as before.
//!
//! Owns the plan (interface names, and the checks Docker made of a
//! requested address), the iproute2 batches, and running them with `ip`
//! and `nsenter` (iproute2 and util-linux must be installed).
//!
//! The host end is named after the address, `bv` and its eight hex digits:
//! agents on one host have disjoint subnets, so names never collide. It
//! dies with the namespace, so removing the pause container is the whole
//! detach.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use super::network::Subnet;
use super::{TaskAddress, TaskNetwork};

/// The longest interface name Linux takes (`IFNAMSIZ` less the NUL).
const MAX_INTERFACE_NAME: usize = 15;
/// The task's interface inside its namespace.
const TASK_INTERFACE: &str = "eth0";
/// The kernel frees a namespace's interfaces a moment after its last
/// process is gone: a host end of that name may outlive its task by some
/// milliseconds (seconds on a busy host), and its address may already be
/// another task's.
const LINGER: Duration = Duration::from_secs(5);
const LINGER_POLL: Duration = Duration::from_millis(10);

/// Why a namespace could not be put on the task network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error("invalid IPv4 address {0:?}")]
    InvalidAddress(String),
    #[error("the address {address} is not in the task network's subnet {subnet}")]
    OutsideSubnet { address: Ipv4Addr, subnet: String },
    #[error("the address {0} is the task network's own, its gateway's or its broadcast address")]
    Reserved(Ipv4Addr),
    #[error("invalid MAC address {0:?}")]
    InvalidMac(String),
    #[error("the task network {network} has no usable bridge or subnet ({detail})")]
    InvalidNetwork { network: String, detail: String },
    #[error("Address already in use: {address} (interface {interface} exists)")]
    InUse {
        address: Ipv4Addr,
        interface: String,
    },
    #[error("{program} failed: {message}")]
    Command {
        program: &'static str,
        message: String,
    },
}

impl From<AttachError> for super::RuntimeError {
    fn from(error: AttachError) -> Self {
        Self::Failed(error.to_string())
    }
}

/// The host end of the veth pair of the namespace holding `address`.
pub fn host_interface(address: Ipv4Addr) -> String {
    format!("bv{:08x}", u32::from(address))
}

/// What attaching one namespace does, checked before anything is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    interface: String,
    bridge: String,
    address: Ipv4Addr,
    subnet: Subnet,
    gateway: Ipv4Addr,
    mac: String,
}

fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn valid_mac(mac: &str) -> bool {
    let octets: Vec<&str> = mac.split(':').collect();
    octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()))
}

impl Plan {
    /// Plans `address` on `network`, refusing what Docker refused of a
    /// requested address (one outside the subnet, or one the network
    /// itself uses) and anything that would not be a plain word in an
    /// iproute2 batch.
    pub fn new(network: &TaskNetwork, address: &TaskAddress) -> Result<Self, AttachError> {
        let invalid_network = |detail: &str| AttachError::InvalidNetwork {
            network: network.name.clone(),
            detail: detail.to_owned(),
        };
        let subnet =
            Subnet::parse(&network.subnet).ok_or_else(|| invalid_network(&network.subnet))?;
        let gateway = subnet
            .gateway()
            .ok_or_else(|| invalid_network("no room for a gateway"))?;
        if !valid_interface_name(&network.bridge) {
            return Err(invalid_network(&format!("bridge {:?}", network.bridge)));
        }
        let parsed: Ipv4Addr = address
            .ipv4_address
            .parse()
            .map_err(|_| AttachError::InvalidAddress(address.ipv4_address.clone()))?;
        if !subnet.contains(parsed) {
            return Err(AttachError::OutsideSubnet {
                address: parsed,
                subnet: subnet.to_string(),
            });
        }
        if [subnet.network(), gateway, subnet.broadcast()].contains(&parsed) {
            return Err(AttachError::Reserved(parsed));
        }
        if !valid_mac(&address.mac_address) {
            return Err(AttachError::InvalidMac(address.mac_address.clone()));
        }
        Ok(Self {
            interface: host_interface(parsed),
            bridge: network.bridge.clone(),
            address: parsed,
            subnet,
            gateway,
            mac: address.mac_address.to_ascii_lowercase(),
        })
    }

    /// The host end of the pair.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Run on the host: the pair, its other end going into the namespace
    /// of process `pid` as `eth0` with the task's MAC; the host end on the
    /// bridge, up.
    pub fn host_batch(&self, pid: u32) -> String {
        format!(
            "link add {veth} type veth peer name {TASK_INTERFACE} address {mac} netns {pid}\n\
             link set {veth} master {bridge} up\n",
            veth = self.interface,
            mac = self.mac,
            bridge = self.bridge,
        )
    }

    /// Run inside the namespace: the address, both interfaces up, and the
    /// default route (which needs `eth0` up).
    pub fn namespace_batch(&self) -> String {
        format!(
            "addr add {address}/{prefix} broadcast {broadcast} dev {TASK_INTERFACE}\n\
             link set lo up\n\
             link set {TASK_INTERFACE} up\n\
             route add default via {gateway} dev {TASK_INTERFACE}\n",
            address = self.address,
            prefix = self.subnet.prefix(),
            broadcast = self.subnet.broadcast(),
            gateway = self.gateway,
        )
    }
}

fn sys_class_net(name: &str) -> PathBuf {
    PathBuf::from("/sys/class/net").join(name)
}

/// Whether any interface is plugged into `bridge`.
pub fn bridge_has_ports(bridge: &str) -> bool {
    std::fs::read_dir(sys_class_net(bridge).join("brif"))
        .is_ok_and(|mut ports| ports.next().is_some())
}

/// Puts the namespace of process `pid` on the task network as `plan`
/// says. A failed attempt removes the pair it made; the namespace is left
/// for the caller to remove.
pub async fn attach(plan: &Plan, pid: u32) -> Result<(), AttachError> {
    wait_gone(plan).await?;
    let result = async {
        run("ip", &["-batch", "-"], &plan.host_batch(pid)).await?;
        let namespace = format!("--net=/proc/{pid}/ns/net");
        run(
            "nsenter",
            &[&namespace, "ip", "-batch", "-"],
            &plan.namespace_batch(),
        )
        .await
    }
    .await;
    if result.is_err() && sys_class_net(&plan.interface).exists() {
        // Removing either end removes both.
        if let Err(error) = run("ip", &["link", "del", &plan.interface], "").await {
            tracing::warn!(%error, interface = plan.interface, "cannot remove the interface of a failed attach");
        }
    }
    result
}

/// Waits out a host end of the same name whose namespace is still being
/// freed; one that stays belongs to a live namespace holding the address.
async fn wait_gone(plan: &Plan) -> Result<(), AttachError> {
    let path = sys_class_net(&plan.interface);
    let deadline = tokio::time::Instant::now() + LINGER;
    while path.exists() {
        if tokio::time::Instant::now() >= deadline {
            return Err(AttachError::InUse {
                address: plan.address,
                interface: plan.interface.clone(),
            });
        }
        tokio::time::sleep(LINGER_POLL).await;
    }
    Ok(())
}

/// Runs `program` with `input` on its stdin; its stderr is the error.
async fn run(program: &'static str, args: &[&str], input: &str) -> Result<(), AttachError> {
    let failed = |message: String| AttachError::Command { program, message };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| failed(format!("cannot run it: {error}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|error| failed(format!("cannot write its input: {error}")))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|error| failed(error.to_string()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Err(failed(if message.is_empty() {
        output.status.to_string()
    } else {
        message.join("; ")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> TaskNetwork {
        TaskNetwork {
            name: "berth-eni-i-0123".into(),
            subnet: "100.64.4.0/22".into(),
            bridge: "br-0123456789ab".into(),
        }
    }

    fn address(ip: &str) -> TaskAddress {
        TaskAddress {
            ipv4_address: ip.into(),
            mac_address: "0A:58:64:40:04:09".into(),
        }
    }

    #[test]
    fn host_interfaces_are_named_after_the_address() {
        assert_eq!(host_interface(Ipv4Addr::new(100, 64, 4, 9)), "bv64400409");
        assert_eq!(
            host_interface(Ipv4Addr::new(100, 127, 255, 254)),
            "bv647ffffe"
        );
        let longest = host_interface(Ipv4Addr::new(255, 255, 255, 255));
        assert!(longest.len() <= MAX_INTERFACE_NAME);
        assert!(valid_interface_name(&longest));
    }

    #[test]
    fn batches_plug_the_namespace_into_the_bridge() {
        let plan = Plan::new(&network(), &address("100.64.4.9")).unwrap();
        assert_eq!(plan.interface(), "bv64400409");
        assert_eq!(
            plan.host_batch(4242),
            "link add bv64400409 type veth peer name eth0 address 0a:58:64:40:04:09 netns 4242\n\
             link set bv64400409 master br-0123456789ab up\n"
        );
        assert_eq!(
            plan.namespace_batch(),
            "addr add 100.64.4.9/22 broadcast 100.64.7.255 dev eth0\n\
             link set lo up\n\
             link set eth0 up\n\
             route add default via 100.64.4.1 dev eth0\n"
        );
    }

    #[test]
    fn addresses_docker_would_refuse_are_refused() {
        let plan = |ip: &str| Plan::new(&network(), &address(ip));
        assert!(matches!(
            plan("100.64.8.9"),
            Err(AttachError::OutsideSubnet { .. })
        ));
        for reserved in ["100.64.4.0", "100.64.4.1", "100.64.7.255"] {
            assert!(
                matches!(plan(reserved), Err(AttachError::Reserved(_))),
                "{reserved}"
            );
        }
        assert!(matches!(
            plan("100.64.4.9 dev lo"),
            Err(AttachError::InvalidAddress(_))
        ));
        assert!(plan("100.64.7.254").is_ok());
        let mut bad_mac = address("100.64.4.9");
        for mac in [
            "0a:58:64:40:04",
            "0a:58:64:40:04:9",
            "0a:58:64:40:04:zz",
            "x",
        ] {
            bad_mac.mac_address = mac.into();
            assert!(
                matches!(
                    Plan::new(&network(), &bad_mac),
                    Err(AttachError::InvalidMac(_))
                ),
                "{mac}"
            );
        }
        let mut long_bridge = network();
        long_bridge.bridge = "br-0123456789abcdef".into();
        assert!(matches!(
            Plan::new(&long_bridge, &address("100.64.4.9")),
            Err(AttachError::InvalidNetwork { .. })
        ));
        let mut bad_subnet = network();
        bad_subnet.subnet = "100.64.4.9/32".into();
        assert!(matches!(
            Plan::new(&bad_subnet, &address("100.64.4.9")),
            Err(AttachError::InvalidNetwork { .. })
        ));
    }

    #[test]
    fn a_bridge_that_does_not_exist_has_no_ports() {
        assert!(!bridge_has_ports("bv-no-such"));
    }
}
