//! Pod IP allocation from the node's pod CIDR, a block of loopback addresses.
//!
//! Every pod shares the host network; what makes two pods' `:8080` distinct
//! is that each binds its own address of a block that is local to the host:
//! a block inside `127.0.0.0/8`, or one added whole to `lo` (`ip addr add
//! 198.18.0.1/24 dev lo`), which Linux then treats the same way. (The API
//! server refuses loopback addresses in Endpoints and EndpointSlices, so the
//! end-to-end test uses the second kind, from the RFC 2544 benchmarking
//! range.) The allocator hands out the lowest free address, skipping the
//! network address, the first host address (the node's own, like a bridge's
//! gateway) and the broadcast address, and takes an address back when its pod
//! is removed. [`Ipam::new`] refuses a block whose addresses this host cannot
//! bind; it configures nothing itself.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error(
        "pod CIDR {0} is not local to this host ({1}): pods share the host network, so use a block \
         inside 127.0.0.0/8 or add it to lo first (ip addr add <first address>/<prefix> dev lo)"
    )]
    NotLocal(Ipv4Net, String),
    #[error("pod CIDR {0} has no usable address (it needs at least a /30)")]
    TooSmall(Ipv4Net),
    #[error("no free address left in pod CIDR {0}")]
    Exhausted(Ipv4Net),
}

/// Which pod (by UID) holds which address.
#[derive(Debug)]
pub struct Ipam {
    net: Ipv4Net,
    by_ip: BTreeMap<Ipv4Addr, String>,
}

impl Ipam {
    pub fn new(net: Ipv4Net) -> Result<Self, IpamError> {
        let net = net.trunc();
        if net.prefix_len() > 30 {
            return Err(IpamError::TooSmall(net));
        }
        // The last usable address stands for the block: added whole to a
        // device, or inside 127/8, every address of it binds.
        let probe = Ipv4Addr::from(u32::from(net.broadcast()) - 1);
        if let Err(e) = std::net::TcpListener::bind((probe, 0)) {
            return Err(IpamError::NotLocal(net, format!("binding {probe}: {e}")));
        }
        Ok(Self {
            net,
            by_ip: BTreeMap::new(),
        })
    }

    pub fn net(&self) -> Ipv4Net {
        self.net
    }

    /// The address of pod `uid`: the one it already holds, else `wanted` if
    /// that is usable and free (a pod that kept its IP across an agent
    /// restart), else the lowest free one.
    pub fn allocate(&mut self, uid: &str, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, IpamError> {
        if let Some((ip, _)) = self.by_ip.iter().find(|(_, u)| u.as_str() == uid) {
            return Ok(*ip);
        }
        let free =
            |ip: &Ipv4Addr, by_ip: &BTreeMap<Ipv4Addr, String>| self.usable(*ip) && !by_ip.contains_key(ip);
        let ip = match wanted {
            Some(ip) if free(&ip, &self.by_ip) => ip,
            _ => self
                .net
                .hosts()
                .find(|ip| free(ip, &self.by_ip))
                .ok_or(IpamError::Exhausted(self.net))?,
        };
        self.by_ip.insert(ip, uid.to_owned());
        Ok(ip)
    }

    /// Gives back pod `uid`'s address, if it holds one.
    pub fn release(&mut self, uid: &str) -> Option<Ipv4Addr> {
        let ip = *self.by_ip.iter().find(|(_, u)| u.as_str() == uid)?.0;
        self.by_ip.remove(&ip);
        Some(ip)
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        let first_host = u32::from(self.net.network()) + 1;
        self.net.contains(&ip)
            && ip != self.net.network()
            && ip != self.net.broadcast()
            && u32::from(ip) != first_host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(cidr: &str) -> Ipam {
        Ipam::new(cidr.parse().unwrap()).unwrap()
    }

    #[test]
    fn allocates_from_the_second_host_address_up() {
        let mut ipam = ipam("127.0.1.0/24");
        assert_eq!(ipam.allocate("a", None), Ok(Ipv4Addr::new(127, 0, 1, 2)));
        assert_eq!(ipam.allocate("b", None), Ok(Ipv4Addr::new(127, 0, 1, 3)));
        // The same pod asking again keeps its address.
        assert_eq!(ipam.allocate("a", None), Ok(Ipv4Addr::new(127, 0, 1, 2)));
    }

    #[test]
    fn a_released_address_is_reused() {
        let mut ipam = ipam("127.0.1.0/24");
        ipam.allocate("a", None).unwrap();
        ipam.allocate("b", None).unwrap();
        assert_eq!(ipam.release("a"), Some(Ipv4Addr::new(127, 0, 1, 2)));
        assert_eq!(ipam.release("a"), None);
        assert_eq!(ipam.allocate("c", None), Ok(Ipv4Addr::new(127, 0, 1, 2)));
    }

    #[test]
    fn a_wanted_address_is_honoured_only_when_usable_and_free() {
        let mut ipam = ipam("127.0.1.0/24");
        let wanted = Ipv4Addr::new(127, 0, 1, 40);
        assert_eq!(ipam.allocate("a", Some(wanted)), Ok(wanted));
        // Taken, outside the CIDR, the network or the first address: the lowest free one instead.
        assert_eq!(ipam.allocate("b", Some(wanted)), Ok(Ipv4Addr::new(127, 0, 1, 2)));
        assert_eq!(
            ipam.allocate("c", Some(Ipv4Addr::new(127, 0, 2, 9))),
            Ok(Ipv4Addr::new(127, 0, 1, 3))
        );
        assert_eq!(
            ipam.allocate("d", Some(Ipv4Addr::new(127, 0, 1, 1))),
            Ok(Ipv4Addr::new(127, 0, 1, 4))
        );
    }

    #[test]
    fn exhaustion_is_an_error_until_an_address_is_freed() {
        // A /29 has hosts .1–.6; .1 is kept free: 5 pods.
        let mut ipam = ipam("127.0.1.0/29");
        for uid in ["a", "b", "c", "d", "e"] {
            ipam.allocate(uid, None).unwrap();
        }
        let net = "127.0.1.0/29".parse().unwrap();
        assert_eq!(ipam.allocate("f", None), Err(IpamError::Exhausted(net)));
        ipam.release("c");
        assert_eq!(ipam.allocate("f", None), Ok(Ipv4Addr::new(127, 0, 1, 4)));
    }

    #[test]
    fn only_local_cidrs_are_accepted() {
        // TEST-NET-3 is never assigned to a host.
        let net: Ipv4Net = "203.0.113.0/24".parse().unwrap();
        assert!(matches!(Ipam::new(net), Err(IpamError::NotLocal(n, _)) if n == net));
        let net: Ipv4Net = "127.0.1.0/31".parse().unwrap();
        assert_eq!(Ipam::new(net).unwrap_err(), IpamError::TooSmall(net));
        // Host bits are ignored, as in a kubelet's --pod-cidr.
        assert_eq!(ipam("127.0.1.7/24").net().to_string(), "127.0.1.0/24");
    }
}
