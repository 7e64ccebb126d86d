//! `redops check` on broken inputs: each test writes a valid config dir,
//! breaks one thing, and asserts the exit code, the exact `file:line:col` and
//! a message that names the problem. Line and column numbers are counted by
//! hand from the text written, so a drift in position mapping fails here.
//!
//! No Redis is needed: `check` never connects.

mod harness;

use std::path::Path;
use std::process::Output;

use harness::{run_redops, write_file};

/// Lines numbered for the expected locations below.
const CONFIG: &str = r#"[engine]
rules_dir = "rules"
playbooks_dir = "playbooks"

[[target]]
name = "cache"
url = "redis://127.0.0.1:1/0"

[receiver.oncall]
type = "webhook"
url = "http://127.0.0.1:9/hook"
"#;

/// The line of [`CONFIG`] after which target keys can be added (line 8 on).
const TARGET_URL: &str = "url = \"redis://127.0.0.1:1/0\"\n";

const RULE: &str = r#"[[rule]]
name = "memory_high"
source = "sample"
when = "memory_used_pct > 85"
for = "2m"
playbook = "optimize_memory"
targets = ["cache"]
notify = ["oncall"]
"#;

const PLAYBOOK: &str = r#"let info = redis.info("memory");
let frag = info.mem_fragmentation_ratio;
if frag > 1.5 {
    redis.cmd(["MEMORY", "PURGE"]);
}
log.info(`fragmentation ${frag}`);
"#;

/// A config dir that `check` accepts.
fn valid_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("Failed to create a temp dir");
    write_file(dir.path(), "redops.toml", CONFIG);
    write_file(dir.path(), "rules/memory.toml", RULE);
    write_file(dir.path(), "playbooks/optimize_memory.rhai", PLAYBOOK);
    dir
}

/// The valid config with `extra` lines added to the target, from line 8.
fn config_with_target_lines(extra: &str) -> String {
    CONFIG.replacen(TARGET_URL, &format!("{TARGET_URL}{extra}"), 1)
}

fn check(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let config = dir.join("redops.toml");
    let config = config.to_str().expect("temp dir path is UTF-8");
    let mut all = vec!["check", "--config", config];
    all.extend_from_slice(args);
    run_redops(&all, env)
}

fn describe(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `<dir>/<rel>:line:col`, as check prints it.
fn at(dir: &Path, rel: &str, line: usize, col: usize) -> String {
    format!("{}:{line}:{col}", dir.join(rel).display())
}

/// Asserts exit code 2 and that stderr has a diagnostic whose message
/// contains each of `message_parts`, located at `location`. Returns stderr.
fn assert_error_at(out: &Output, location: &str, message_parts: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    let found = diagnostics(&stderr)
        .iter()
        .any(|d| d.contains(&format!("--> {location}\n")) && message_parts.iter().all(|part| d.contains(part)));
    assert!(
        found,
        "expected an error at {location} mentioning {message_parts:?}\n{}",
        describe(out)
    );
    stderr
}

/// The rendered diagnostics of stderr, one string each (message to hint).
fn diagnostics(stderr: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("error: ") || line.starts_with("warning: ") {
            out.push(String::new());
        }
        if let Some(current) = out.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    out
}

fn assert_summary(out: &Output, errors: usize) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("\n{errors} error(s), ")) || stderr.starts_with(&format!("{errors} error(s), ")),
        "expected {errors} error(s)\n{}",
        describe(out)
    );
}

// 1. Malformed TOML

#[test]
fn a_rule_key_without_a_value_is_located_after_the_equals_sign() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace("when = \"memory_used_pct > 85\"\n", "when =\n"),
    );
    let out = check(dir.path(), &[], &[]);
    // `when =` is six characters; the missing value is due in column 7.
    assert_error_at(&out, &at(dir.path(), "rules/memory.toml", 4, 7), &["missing value"]);
    assert_summary(&out, 1);
}

