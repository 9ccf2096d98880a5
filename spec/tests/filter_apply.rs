//! What matched rules' options do to a message (`filter::apply`, relay_http.c
//! `relay_apply_actions`), the session log buffer (relayd-logs.md §3) and the
//! `return error` page (`errorpage`, `relay_abort_http`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use relaydc_spec::errorpage::{
    close_message, http_date, reason, reason_or_unknown, ErrorPage, DEFAULT_STYLE,
};
use relaydc_spec::filter::apply::{
    apply, label_text, Actions, ApplyError, HashFeed, MacroContext, SessionLog,
};
use relaydc_spec::filter::head::Head;
use relaydc_spec::filter::{
    evaluate, Action, Case, DigestAlg, Direction, Entity, EntityTest, Key, KeyOption, Legacy,
    Pattern, Rule, SessionState, SetOrClear, ValueTest,
};
use std::net::IpAddr;

// ---------------------------------------------------------------------------------------
// Helpers

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rule(action: Action, direction: Direction, tests: Vec<EntityTest>) -> Rule {
    Rule {
        action,
        direction,
        quick: false,
        family: None,
        from: None,
        to: None,
        method: None,
        tests,
        tagged: None,
        tag: None,
        label: None,
        table: None,
        strip: None,
        legacy: None,
    }
}

fn m_req(tests: Vec<EntityTest>) -> Rule {
    rule(Action::Match, Direction::Request, tests)
}

fn m_resp(tests: Vec<EntityTest>) -> Rule {
    rule(Action::Match, Direction::Response, tests)
}

/// An entity test as the compiler lowers it: append/set values go to `write`, other
/// values are tests.
fn et(entity: Entity, option: Option<KeyOption>, key: &str, value: Option<&str>) -> EntityTest {
    let key_case = match entity {
        Entity::Header | Entity::Cookie | Entity::Url => Case::Insensitive,
        _ => Case::Sensitive,
    };
    let writes = matches!(option, Some(KeyOption::Append | KeyOption::Set));
    let (value, write) = match value {
        Some(v) if writes => (ValueTest::Any, Some(v.to_string())),
        Some(v) => (ValueTest::Matches(Pattern::glob(v, Case::Sensitive)), None),
        None => (ValueTest::Any, None),
    };
    EntityTest {
        entity,
        option,
        key: Key::Pattern(Pattern::glob(key, key_case)),
        value,
        write,
    }
}

fn header(option: KeyOption, key: &str, value: Option<&str>) -> EntityTest {
    et(Entity::Header, Some(option), key, value)
}

fn ctx() -> MacroContext {
    MacroContext {
        remote_addr: Some(ip("10.0.0.1")),
        remote_port: 40000,
        server_addr: ip("0.0.0.0"),
        server_port: 8080,
        timeout_secs: 600,
    }
}

/// The backend as the peer: what the runtime passes for response rules.
fn backend_ctx() -> MacroContext {
    MacroContext {
        remote_addr: Some(ip("192.0.2.10")),
        remote_port: 80,
        ..ctx()
    }
}

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Head {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.as_bytes().to_vec())),
        None => (target, None),
    };
    Head {
        direction: Some(Direction::Request),
        method: method.as_bytes().to_vec(),
        path: path.as_bytes().to_vec(),
        query,
        minor: 1,
        status: 0,
        reason: Vec::new(),
        headers: hdrs(headers),
        client: Some(ip("10.0.0.1")),
        backend: None,
        local: Some(ip("127.0.0.1")),
        ..Head::default()
    }
}

fn response(headers: &[(&str, &str)]) -> Head {
    Head {
        direction: Some(Direction::Response),
        minor: 1,
        status: 200,
        reason: b"OK".to_vec(),
        headers: hdrs(headers),
        client: Some(ip("10.0.0.1")),
        backend: Some(ip("192.0.2.10")),
        local: Some(ip("127.0.0.1")),
        ..Head::default()
    }
}

