//! `relaydc check --format sarif` output validates against the OASIS SARIF 2.1.0 JSON schema.
//!
//! Where the schema comes from
//! ---------------------------
//! The schema is not copied into this repository and is not fetched from a web site. It comes
//! from a crates.io package, pinned exactly in the root `Cargo.toml`:
//! `serde-sarif = "=0.8.0"`, a dev-dependency of this package. That crate's published source
//! ships the OASIS schema as `src/schema.json` (a draft-07 document whose `$id` is the OASIS
//! TC's `sarif-spec/.../Schemata/sarif-schema-2.1.0.json`; its `artifact.roles` enum has the 23
//! values of the 2.1.0 release, unlike Microsoft's SDK variant shipped in the npm
//! `@microsoft/sarif-multitool-*` packages, which is a modified 2020-12 document).
//!
//! Because the crate is a dev-dependency, every `cargo test` has already downloaded and
//! unpacked it (cargo compiles all dev-dependencies before running a test), so no fetch script
//! and no extra CI step is needed. At run time the test asks `cargo metadata --offline` (for
//! the host platform only, so nothing else has to be downloaded) where the `serde-sarif`
//! package's manifest lives, which is correct whatever `CARGO_HOME`, registry mirror or
//! `cargo vendor` set-up is in use. The crate itself is never `use`d.
//!
//! A missing schema is a test failure, never a skip.
//!
//! No network during validation
//! ----------------------------
//! `jsonschema` is built with `default-features = false` (no HTTP or file resolver compiled
//! in), and the validator is built with `.offline()`, which refuses any `$ref` that is not
//! already in its registry. The SARIF schema only has local `#/definitions/...` references, and
//! its draft-07 meta-schema is bundled inside `jsonschema`. Formats (`uri`, `uri-reference`,
//! `date-time`, ...) are asserted, not treated as annotations.
//!
//! One liberty is taken with the published schema, in memory: its two `language` patterns hold
//! a lone `]` (legal in ECMA-262 Annex B, refused by `jsonschema`'s strict meta-schema check),
//! which is escaped to `\]`, matching exactly the same strings; see `normalise_patterns` and the
//! test `only_the_language_patterns_are_normalised`.
//!
//! The binary
//! ----------
//! `CARGO_BIN_EXE_relaydc` only exists for the compiler package's own tests, so this test runs
//! `cargo build -p relaydc --bin relaydc` into the same target dir and profile as this test
//! binary (a no-op when it is fresh, so a stale `target/debug/relaydc` is never tested), then
//! runs `<target>/<profile>/relaydc`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test that cannot read its own fixtures should fail loudly"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The crate that ships the schema, and the exact version pinned in the root `Cargo.toml`.
const SCHEMA_CRATE: &str = "serde-sarif";
const SCHEMA_CRATE_VERSION: &str = "0.8.0";
/// Where the schema sits inside that crate's source.
const SCHEMA_IN_CRATE: &str = "src/schema.json";

/// A test's error: shown as is (not `Debug`-quoted), so multi-line SARIF dumps stay readable.
struct Failure(String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure(s)
    }
}

type TestResult = Result<(), Failure>;

// ---------------------------------------------------------------------------------------------
// Locating things
// ---------------------------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