#[test]
fn an_unclosed_string_in_a_rule_is_located_at_the_end_of_its_line() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace("name = \"memory_high\"", "name = \"memory_high"),
    );
    let out = check(dir.path(), &[], &[]);
    // `name = "memory_high` is 19 characters: the closing quote is due at 20.
    assert_error_at(&out, &at(dir.path(), "rules/memory.toml", 2, 20), &["unclosed string"]);
    assert_summary(&out, 1);
}

#[test]
fn an_unclosed_multi_line_string_is_located_where_it_opens() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace("when = \"memory_used_pct > 85\"", "when = \"\"\"memory_used_pct > 85"),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 4, 8),
        &["unclosed multi-line string"],
    );
}

// 2. Unknown key in a rule

#[test]
fn an_unknown_rule_key_is_located_and_the_nearest_key_suggested() {
    let dir = valid_dir();
    write_file(dir.path(), "rules/memory.toml", &RULE.replace("when =", "whne ="));
    let out = check(dir.path(), &[], &[]);
    let stderr = assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 4, 1),
        &["unknown field `whne`", "= hint: did you mean `when`?"],
    );
    assert!(stderr.contains("4 | whne = \"memory_used_pct > 85\"\n"), "{stderr}");
    assert!(stderr.contains("  | ^^^^\n"), "the key is underlined: {stderr}");
    assert_summary(&out, 1);
}

#[test]
fn a_key_of_another_source_is_located_at_the_key_and_its_sources_named() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace("for = \"2m\"\n", "for = \"2m\"\ncron = \"0 * * * *\"\n"),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 6, 1),
        &[
            "`cron` is not a field of a `sample` rule",
            "= hint: `cron` belongs to schedule rules",
        ],
    );
    assert_summary(&out, 1);
}

#[test]
fn an_unknown_source_is_located_at_its_value_and_the_sources_listed() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace("source = \"sample\"", "source = \"sampel\""),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 3, 10),
        &[
            "`sampel` is not a rule source",
            "did you mean `sample`?",
            "\"schedule\", \"cluster\"",
        ],
    );
    assert_summary(&out, 1);
}

// 3. Unknown key in the config

#[test]
fn an_unknown_target_key_in_the_config_is_located() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "redops.toml",
        &config_with_target_lines("keyspace_event = \"Ex\"\n"),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "redops.toml", 8, 1),
        &["unknown field `keyspace_event`", "did you mean `keyspace_events`?"],
    );
    // The rule names the broken target: that is not a second problem.
    assert_summary(&out, 1);
}

// 4. Bad duration

#[test]
fn a_bad_duration_is_located_and_quoted() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace("for = \"2m\"", "for = \"5 minutes please\""),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 5, 7),
        &["invalid duration", "5 minutes please"],
    );
    assert_summary(&out, 1);
}

#[test]
fn a_bad_duration_in_the_engine_section_is_located() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "redops.toml",
        &CONFIG.replace(
            "playbooks_dir = \"playbooks\"\n",
            "playbooks_dir = \"playbooks\"\nsample_interval = \"often\"\n",
        ),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "redops.toml", 4, 19),
        &["invalid duration", "often"],
    );
    assert_summary(&out, 1);
}

// 5. Rhai syntax error in `when`

#[test]
fn a_syntax_error_in_when_points_inside_the_expression() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace("memory_used_pct > 85", "memory_used_pct >> > 85"),
    );
    let out = check(dir.path(), &[], &[]);
    // `when = "` is 8 characters; the stray `>` is the 20th of the expression.
    let stderr = assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 4, 28),
        &["invalid expression"],
    );
    assert!(stderr.contains("4 | when = \"memory_used_pct >> > 85\"\n"), "{stderr}");
    assert_summary(&out, 1);
}

