//! The catalog of diagnostic codes.
//!
//! Every diagnostic relaydc prints carries one of these codes. A code is stable: once
//! published it keeps its meaning. Its explanation lives in `spec/diagnostics/RDnnnn.md`
//! (embedded here for `relaydc explain`), and `spec/diagnostics.md` collects them all; a
//! test keeps the catalog, the explanations, the collected file and the corpus in step.
//!
//! Numbering by stage: 01xx sources, lexing and macros; 02xx syntax; 03xx single values
//! (numbers, ports, addresses, names); 04xx option contexts and rule option combinations;
//! 05xx names and the structure of blocks (relayd's cross-reference and post-parse
//! checks); 06xx files on the deploy host; 07xx TLS material and policy, and features
//! without a Linux meaning; 08xx forms of older relayd releases; 09xx analyses relayd
//! never made (listener overlaps, unreachable tables, shadowed filter rules).

use serde::Serialize;
use std::fmt;

/// How bad a finding is. Ordered so that errors sort first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        })
    }
}

/// What the catalog knows about one code.
#[derive(Debug)]
pub struct CodeInfo {
    pub code: Code,
    /// The code as printed, `RD0301`.
    pub id: &'static str,
    /// A kebab-case name, used as the SARIF rule name.
    pub name: &'static str,
    /// The severity the code has unless a check says otherwise (some depend on the era).
    pub severity: Severity,
    /// One line saying what the code is about.
    pub title: &'static str,
    /// The whole explanation (markdown), as `relaydc explain` prints it.
    pub explanation: &'static str,
}

macro_rules! codes {
    ($( $variant:ident = $id:literal, $name:literal, $sev:ident, $title:literal; )*) => {
        /// A stable diagnostic code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub enum Code { $( $variant, )* }

        /// Every code, in catalog order.
        pub const CATALOG: &[CodeInfo] = &[
            $( CodeInfo {
                code: Code::$variant,
                id: $id,
                name: $name,
                severity: Severity::$sev,
                title: $title,
                explanation: include_str!(concat!("../diagnostics/", $id, ".md")),
            }, )*
        ];
    };
}