fn cargo() -> String {
    // `cargo test` sets CARGO for the processes it runs.
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn host_triple() -> Result<String, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(&rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("running `{rustc} -vV`: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .ok_or_else(|| format!("no `host:` line in `{rustc} -vV` output:\n{text}"))
}

/// Path of the SARIF 2.1.0 schema inside the `serde-sarif` package's source, via `cargo metadata`.
fn schema_path() -> Result<PathBuf, String> {
    let host = host_triple()?;
    let out = Command::new(cargo())
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(&host)
        .output()
        .map_err(|e| format!("running `cargo metadata`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo metadata` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("`cargo metadata` printed no JSON: {e}"))?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("`cargo metadata` output has no `packages` array")?;
    let pkg = packages
        .iter()
        .find(|p| p["name"] == SCHEMA_CRATE && p["version"] == SCHEMA_CRATE_VERSION)
        .ok_or_else(|| {
            format!(
                "package {SCHEMA_CRATE} {SCHEMA_CRATE_VERSION} is not in the dependency graph: \
                 it must stay a dev-dependency of relaydc-testsuite, pinned to that version"
            )
        })?;
    let manifest = pkg["manifest_path"]
        .as_str()
        .ok_or("serde-sarif package has no manifest_path")?;
    let dir = Path::new(manifest)
        .parent()
        .ok_or_else(|| format!("manifest path {manifest} has no parent"))?;
    let path = dir.join(SCHEMA_IN_CRATE);
    if !path.is_file() {
        return Err(format!(
            "SARIF schema not found at {} (package {SCHEMA_CRATE} {SCHEMA_CRATE_VERSION}); \
             this test never skips: the schema must be there",
            path.display()
        ));
    }
    Ok(path)
}

/// Builds `relaydc` (a no-op when fresh) into this test binary's target dir and profile, and
/// returns the executable's path.
fn build_relaydc() -> Result<PathBuf, String> {
    // This test runs as <target>/<profile>/deps/sarif-<hash>.
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("unexpected test binary location {}", exe.display()))?
        .to_path_buf();
    let profile_name = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("unexpected profile dir {}", profile_dir.display()))?
        .to_owned();
    let bin = profile_dir.join(format!("relaydc{}", std::env::consts::EXE_SUFFIX));

    // `--target <triple>` puts the profile dir one level deeper; rebuilding that layout is not
    // worth it, so use the binary if it is there (cargo test of the workspace builds it).
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("profile dir {} has no parent", profile_dir.display()))?;
    let cross = !target_dir.join("CACHEDIR.TAG").exists();
    if cross {
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("{} is missing: build relaydc first", bin.display()))
        };
    }

    let cargo_profile = match profile_name.as_str() {
        "debug" => "dev",
        other => other,
    };
    let out = Command::new(cargo())
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "build",
            "--quiet",
            "-p",
            "relaydc",
            "--bin",
            "relaydc",
            "--profile",
        ])
        .arg(cargo_profile)
        .output()
        .map_err(|e| format!("running `cargo build -p relaydc`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo build -p relaydc --profile {cargo_profile}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if !bin.is_file() {
        return Err(format!(
            "built relaydc, but {} does not exist",
            bin.display()
        ));
    }
    Ok(bin)
}

fn relaydc() -> Result<&'static Path, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(build_relaydc)
        .as_deref()
        .map_err(Clone::clone)
}

// ---------------------------------------------------------------------------------------------
// The validator
// ---------------------------------------------------------------------------------------------

fn load_schema() -> Result<Value, String> {
    let path = schema_path()?;
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let schema: Value =
        serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    // Make sure it is the schema we mean, so a re-pin to a different file is noticed.
    let title = schema["title"].as_str().unwrap_or_default();
    if !title.contains("SARIF") || !title.contains("2.1.0") {
        return Err(format!(
            "{} is not the SARIF 2.1.0 schema (title {title:?})",
            path.display()
        ));
    }
    if schema["$schema"] != "http://json-schema.org/draft-07/schema#" {
        return Err(format!(
            "{} declares $schema {}, the test builds a draft-07 validator",
            path.display(),
            schema["$schema"]
        ));
    }
    if schema["properties"]["version"]["enum"] != json!(["2.1.0"]) {
        return Err(format!("{} does not pin version to 2.1.0", path.display()));
    }
    Ok(schema)
}