#[test]
fn an_unknown_filter_in_an_annotation_is_located_inside_the_template() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &format!("{RULE}annotations = {{ detail = \"used {{{{ value|humanise }}}}\" }}\n"),
    );
    let out = check(dir.path(), &[], &[]);
    // Line 9: `annotations = { detail = "` is 26 characters, then
    // `used {{ value|humanise }}`: the filter's name starts at column 41.
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 9, 41),
        &["rule `memory_high`: annotations.detail", "unknown filter"],
    );
    assert_summary(&out, 1);
}

#[test]
fn a_template_syntax_error_in_a_multi_line_summary_is_located_on_its_line() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &format!("{RULE}summary = \"\"\"\nMemory on {{{{ target }}}}\n{{% if value > 90 %}}high\n\"\"\"\n"),
    );
    let out = check(dir.path(), &[], &[]);
    // The `if` on line 11 is never closed: the error is at the end of its
    // text, after `{% if value > 90 %}` (19 characters).
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 11, 20),
        &["rule `memory_high`: summary: syntax error"],
    );
    assert_summary(&out, 1);
}

#[test]
fn a_variable_a_health_rule_never_has_is_an_error_at_its_place() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        "[[rule]]\nname = \"down\"\nsource = \"health\"\nwhen = \"redis_up == 0\"\n\
         annotations = { why = \"{{ reason }} / {{ memory_used_pct }}\" }\n",
    );
    let out = check(dir.path(), &[], &[]);
    // `annotations = { why = "` is 23 characters; `{{ reason }} / {{ ` 18 more.
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 5, 42),
        &["annotations.why", "no health event has `memory_used_pct`"],
    );
    assert_summary(&out, 1);
}

#[test]
fn a_syntax_error_after_escaped_quotes_in_when_is_located() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace(
            "when = \"memory_used_pct > 85\"",
            r#"when = "role == \"master\" && memory_used_pct >> > 85""#,
        ),
    );
    let out = check(dir.path(), &[], &[]);
    // Each `\"` is two characters in the file but one in the expression.
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 4, 50),
        &["invalid expression"],
    );
}

#[test]
fn a_syntax_error_in_a_multi_line_when_is_located_on_its_own_line() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace(
            "when = \"memory_used_pct > 85\"",
            "when = \"\"\"\nrole == \"master\" &&\n  memory_used_pct >> > 85\n\"\"\"",
        ),
    );
    let out = check(dir.path(), &[], &[]);
    // TOML drops the newline after `"""`: the expression's 2nd line is the file's 6th.
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 6, 22),
        &["invalid expression"],
    );
}

// 6. Rhai syntax error in a playbook

#[test]
fn a_syntax_error_in_a_playbook_is_located_in_the_playbook() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "playbooks/optimize_memory.rhai",
        &PLAYBOOK.replace(
            "let frag = info.mem_fragmentation_ratio;",
            "let frag = info.mem_fragmentation_ratio * ;",
        ),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "playbooks/optimize_memory.rhai", 2, 43),
        &["playbook `optimize_memory`", "Unexpected ';'"],
    );
    // The rule naming the broken playbook is not a second problem.
    assert_summary(&out, 1);
}

// 7. Missing playbook

#[test]
fn a_misspelt_playbook_is_located_and_the_closest_suggested() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace("\"optimize_memory\"", "\"optimise_memory\""),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 6, 12),
        &[
            "names playbook `optimise_memory`, which does not exist",
            "= hint: did you mean `optimize_memory`?",
        ],
    );
    assert_summary(&out, 1);
}

#[test]
fn an_unknown_playbook_lists_the_available_ones() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace("\"optimize_memory\"", "\"restart_everything\""),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 6, 12),
        &[
            "`restart_everything`, which does not exist",
            "available playbooks: optimize_memory",
        ],
    );
}

// 8. Duplicate rule names

#[test]
fn two_rules_with_one_name_in_one_file_are_reported_at_the_second() {
    let dir = valid_dir();
    let second = RULE.replace("memory_used_pct > 85", "memory_used_pct > 95");
    write_file(dir.path(), "rules/memory.toml", &format!("{RULE}\n{second}"));
    let out = check(dir.path(), &[], &[]);
    // RULE is 8 lines and a blank one follows: the second `name` is on line 11.
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 11, 8),
        &["two rules are named `memory_high`", "the first is on line 2"],
    );
    assert_summary(&out, 1);
}

