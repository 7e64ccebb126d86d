//! The semantics docs/testing.md promises, on small files in a temp dir.

use super::*;

const RULES: &str = r#"
[[rule]]
name = "hot"
source = "sample"
when = "temp > 50"
clear = "temp < 40"
for = "20s"
severity = "high"
playbook = "cool_down"
summary = "{{ temp }} degrees on {{ target }}"
annotations = { level = "{% if temp > 55 %}very {% endif %}hot", big = "{{ (temp * 1000)|humanize }}" }

[[rule]]
name = "storm"
source = "keyspace"
events = ["evicted"]
window = "30s"
when = "count > 10"
"#;

/// Runs `test` (the body of a test file, after its `rule_files` line) and
/// returns the summary and the report.
fn run(test: &str) -> (Summary, String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
    let path = dir.path().join("t.test.toml");
    std::fs::write(
        &path,
        format!("rule_files = [\"rules.toml\"]\nevaluation_interval = \"10s\"\n{test}"),
    )
    .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = run_files(&[path], None, &mut out, &mut err);
    let strip = |b: Vec<u8>| {
        String::from_utf8(b)
            .unwrap()
            .replace(&dir.path().display().to_string(), "DIR")
    };
    (summary, strip(out), strip(err))
}

fn passes(test: &str) {
    let (summary, out, err) = run(test);
    assert_eq!(summary.exit_code(), 0, "{out}{err}");
}

#[test]
fn pending_then_firing_then_resolved() {
    passes(
        r#"
[[test]]
name = "t"
[test.targets.a]
series = { temp = "60x2 45 30" }
[[test.expect]]
at = "10s"
alerts = [{ rule = "hot", state = "pending" }]
[[test.expect]]
at = "20s"
alerts = [{ rule = "hot", target = "a", summary = "60 degrees on a" }]
[[test.expect]]
# 45 is below `when` but above `clear`.
at = "30s"
alerts = [{ rule = "hot" }]
[[test.expect]]
at = "40s"
alerts = [{ rule = "hot", state = "inactive" }]
"#,
    );
}

#[test]
fn an_inactive_expectation_fails_on_a_pending_or_firing_alert() {
    let (summary, out, _) = run(r#"
[[test]]
name = "t"
[test.targets.a]
series = { temp = "60x9" }
[[test.expect]]
at = "30s"
alerts = [{ rule = "hot", state = "inactive" }]
"#);
    assert_eq!(summary.failed, 1, "{out}");
    assert!(out.contains("state  expected: inactive\n"), "{out}");
}

#[test]
fn runs_are_counted_since_the_previous_expectation_that_checks_them() {
    passes(
        r#"
[[test]]
name = "t"
[test.targets.a]
series = { temp = "60x10" }
[[test.expect]]
at = "10s"
alerts = [{ rule = "hot", state = "pending" }]
[[test.expect]]
at = "30s"
playbooks = [{ playbook = "cool_down", rule = "hot", target = "a", params = {} }]
[[test.expect]]
at = "1m"
playbooks = []
"#,
    );
}

#[test]
fn keyspace_counts_slide_out_of_the_window() {
    passes(
        r#"
[[test]]
name = "t"
[test.targets.a]
[[test.events]]
at = "5s"
keyspace = { rule = "storm", count = 11 }
[[test.expect]]
at = "5s"
alerts = [{ rule = "storm", value = "11" }]
[[test.expect]]
at = "30s"
alerts = [{ rule = "storm" }]
[[test.expect]]
at = "40s"
alerts = []
"#,
    );
}

#[test]
fn rendered_annotations_are_compared_exactly() {
    passes(
        r#"
[[test]]
name = "t"
[test.targets.a]
series = { temp = "60x3" }
[[test.expect]]
at = "20s"
alerts = [{ rule = "hot", annotations = { level = "very hot", big = "60k" } }]
"#,
    );
    let (summary, out, _) = run(r#"
[[test]]
name = "t"
[test.targets.a]
series = { temp = "60x3" }
[[test.expect]]
at = "20s"
alerts = [{ rule = "hot", annotations = { level = "hot", nope = "x" } }]
"#);
    assert_eq!(summary.failed, 1, "{out}");
    assert!(out.contains("annotations.level"), "{out}");
    assert!(out.contains("(no such annotation)"), "{out}");
}

#[test]
fn a_wrong_expectation_fails_with_the_difference() {
    let (summary, out, _) = run(r#"
[[test]]
name = "t"
[test.targets.a]
series = { temp = "60x3" }
[[test.expect]]
at = "20s"
alerts = [{ rule = "hot", summary = "hot", summary_match = "contains" }]
"#);
    assert_eq!((summary.passed, summary.failed, summary.broken_files), (0, 1, 0));
    assert_eq!(summary.cases.len(), 1);
    assert_eq!(summary.cases[0].name.as_deref(), Some("t"));
    assert!(!summary.cases[0].failures.is_empty());
    assert!(
        out.contains(concat!(
            "            summary  expected: containing \"hot\"\n",
            "                          got: \"60 degrees on a\"\n"
        )),
        "{out}"
    );
}

#[test]
fn a_broken_file_is_reported_and_exits_2() {
    let (summary, out, err) = run(r#"
[[test]]
name = "t"
[[test.expect]]
at = "soon"
alerts = []
"#);
    assert_eq!(summary.exit_code(), 2, "{out}{err}");
    assert!(err.contains("invalid duration `soon`"), "{err}");
    assert!(err.contains("--> DIR/t.test.toml:7:6\n"), "{err}");
}

#[test]
fn sentinel_events_land_on_the_node_they_are_about() {
    let sdown = crate::event::sentinel::parse_line("+sdown master mymaster 10.0.0.1 6379");
    assert_eq!(rule_test::sentinel_target("lab", &sdown), "lab/10.0.0.1:6379");
    let switch = crate::event::sentinel::parse_line("+switch-master mymaster 10.0.0.1 6379 10.0.0.2 6379");
    assert_eq!(rule_test::sentinel_target("lab", &switch), "lab");
}