/// Escapes each `]` that stands outside a character class.
///
/// ECMA-262 Annex B (the web-compatible grammar, which is what JSON Schema's "ECMA 262 regex"
/// means in practice) reads a lone `]` as itself, so escaping it changes nothing a pattern
/// matches. The OASIS schema's `run.language` and `toolComponent.language` patterns,
/// `^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$`, rely on that; `jsonschema` checks patterns with
/// the strict grammar when it validates a schema against the draft-07 meta-schema (always,
/// whatever the options), so it refuses the SARIF schema as published.
fn escape_lone_close_brackets(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let (mut escaped, mut in_class) = (false, false);
    for c in pattern.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' => in_class = true,
            ']' if in_class => in_class = false,
            ']' => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Applies [`escape_lone_close_brackets`] to every `pattern` keyword of `schema`; returns the
/// patterns it changed, as they were.
fn normalise_patterns(schema: &mut Value) -> Vec<String> {
    let mut changed = Vec::new();
    let mut stack = vec![schema];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if let (true, Value::String(p)) = (k == "pattern", &mut *x) {
                        let fixed = escape_lone_close_brackets(p);
                        if fixed != *p {
                            changed.push(std::mem::replace(p, fixed));
                        }
                    } else {
                        stack.push(x);
                    }
                }
            }
            Value::Array(a) => stack.extend(a.iter_mut()),
            _ => {}
        }
    }
    changed
}

fn sarif_validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let mut schema = load_schema()?;
            normalise_patterns(&mut schema);
            jsonschema::draft7::options()
                .offline()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| format!("the SARIF schema does not compile: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// All schema violations of `doc`, one per line, or Ok.
fn validate(doc: &Value) -> Result<(), String> {
    let validator = sarif_validator()?;
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("  at {:?}: {e}", e.instance_path().as_str()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} schema violation(s):\n{}",
            errors.len(),
            errors.join("\n")
        ))
    }
}

