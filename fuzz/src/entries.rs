//! One entry function per fuzz target. The targets in `fuzz/fuzz_targets/` call them with
//! libFuzzer's input; `testsuite/tests/fuzz_seeds.rs` compiles this file too and calls
//! them with every file of `fuzz/corpus/TARGET/` and `fuzz/regressions/TARGET/`.
//!
//! Each function runs the code under test the way relaydc or relayd-run runs it, and
//! asserts only what that code promises (documented there, or held by a property test):
//! a failed assertion is a bug as much as a panic inside. Inputs are bytes; where a target
//! needs structure (a rule list, a check, a split point), the input's first bytes or
//! first line give it, in a form a seed file can be written by hand.
//!
//! The compiler targets read no file outside an empty directory and the working
//! directory: absolute paths (`include "/etc/…"`, `ca file "/…"`) are looked up under the
//! empty directory as `--root` would, relative ones in the working directory, and inputs
//! that could spell `../` are skipped.

#![allow(clippy::panic, reason = "a fuzz harness fails by panicking")]

use relayd_run::http::{
    self, parse_request_head, parse_response_head, Body, Carry, ChunkedDecoder, HeadReader,
    HttpError, Method, Parsed,
};
use relaydc::diag::{self, Diagnostic, Diagnostics};
use relaydc::source::{PathRules, SourceMap, Span};
use relaydc_spec::filter::apply::{self, Actions, MacroContext, SessionLog};
use relaydc_spec::filter::eval::{evaluate, SessionState, Verdict};
use relaydc_spec::filter::head::Head;
use relaydc_spec::filter::{
    Action, Case, DigestAlg, Direction, Entity, EntityTest, Family, Key, KeyOption, Legacy,
    Pattern, Prefix, Rule, SetOrClear, ValueTest,
};
use relaydc_spec::plan::{self as plan_types, container, Check, HttpExpect};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A target's entry function.
pub type Entry = fn(&[u8]);

/// The targets, by the name of their directory in `fuzz/corpus/`.
pub const TARGETS: [(&str, Entry); 11] = [
    ("lexer", lexer),
    ("parser", parser),
    ("compile", compile),
    ("plan", plan),
    ("request_head", request_head),
    ("response_head", response_head),
    ("chunked", chunked),
    ("filter", filter),
    ("health", health),
    ("dns", dns),
    ("control", control),
];

/// relayd's default `headerlen` limit is 8192; the targets also try others.
const HEAD_LIMITS: [usize; 4] = [8192, 64, 1 << 16, 16];

/// At most this many messages per stream (requests, responses, pipelined heads).
const MAX_MESSAGES: usize = 8;

// ---------------------------------------------------------------------------------------
// Compiler: lexer + macro expander, parser, the whole front end

/// An empty directory: `--root` for the compiler targets.
fn empty_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join("relaydc-fuzz-empty-root");
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
    .clone()
}

/// Whether a path in the input could climb out of the working directory or the root
/// (to `/dev/zero`, say): `../` anywhere once backslashes and line ends (escapes,
/// continuations) are dropped.
fn could_climb(data: &[u8]) -> bool {
    let squeezed: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\\' | b'\n' | b'\r'))
        .collect();
    squeezed.windows(3).any(|w| w == b"../")
}

/// A configuration input: the text, with `#-D name=value` lines at its start (relayd
/// comments) as the `-D` arguments. `None` for inputs that could read outside the root.
fn config_input(data: &[u8]) -> Option<Config> {
    if could_climb(data) {
        return None;
    }
    let (text, lossy) = match String::from_utf8(data.to_vec()) {
        Ok(t) => (t, false),
        Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
    };
    let defines: Vec<String> = text
        .lines()
        .take_while(|l| l.starts_with("#-D "))
        .take(4)
        .map(|l| l["#-D ".len()..].to_string())
        .collect();
    let mut sources = SourceMap::new(PathRules {
        root: Some(empty_root()),
    });
    let main = sources.add("fuzz.conf", text);
    let mut diags = Diagnostics::default();
    if lossy {
        // As `load_main` does: invalid UTF-8 is replaced and reported, not refused.
        relaydc::lex::expand::report_not_utf8(&sources, main, &mut diags);
    }
    Some(Config {
        sources,
        main,
        defines,
        diags,
    })
}

/// A configuration input, loaded.
struct Config {
    sources: SourceMap,
    main: relaydc::source::FileId,
    defines: Vec<String>,
    diags: Diagnostics,
}

/// A span names a loaded file and lies inside its text.
fn check_span(sources: &SourceMap, span: Span, what: &str) {
    let files = sources.files().count();
    assert!(
        (span.file.0 as usize) < files,
        "{what}: span {span:?} names file {} of {files}",
        span.file.0
    );
    let len = sources.file(span.file).text.len();
    assert!(
        span.start <= span.end && span.end as usize <= len,
        "{what}: span {span:?} outside its file ({len} bytes)"
    );
}