codes! {
    UnterminatedString = "RD0101", "unterminated-string", Error, "a quoted string is not closed before the end of the file";
    InvalidNumber = "RD0102", "invalid-number", Error, "a number does not fit in 64 bits";
    StringTooLong = "RD0103", "string-too-long", Error, "a word or quoted string is longer than relayd's lexer buffer";
    NulByte = "RD0104", "nul-byte", Error, "a NUL byte inside a quoted string";
    UndefinedMacro = "RD0105", "undefined-macro", Error, "a `$name` refers to a macro that is not defined at that point";
    MacroNameWhitespace = "RD0106", "macro-name-whitespace", Error, "a macro name contains whitespace";
    UnreachableMacroName = "RD0107", "unreachable-macro-name", Warning, "a macro name that no `$name` reference can ever reach";
    UnusedMacro = "RD0108", "unused-macro", Warning, "a macro that is defined but never used";
    NestedMacro = "RD0109", "nested-macro", Error, "a macro value contains `$`, which is not expanded again";
    BadDefine = "RD0110", "bad-define", Warning, "a `-D` argument without `=`";
    IncludeFailed = "RD0111", "include-failed", Error, "an included file cannot be read";
    IncludeCycle = "RD0112", "include-cycle", Error, "a file includes itself, directly or through others";
    CommentContinues = "RD0113", "comment-continues", Warning, "a comment ends in a backslash and swallows the next line";
    CarriageReturn = "RD0114", "carriage-return", Error, "the file has carriage returns (CRLF line ends)";
    NotUtf8 = "RD0115", "not-utf8", Warning, "the file is not valid UTF-8";
    MacroOverridden = "RD0116", "macro-overridden", Note, "a definition in the file is ignored because `-D` set the macro";
    SyntaxError = "RD0201", "syntax-error", Error, "the text does not fit relayd.conf's grammar";
    KeywordAsName = "RD0202", "keyword-as-name", Error, "a keyword is used where a name is expected";
    InvalidPort = "RD0301", "invalid-port", Error, "a port number outside 1..65535";
    UnknownService = "RD0302", "unknown-service", Error, "a port name that is not a known service";
    PortRange = "RD0303", "port-range", Error, "a port range where only a single port is allowed";
    InvalidAddress = "RD0304", "invalid-address", Error, "an address that is neither an IP address nor a valid host name";
    InvalidPrefixLen = "RD0305", "invalid-prefixlen", Error, "a prefix length too long for the address family";
    NameTooLong = "RD0306", "name-too-long", Error, "a name or path longer than relayd's buffer for it";
    OutOfRange = "RD0307", "out-of-range", Error, "a number outside the range the option accepts";
    RepeatedHostOption = "RD0308", "repeated-host-option", Error, "a host option given twice";
    InvalidHashKey = "RD0309", "invalid-hash-key", Error, "a balancing key written as `0x…` that is not 32 hex digits";
    InvalidCheck = "RD0310", "invalid-check", Error, "a health check whose type, code, digest or data is invalid";
    InvalidProtocolType = "RD0311", "invalid-protocol-type", Error, "an unknown protocol type";
    InvalidTlsFlag = "RD0312", "invalid-tls-flag", Error, "an unknown TLS option flag";
    NoTlsVersion = "RD0313", "no-tls-version", Error, "the TLS options leave no protocol version enabled";
    InvalidIpOption = "RD0314", "invalid-ip-option", Error, "a tcp `ip` option other than `ttl` or `minttl`";
    UnknownMethod = "RD0315", "unknown-method", Error, "an HTTP method relayd does not know";
    InvalidCurve = "RD0316", "invalid-curve", Error, "an ECDHE curve or DH parameter setting that cannot be used";
    TcpOptionsContext = "RD0401", "tcp-options-context", Error, "tcp or tls options in a protocol that is neither tcp nor http";
    HttpOptionsContext = "RD0402", "http-options-context", Error, "http options in a protocol that is not http";
    RuleOptionCombination = "RD0403", "rule-option-combination", Error, "`append`, `set` or `remove` on a query or url rule";
    RuleDirection = "RD0404", "rule-direction", Error, "a path, query or url condition in a response rule";
    RuleRepeated = "RD0405", "rule-repeated", Error, "`tag`, `tagged`, `label` or `file` given twice in one rule";
    RuleNoTag = "RD0406", "rule-no-tag", Error, "`no tag` or `no label` before any rule sets one";
    AddressFamily = "RD0407", "address-family", Error, "a rule or router mixes IPv4 and IPv6";
    HashKeyMode = "RD0408", "hash-key-mode", Error, "a balancing key with a mode that takes none, or given twice";
    ModeContext = "RD0409", "mode-context", Error, "a balancing mode the redirect or relay does not support";
    ForwardKind = "RD0410", "forward-kind", Error, "a forward, route or transparent forward where it cannot be used";
    RepeatedOption = "RD0411", "repeated-option", Error, "an option that may appear once is given again";
    TableInterval = "RD0412", "table-interval", Error, "a table interval that is not a multiple of the global interval";
    MissingPort = "RD0413", "missing-port", Error, "a table reference without a port and without a preceding `listen on`";
    UndefinedName = "RD0501", "undefined-name", Error, "a table or protocol is used but not defined before that point";
    DuplicateName = "RD0502", "duplicate-name", Error, "a table, redirect, relay, protocol or router name is defined twice";
    EmptyTable = "RD0503", "empty-table", Error, "a table has no hosts";
    IncompleteBlock = "RD0504", "incomplete-block", Error, "a redirect, relay or router lacks a part it needs (listener, table, target, routes)";
    RedirectTableCheck = "RD0505", "redirect-table-check", Error, "a redirect's table has no health check";
    BackupTableMismatch = "RD0506", "backup-table-mismatch", Error, "a redirect's backup table differs from the main table in port or mode";
    TargetConflict = "RD0507", "target-conflict", Error, "a relay forwards both to `nat lookup` and to `destination`";
    NoActions = "RD0508", "no-actions", Error, "the configuration has no redirect, relay or router";
    TimeoutExceedsInterval = "RD0509", "timeout-exceeds-interval", Error, "a check timeout is not shorter than the check interval";
    InvalidParent = "RD0510", "invalid-parent", Error, "a host's `parent` is not the id of another host without a parent";
    UnusedProtocol = "RD0511", "unused-protocol", Warning, "a protocol no relay uses";
    TooManyHosts = "RD0512", "too-many-hosts", Error, "a relay's table has more than 32 hosts";
    UnusedTable = "RD0513", "unused-table", Warning, "a table nothing forwards to";
    DuplicateListener = "RD0514", "duplicate-listener", Error, "two relays listen on the same address and port";
    LateGlobal = "RD0515", "late-global", Warning, "a global option after the first section, where relayd ignores it or earlier sections do not see it";
    TlsFiles = "RD0601", "tls-files", Error, "the keypair files for a TLS relay cannot be found";
    TlsCaFile = "RD0602", "tls-ca-file", Error, "a CA or client CA file cannot be read";
    RuleFile = "RD0603", "rule-file", Error, "the file a filter rule reads its keys from cannot be read";
    UnresolvableName = "RD0604", "unresolvable-name", Error, "a host or listen name that does not resolve on the host compiling the plan";
    TlsKeyMismatch = "RD0701", "tls-key-mismatch", Error, "a keypair's private key does not belong to its certificate";
    TlsChainOrder = "RD0702", "tls-chain-order", Warning, "a certificate file does not list the server certificate first, then each issuer";
    TlsCertExpiring = "RD0703", "tls-cert-expiring", Warning, "a certificate expires within 30 days";
    TlsCertExpired = "RD0704", "tls-cert-expired", Error, "a certificate has expired or is not yet valid";
    TlsBadMaterial = "RD0705", "tls-bad-material", Error, "a certificate, key or CA file that cannot be parsed or used";
    TlsCiphersNone = "RD0706", "tls-ciphers-none", Error, "a cipher string that leaves no cipher suite relayd-run can offer";
    TlsLegacyVersion = "RD0707", "tls-legacy-version", Warning, "a TLS version flag (`sslv3`, `tlsv1.0`, `tlsv1.1`) that has no effect";
    TlsCiphersPartial = "RD0708", "tls-ciphers-partial", Note, "part of a cipher string names suites relayd-run does not offer";
    TlsCurveUnsupported = "RD0709", "tls-curve-unsupported", Warning, "an ECDHE curve, DH or renegotiation setting relayd-run cannot honour";
    LinuxNoEquivalent = "RD0710", "linux-no-equivalent", Warning, "a relayd feature that has no meaning on Linux";
    TlsKeyReadable = "RD0711", "tls-key-readable", Warning, "a private key file that users other than its owner can read";
    LegacyLog = "RD0801", "legacy-log", Warning, "`log updates` and `log all` were replaced";
    LegacySsl = "RD0802", "legacy-ssl", Warning, "the `ssl` keyword was renamed `tls`";
    LegacyHeaderAppend = "RD0803", "legacy-header-append", Warning, "the `header append … to …` node was replaced by a `match` rule";
    LegacyHeaderChange = "RD0804", "legacy-header-change", Warning, "the `header change … to …` node was replaced by a `match` rule";
    LegacyFilter = "RD0805", "legacy-filter", Warning, "the `filter` node was replaced by a `block` rule";
    LegacyExpect = "RD0806", "legacy-expect", Warning, "the `expect` node was replaced by `block` and `pass` rules";
    LegacyLabel = "RD0807", "legacy-label", Warning, "a protocol-level `label` was replaced by `match … label`";
    LegacyRedirectTag = "RD0808", "legacy-redirect-tag", Warning, "the redirect option `tag` was renamed `pftag`";
    LegacyNode = "RD0809", "legacy-node", Warning, "a protocol node (`remove`, `hash`, `log`, `mark`, `marked`) of relayd 5.5 and older";
    LegacySslOption = "RD0810", "legacy-ssl-option", Warning, "an SSL option of old releases (`sslv2`, `session cache`, `ecdh curve`)";
    Hoststated = "RD0811", "hoststated", Warning, "syntax of hoststated (relayd 4.1 and 4.2)";
    LegacyGlobal = "RD0812", "legacy-global", Warning, "a global option of old releases (`send trap`, `snmp`, global `demote`)";
    NotInEra = "RD0813", "not-in-era", Error, "a form the release this file is judged by does not accept";
    ListenerOverlap = "RD0901", "listener-overlap", Warning, "a wildcard listener and a specific one share a port, so one takes the other's connections";
    RedirectCapturesRelay = "RD0902", "redirect-captures-relay", Warning, "a redirect rewrites the traffic a relay listens for";
    UnreachableTable = "RD0903", "unreachable-table", Warning, "a table a relay never uses: a fallback behind an always-usable table, or a rule's `forward to` the relay does not forward to";
    ShadowedRule = "RD0904", "shadowed-rule", Warning, "a filter rule that never decides because an earlier `quick` rule always does";
    OverriddenRule = "RD0905", "overridden-rule", Warning, "a filter rule whose verdict a later rule always replaces";
    UnsatisfiableRule = "RD0906", "unsatisfiable-rule", Warning, "a filter rule or alternative that no request can satisfy";
    RulesNotEvaluated = "RD0907", "rules-not-evaluated", Warning, "filter rules in a protocol that is not http, where relayd never runs them";
    HashWithoutKey = "RD0908", "hash-without-key", Warning, "`mode hash` with no `hash` rule sends every client to the same host";
    GlobMatchesNothing = "RD0909", "glob-matches-nothing", Warning, "a pattern that no header name, path or url can match";
    UnusedObject = "RD0910", "unused-object", Note, "an object only disabled relays or redirects use";
    TlsBackendUnverified = "RD0911", "tls-backend-unverified", Warning, "`forward with tls` without `tls ca file`: the backends' certificates are not verified";
    ForwardedForAppend = "RD0912", "forwarded-for-append", Note, "`header append \"X-Forwarded-For\"` keeps the addresses the client sent";
    SilentBlock = "RD0913", "silent-block", Note, "`block` rules in a protocol without `return error`: blocked clients get no answer";
}

