//! The fuzz targets' seed corpora as a normal test: every file of `fuzz/corpus/TARGET/`
//! and `fuzz/regressions/TARGET/` (crash inputs a fuzzing run found, kept once fixed) goes
//! to the same entry function the fuzz target calls (`fuzz/src/entries.rs`, compiled here
//! as a module). It passes when nothing panics and the entry functions' assertions (the
//! limits and promises of the code under test) hold, each input within a time bound.
//! This, not a fuzzing run, is what CI does; `scripts/fuzz` runs the fuzzer.

#![allow(
    clippy::panic,
    reason = "a failing seed fails the test, naming its file"
)]

#[path = "../../fuzz/src/entries.rs"]
#[allow(dead_code, reason = "the fuzz crate's own items are used there")]
mod entries;

use relaydc_testsuite::workspace;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One input of a debug build may take this long (the fuzzer's own timeout is 10 s, on
/// an optimised build).
const PER_INPUT: Duration = Duration::from_secs(20);

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// Runs every seed and regression input of `target`; at least one seed must exist.
fn run(target: &str) {
    let Some(&(_, entry)) = entries::TARGETS.iter().find(|(name, _)| *name == target) else {
        panic!("no entry function for target {target}");
    };
    let fuzz = workspace().join("fuzz");
    let seeds = files(&fuzz.join("corpus").join(target));
    assert!(
        !seeds.is_empty(),
        "fuzz/corpus/{target}/ holds no seed input"
    );
    let regressions = files(&fuzz.join("regressions").join(target));
    let mut failed = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let Ok(data) = std::fs::read(path) else {
            panic!("cannot read {}", path.display());
        };
        let start = Instant::now();
        let result = std::panic::catch_unwind(|| entry(&data));
        let took = start.elapsed();
        let name = path
            .strip_prefix(&fuzz)
            .unwrap_or(path)
            .display()
            .to_string();
        match result {
            Err(_) => failed.push(format!("{name}: panicked (message above)")),
            Ok(()) if took > PER_INPUT => failed.push(format!("{name}: took {took:?}")),
            Ok(()) => {}
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of target {target} failed:\n  {}",
        failed.len(),
        seeds.len() + regressions.len(),
        failed.join("\n  ")
    );
    println!(
        "{target}: {} seeds, {} regressions passed",
        seeds.len(),
        regressions.len()
    );
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*

        /// The fuzz crate, its corpora and this test name the same targets.
        #[test]
        fn every_target_has_a_binary_a_corpus_and_a_test() {
            let tested = [$(stringify!($name)),*];
            let fuzz = workspace().join("fuzz");
            let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap_or_default();
            for (name, _) in entries::TARGETS {
                assert!(tested.contains(&name), "target {name} is not tested here");
                assert!(
                    fuzz.join("fuzz_targets").join(format!("{name}.rs")).is_file()
                        && manifest.contains(&format!("name = \"{name}\"")),
                    "target {name} has no fuzz_targets/{name}.rs or [[bin]] in fuzz/Cargo.toml"
                );
            }
            for dir in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(fuzz.join(dir)) else {
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    assert!(
                        entries::TARGETS.iter().any(|(t, _)| *t == name),
                        "fuzz/{dir}/{name} belongs to no target"
                    );
                }
            }
        }
    };
}

targets!(
    lexer,
    parser,
    compile,
    plan,
    request_head,
    response_head,
    chunked,
    filter,
    health,
    dns,
    control,
);
