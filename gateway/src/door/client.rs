//! Who a request is from: the [`ClientKey`] every per-client limit is kept
//! under. The TCP peer, unless the peer is a trusted proxy
//! (`GATEWAY_TRUSTED_PROXIES`), in which case the right-most address in
//! `Forwarded` (RFC 7239) or else `X-Forwarded-For` that is not itself a
//! trusted proxy. An IPv4-mapped IPv6 address is its IPv4 client; any other
//! IPv6 client is its /64 (one host usually has a whole /64 to pick from).
//!
//! Only a trusted proxy's headers are read, and only the part it and the
//! proxies behind it appended: everything left of the first untrusted
//! address was written by the client and is never looked at. A header that
//! cannot be read (no address where one must be, bad syntax, `unknown`,
//! an obfuscated identifier) counts the request as the peer's.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;
use axum::http::header::{FORWARDED, HeaderName};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Entries of a forwarding header looked at, right to left, before giving up
/// (a trusted chain is a handful of hops; this bounds the work on junk).
const MAX_HOPS: usize = 32;

/// A client as the per-client limits know it: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of `ip`: canonical (IPv4-mapped → IPv4), IPv6 cut to its /64.
    pub fn of(ip: IpAddr) -> ClientKey {
        ClientKey(runbox_api::server::client_key(ip))
    }

    /// The IPv4 address, or the first address of the IPv6 /64.
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> ClientKey {
        ClientKey::of(ip)
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The proxies whose forwarding headers are believed (`GATEWAY_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> TrustedProxies {
        TrustedProxies(nets.into_iter().map(|n| n.trunc()).collect())
    }

    pub fn none() -> TrustedProxies {
        TrustedProxies::default()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The key of a request from `peer` with `headers`.
    pub fn client_key(&self, peer: IpAddr, headers: &HeaderMap) -> ClientKey {
        ClientKey::of(self.client_ip(peer, headers))
    }

    /// The client's address: the peer's, or the one a trusted peer forwarded.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let forwarded = if headers.contains_key(FORWARDED) {
            self.rightmost_untrusted(forwarded_for(headers))
        } else if headers.contains_key(X_FORWARDED_FOR) {
            self.rightmost_untrusted(x_forwarded_for(headers))
        } else {
            None
        };
        forwarded.unwrap_or(peer)
    }

    /// Walks `hops` (right-most first): the first address that is not a
    /// trusted proxy; the left-most one when all are trusted; `None` at an
    /// entry that is not an address, or past [`MAX_HOPS`].
    fn rightmost_untrusted(&self, hops: Option<Vec<Option<IpAddr>>>) -> Option<IpAddr> {
        let mut last = None;
        for hop in hops?.into_iter().rev().take(MAX_HOPS) {
            let ip = hop?.to_canonical();
            if !self.contains(ip) {
                return Some(ip);
            }
            last = Some(ip);
        }
        last
    }
}

/// The `for=` of every `Forwarded` element, in order, header lines joined;
/// `None` for the whole header when its syntax is broken. An element without
/// `for`, or whose `for` is no address, is a `None` hop.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all(FORWARDED) {
        let text = value.to_str().ok()?;
        for element in parse_forwarded(text)? {
            let node = element
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("for"))
                .map(|(_, value)| value);
            hops.push(node.as_deref().and_then(node_ip));
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// Every `X-Forwarded-For` entry, in order, header lines joined.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        let text = value.to_str().ok()?;
        hops.extend(text.split(',').map(|entry| node_ip(entry.trim())));
    }
    (!hops.is_empty()).then_some(hops)
}

/// A `Forwarded` header value (RFC 7239 §4) as its elements, each a list of
/// `(name, value)` pairs with quoted strings unquoted; `None` on bad syntax.
fn parse_forwarded(text: &str) -> Option<Vec<Vec<(String, String)>>> {
    let mut elements = Vec::new();
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        skip_ws(&mut chars);
        // An empty element (`a, , b`) is allowed by the list syntax.
        match chars.peek() {
            None => break,
            Some(',') => {
                chars.next();
                elements.push(std::mem::take(&mut pairs));
                continue;
            }
            Some(';') if !pairs.is_empty() => {
                chars.next();
                continue;
            }
            _ => {}
        }
        let name = token(&mut chars);
        if name.is_empty() || chars.next() != Some('=') {
            return None;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            quoted(&mut chars)?
        } else {
            token(&mut chars)
        };
        if value.is_empty() {
            return None;
        }
        pairs.push((name, value));
        skip_ws(&mut chars);
        match chars.peek() {
            None | Some(',') | Some(';') => {}
            Some(_) => return None,
        }
    }
    elements.push(pairs);
    elements.retain(|e| !e.is_empty());
    Some(elements)
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_ws(chars: &mut Chars<'_>) {
    while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
}

/// An RFC 7230 token (possibly empty).
fn token(chars: &mut Chars<'_>) -> String {
    let mut out = String::new();
    while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(*c)) {
        out.push(c);
    }
    out
}

/// The rest of a quoted string after its opening quote; `None` if unterminated.
fn quoted(chars: &mut Chars<'_>) -> Option<String> {
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
}

/// The address in a node: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711`, or a bare `2001:db8::1` (X-Forwarded-For). A port
/// may be digits or an obfuscated `_name` (RFC 7239 §6). `unknown` and
/// obfuscated nodes are not addresses.
fn node_ip(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    let (host, port) = match node.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (host.parse::<Ipv6Addr>().ok().map(IpAddr::V6)?, port)
        }
        None => {
            let (host, port) = node.split_once(':')?;
            (
                host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)?,
                Some(port),
            )
        }
    };
    match port {
        None => Some(host),
        Some(p) if is_port(p) => Some(host),
        Some(_) => None,
    }
}