/// What the schema cannot say: one run, driver `relaydc`, every result's `ruleId` among the
/// driver's rules (and `ruleIndex`, when given, pointing at that rule). Returns the results'
/// effective levels.
fn check_structure(doc: &Value) -> Result<Vec<String>, String> {
    if doc["version"] != "2.1.0" {
        return Err(format!("version is {}, not \"2.1.0\"", doc["version"]));
    }
    let runs = doc["runs"].as_array().ok_or("`runs` is not an array")?;
    if runs.len() != 1 {
        return Err(format!("{} runs, expected exactly 1", runs.len()));
    }
    let run = &runs[0];
    let driver = &run["tool"]["driver"];
    if driver["name"] != "relaydc" {
        return Err(format!(
            "tool.driver.name is {}, not \"relaydc\"",
            driver["name"]
        ));
    }
    let empty = Vec::new();
    let rules = driver["rules"].as_array().unwrap_or(&empty);
    let mut levels = Vec::new();
    for (i, result) in run["results"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .enumerate()
    {
        let rule_id = result["ruleId"]
            .as_str()
            .ok_or_else(|| format!("results[{i}] has no ruleId"))?;
        let rule = rules
            .iter()
            .position(|r| r["id"] == rule_id)
            .ok_or_else(|| {
                format!("results[{i}].ruleId {rule_id:?} is not in tool.driver.rules")
            })?;
        if let Some(index) = result.get("ruleIndex") {
            if index.as_u64() != Some(rule as u64) {
                return Err(format!(
                    "results[{i}].ruleIndex is {index}, but rule {rule_id:?} is rules[{rule}]"
                ));
            }
        }
        // SARIF 2.1.0 §3.27.10: absent level = the rule's default configuration, else "warning".
        let level = result["level"]
            .as_str()
            .or_else(|| rules[rule]["defaultConfiguration"]["level"].as_str())
            .unwrap_or("warning");
        levels.push(level.to_owned());
    }
    Ok(levels)
}

// ---------------------------------------------------------------------------------------------
// Running the compiler
// ---------------------------------------------------------------------------------------------

/// `relaydc check --format sarif <file>` (file relative to the workspace root), parsed.
fn check_sarif(file: &str) -> Result<Value, String> {
    let root = workspace_root();
    if !root.join(file).is_file() {
        return Err(format!("{file} does not exist"));
    }
    let bin = relaydc()?;
    let out = Command::new(bin)
        .current_dir(&root)
        .args(["check", "--format", "sarif", file])
        .output()
        .map_err(|e| format!("running {}: {e}", bin.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code().is_none() {
        return Err(format!("relaydc was killed ({}):\n{stderr}", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "`relaydc check --format sarif {file}` ({}) did not print JSON: {e}\n\
             --- stdout ---\n{}\n--- stderr ---\n{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn check_file(file: &str) -> Result<Vec<String>, String> {
    let doc = check_sarif(file)?;
    let pretty = serde_json::to_string_pretty(&doc).unwrap_or_default();
    validate(&doc).map_err(|e| format!("{file}: {e}\n--- SARIF ---\n{pretty}"))?;
    check_structure(&doc).map_err(|e| format!("{file}: {e}\n--- SARIF ---\n{pretty}"))
}

#[test]
fn example5_sarif_is_valid_and_has_errors_and_warnings() -> TestResult {
    let levels = check_file("corpus/seed/example5.conf")?;
    assert!(
        !levels.is_empty(),
        "example5.conf: no results in the SARIF run"
    );
    assert!(
        levels.iter().any(|l| l == "error"),
        "example5.conf: no error-level result, levels: {levels:?}"
    );
    assert!(
        levels.iter().any(|l| l == "warning"),
        "example5.conf: no warning-level result, levels: {levels:?}"
    );
    Ok(())
}

#[test]
fn example1_sarif_is_valid() -> TestResult {
    check_file("corpus/seed/example1.conf")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The validator itself, on hand-written documents
// ---------------------------------------------------------------------------------------------

fn minimal_valid() -> Value {
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "relaydc",
                    "version": "0.1.0",
                    "informationUri": "https://example.invalid/relaydc",
                    "rules": [
                        {
                            "id": "E0001",
                            "name": "UnknownDirective",
                            "shortDescription": { "text": "unknown directive" },
                            "defaultConfiguration": { "level": "error" }
                        },
                        {
                            "id": "W0001",
                            "shortDescription": { "text": "deprecated directive" },
                            "defaultConfiguration": { "level": "warning" }
                        }
                    ]
                }
            },
            "artifacts": [{ "location": { "uri": "corpus/seed/example5.conf" } }],
            "results": [
                {
                    "ruleId": "E0001",
                    "ruleIndex": 0,
                    "level": "error",
                    "message": { "text": "unknown directive `frobnicate`" },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": "corpus/seed/example5.conf", "index": 0 },
                            "region": { "startLine": 3, "startColumn": 1, "endLine": 3, "endColumn": 11 }
                        }
                    }]
                },
                {
                    "ruleId": "W0001",
                    "ruleIndex": 1,
                    "message": { "text": "`prefork` is deprecated" },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": "corpus/seed/example5.conf" },
                            "region": { "startLine": 7 }
                        }
                    }]
                }
            ],
            "columnKind": "unicodeCodePoints",
            "language": "en-US"
        }]
    })
}

#[test]
fn validator_accepts_hand_written_sarif() -> TestResult {
    let doc = minimal_valid();
    validate(&doc)?;
    let levels = check_structure(&doc)?;
    assert_eq!(levels, ["error", "warning"]);
    Ok(())
}