impl Code {
    pub fn info(self) -> &'static CodeInfo {
        // CATALOG is in declaration order, so the discriminant is the index.
        &CATALOG[self as usize]
    }
    pub fn id(self) -> &'static str {
        self.info().id
    }
    pub fn default_severity(self) -> Severity {
        self.info().severity
    }
    /// Looks a code up by its printed form, `RD0301` (case-insensitive).
    pub fn parse(text: &str) -> Option<Code> {
        CATALOG
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(text))
            .map(|c| c.code)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// `spec/diagnostics.md` as it must read: a header, then every explanation in order.
pub fn collected_markdown() -> String {
    let mut out = String::from(include_str!("../diagnostics/_header.md"));
    out.push_str("\n## Index\n\n| code | name | severity | what |\n| --- | --- | --- | --- |\n");
    for info in CATALOG {
        out.push_str(&format!(
            "| [{}](#{}) | `{}` | {} | {} |\n",
            info.id,
            info.id.to_ascii_lowercase(),
            info.name,
            info.severity,
            info.title
        ));
    }
    for info in CATALOG {
        out.push('\n');
        out.push_str(info.explanation.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_in_declaration_order_and_unique() {
        for (i, info) in CATALOG.iter().enumerate() {
            assert_eq!(info.code as usize, i, "{}", info.id);
            assert!(
                info.explanation.starts_with(&format!("## {}", info.id)),
                "{} explanation must start with its own heading",
                info.id
            );
        }
        let mut ids: Vec<_> = CATALOG.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), CATALOG.len());
    }
}