fn is_port(p: &str) -> bool {
    let digits = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = p.len() > 1
        && p.starts_with('_')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    digits || obfuscated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusting(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse::<IpNet>().unwrap()))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        h
    }

    /// The client `peer` is taken for, sending `pairs`, behind `trusted`.
    fn client(trusted: &TrustedProxies, peer: &str, pairs: &[(&str, &str)]) -> String {
        trusted.client_key(ip(peer), &headers(pairs)).to_string()
    }

    #[test]
    fn keys_are_canonical_ipv4_and_ipv6_slash_64() {
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")),
            ClientKey::of(ip("192.0.2.1"))
        );
        assert_eq!(ClientKey::of(ip("192.0.2.1")).to_string(), "192.0.2.1");
        let a = ClientKey::of(ip("2001:db8:1:2:aaaa::1"));
        assert_eq!(a, ClientKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        assert_ne!(
            a,
            ClientKey::of(ip("2001:db8:1:3::1")),
            "the next /64 is another client"
        );
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(ClientKey::of(ip("::1")).to_string(), "::/64");
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let spoof = [
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ];
        assert_eq!(
            client(&TrustedProxies::none(), "198.51.100.7", &spoof),
            "198.51.100.7"
        );
        let trusted = trusting(&["10.0.0.0/8"]);
        assert_eq!(client(&trusted, "198.51.100.7", &spoof), "198.51.100.7");
    }

    #[test]
    fn a_trusted_peer_is_believed_and_without_headers_is_the_client() {
        let trusted = trusting(&["10.0.0.0/8"]);
        assert_eq!(
            client(&trusted, "10.1.2.3", &[("x-forwarded-for", "203.0.113.9")]),
            "203.0.113.9"
        );
        assert_eq!(client(&trusted, "10.1.2.3", &[]), "10.1.2.3");
        assert_eq!(
            client(&trusted, "::ffff:10.1.2.3", &[("x-forwarded-for", "203.0.113.9")]),
            "203.0.113.9",
            "an IPv4-mapped peer is matched as IPv4"
        );
    }

    #[test]
    fn the_rightmost_untrusted_address_of_a_chain_is_the_client() {
        let trusted = trusting(&["10.0.0.0/8", "192.168.0.0/16"]);
        // The client wrote `1.1.1.1, 2.2.2.2` itself; 203.0.113.9 is what the
        // first trusted proxy saw, 10.0.0.2 the second proxy.
        let xff = [("x-forwarded-for", "1.1.1.1, 2.2.2.2,203.0.113.9, 10.0.0.2")];
        assert_eq!(client(&trusted, "192.168.1.1", &xff), "203.0.113.9");
        // Several header lines are one list, in order.
        let lines = [
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "10.0.0.2"),
        ];
        assert_eq!(client(&trusted, "10.0.0.3", &lines), "203.0.113.9");
        // All hops trusted: the left-most is where the request began.
        let internal = [("x-forwarded-for", "10.0.0.5, 10.0.0.2")];
        assert_eq!(client(&trusted, "10.0.0.3", &internal), "10.0.0.5");
        // Garbage left of the client's address is the client's own and harmless.
        let junk_left = [("x-forwarded-for", "<script>, nonsense, 203.0.113.9")];
        assert_eq!(client(&trusted, "10.0.0.3", &junk_left), "203.0.113.9");
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_reads_rfc_7239_nodes() {
        let trusted = trusting(&["10.0.0.0/8"]);
        let both = [
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=192.0.2.43;proto=https;by=10.0.0.1"),
        ];
        assert_eq!(client(&trusted, "10.0.0.1", &both), "192.0.2.43");
        let v6 = [("forwarded", r#"for=192.0.2.1, for="[2001:db8:cafe::17]:4711""#)];
        assert_eq!(client(&trusted, "10.0.0.1", &v6), "2001:db8:cafe::/64");
        let cases = [
            (r#"For="[2001:db8::1]""#, "2001:db8::/64"),
            (r#"for="192.0.2.60:8080";proto=http"#, "192.0.2.60"),
            (r#"for="192.0.2.60:_hidden""#, "192.0.2.60"),
            ("proto=http;for=192.0.2.61", "192.0.2.61"),
            (r#"for="[2001:db8::1]", for=10.0.0.9"#, "2001:db8::/64"),
            ("for=192.0.2.62 , ,for=10.0.0.9", "192.0.2.62"),
            (r#"for="\"192.0.2.63\"""#, "10.0.0.1"),
        ];
        for (value, want) in cases {
            assert_eq!(
                client(&trusted, "10.0.0.1", &[("forwarded", value)]),
                want,
                "{value}"
            );
        }
        // Forwarded lines append like X-Forwarded-For ones.
        let lines = [("forwarded", "for=192.0.2.70"), ("forwarded", "for=10.0.0.2")];
        assert_eq!(client(&trusted, "10.0.0.1", &lines), "192.0.2.70");
    }

    #[test]
    fn unreadable_headers_count_as_the_peer() {
        let trusted = trusting(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let forwarded = [
            "for=",
            "for",
            "=192.0.2.1",
            r#"for="192.0.2.1"#,
            "for=192.0.2.1 junk",
            "for=unknown",
            "for=_hidden",
            "for=\"[2001:db8::1\"",
            "for=\"[2001:db8::1]:99999999\"",
            "for=\"[2001:db8::1]x\"",
            "for=\"192.0.2.1:\"",
            "by=10.0.0.1",
            "for=300.1.2.3",
            "",
            ",,,",
            "for=\u{7f}",
        ];
        for value in forwarded {
            let Ok(header) = value.parse::<axum::http::HeaderValue>() else {
                continue;
            };
            let mut h = HeaderMap::new();
            h.insert(FORWARDED, header);
            assert_eq!(
                trusted.client_key(ip("10.9.9.9"), &h).to_string(),
                "10.9.9.9",
                "Forwarded: {value:?}"
            );
        }
        for value in [
            "",
            " ",
            "unknown",
            "203.0.113.9:abc",
            "[::1",
            "203.0.113.9, garbage",
            "1.2.3.4.5",
        ] {
            assert_eq!(
                client(&trusted, "10.9.9.9", &[("x-forwarded-for", value)]),
                "10.9.9.9",
                "X-Forwarded-For: {value:?}"
            );
        }
        // Bytes that are not UTF-8 are unreadable too.
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR,
            axum::http::HeaderValue::from_bytes(b"203.0.113.9\xff").unwrap(),
        );
        assert_eq!(trusted.client_key(ip("10.9.9.9"), &h).to_string(), "10.9.9.9");
        // A trusted IPv6 proxy's peer key is its /64.
        assert_eq!(
            client(&trusted, "2001:db8:ffff:1::5", &[("x-forwarded-for", "bogus")]),
            "2001:db8:ffff:1::/64"
        );
    }

    #[test]
    fn xff_ports_and_brackets_are_tolerated() {
        let trusted = trusting(&["10.0.0.0/8"]);
        for (value, want) in [
            ("203.0.113.9:1234", "203.0.113.9"),
            ("[2001:db8::7]:443", "2001:db8::/64"),
            ("[2001:db8::7]", "2001:db8::/64"),
            ("2001:db8::7", "2001:db8::/64"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
        ] {
            assert_eq!(
                client(&trusted, "10.0.0.1", &[("x-forwarded-for", value)]),
                want,
                "{value}"
            );
        }
    }

    #[test]
    fn a_long_chain_of_trusted_hops_is_cut_short() {
        let trusted = trusting(&["10.0.0.0/8"]);
        let mut chain: Vec<String> = vec!["203.0.113.9".into()];
        chain.extend((0..MAX_HOPS).map(|i| format!("10.0.0.{}", i % 250)));
        let value = chain.join(",");
        // The client is past MAX_HOPS trusted hops: the left-most hop looked at is taken.
        let key = client(&trusted, "10.0.0.1", &[("x-forwarded-for", value.as_str())]);
        assert_eq!(key, "10.0.0.0");
    }
}