#[test]
fn two_rules_with_one_name_in_two_files_point_at_both() {
    let dir = valid_dir();
    // A comment and a description that quote the name must not confuse the
    // location: it is that of the `name` key.
    let other = format!(
        "# Stricter than \"memory_high\".\n{}",
        RULE.replace("for = \"2m\"", "description = \"like \\\"memory_high\\\"\"")
    );
    write_file(dir.path(), "rules/other.toml", &other);
    let out = check(dir.path(), &[], &[]);
    // Files load in name order: memory.toml holds the first.
    assert_error_at(
        &out,
        &at(dir.path(), "rules/other.toml", 3, 8),
        &[
            "two rules are named `memory_high`",
            &format!("the first is at {}", at(dir.path(), "rules/memory.toml", 2, 8)),
        ],
    );
    assert_summary(&out, 1);
}

// 9. Environment variables and secrets

#[test]
fn an_unset_environment_variable_is_named_and_located() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "redops.toml",
        &config_with_target_lines("password = \"${REDOPS_TEST_UNSET_XYZ}\"\n"),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "redops.toml", 8, 12),
        &["environment variable `REDOPS_TEST_UNSET_XYZ` is not set"],
    );
    assert_summary(&out, 1);
}

const SECRET: &str = "s3cr3t-value-123";

fn assert_secret_absent(out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !all.to_ascii_lowercase().contains(SECRET),
        "the secret leaked:\n{}",
        describe(out)
    );
}

#[test]
fn a_set_variable_used_as_a_password_never_appears_in_the_output() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "redops.toml",
        &config_with_target_lines("password = \"${REDOPS_TEST_SECRET}\"\n"),
    );
    write_file(dir.path(), "rules/memory.toml", &RULE.replace("when =", "whne ="));
    let env = [("REDOPS_TEST_SECRET", SECRET)];
    for format in ["text", "json"] {
        let out = check(dir.path(), &["--format", format], &env);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert_secret_absent(&out);
    }
}

#[test]
fn a_set_variable_is_redacted_from_messages_that_quote_it() {
    let dir = valid_dir();
    // Odd but possible: the value lands where messages quote what was written.
    let config = format!(
        "{CONFIG}\n[[target]]\nname = \"${{REDOPS_TEST_SECRET}}\"\nurl = \"${{REDOPS_TEST_SECRET}}\"\n\
         probes = {{ p = \"${{REDOPS_TEST_SECRET}}\" }}\n\n\
         [[target]]\nname = \"${{REDOPS_TEST_SECRET}}\"\nurl = \"redis://127.0.0.1:1/2\"\n"
    );
    write_file(dir.path(), "redops.toml", &config);
    let env = [("REDOPS_TEST_SECRET", SECRET)];
    for format in ["text", "json"] {
        let out = check(dir.path(), &["--format", format], &env);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert_secret_absent(&out);
    }
    let out = check(dir.path(), &[], &env);
    // Line 13 is the first extra target, line 18 the second.
    assert_error_at(
        &out,
        &at(dir.path(), "redops.toml", 13, 1),
        &["url must start with redis://"],
    );
    assert_error_at(
        &out,
        &at(dir.path(), "redops.toml", 13, 1),
        &["probe `p`", "not allowed"],
    );
    assert_error_at(
        &out,
        &at(dir.path(), "redops.toml", 18, 1),
        &["two targets are named `***`"],
    );
}

// 10. Every error in one run