#[test]
fn validator_rejects_invalid_sarif() -> TestResult {
    sarif_validator()?; // a schema that fails to compile must fail here, not "reject" everything
    type Mutation = fn(&mut Value);
    // (what, mutation, instance path the violation must be reported at)
    let cases: [(&str, Mutation, &str); 9] = [
        (
            "wrong version",
            |d| d["version"] = json!("2.0.0"),
            "/version",
        ),
        (
            "missing runs",
            |d| {
                if let Some(o) = d.as_object_mut() {
                    o.remove("runs");
                }
            },
            "",
        ),
        (
            "missing driver name",
            |d| {
                if let Some(o) = d["runs"][0]["tool"]["driver"].as_object_mut() {
                    o.remove("name");
                }
            },
            "/runs/0/tool/driver",
        ),
        (
            "unknown level",
            |d| d["runs"][0]["results"][0]["level"] = json!("fatal"),
            "/runs/0/results/0/level",
        ),
        (
            "message without text or id",
            |d| d["runs"][0]["results"][0]["message"] = json!({ "markdown": "**x**" }),
            "/runs/0/results/0/message",
        ),
        (
            "startLine below 1",
            |d| {
                d["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]
                    ["startLine"] = json!(0)
            },
            "/runs/0/results/0/locations/0/physicalLocation/region/startLine",
        ),
        (
            "unknown property",
            |d| d["runs"][0]["results"][0]["severity"] = json!("high"),
            "/runs/0/results/0",
        ),
        (
            "uri that is no uri-reference",
            |d| d["runs"][0]["artifacts"][0]["location"]["uri"] = json!("a b\\c|d"),
            "/runs/0/artifacts/0/location/uri",
        ),
        (
            "date-time that is no date-time",
            |d| {
                d["runs"][0]["invocations"] =
                    json!([{ "executionSuccessful": true, "startTimeUtc": "yesterday" }])
            },
            "/runs/0/invocations/0/startTimeUtc",
        ),
    ];
    for (what, mutate, path) in cases {
        let mut doc = minimal_valid();
        mutate(&mut doc);
        match validate(&doc) {
            Err(e) if e.contains(&format!("at {path:?}:")) => {}
            Err(e) => return Err(format!("{what}: no violation at {path:?}, but {e}").into()),
            Ok(()) => return Err(format!("{what}: the schema accepted an invalid document").into()),
        }
    }
    Ok(())
}

#[test]
fn structure_check_rejects_unknown_rule_and_wrong_driver() -> TestResult {
    let mut doc = minimal_valid();
    doc["runs"][0]["results"][1]["ruleId"] = json!("W9999");
    validate(&doc)?; // schema-valid ...
    assert!(
        check_structure(&doc).is_err(),
        "ruleId not among the rules was accepted"
    );

    let mut doc = minimal_valid();
    doc["runs"][0]["results"][0]["ruleIndex"] = json!(1);
    assert!(
        check_structure(&doc).is_err(),
        "ruleIndex pointing at another rule was accepted"
    );

    let mut doc = minimal_valid();
    doc["runs"][0]["tool"]["driver"]["name"] = json!("other");
    assert!(
        check_structure(&doc).is_err(),
        "a driver other than relaydc was accepted"
    );

    let mut doc = minimal_valid();
    if let Some(runs) = doc["runs"].as_array_mut() {
        runs.push(runs[0].clone());
    }
    validate(&doc)?;
    assert!(check_structure(&doc).is_err(), "two runs were accepted");
    Ok(())
}

#[test]
fn lone_close_brackets_are_escaped() {
    assert_eq!(
        escape_lone_close_brackets("^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$"),
        r"^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}\]?$"
    );
    assert_eq!(escape_lone_close_brackets(r"[\]]\]x]"), r"[\]]\]x\]");
    assert_eq!(escape_lone_close_brackets("[^]a]"), r"[^]a\]");
}

#[test]
fn only_the_language_patterns_are_normalised() -> TestResult {
    // The one liberty taken with the published schema; anything more would need a look.
    let mut schema = load_schema()?;
    let changed = normalise_patterns(&mut schema);
    let quirk = "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$";
    assert_eq!(changed, [quirk, quirk], "patterns rewritten: {changed:?}");
    assert_eq!(
        schema["definitions"]["run"]["properties"]["language"]["pattern"],
        r"^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}\]?$"
    );
    Ok(())
}

#[test]
fn schema_refs_are_all_local() -> TestResult {
    // Belt and braces for the offline validator: every `$ref` in the schema is a local pointer.
    fn walk(v: &Value, bad: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    if !r.starts_with('#') {
                        bad.push(r.clone());
                    }
                }
                o.values().for_each(|x| walk(x, bad));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, bad)),
            _ => {}
        }
    }
    let schema = load_schema()?;
    let mut bad = Vec::new();
    walk(&schema, &mut bad);
    assert!(
        bad.is_empty(),
        "non-local $ref in the SARIF schema: {bad:?}"
    );
    Ok(())
}
