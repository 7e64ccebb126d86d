//! The docs do not contradict what redops does: claims that were true once
//! and became wrong (each fixed in the docs when the feature came) must not
//! come back. Each entry names the phrase and the feature that makes it false.

use std::fs;
use std::path::Path;

const STALE: &[(&str, &str)] = &[
    ("engines do not coordinate", "[ha] elects a leader (src/ha)"),
    ("`/` is 404", "the dashboard is served at / (src/api/dashboard.rs)"),
    (
        "After a restart every alert starts inactive",
        "firing alerts are restored from the state store at start",
    ),
    ("Alert state lives in memory", "alerts are kept in the state store"),
];

#[test]
fn no_document_repeats_a_claim_that_is_no_longer_true() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<_> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.extend(["README.md", "RELIABILITY.md"].iter().map(|f| root.join(f)));
    assert!(docs.len() > 5, "found only {docs:?}");
    let mut found = Vec::new();
    for doc in &docs {
        let text = fs::read_to_string(doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
        for (phrase, truth) in STALE {
            if text.contains(phrase) {
                found.push(format!("{} says \"{phrase}\", but {truth}", doc.display()));
            }
        }
    }
    assert!(found.is_empty(), "stale claims:\n{}", found.join("\n"));
}