fn hdrs(h: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// The head's lines in `Head` order.
fn lines(head: &Head) -> Vec<String> {
    head.headers
        .iter()
        .map(|(n, v)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect()
}

/// What relayd writes: groups sorted by name (`strcasecmp`), each in order.
fn written(head: &Head) -> Vec<String> {
    let mut h = head.headers.clone();
    h.sort_by_key(|(n, _)| n.to_ascii_lowercase());
    h.iter()
        .map(|(n, v)| {
            format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect()
}

/// One message through `evaluate` then `apply`; returns what `hash` options fed.
struct Session {
    state: SessionState,
    log: SessionLog,
    labels: Vec<String>,
}

impl Session {
    fn new() -> Self {
        Session {
            state: SessionState::default(),
            log: SessionLog::new(),
            labels: Vec::new(),
        }
    }

    fn run(&mut self, rules: &[Rule], head: &mut Head) -> Vec<Vec<u8>> {
        let c = match head.direction {
            Some(Direction::Response) => backend_ctx(),
            _ => ctx(),
        };
        self.try_run(rules, head, &c).unwrap()
    }

    fn try_run(
        &mut self,
        rules: &[Rule],
        head: &mut Head,
        c: &MacroContext,
    ) -> Result<Vec<Vec<u8>>, ApplyError> {
        let mut queued = Vec::new();
        let before = self.state.table;
        let outcome = evaluate(rules, &*head, &mut self.state, &mut queued);
        let switched = head.direction == Some(Direction::Request) && before != self.state.table;
        let mut fed: Vec<Vec<u8>> = Vec::new();
        {
            let mut push = |b: &[u8]| fed.push(b.to_vec());
            let feed: HashFeed<'_> = &mut push;
            apply(
                rules,
                Actions::of(&outcome, &queued, switched),
                head,
                c,
                label_text(self.state.label, &self.labels),
                &mut self.log,
                Some(feed),
            )?;
        }
        Ok(fed)
    }
}

fn once(rules: &[Rule], head: &mut Head) -> (SessionLog, Vec<Vec<u8>>) {
    let mut s = Session::new();
    let fed = s.run(rules, head);
    (s.log, fed)
}

// ---------------------------------------------------------------------------------------
// Header options

#[test]
fn header_append_adds_a_line_or_creates_it() {
    let rules = [m_req(vec![header(KeyOption::Append, "x-add", Some("new"))])];
    let mut h = request(
        "GET",
        "/",
        &[("X-Add", "old"), ("Host", "h"), ("X-Add", "dup")],
    );
    once(&rules, &mut h);
    // Existing lines stay; the new one joins the group, spelled like its first line.
    assert_eq!(
        lines(&h),
        ["X-Add: old", "Host: h", "X-Add: dup", "X-Add: new"]
    );
    assert_eq!(
        written(&h),
        ["Host: h", "X-Add: old", "X-Add: dup", "X-Add: new"]
    );

    let mut h = request("GET", "/", &[("Host", "h")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["Host: h", "x-add: new"]);
}

#[test]
fn header_set_replaces_and_drops_duplicates() {
    let rules = [m_req(vec![header(KeyOption::Set, "X-Set", Some("9"))])];
    let mut h = request("GET", "/", &[("X-Set", "1"), ("Y", "y"), ("x-set", "2")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["X-Set: 9", "Y: y"]);

    let mut h = request("GET", "/", &[("Y", "y")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["Y: y", "X-Set: 9"]);

    // Without `value` relayd's parser writes "*".
    let rules = [m_req(vec![header(KeyOption::Set, "X-Set", None)])];
    let mut h = request("GET", "/", &[("X-Set", "1")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["X-Set: *"]);
}

#[test]
fn matches_are_fixed_at_evaluation() {
    // Both `set` rules found no X-New when the tests ran, so both add a line.
    let rules = [
        m_req(vec![header(KeyOption::Set, "X-New", Some("a"))]),
        m_req(vec![header(KeyOption::Set, "X-New", Some("b"))]),
    ];
    let mut h = request("GET", "/", &[]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["X-New: a", "X-New: b"]);

    // An existing header: the second `set` wins and the group keeps one line.
    let mut h = request("GET", "/", &[("X-New", "0")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["X-New: b"]);

    // `append` then `set` on an existing header: the set drops the appended line too.
    let rules = [
        m_req(vec![header(KeyOption::Append, "X", Some("2"))]),
        m_req(vec![header(KeyOption::Set, "X", Some("3"))]),
    ];
    let mut h = request("GET", "/", &[("X", "1")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["X: 3"]);
}

#[test]
fn header_set_with_a_glob_key_takes_the_first_name_in_sorted_order() {
    let rules = [m_req(vec![header(KeyOption::Set, "X-*", Some("v"))])];
    let mut h = request("GET", "/", &[("X-B", "1"), ("X-A", "2")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["X-B: 1", "X-A: v"]);
}

#[test]
fn header_remove_drops_only_the_first_line() {
    let rules = [m_req(vec![header(KeyOption::Remove, "x-dup", None)])];
    let mut h = request(
        "GET",
        "/",
        &[
            ("X-Dup", "a"),
            ("Other", "o"),
            ("x-dup", "b"),
            ("X-DUP", "c"),
        ],
    );
    once(&rules, &mut h);
    // The survivors are written under the removed node's key.
    assert_eq!(lines(&h), ["Other: o", "X-Dup: b", "X-Dup: c"]);

    // Later options on the removed header are skipped, except `log`.
    let rules = [
        m_req(vec![header(KeyOption::Remove, "X-Dup", None)]),
        m_req(vec![header(KeyOption::Set, "X-Dup", Some("z"))]),
        m_req(vec![header(KeyOption::Log, "X-Dup", None)]),
    ];
    let mut h = request("GET", "/", &[("X-Dup", "a"), ("X-Dup", "b")]);
    let (log, _) = once(&rules, &mut h);
    assert_eq!(lines(&h), ["X-Dup: b"]);
    assert_eq!(log.line(), " [X-Dup: a (removed)] GET");
}

#[test]
fn hash_feeds_the_matched_values() {
    let rules = [
        m_req(vec![header(KeyOption::Hash, "X-Id", None)]),
        m_req(vec![
            et(Entity::Query, Some(KeyOption::Hash), "uid", None),
            et(Entity::Path, Some(KeyOption::Hash), "/app/*", None),
        ]),
        m_req(vec![et(Entity::Cookie, Some(KeyOption::Hash), "s", None)]),
    ];
    let mut h = request(
        "GET",
        "/app/x?a=1&uid=42",
        &[("X-Id", "abc"), ("Cookie", "s=1; t=2"), ("X-Id", "second")],
    );
    let (_, fed) = once(&rules, &mut h);
    assert_eq!(
        fed,
        [
            b"abc".to_vec(),
            b"42".to_vec(),
            b"/app/x".to_vec(),
            b"s=1; t=2".to_vec()
        ]
    );

    // `url hash` feeds the query (relayd's `kv_value` of the path/query pair).
    let rules = [m_req(vec![et(
        Entity::Url,
        Some(KeyOption::Hash),
        "foo.bar/app/",
        None,
    )])];
    let mut h = request("GET", "/app/x?q=1", &[("Host", "foo.bar")]);
    let (_, fed) = once(&rules, &mut h);
    assert_eq!(fed, [b"q=1".to_vec()]);
}

#[test]
fn log_sees_earlier_sets_but_not_appends() {
    let rules = [
        m_req(vec![header(KeyOption::Set, "A", Some("new"))]),
        m_req(vec![header(KeyOption::Append, "B", Some("more"))]),
        m_req(vec![header(KeyOption::Log, "A", None)]),
        m_req(vec![header(KeyOption::Log, "B", None)]),
    ];
    let mut h = request("GET", "/", &[("A", "old"), ("B", "orig")]);
    let (log, _) = once(&rules, &mut h);
    assert_eq!(log.line(), " [A: new] [B: orig] GET");
}

// ---------------------------------------------------------------------------------------
// Cookies and paths

#[test]
fn cookie_append_and_set_add_one_more_line() {
    let rules = [m_req(vec![et(
        Entity::Cookie,
        Some(KeyOption::Append),
        "sess",
        Some("1"),
    )])];
    let mut h = request("GET", "/", &[("Cookie", "a=b")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["Cookie: a=b", "Cookie: sess=1;"]);

    let rules = [m_resp(vec![et(
        Entity::Cookie,
        Some(KeyOption::Set),
        "sess",
        Some("2"),
    )])];
    let mut h = response(&[("Set-Cookie", "a=b"), ("Server", "x")]);
    once(&rules, &mut h);
    assert_eq!(
        written(&h),
        ["Server: x", "Set-Cookie: a=b", "Set-Cookie: sess=2;"]
    );

    // No value: the parser's "*".
    let rules = [m_req(vec![et(
        Entity::Cookie,
        Some(KeyOption::Set),
        "k",
        None,
    )])];
    let mut h = request("GET", "/", &[]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["Cookie: k=*;"]);
}

#[test]
fn cookie_remove_and_log_act_on_the_whole_cookie_line() {
    let rules = [
        m_req(vec![et(Entity::Cookie, Some(KeyOption::Log), "s", None)]),
        m_req(vec![et(Entity::Cookie, Some(KeyOption::Remove), "s", None)]),
    ];
    let mut h = request("GET", "/", &[("Cookie", "s=1; t=2"), ("Cookie", "u=3")]);
    let (log, _) = once(&rules, &mut h);
    assert_eq!(log.line(), " [Cookie: s=1; t=2] GET");
    assert_eq!(lines(&h), ["Cookie: u=3"]);
}

#[test]
fn path_options() {
    let set = [m_req(vec![et(
        Entity::Path,
        Some(KeyOption::Set),
        "/old*",
        Some("/new"),
    )])];
    let mut h = request("GET", "/old/x?q=1", &[]);
    once(&set, &mut h);
    assert_eq!(
        (h.path.as_slice(), h.query.as_deref()),
        (&b"/new"[..], Some(&b"q=1"[..]))
    );
    // Not matching: untouched.
    let mut h = request("GET", "/other", &[]);
    once(&set, &mut h);
    assert_eq!(h.path, b"/other");

    // `append` appends the key text.
    let append = [m_req(vec![et(
        Entity::Path,
        Some(KeyOption::Append),
        "/dir",
        None,
    )])];
    let mut h = request("GET", "/dir", &[]);
    once(&append, &mut h);
    assert_eq!(h.path, b"/dir/dir");

    let remove = [m_req(vec![et(
        Entity::Path,
        Some(KeyOption::Remove),
        "/secret/*",
        None,
    )])];
    let mut h = request("GET", "/secret/a?b", &[]);
    once(&remove, &mut h);
    assert_eq!(
        (h.path.as_slice(), h.query.as_deref()),
        (&b"/"[..], Some(&b"b"[..]))
    );

    for (path, n, want) in [
        ("/a/b/c", 1, "/b/c"),
        ("/a/b/c", 2, "/c"),
        ("/a/b/c", 5, "/c"),
        ("/a/b/c", 0, "/a/b/c"),
        ("/a/", 1, "/"),
        ("a/b", 1, "/b"),
        ("/", 3, "/"),
    ] {
        let mut strip = m_req(vec![]);
        strip.strip = Some(n);
        let mut h = request("GET", path, &[]);
        once(&[strip], &mut h);
        assert_eq!(String::from_utf8_lossy(&h.path), want, "{path} strip {n}");
    }
}

#[test]
fn a_macro_on_a_path_rule_replaces_the_query() {
    // relayd sets the match's value after the option; for a path that is the query.
    let rules = [m_req(vec![et(
        Entity::Path,
        Some(KeyOption::Set),
        "/a",
        Some("/$SERVER_NAME"),
    )])];
    let mut h = request("GET", "/a", &[]);
    once(&rules, &mut h);
    assert_eq!(h.path, b"/$SERVER_NAME");
    assert_eq!(h.query.as_deref(), Some(&b"/OpenBSD relayd"[..]));
}

// ---------------------------------------------------------------------------------------
// Legacy nodes

fn legacy(kind: Legacy, option: KeyOption, key: &str, value: &str) -> Rule {
    let mut t = header(option, key, Some(value));
    t.key = Key::Pattern(Pattern::glob(key, Case::Insensitive));
    let mut r = m_req(vec![t]);
    r.legacy = Some(kind);
    r
}

#[test]
fn legacy_append_joins_in_place() {
    let rules = [legacy(
        Legacy::AppendJoin,
        KeyOption::Append,
        "X-Forwarded-For",
        "$REMOTE_ADDR",
    )];
    let mut h = request(
        "GET",
        "/",
        &[
            ("Host", "h"),
            ("x-forwarded-for", "1.2.3.4"),
            ("Accept", "*/*"),
        ],
    );
    once(&rules, &mut h);
    assert_eq!(
        lines(&h),
        [
            "Host: h",
            "X-Forwarded-For: 1.2.3.4, 10.0.0.1",
            "Accept: */*"
        ]
    );

    // Missing: `K: V` after the other headers.
    let mut h = request("GET", "/", &[("Host", "h"), ("Accept", "*/*")]);
    once(&rules, &mut h);
    assert_eq!(
        lines(&h),
        ["Host: h", "Accept: */*", "X-Forwarded-For: 10.0.0.1"]
    );
}

#[test]
fn legacy_change_moves_the_line_to_the_end() {
    let rules = [legacy(Legacy::Change, KeyOption::Set, "Keep-Alive", "off")];
    let mut h = request("GET", "/", &[("A", "1"), ("keep-alive", "300"), ("B", "2")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["A: 1", "B: 2", "Keep-Alive: off"]);

    // Added when missing; relayd ≤ 5.5 knows no $HOST.
    let rules = [legacy(Legacy::Change, KeyOption::Set, "X-Host", "$HOST")];
    let mut h = request("GET", "/", &[("Host", "h")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["Host: h", "X-Host: $HOST"]);
}

// ---------------------------------------------------------------------------------------
// Runtime macros

#[test]
fn macros_on_requests() {
    let rules = [
        m_req(vec![header(
            KeyOption::Set,
            "X-Remote",
            Some("$REMOTE_ADDR:$REMOTE_PORT"),
        )]),
        m_req(vec![header(
            KeyOption::Append,
            "X-Server",
            Some("$SERVER_ADDR:$SERVER_PORT $SERVER_NAME $TIMEOUT $UNKNOWN $REMOTE"),
        )]),
        m_req(vec![header(KeyOption::Set, "X-Host", Some("[$HOST]"))]),
    ];
    let mut h = request("GET", "/", &[("Host", "www.example.com")]);
    once(&rules, &mut h);
    assert_eq!(
        lines(&h),
        [
            "Host: www.example.com",
            "X-Remote: 10.0.0.1:40000",
            "X-Server: 0.0.0.0:8080 OpenBSD relayd 600 $UNKNOWN $REMOTE",
            "X-Host: [www.example.com]",
        ]
    );

    // Without Host, $HOST is the relay's listen address.
    let mut h = request("GET", "/", &[]);
    once(&rules[2..], &mut h);
    assert_eq!(lines(&h), ["X-Host: [0.0.0.0]"]);

    // $HOST is cut to 127 bytes (relayd's ibuf[128]).
    let long = "h".repeat(200);
    let mut h = request("GET", "/", &[("Host", &long)]);
    once(&rules[2..], &mut h);
    assert_eq!(lines(&h)[1], format!("X-Host: [{}]", "h".repeat(127)));

    // IPv6 peers print like getnameinfo(NI_NUMERICHOST).
    let mut c = ctx();
    c.remote_addr = Some(ip("2001:db8::1"));
    let mut h = request("GET", "/", &[]);
    Session::new().try_run(&rules[..1], &mut h, &c).unwrap();
    assert_eq!(lines(&h), ["X-Remote: 2001:db8::1:40000"]);
}

#[test]
fn remote_macros_on_responses_are_the_backend() {
    let rules = [m_resp(vec![header(
        KeyOption::Append,
        "X-Backend",
        Some("$REMOTE_ADDR:$REMOTE_PORT via $SERVER_ADDR"),
    )])];
    let mut h = response(&[("Server", "x")]);
    once(&rules, &mut h);
    assert_eq!(
        lines(&h),
        ["Server: x", "X-Backend: 192.0.2.10:80 via 0.0.0.0"]
    );
}

#[test]
fn macro_quirks_and_failures() {
    // The new value is set first and $HOST then reads it (relayd's order).
    let rules = [m_req(vec![header(
        KeyOption::Set,
        "Host",
        Some("$HOST:8080"),
    )])];
    let mut h = request("GET", "/", &[("Host", "a")]);
    once(&rules, &mut h);
    assert_eq!(lines(&h), ["Host: $HOST:8080:8080"]);

    // A `log` value naming a macro overwrites the header before it is logged.
    let rules = [m_req(vec![header(KeyOption::Log, "X", Some("*$TIMEOUT*"))])];
    // (The test itself globs the value as written: the header must hold "$TIMEOUT".)
    let mut h = request("GET", "/", &[("X", "a$TIMEOUTb")]);
    let (log, _) = once(&rules, &mut h);
    assert_eq!(lines(&h), ["X: *600*"]);
    assert_eq!(log.line(), " [X: *600*] GET");

    // A result of 65535 bytes or more fails, and nothing is logged.
    let big = format!("{}$SERVER_NAME", "a".repeat(65_530));
    let rules = [m_req(vec![header(KeyOption::Set, "X", Some(&big))])];
    let mut h = request("GET", "/", &[]);
    let mut s = Session::new();
    assert_eq!(
        s.try_run(&rules, &mut h, &ctx()),
        Err(ApplyError::ExpansionTooLong)
    );
    assert_eq!(s.log.line(), "");

    // $REMOTE_ADDR without a peer address (relayd's cleared backend address).
    let rules = [m_resp(vec![header(
        KeyOption::Set,
        "X",
        Some("$REMOTE_ADDR"),
    )])];
    let mut c = backend_ctx();
    c.remote_addr = None;
    let mut h = response(&[]);
    assert_eq!(
        Session::new().try_run(&rules, &mut h, &c),
        Err(ApplyError::NoRemoteAddress)
    );
}

// ---------------------------------------------------------------------------------------
// Order: queued match rules, then the verdict rule's first option

#[test]
fn verdict_rule_options_come_last_and_only_the_first_applies() {
    let mut pass = rule(
        Action::Pass,
        Direction::Request,
        vec![
            header(KeyOption::Log, "A", None),
            et(Entity::Path, Some(KeyOption::Log), "/*", None),
        ],
    );
    pass.quick = false;
    let rules = [pass, m_req(vec![header(KeyOption::Log, "B", None)])];
    let mut h = request("GET", "/p", &[("A", "a"), ("B", "b")]);
    let (log, _) = once(&rules, &mut h);
    assert_eq!(log.line(), " [B: b] [A: a] GET");
}

#[test]
fn a_block_verdict_still_applies_and_logs() {
    let mut s = Session::new();
    s.labels = vec!["test_reject_label".to_string()];
    let mut label = m_req(vec![]);
    label.label = Some(SetOrClear::Set(0));
    let block = rule(
        Action::Block,
        Direction::Request,
        vec![et(Entity::Url, Some(KeyOption::Log), "foo.bar/0", None)],
    );
    let rules = [label, block];
    let mut h = request("GET", "/0", &[("Host", "foo.bar")]);
    s.run(&rules, &mut h);
    assert_eq!(s.log.line(), " [test_reject_label, foo.bar/0] GET");
}

#[test]
fn an_aborted_evaluation_applies_nothing() {
    let rules = [
        m_req(vec![header(KeyOption::Log, "A", None)]),
        rule(
            Action::Block,
            Direction::Request,
            vec![et(Entity::Url, None, "example.com/", None)],
        ),
    ];
    let mut h = request("GET", "/", &[("A", "a"), ("Host", "...")]);
    let (log, _) = once(&rules, &mut h);
    assert_eq!(log.as_str(), "");
}

// ---------------------------------------------------------------------------------------
// The session log buffer (relayd-logs.md §3)

#[test]
fn log_buffer_request_and_response() {
    let rules = [
        m_req(vec![header(KeyOption::Log, "X-Header-Client", None)]),
        m_resp(vec![header(KeyOption::Log, "X-Header-Server", None)]),
    ];
    let mut s = Session::new();
    s.run(
        &rules,
        &mut request("GET", "/", &[("X-Header-Client", "ABC")]),
    );
    s.run(&rules, &mut response(&[("X-Header-Server", "XYZ")]));
    assert_eq!(
        s.log.line(),
        " [X-Header-Client: ABC] GET {X-Header-Server: XYZ};"
    );
    assert_eq!(
        format!("done,{}", s.log.line()),
        "done, [X-Header-Client: ABC] GET {X-Header-Server: XYZ};"
    );
}

#[test]
fn log_buffer_removed_header() {
    let rules = [
        m_resp(vec![header(KeyOption::Remove, "X-Header-Foo", None)]),
        m_resp(vec![header(KeyOption::Log, "X-Header-Foo", None)]),
    ];
    let mut s = Session::new();
    s.run(&rules, &mut request("GET", "/", &[]));
    let mut resp = response(&[("X-Header-Foo", "foo"), ("Server", "s")]);
    s.run(&rules, &mut resp);
    assert_eq!(s.log.line(), " GET {X-Header-Foo: foo (removed)};");
    assert_eq!(lines(&resp), ["Server: s"]);
}

#[test]
fn log_buffer_keep_alive_gets() {
    let mut s = Session::new();
    for _ in 0..50 {
        s.run(&[], &mut request("GET", "/", &[]));
        // Nothing logged: responses add no ';'.
        s.run(&[], &mut response(&[]));
    }
    assert_eq!(s.log.line(), " GET".repeat(50));
    assert!(!s.log.has_log());
}

#[test]
fn log_buffer_path_url_query_and_digest() {
    let rules = [m_req(vec![et(
        Entity::Path,
        Some(KeyOption::Log),
        "/query",
        None,
    )])];
    let (log, _) = once(&rules, &mut request("GET", "/query?foobar", &[]));
    assert_eq!(log.line(), " [/query: foobar] GET");
    let (log, _) = once(&rules, &mut request("GET", "/query", &[]));
    assert_eq!(log.line(), " [/query] GET");

    let rules = [m_req(vec![et(
        Entity::Url,
        Some(KeyOption::Log),
        "foo.bar/foopath",
        None,
    )])];
    let (log, _) = once(
        &rules,
        &mut request("GET", "/foopath", &[("Host", "foo.bar")]),
    );
    assert_eq!(log.line(), " [foo.bar/foopath] GET");

    // Absolute-URI requests without Host: every url rule matches, the key is the path.
    let rules = [m_req(vec![et(
        Entity::Url,
        Some(KeyOption::Log),
        "foo.bar/64",
        None,
    )])];
    let mut s = Session::new();
    s.run(&rules, &mut request("HEAD", "http://foo.bar/64", &[]));
    s.run(&rules, &mut response(&[]));
    s.run(&rules, &mut request("GET", "http://foo.bar/64", &[]));
    assert_eq!(
        s.log.line(),
        " [http://foo.bar/64] HEAD; [http://foo.bar/64] GET"
    );

    let hex = relaydc_spec::filter::url::digest_hex(DigestAlg::Sha1, b"foo.bar/d");
    let digest = EntityTest {
        entity: Entity::Url,
        option: Some(KeyOption::Log),
        key: Key::Digest {
            alg: DigestAlg::Sha1,
            hex: hex.clone(),
        },
        value: ValueTest::Any,
        write: None,
    };
    let (log, _) = once(
        &[m_req(vec![digest])],
        &mut request("GET", "/d", &[("Host", "foo.bar")]),
    );
    assert_eq!(log.line(), format!(" [{hex}] GET"));

    let rules = [m_req(vec![et(
        Entity::Query,
        Some(KeyOption::Log),
        "k*",
        None,
    )])];
    let (log, _) = once(&rules, &mut request("GET", "/?a=1&key=v&kk=w", &[]));
    assert_eq!(log.line(), " [key: v] GET");
}

#[test]
fn log_buffer_table_switch_and_line_end() {
    // A request that switched tables marks the session logged: the response adds ';'.
    let mut fwd = m_req(vec![]);
    fwd.table = Some(1);
    let mut s = Session::new();
    s.run(std::slice::from_ref(&fwd), &mut request("GET", "/", &[]));
    s.run(&[], &mut response(&[]));
    assert_eq!(s.log.line(), " GET;");

    // The close line prints up to the first line end.
    let mut log = SessionLog::new();
    log.push_kv(Direction::Request, None, Some(b"k"), Some(b"a\r\nb"));
    log.push_request_end("GET");
    assert_eq!(log.line(), " [k: a");
    assert_eq!(log.as_str(), " [k: a\r\nb] GET");
    let mut log = SessionLog::new();
    log.push_kv(Direction::Response, Some("L"), None, None);
    assert_eq!(log.line(), " {L, (unknown)}");
    log.clear();
    assert_eq!((log.line(), log.has_log()), ("", false));
}

// ---------------------------------------------------------------------------------------
// return error pages

#[test]
fn error_page_403_with_label() {
    let page = ErrorPage {
        code: 403,
        message: "Forbidden",
        label: Some("<b>denied</b> by policy"),
        style: None,
        listen_addr: ip("127.0.0.1"),
        listen_port: 8080,
    };
    let want = "HTTP/1.0 403 Forbidden\r\n\
        Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
        Server: OpenBSD relayd\r\n\
        Connection: close\r\n\
        Content-Type: text/html\r\n\
        Content-Length: 449\r\n\
        \r\n\
        <!DOCTYPE html>\n\
        <html>\n\
        <head>\n\
        <title>403 Forbidden</title>\n\
        <style type=\"text/css\"><!--\n\
        body { background-color: #a00000; color: white; font-family: 'Comic Sans MS', \
        'Chalkboard SE', 'Comic Neue', sans-serif; }\n\
        hr { border: 0; border-bottom: 1px dashed; }\n\
        \n\
        --></style>\n\
        </head>\n\
        <body>\n\
        <h1>Forbidden</h1>\n\
        <div id='m'>Forbidden</div>\n\
        <div id='l'><b>denied</b> by policy</div>\n\
        <hr><address>OpenBSD relayd at 127.0.0.1 port 8080</address>\n\
        </body>\n\
        </html>\n";
    let got = page.render(784_111_777);
    assert_eq!(String::from_utf8(got.clone()).unwrap(), want);
    assert_eq!(got, want.as_bytes());
    assert_eq!(page.body().len(), 449);
}

#[test]
fn error_page_500_hides_the_message() {
    let page = ErrorPage {
        code: 500,
        message: "Cannot allocate memory",
        label: None,
        style: Some("body { color: black; }"),
        listen_addr: ip("::1"),
        listen_port: 443,
    };
    let want = "HTTP/1.0 500 Internal Server Error\r\n\
        Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n\
        Server: OpenBSD relayd\r\n\
        Connection: close\r\n\
        Content-Type: text/html\r\n\
        Content-Length: 288\r\n\
        \r\n\
        <!DOCTYPE html>\n\
        <html>\n\
        <head>\n\
        <title>500 Internal Server Error</title>\n\
        <style type=\"text/css\"><!--\n\
        body { color: black; }\n\
        --></style>\n\
        </head>\n\
        <body>\n\
        <h1>Internal Server Error</h1>\n\
        <div id='m'></div>\n\
        <div id='l'></div>\n\
        <hr><address>OpenBSD relayd at ::1 port 443</address>\n\
        </body>\n\
        </html>\n";
    assert_eq!(String::from_utf8(page.render(1_700_000_000)).unwrap(), want);
}

#[test]
fn reasons_dates_and_close_messages() {
    for (code, want) in [
        (400, "Bad Request"),
        (403, "Forbidden"),
        (405, "Method Not Allowed"),
        (406, "Not Acceptable"),
        (413, "Payload Too Large"),
        (500, "Internal Server Error"),
        (502, "Bad Gateway"),
        (504, "Gateway Timeout"),
    ] {
        assert_eq!(reason(code), Some(want));
    }
    assert_eq!(reason(499), None);
    assert_eq!(reason_or_unknown(499), "Unknown Error");
    assert_eq!(close_message("Forbidden", 403), "Forbidden (403 Forbidden)");
    assert_eq!(
        close_message("request headers too large", 413),
        "request headers too large (413 Payload Too Large)"
    );
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(http_date(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
    assert!(DEFAULT_STYLE.ends_with("dashed; }\n"));
}