#[test]
fn errors_in_rules_and_playbooks_are_all_reported_in_one_run() {
    let dir = valid_dir();
    write_file(dir.path(), "rules/memory.toml", &RULE.replace("when =", "whne ="));
    write_file(
        dir.path(),
        "rules/other.toml",
        &RULE
            .replace("memory_high", "memory_critical")
            .replace("for = \"2m\"", "for = \"soon\""),
    );
    write_file(
        dir.path(),
        "playbooks/warm_cache.rhai",
        "let keys = [\"a\", \"b\"\nlog.info(keys);\n",
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 4, 1),
        &["unknown field `whne`"],
    );
    assert_error_at(
        &out,
        &at(dir.path(), "rules/other.toml", 5, 7),
        &["invalid duration", "soon"],
    );
    assert_error_at(
        &out,
        &at(dir.path(), "playbooks/warm_cache.rhai", 2, 1),
        &["playbook `warm_cache`"],
    );
    assert_summary(&out, 3);
}

#[test]
fn config_errors_do_not_hide_errors_in_rules_and_playbooks() {
    let dir = valid_dir();
    // The rule names this target: it must not get a second error for it.
    write_file(
        dir.path(),
        "redops.toml",
        &config_with_target_lines("keyspace_event = \"Ex\"\n"),
    );
    // A `when` error still lets the rule's references be checked.
    write_file(
        dir.path(),
        "rules/memory.toml",
        &RULE.replace("memory_used_pct > 85", "memory_used_pct >> > 85"),
    );
    // The rule names this playbook too.
    write_file(dir.path(), "playbooks/optimize_memory.rhai", "let x = (1 + ;\n");
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "redops.toml", 8, 1),
        &["unknown field `keyspace_event`"],
    );
    assert_error_at(
        &out,
        &at(dir.path(), "rules/memory.toml", 4, 28),
        &["invalid expression"],
    );
    assert_error_at(
        &out,
        &at(dir.path(), "playbooks/optimize_memory.rhai", 1, 14),
        &["Unexpected ';'"],
    );
    assert_summary(&out, 3);
}

#[test]
fn an_engine_section_too_broken_to_name_the_dirs_stops_at_the_config() {
    let dir = valid_dir();
    write_file(
        dir.path(),
        "redops.toml",
        &CONFIG.replace("rules_dir = \"rules\"", "rules_dir = 5"),
    );
    // Were the default dirs read instead, this would be reported too.
    write_file(dir.path(), "rules/memory.toml", &RULE.replace("when =", "whne ="));
    let out = check(dir.path(), &[], &[]);
    assert_error_at(&out, &at(dir.path(), "redops.toml", 2, 13), &["invalid type"]);
    assert_summary(&out, 1);
}

// 11. Clean config and JSON output

