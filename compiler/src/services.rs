//! Service names for `port NAME`, built in so `relaydc check` never depends on the build
//! machine's `/etc/services`. The list follows OpenBSD's `/etc/services` for TCP (relayd
//! looks names up as tcp first, then udp).

/// (name, port), sorted by name.
const SERVICES: &[(&str, u16)] = &[
    ("auth", 113),
    ("bgp", 179),
    ("bootpc", 68),
    ("bootps", 67),
    ("chargen", 19),
    ("daytime", 13),
    ("discard", 9),
    ("domain", 53),
    ("echo", 7),
    ("finger", 79),
    ("ftp", 21),
    ("ftp-data", 20),
    ("gopher", 70),
    ("http", 80),
    ("http-alt", 8080),
    ("https", 443),
    ("ident", 113),
    ("imap", 143),
    ("imap2", 143),
    ("imap3", 220),
    ("imaps", 993),
    ("irc", 194),
    ("isakmp", 500),
    ("kerberos", 88),
    ("ldap", 389),
    ("ldaps", 636),
    ("login", 513),
    ("memcache", 11211),
    ("microsoft-ds", 445),
    ("mysql", 3306),
    ("nfsd", 2049),
    ("nntp", 119),
    ("nntps", 563),
    ("ntp", 123),
    ("pop3", 110),
    ("pop3s", 995),
    ("postgresql", 5432),
    ("printer", 515),
    ("radius", 1812),
    ("rsync", 873),
    ("rtsp", 554),
    ("shell", 514),
    ("sieve", 4190),
    ("smtp", 25),
    ("smtps", 465),
    ("snmp", 161),
    ("snmptrap", 162),
    ("socks", 1080),
    ("spamd", 8025),
    ("ssh", 22),
    ("submission", 587),
    ("sunrpc", 111),
    ("syslog", 514),
    ("telnet", 23),
    ("tftp", 69),
    ("time", 37),
    ("whois", 43),
    ("www", 80),
    ("www-http", 80),
    ("xmpp-client", 5222),
    ("xmpp-server", 5269),
];

/// The port of a service name (exact, case-sensitive, as `getservbyname`).
pub fn lookup(name: &str) -> Option<u16> {
    SERVICES
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| SERVICES[i].1)
}

/// All names, for "did you mean" suggestions.
pub fn names() -> impl Iterator<Item = &'static str> {
    SERVICES.iter().map(|(n, _)| *n)
}

/// IP protocol names a redirect's `listen on … PROTO` accepts (`getprotobyname`).
pub fn ip_protocol(name: &str) -> bool {
    matches!(
        name,
        "ip" | "icmp"
            | "igmp"
            | "tcp"
            | "udp"
            | "ipv6"
            | "gre"
            | "esp"
            | "ah"
            | "icmp6"
            | "ipv6-icmp"
            | "sctp"
            | "carp"
            | "pfsync"
            | "ospf"
            | "pim"
            | "vrrp"
            | "udplite"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn sorted() {
        assert!(super::SERVICES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(super::lookup("www"), Some(80));
        assert_eq!(super::lookup("box2_port"), None);
    }
}
