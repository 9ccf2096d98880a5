//! `relaydc graph FILE`: the object graph as DOT.
//!
//! The OpenBSD example config's graph is a snapshot (`graph__openbsd_example.snap`);
//! every edge must join declared nodes, shared table instances must appear once, and a
//! file with errors still prints what could be resolved, with exit status 1.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test that cannot read its own fixtures should fail loudly"
)]

use relaydc_testsuite::workspace;
use std::collections::BTreeSet;

fn run(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("relaydc")
        .chain(args.iter().copied())
        .map(Into::into)
        .collect();
    let code = relaydc::cli::run(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn nodes_and_edges(dot: &str) -> (BTreeSet<String>, Vec<(String, String)>) {
    let mut nodes = BTreeSet::new();
    let mut edges = Vec::new();
    for line in dot.lines().map(str::trim) {
        if let Some((a, rest)) = line.split_once(" -> ") {
            let b = rest.split([' ', ';']).next().unwrap_or("");
            edges.push((a.to_string(), b.to_string()));
        } else if let Some((id, _)) = line.split_once(" [label=") {
            nodes.insert(id.to_string());
        }
    }
    (nodes, edges)
}

#[test]
fn openbsd_example_graph() {
    std::env::set_current_dir(workspace()).expect("workspace root");
    let (code, dot, _) = run(&[
        "graph",
        "--no-file-checks",
        "corpus/valid/openbsd-example.conf",
    ]);
    assert_eq!(code, 0);
    assert!(dot.starts_with("digraph relayd {"));
    let (nodes, edges) = nodes_and_edges(&dot);
    for (a, b) in &edges {
        assert!(nodes.contains(a) && nodes.contains(b), "edge {a} -> {b}");
    }
    // Relay "www" and redirect "www" both forward to <webhosts> port 80 with the same
    // check: relayd shares one instance, so one table node has two users.
    let users_of_table1 = edges.iter().filter(|(_, b)| b == "table1").count();
    assert_eq!(users_of_table1, 3, "{dot}");
    insta::assert_snapshot!("openbsd_example", dot);
}

#[test]
fn graph_of_a_file_with_errors() {
    std::env::set_current_dir(workspace()).expect("workspace root");
    let (code, dot, err) = run(&["graph", "corpus/invalid/RD0501-undefined-name.conf"]);
    assert_eq!(code, 1);
    assert!(err.contains("RD0501"), "{err}");
    let (nodes, _) = nodes_and_edges(&dot);
    assert!(
        nodes.contains("relay1") && nodes.contains("relay2"),
        "{dot}"
    );
}