#[test]
fn a_clean_config_passes() {
    let dir = valid_dir();
    let out = check(dir.path(), &[], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("ok: ") && stdout.contains("1 target(s), 1 rule(s), 1 playbook(s), 1 receiver(s)"),
        "{}",
        describe(&out)
    );
    assert!(out.stderr.is_empty(), "{}", describe(&out));

    let out = check(dir.path(), &["--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
}

#[test]
fn json_output_of_a_broken_config_carries_each_location() {
    let dir = valid_dir();
    write_file(dir.path(), "rules/memory.toml", &RULE.replace("when =", "whne ="));
    write_file(dir.path(), "playbooks/warm_cache.rhai", "let x = (1 + ;\n");
    let out = check(dir.path(), &["--format", "json"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // `--json`, as every other command spells it, says the same.
    let alias = check(dir.path(), &["--json"], &[]);
    assert_eq!(
        (alias.status.code(), &alias.stdout),
        (Some(2), &out.stdout),
        "{}",
        describe(&alias)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", describe(&out)));
    assert_eq!(json["ok"], false, "{json}");
    assert_eq!(json["errors"], 2, "{json}");
    assert_eq!(json["warnings"], 0, "{json}");
    let diags = json["diagnostics"].as_array().expect("diagnostics is an array");
    let find = |file: &str| {
        let file = dir.path().join(file).display().to_string();
        diags
            .iter()
            .find(|d| d["file"] == file.as_str())
            .unwrap_or_else(|| panic!("no diagnostic for {file}: {json}"))
    };
    let rule = find("rules/memory.toml");
    assert_eq!(rule["level"], "error", "{rule}");
    assert_eq!(
        (rule["line"].as_u64(), rule["col"].as_u64()),
        (Some(4), Some(1)),
        "{rule}"
    );
    assert!(
        rule["message"].as_str().unwrap_or("").contains("unknown field `whne`"),
        "{rule}"
    );
    assert_eq!(rule["hint"], "did you mean `when`?", "{rule}");
    let playbook = find("playbooks/warm_cache.rhai");
    assert_eq!(
        (playbook["line"].as_u64(), playbook["col"].as_u64()),
        (Some(1), Some(14)),
        "{playbook}"
    );
}

#[test]
fn an_incident_naming_an_unknown_rule_is_a_located_warning_and_a_bad_one_an_error() {
    let dir = valid_dir();
    let config = format!("{CONFIG}\n[[incident]]\ncause = \"memory_hihg\"\nexplains = [\"*\"]\nsame = [\"target\"]\n");
    write_file(dir.path(), "redops.toml", &config);
    let out = check(dir.path(), &["--strict"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = CONFIG.lines().count() + 2;
    let warning = diagnostics(&stderr)
        .into_iter()
        .find(|d| d.starts_with("warning: ") && d.contains("names rule `memory_hihg`"))
        .unwrap_or_else(|| panic!("no warning for the unknown rule\n{}", describe(&out)));
    assert!(
        warning.contains(&format!("--> {}\n", at(dir.path(), "redops.toml", line, 1))),
        "{warning}"
    );
    assert!(warning.contains("did you mean `memory_high`?"), "{warning}");
    assert_eq!(out.status.code(), Some(1), "--strict fails on it\n{}", describe(&out));

    // A key that is not an incident's is an error, located.
    write_file(dir.path(), "redops.toml", &format!("{config}hodl = \"30s\"\n"));
    let out = check(dir.path(), &[], &[]);
    assert_error_at(&out, &at(dir.path(), "redops.toml", line + 4, 1), &["hodl"]);
}

#[test]
fn an_alertmanager_resend_interval_that_lets_alerts_lapse_is_a_located_warning() {
    let dir = valid_dir();
    let config = format!(
        "{CONFIG}\n[receiver.am]\ntype = \"webhook\"\nformat = \"alertmanager\"\nurl = \"http://127.0.0.1:9/am\"\n\
         resend_interval = \"5m\"\n"
    );
    write_file(dir.path(), "redops.toml", &config);
    let out = check(dir.path(), &["--strict"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let warning = diagnostics(&stderr)
        .into_iter()
        .find(|d| d.starts_with("warning: ") && d.contains("resend_interval = \"5m\" lets firing alerts lapse"))
        .unwrap_or_else(|| panic!("no warning for resend_interval\n{}", describe(&out)));
    let line = CONFIG.lines().count() + 6;
    assert!(
        warning.contains(&format!("--> {}\n", at(dir.path(), "redops.toml", line, 19))),
        "{warning}"
    );
    assert_eq!(out.status.code(), Some(1), "--strict fails on it\n{}", describe(&out));

    // Under resolve_timeout: no such warning.
    write_file(dir.path(), "redops.toml", &config.replace("\"5m\"", "\"1m\""));
    let out = check(dir.path(), &[], &[]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("lapse"),
        "{}",
        describe(&out)
    );

    // On a receiver that is not an Alertmanager it means nothing: an error.
    write_file(
        dir.path(),
        "redops.toml",
        &format!("{CONFIG}resend_interval = \"1m\"\n"),
    );
    let out = check(dir.path(), &[], &[]);
    assert_error_at(
        &out,
        &at(dir.path(), "redops.toml", CONFIG.lines().count() + 1, 1),
        &["receiver `oncall`", "only for format = \"alertmanager\""],
    );
}