fn check_diagnostics(sources: &SourceMap, diags: &[Diagnostic]) {
    for d in diags {
        let code = d.code.id();
        check_span(sources, d.primary, code);
        for l in &d.labels {
            check_span(sources, l.span, code);
        }
    }
}

/// Every renderer relaydc has, as `relaydc check --format …` runs them.
fn render(sources: &SourceMap, diags: &[Diagnostic]) {
    let mut out = Vec::new();
    let _ = diag::short::render(&mut out, sources, diags);
    let mut human = Vec::new();
    let _ = diag::human::render(
        &mut codespan_reporting::term::termcolor::NoColor::new(&mut human),
        sources,
        diags,
    );
    let _ = diag::json::document(sources, &[], diags).to_string();
    let _ = diag::sarif::document(sources, diags).to_string();
}

/// `lexer`: `lex::expand::lex` (raw tokens, macros with `-D`, includes, numbers,
/// keywords); every token, macro and diagnostic span lies inside its file.
pub fn lexer(data: &[u8]) {
    let Some(Config {
        mut sources,
        main,
        defines,
        mut diags,
    }) = config_input(data)
    else {
        return;
    };
    let lexed = relaydc::lex::expand::lex(&mut sources, main, &defines, &mut diags);
    for t in &lexed.tokens {
        check_span(&sources, t.span, "token");
        if let Some(o) = &t.origin {
            check_span(&sources, o.def, "macro origin");
        }
        let _ = t.tok.describe();
    }
    for m in &lexed.macros {
        check_span(&sources, m.name_span, "macro name");
        check_span(&sources, m.value_span, "macro value");
    }
    let diags = diags.sorted();
    check_diagnostics(&sources, &diags);
}

/// `parser`: lexer, then the LR(1) parser with error recovery, then the release judgement
/// (`era::judge`); diagnostics are rendered in every format.
pub fn parser(data: &[u8]) {
    let Some(Config {
        mut sources,
        main,
        defines,
        mut diags,
    }) = config_input(data)
    else {
        return;
    };
    let lexed = relaydc::lex::expand::lex(&mut sources, main, &defines, &mut diags);
    let ast = relaydc::parse::parse(&lexed.tokens, &mut diags);
    let judgement = relaydc::era::judge(&ast, None);
    let _ = judgement.reason();
    let diags = diags.sorted();
    check_diagnostics(&sources, &diags);
    render(&sources, &diags);
}

/// 2027-01-15: a fixed "now" for certificate checks.
const NOW: i64 = 1_800_000_000;

/// `compile`: the whole front end as `relaydc check` runs it (lex, parse, era, checks,
/// lowering, verifier, every renderer); a configuration without errors is then frozen
/// as `relaydc compile --late-bind` freezes it, and the plan it gives must load in
/// relayd-run (`load_bytes`), keep every backend choice in bounds and be shown by
/// `relaydc inspect`.
pub fn compile(data: &[u8]) {
    let Some(Config {
        mut sources,
        main,
        defines,
        mut diags,
    }) = config_input(data)
    else {
        return;
    };
    let lexed = relaydc::lex::expand::lex(&mut sources, main, &defines, &mut diags);
    let ast = relaydc::parse::parse(&lexed.tokens, &mut diags);
    let judgement = relaydc::era::judge(&ast, None);
    relaydc::check::run(
        &ast,
        &judgement,
        &lexed.tokens,
        &lexed.macros,
        &sources,
        relaydc::check::FileChecks::Lenient,
        NOW,
        &mut diags,
    );
    let config = relaydc::lower::lower(&ast, judgement.release, &sources.rules, &mut diags);
    let syntax_broken = diags.iter().any(|d| {
        d.severity == diag::Severity::Error && matches!(&d.code.id()[..4], "RD01" | "RD02")
    });
    relaydc::verify::run(&config, Span::new(main, 0, 0), syntax_broken, &mut diags);
    let _ = relaydc::verify::graph::dot(&config);
    let errors = diags.has_errors();
    let sorted = diags.sorted();
    check_diagnostics(&sources, &sorted);
    render(&sources, &sorted);
    if errors {
        return;
    }
    let names: Vec<String> = sources.files().map(|(_, f)| f.name.clone()).collect();
    let mut diags = Diagnostics::default();
    let frozen = relaydc::freeze::freeze(
        &config,
        judgement.release,
        names,
        &sources.rules,
        relaydc::freeze::Binding::Late,
        &mut diags,
    );
    if diags.has_errors() {
        return;
    }
    let body = plan_types::encode(&frozen.plan);
    let keys = plan_types::encode_keys(&frozen.keys);
    let (Ok(body), Ok(keys)) = (body, keys) else {
        panic!("a frozen plan does not encode");
    };
    let keys = if frozen.keys.keys.is_empty() {
        Vec::new()
    } else {
        keys
    };
    let file = container::write(
        "relaydc fuzz",
        container::Flags::LATE_BIND,
        [0; 32],
        &body,
        &keys,
    );
    match relayd_run::load_bytes(&file) {
        Ok(loaded) => {
            assert!(
                loaded.plan == frozen.plan,
                "the loaded plan differs from the frozen one"
            );
            inspect(&file, true);
            after_load(loaded);
        }
        Err(e) => panic!("relaydc accepted the configuration but relayd-run refuses its plan: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Plan decoder

/// `plan`: a plan file through the container (`read_header`, `open_public`) and
/// relayd-run's loader (`load_bytes`: header, digests, rkyv validation, keys, the index
/// checks of `validate`). Since a mutated file rarely keeps its digests, the input is
/// also resealed: bytes 256.. become body and keys (split by the input's keys length),
/// framed with fresh digests, and loaded again. Whatever loads must survive an encode /
/// decode round trip, `servable`, backend choices for every relay (the indexes
/// `validate` vouches for) and `relaydc inspect`; a body that decodes but fails
/// `validate` still goes through `relaydc inspect`, which does not validate.
pub fn plan(data: &[u8]) {
    let _ = container::read_header(data);
    let _ = container::open_public(data);
    if let Ok(loaded) = relayd_run::load_bytes(data) {
        after_load(loaded);
    }
    let Some(rest) = data.get(container::HEADER_LEN..) else {
        return;
    };
    let mut keys_len = [0u8; 8];
    keys_len.copy_from_slice(data.get(120..128).unwrap_or(&[0; 8]));
    let keys_len = usize::try_from(u64::from_le_bytes(keys_len))
        .unwrap_or(usize::MAX)
        .min(rest.len());
    let (body, keys) = rest.split_at(rest.len() - keys_len);
    let flags = if data.get(12).is_some_and(|f| f & 1 != 0) {
        container::Flags::LATE_BIND
    } else {
        container::Flags::EMPTY
    };
    let decoded = plan_types::decode(body).is_ok();
    let _ = plan_types::decode_keys(keys);
    let file = container::write("relaydc fuzz", flags, [0; 32], body, keys);
    match relayd_run::load_bytes(&file) {
        Ok(loaded) => {
            inspect(&file, true);
            after_load(loaded);
        }
        // A body that decodes but is not consistent: `relaydc inspect` shows it anyway.
        Err(_) if decoded => inspect(&file, false),
        Err(_) => {}
    }
}

/// What the runtime does with a plan it loaded, short of sockets.
fn after_load(loaded: relayd_run::Loaded) {
    let Ok(body) = plan_types::encode(&loaded.plan) else {
        panic!("a loaded plan does not encode");
    };
    match plan_types::decode(&body) {
        Ok(again) => assert!(again == loaded.plan, "encode/decode changed the plan"),
        Err(e) => panic!("a re-encoded plan does not decode: {e}"),
    }
    let _ = relayd_run::serve::servable(&loaded.plan);
    let _ = relayd_run::fuzzing::choose_everywhere(loaded.plan);
}

/// `relaydc inspect` (text and JSON) on a plan file; `loads`: relayd-run loads it, so
/// inspect must too.
fn inspect(file: &[u8], loads: bool) {
    // One file per call: the seed test runs targets on several threads.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let path = &std::env::temp_dir().join(format!("relaydc-fuzz-{}-{n}.plan", std::process::id()));
    if std::fs::write(path, file).is_err() {
        return;
    }
    for format in ["text", "json"] {
        let args = [
            "relaydc",
            "inspect",
            "--format",
            format,
            path.to_str().unwrap_or_default(),
        ];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = relaydc::cli::run(args.iter().map(Into::into).collect(), &mut out, &mut err);
        assert!(
            code == 0 || !loads,
            "relaydc inspect refuses a plan relayd-run loads: {}",
            String::from_utf8_lossy(&err)
        );
    }
    let _ = std::fs::remove_file(path);
}

// ---------------------------------------------------------------------------------------
// HTTP: request heads, response heads, chunked bodies

/// A control byte's choices: a head limit and a step for resumed reading.
fn knobs(ctl: u8) -> (usize, usize) {
    (HEAD_LIMITS[usize::from(ctl & 3)], 1 + usize::from(ctl >> 2))
}

/// Reads a head from `buf` resumably, `step` more bytes at a time, as a session does
/// while bytes trickle in.
fn read_in_steps(
    reader: &mut HeadReader,
    buf: &[u8],
    step: usize,
    head: &mut Head,
) -> Result<Parsed, HttpError> {
    let mut end = 0;
    loop {
        end = (end + step).min(buf.len());
        let r = reader.read(&buf[..end], head);
        if !matches!(r, Ok(Parsed::Incomplete)) || end == buf.len() {
            return r;
        }
    }
}

/// The properties `runtime/tests/http_codec.rs` holds the head parsers to: a complete
/// head lies inside the buffer, the resumed reading agrees with the one-shot one, and a
/// prefix is either incomplete or already gives the whole answer.
fn check_head(
    whole: &Result<Parsed, HttpError>,
    head: &Head,
    buf: &[u8],
    pieces: (Result<Parsed, HttpError>, &Head),
    prefix: Result<Parsed, HttpError>,
) {
    if let Ok(Parsed::Complete {
        head_len,
        version,
        code,
    }) = whole
    {
        assert!(
            *head_len <= buf.len(),
            "head_len {head_len} > {}",
            buf.len()
        );
        assert!(version.end <= *head_len && code.end <= *head_len);
        assert!(version.start <= version.end && code.start <= code.end);
        let bytes: usize = head.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(bytes <= *head_len, "headers hold more than the head");
    }
    let (piece_result, piece_head) = pieces;
    assert!(
        piece_result == *whole
            && (piece_head == head || !matches!(whole, Ok(Parsed::Complete { .. }))),
        "read in pieces: {piece_result:?}, at once: {whole:?}"
    );
    assert!(
        matches!(prefix, Ok(Parsed::Incomplete)) || prefix == *whole,
        "a prefix gave {prefix:?}, the whole buffer {whole:?}"
    );
}

/// What a relay writes for a head; the output stays proportional to the head.
fn write_out(head: &Head, head_len: usize, verbatim: Option<(&[u8], &[u8])>) {
    let mut out = Vec::new();
    match verbatim {
        Some((version, code)) => http::write_head_verbatim(head, version, code, &mut out),
        None => http::write_head(head, &mut out),
    }
    assert!(
        out.len() <= 2 * head_len + 64,
        "{} bytes written for a head of {head_len}",
        out.len()
    );
}

/// Passes over a body in `buf`: how many bytes it takes, or `None` when the stream ends
/// inside it (or it runs until close, or is invalid).
fn skip_body(body: Body, buf: &[u8]) -> Option<usize> {
    match body {
        Body::None => Some(0),
        Body::Length(n) => usize::try_from(n).ok().filter(|&n| n <= buf.len()),
        Body::UntilClose => None,
        Body::Chunked => {
            let mut out = Vec::new();
            let fed = ChunkedDecoder::new().feed(buf, &mut out).ok()?;
            fed.done.then_some(fed.consumed)
        }
    }
}

/// `request_head`: byte 0 picks the head limit and a step; the rest is what a client
/// sends on one connection. Each request head is parsed at once (`parse_request_head`),
/// resumed in steps (`HeadReader`) and as a prefix, then framed (`request_body`,
/// `websocket`, `needs_connection_close`) and written (`write_head`); its body is passed
/// over and the next pipelined request read with a restarted reader, as a keep-alive
/// session does.
pub fn request_head(data: &[u8]) {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let (limit, step) = knobs(ctl);
    let mut carry = Carry::Header;
    let mut reader = HeadReader::request(limit);
    let mut pos = 0;
    for _ in 0..MAX_MESSAGES {
        let buf = &stream[pos..];
        let mut head = Head::default();
        let whole = parse_request_head(buf, limit, &mut head);
        reader.restart_request(limit);
        let mut piece_head = Head::default();
        let pieces = read_in_steps(&mut reader, buf, step, &mut piece_head);
        let mut prefix_head = Head::default();
        let prefix = parse_request_head(&buf[..buf.len() / 2], limit, &mut prefix_head);
        check_head(&whole, &head, buf, (pieces, &piece_head), prefix);
        let Ok(Parsed::Complete { head_len, .. }) = whole else {
            return;
        };
        let Ok(framing) = http::request_body(&head, carry) else {
            return;
        };
        let upgrade = http::websocket(&head, ctl & 0x80 != 0);
        let _ = http::needs_connection_close(&head, &framing, upgrade == Ok(true));
        write_out(&head, head_len, None);
        let Some(body) = skip_body(framing.body, &buf[head_len..]) else {
            return;
        };
        carry = framing.next;
        pos += head_len + body;
    }
}

/// The request methods a response may answer, cycled through by the response targets.
fn answered(ctl: u8, i: usize) -> Option<Method> {
    const NAMES: [&[u8]; 7] = [b"GET", b"HEAD", b"POST", b"CONNECT", b"", b"PUT", b"TRACE"];
    Method::from_bytes(NAMES[(usize::from(ctl >> 4) + i) % NAMES.len()])
}

/// `response_head`: byte 0 picks the head limit, a step, whether websockets are on and
/// the requests answered (GET, HEAD, POST, CONNECT, none, …); the rest is what a backend
/// sends. Each response head is parsed at once, resumed and as a prefix, framed
/// (`websocket`, `response_body`) and written verbatim; its body is passed over and the
/// next response read, as a keep-alive session does.
pub fn response_head(data: &[u8]) {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let (limit, step) = knobs(ctl);
    let websockets = ctl & 0x40 != 0;
    let mut carry = Carry::Header;
    let mut reader = HeadReader::response(limit, None, carry);
    let mut pos = 0;
    for i in 0..MAX_MESSAGES {
        let req = answered(ctl, i);
        let buf = &stream[pos..];
        let mut head = Head::default();
        let whole = parse_response_head(buf, limit, req, carry, &mut head);
        reader.restart_response(limit, req, carry);
        let mut piece_head = Head::default();
        let pieces = read_in_steps(&mut reader, buf, step, &mut piece_head);
        let mut prefix_head = Head::default();
        let prefix =
            parse_response_head(&buf[..buf.len() / 2], limit, req, carry, &mut prefix_head);
        check_head(&whole, &head, buf, (pieces, &piece_head), prefix);
        let Ok(Parsed::Complete {
            head_len,
            version,
            code,
        }) = whole
        else {
            return;
        };
        let Ok(upgrade) = http::websocket(&head, websockets) else {
            return;
        };
        let Ok(framing) = http::response_body(req, &head, carry, upgrade) else {
            return;
        };
        let _ = http::needs_connection_close(&head, &framing, upgrade);
        write_out(&head, head_len, Some((version.of(buf), code.of(buf))));
        let Some(body) = skip_body(framing.body, &buf[head_len..]) else {
            return;
        };
        carry = framing.next;
        pos += head_len + body;
    }
}

/// Feeds `input` to a decoder in pieces of `step` bytes, keeping unconsumed bytes as a
/// relay does: the result, the output, and the bytes the body took.
fn feed_pieces(
    input: &[u8],
    step: usize,
    max_line: usize,
) -> (
    Result<(), relayd_run::http::ChunkError>,
    Vec<u8>,
    Option<usize>,
) {
    let mut dec = ChunkedDecoder::with_line_limit(max_line);
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut used = 0;
    for piece in input.chunks(step.max(1)) {
        pending.extend_from_slice(piece);
        match dec.feed(&pending, &mut out) {
            Err(e) => return (Err(e), out, None),
            Ok(fed) => {
                assert!(fed.consumed <= pending.len(), "consumed more than given");
                pending.drain(..fed.consumed);
                used += fed.consumed;
                if fed.done {
                    assert!(dec.is_done());
                    return (Ok(()), out, Some(used));
                }
            }
        }
    }
    (Ok(()), out, None)
}

/// `chunked`: byte 0 picks a line limit (64 KiB, 16, 1 KiB, 2) and a step; the rest is a
/// chunked body and what follows it. Decoded at once and in pieces: the results agree,
/// the body never takes more than it was given, and the output stays within twice the
/// input (chunk data is copied once, each line gets at most a CRLF).
pub fn chunked(data: &[u8]) {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let max_line = [http::CHUNK_LINE_MAX, 16, 1024, 2][usize::from(ctl & 3)];
    let step = 1 + usize::from(ctl >> 2);
    let whole = feed_pieces(input, input.len(), max_line);
    if let Some(used) = whole.2 {
        assert!(used <= input.len());
    }
    assert!(
        whole.1.len() <= 2 * input.len(),
        "{} bytes out of {}",
        whole.1.len(),
        input.len()
    );
    let pieces = feed_pieces(input, step, max_line);
    assert!(
        pieces == whole,
        "in pieces of {step}: {:?}, at once: {:?}",
        (&pieces.0, pieces.2),
        (&whole.0, whole.2)
    );
}

// ---------------------------------------------------------------------------------------
// Filter engine

/// Decodes `%XX` escapes, so a word can hold blanks and any byte.
fn unescape(word: &str) -> String {
    let b = word.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn prefix(text: &str) -> Option<Prefix> {
    let (addr, len) = text.split_once('/').unwrap_or((text, "128"));
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.parse::<u8>().ok()?.min(max);
    Some(Prefix { addr, len })
}

fn small_id(text: &str) -> Option<u32> {
    text.parse::<u32>().ok().map(|n| n % 4)
}

/// One rule in the targets' rule language (`fuzz/README.md`): relayd's words without
/// quotes, `key=`/`value=` forms, `%XX` escapes.
fn rule(line: &str) -> Option<Rule> {
    let mut words = line.split_whitespace();
    let action = match words.next()? {
        "pass" => Action::Pass,
        "block" => Action::Block,
        "match" => Action::Match,
        _ => return None,
    };
    let mut r = Rule {
        action,
        direction: Direction::Request,
        quick: false,
        family: None,
        from: None,
        to: None,
        method: None,
        tests: Vec::new(),
        tagged: None,
        tag: None,
        label: None,
        table: None,
        strip: None,
        legacy: None,
    };
    for w in words {
        let (k, v) = w.split_once('=').unwrap_or((w, ""));
        let v = unescape(v);
        let test = r.tests.last_mut();
        match (k, test) {
            ("request", _) => r.direction = Direction::Request,
            ("response", _) => r.direction = Direction::Response,
            ("quick", _) => r.quick = true,
            ("inet", _) => r.family = Some(Family::Inet),
            ("inet6", _) => r.family = Some(Family::Inet6),
            ("from", _) => r.from = prefix(&v),
            ("to", _) => r.to = prefix(&v),
            ("method", _) => r.method = Some(v),
            ("tagged", _) => r.tagged = small_id(&v),
            ("tag", _) => r.tag = small_id(&v).map(SetOrClear::Set),
            ("notag", _) => r.tag = Some(SetOrClear::Clear),
            ("label", _) => r.label = small_id(&v).map(SetOrClear::Set),
            ("nolabel", _) => r.label = Some(SetOrClear::Clear),
            ("forward", _) => r.table = small_id(&v),
            ("strip", _) => r.strip = v.parse().ok(),
            ("filter", _) => r.legacy = Some(Legacy::Filter),
            ("expect", _) => r.legacy = Some(Legacy::Expect),
            ("appendjoin", _) => r.legacy = Some(Legacy::AppendJoin),
            ("change", _) => r.legacy = Some(Legacy::Change),
            ("header" | "cookie" | "path" | "query" | "url", _) => {
                let entity = match k {
                    "header" => Entity::Header,
                    "cookie" => Entity::Cookie,
                    "path" => Entity::Path,
                    "query" => Entity::Query,
                    _ => Entity::Url,
                };
                // At most one test per entity, as the compiler lowers them.
                if r.tests.iter().all(|t| t.entity != entity) {
                    r.tests.push(EntityTest {
                        entity,
                        option: None,
                        key: Key::Any,
                        value: ValueTest::Any,
                        write: None,
                    });
                }
            }
            (_, None) => {}
            ("append", Some(t)) => t.option = Some(KeyOption::Append),
            ("set", Some(t)) => t.option = Some(KeyOption::Set),
            ("remove", Some(t)) => t.option = Some(KeyOption::Remove),
            ("hash", Some(t)) => t.option = Some(KeyOption::Hash),
            ("log", Some(t)) => t.option = Some(KeyOption::Log),
            ("key", Some(t)) => t.key = Key::Pattern(Pattern::glob(v, Case::Sensitive)),
            ("ikey", Some(t)) => t.key = Key::Pattern(Pattern::glob(v, Case::Insensitive)),
            ("lkey", Some(t)) => t.key = Key::Pattern(Pattern::Lua { text: v }),
            ("md5", Some(t)) => {
                t.key = Key::Digest {
                    alg: DigestAlg::Md5,
                    hex: v,
                }
            }
            ("sha1", Some(t)) => {
                t.key = Key::Digest {
                    alg: DigestAlg::Sha1,
                    hex: v,
                }
            }
            ("value", Some(t)) => {
                t.value = ValueTest::Matches(Pattern::glob(v, Case::Sensitive));
            }
            ("ivalue", Some(t)) => {
                t.value = ValueTest::Matches(Pattern::glob(v, Case::Insensitive));
            }
            ("lvalue", Some(t)) => t.value = ValueTest::Matches(Pattern::Lua { text: v }),
            ("noneof", Some(t)) => {
                t.value = ValueTest::NoneOf(
                    v.split(',')
                        .map(|p| Pattern::glob(p, Case::Insensitive))
                        .collect(),
                );
            }
            ("write", Some(t)) => t.write = Some(v),
            _ => {}
        }
    }
    Some(r)
}

/// The addresses of the session the filter target plays.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const BACKEND: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// What `evaluate` promises about its outcome.
fn check_outcome(rules: &[Rule], o: &relaydc_spec::filter::Outcome, queued: &[usize]) {
    assert_eq!(o.refusal.is_some(), o.verdict == Verdict::Block);
    if let Some(d) = o.decided_by {
        assert!(d < rules.len() && rules[d].action != Action::Match);
    }
    if let Some(a) = o.aborted_by {
        assert!(a < rules.len() && queued.is_empty() && o.decided_by.is_none());
    }
    assert!(queued.windows(2).all(|w| w[0] < w[1]), "queued {queued:?}");
    assert!(queued
        .iter()
        .all(|&q| rules.get(q).is_some_and(|r| r.action == Action::Match)));
}

/// Filters one head as a session does (`evaluate`, then `apply`); `false` when the
/// session would end (aborted, blocked, or the options failed).
fn filter_head(
    rules: &[Rule],
    labels: &[String],
    head: &mut Head,
    state: &mut SessionState,
    queued: &mut Vec<usize>,
    log: &mut SessionLog,
    dir: Direction,
) -> bool {
    head.direction = Some(dir);
    head.client = Some(CLIENT);
    head.local = Some(LOCAL);
    head.backend = (!state.backend_cleared).then_some(BACKEND);
    let before = state.table;
    let outcome = evaluate(rules, &*head, state, queued);
    check_outcome(rules, &outcome, queued);
    if outcome.aborted_by.is_some() {
        return false;
    }
    let ctx = MacroContext {
        remote_addr: Some(match dir {
            Direction::Request => CLIENT,
            Direction::Response => BACKEND,
        }),
        remote_port: 4711,
        server_addr: LOCAL,
        server_port: 8080,
        timeout_secs: 600,
    };
    let switched = dir == Direction::Request && state.table != before;
    let label = apply::label_text(state.label, labels);
    let mut fed = 0usize;
    let mut feed = |b: &[u8]| fed += b.len();
    let applied = apply::apply(
        rules,
        Actions::of(&outcome, queued, switched),
        head,
        &ctx,
        label,
        log,
        Some(&mut feed),
    );
    if dir == Direction::Request && state.table != before {
        // The runtime connects to the new table's backend.
        state.backend_cleared = false;
    }
    outcome.verdict == Verdict::Pass && applied.is_ok()
}

/// `filter`: rule lines (`fuzz/README.md`), a `---` line, then the client's requests
/// and the backend's responses, alternating on one stream. Each head is parsed, filtered
/// (`evaluate` with the session's sticky tag, label and table, then `apply` with the
/// runtime macros, hashing and the session log), framed and written as a session does.
/// `evaluate`'s outcome must keep its documented shape.
pub fn filter(data: &[u8]) {
    let Some(split) = data.windows(5).position(|w| w == b"\n---\n") else {
        return;
    };
    let rule_text = String::from_utf8_lossy(&data[..split]);
    let stream = &data[split + 5..];
    let rules: Vec<Rule> = rule_text.lines().filter_map(rule).take(64).collect();
    let labels: Vec<String> = (0..4).map(|i| format!("label {i}")).collect();
    let mut state = SessionState::default();
    let mut queued = Vec::new();
    let mut log = SessionLog::new();
    let (mut req_carry, mut res_carry) = (Carry::Header, Carry::Header);
    let mut pos = 0;
    for _ in 0..MAX_MESSAGES / 2 {
        let mut head = Head::default();
        let Ok(Parsed::Complete { head_len, .. }) =
            parse_request_head(&stream[pos..], HEAD_LIMITS[0], &mut head)
        else {
            break;
        };
        let method = Method::from_bytes(&head.method);
        let ok = filter_head(
            &rules,
            &labels,
            &mut head,
            &mut state,
            &mut queued,
            &mut log,
            Direction::Request,
        );
        if !ok {
            break;
        }
        let Ok(framing) = http::request_body(&head, req_carry) else {
            break;
        };
        if http::websocket(&head, true).is_err() {
            break;
        }
        let mut out = Vec::new();
        http::write_head(&head, &mut out);
        pos += head_len;
        let Some(body) = skip_body(framing.body, &stream[pos..]) else {
            break;
        };
        pos += body;
        req_carry = framing.next;

        let mut head = Head::default();
        let Ok(Parsed::Complete { head_len, .. }) =
            parse_response_head(&stream[pos..], HEAD_LIMITS[0], method, res_carry, &mut head)
        else {
            break;
        };
        let ok = filter_head(
            &rules,
            &labels,
            &mut head,
            &mut state,
            &mut queued,
            &mut log,
            Direction::Response,
        );
        if !ok {
            break;
        }
        let Ok(upgrade) = http::websocket(&head, true) else {
            break;
        };
        let Ok(framing) = http::response_body(method, &head, res_carry, upgrade) else {
            break;
        };
        let mut out = Vec::new();
        http::write_head(&head, &mut out);
        pos += head_len;
        let Some(body) = skip_body(framing.body, &stream[pos..]) else {
            break;
        };
        pos += body;
        res_carry = framing.next;
    }
    let _ = log.line();
}

// ---------------------------------------------------------------------------------------
// Health checks

/// The check of the `health` input's first line: `code N`, `digest HEX`, `expect GLOB`
/// (`send … expect`), `binary HEX` (`send … expect` with binary data).
fn health_check(line: &str) -> Check {
    let (kind, arg) = line.split_once(' ').unwrap_or((line, ""));
    let arg = unescape(arg);
    match kind {
        "code" => Check::Http {
            tls: false,
            path: "/".into(),
            host: None,
            expect: HttpExpect::Code(arg.trim().parse().unwrap_or(200)),
        },
        "digest" => Check::Http {
            tls: false,
            path: "/".into(),
            host: Some("h".into()),
            expect: HttpExpect::Digest(arg),
        },
        "binary" => Check::SendExpect {
            send: None,
            expect: arg
                .as_bytes()
                .chunks(2)
                .filter_map(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
                .collect(),
            binary: true,
            tls: false,
        },
        _ => Check::SendExpect {
            send: Some(b"PING\r\n".to_vec()),
            expect: arg.into_bytes(),
            binary: false,
            tls: false,
        },
    }
}

/// `health`: the first line says the check (`code 200`, `digest HEX`, `expect GLOB`,
/// `binary HEX`), the rest is what the backend answers. The answer is judged as the
/// checker judges it: `send … expect` after every read (here: every 7 bytes) until it
/// passes, every check on the whole answer at the end. A passing HTTP code check saw a
/// status line with that code; a binary expect passes exactly on its prefix.
pub fn health(data: &[u8]) {
    let (first, answer) = match data.iter().position(|&b| b == b'\n') {
        Some(n) => (&data[..n], &data[n + 1..]),
        None => (data, &[][..]),
    };
    let check = health_check(&String::from_utf8_lossy(first));
    // send/expect judges every read: a few growing prefixes stand for the reads. They
    // grow geometrically, so one input costs a few whole judgements: judging every
    // 7-byte prefix made an 8 KiB answer against a pattern of many `*` take seconds
    // (fuzz/regressions/health/timeout-52411c…), the harness's cost, not the matcher's
    // (fnmatch is O(pattern × answer) per call, as OpenBSD's).
    if let Check::SendExpect { .. } = check {
        let mut end = 7;
        while end < answer.len() {
            if relayd_run::fuzzing::health_judge(&check, &answer[..end]).0 {
                break;
            }
            end *= 2;
        }
    }
    let (up, text, code) = relayd_run::fuzzing::health_judge(&check, answer);
    assert!(!text.is_empty());
    match &check {
        Check::Http {
            expect: HttpExpect::Code(want),
            ..
        } if up => {
            assert!(answer.starts_with(b"HTTP/1.") && code == Some(0));
            assert!(answer.get(9..12) == Some(want.to_string().as_bytes()));
        }
        Check::SendExpect {
            expect,
            binary: true,
            ..
        } => assert_eq!(up, answer.starts_with(expect)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// DNS

/// `dns`: bytes 0–1 are the session's new ID, bytes 2–3 the query's length; then the
/// query a client sends and the answer a backend sends. A query is taken only with a
/// whole header and QR clear; the ID swap changes the first two bytes and nothing else;
/// an answer is taken back only with a whole header and the new ID, and then only its
/// ID changes (to the client's).
pub fn dns(data: &[u8]) {
    let (Some(id), Some(qlen)) = (data.get(..2), data.get(2..4)) else {
        return;
    };
    let new_id = u16::from_be_bytes([id[0], id[1]]);
    let rest = &data[4..];
    let qlen = usize::from(u16::from_be_bytes([qlen[0], qlen[1]])).min(rest.len());
    let (query, answer) = rest.split_at(qlen);
    let is_query = relayd_run::fuzzing::dns_is_query(query);
    assert_eq!(is_query, query.len() >= 12 && query[2] & 0x80 == 0);
    if !is_query {
        return;
    }
    let mut q = query.to_vec();
    let client_id = relayd_run::fuzzing::dns_replace_id(&mut q, new_id);
    assert_eq!(client_id, [query[0], query[1]]);
    assert_eq!(q[..2], new_id.to_be_bytes());
    assert_eq!(q[2..], query[2..]);
    let mut a = answer.to_vec();
    let taken = relayd_run::fuzzing::dns_restore_id(&mut a, new_id, client_id);
    assert_eq!(
        taken,
        answer.len() >= 12 && answer[..2] == new_id.to_be_bytes()
    );
    if taken {
        assert_eq!(a[..2], client_id);
        assert_eq!(a[2..], answer[2..]);
    } else {
        assert_eq!(a, answer);
    }
}

// ---------------------------------------------------------------------------------------
// Control socket

/// `control`: the input as a control-socket line, both ways: a request as the server
/// reads it (which must survive `to_line` and a second reading unchanged) and a response
/// as relayctl reads it, then formats it (`show summary|hosts|relays|redirects|routers`,
/// `show sessions`, `monitor` events). Each line is also a relayctl command line: its
/// words go through relayctl's parser, and the request it gives must survive the wire.
pub fn control(data: &[u8]) {
    use relayd_run::control::{format, parse, proto};
    if let Ok(req) = serde_json::from_slice::<proto::Request>(data) {
        round_trip(&req);
    }
    if let Ok(resp) = serde_json::from_slice::<proto::Response>(data) {
        let _ = proto::to_line(&resp);
        match &resp.reply {
            proto::Reply::Summary(s) => {
                for action in [
                    parse::Action::ShowSum,
                    parse::Action::ShowHosts,
                    parse::Action::ShowRdrs,
                    parse::Action::ShowRelays,
                    parse::Action::ShowRouters,
                ] {
                    let _ = format::summary(action, s);
                }
            }
            proto::Reply::Sessions { sessions } => {
                let _ = format::sessions(sessions);
            }
            proto::Reply::Event(e) => {
                let _ = format::event(e, NOW.unsigned_abs());
            }
            _ => {}
        }
    }
    for line in String::from_utf8_lossy(data).lines().take(16) {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        if let Ok(parsed) = parse::parse(&words) {
            if let Some(command) = parsed.command() {
                round_trip(&proto::Request {
                    v: proto::VERSION,
                    command,
                });
            }
        }
    }
}

fn round_trip(req: &relayd_run::control::proto::Request) {
    let Ok(line) = relayd_run::control::proto::to_line(req) else {
        panic!("a request does not serialise: {req:?}");
    };
    assert!(line.ends_with(b"\n") && line.iter().filter(|&&b| b == b'\n').count() == 1);
    match serde_json::from_slice::<relayd_run::control::proto::Request>(&line) {
        Ok(again) => assert_eq!(&again, req),
        Err(e) => panic!("a request line does not read back: {e}"),
    }
}
