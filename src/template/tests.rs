//! Expected outputs of the Prometheus functions are those of Prometheus's
//! own tests (template/template_test.go), so an Alertmanager user's
//! annotation reads the same in redops.

use super::*;

fn render(text: &str, vars: &[(&str, Value)]) -> String {
    let vars: Vars = vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    Template::parse(text).unwrap().render(&vars).unwrap()
}

fn each(f: fn(f64) -> String, inputs: &[f64]) -> String {
    inputs.iter().map(|v| format!("{}:", f(*v))).collect()
}

#[test]
fn humanize_matches_prometheus() {
    assert_eq!(humanize(1_234_567.0), "1.235M");
    assert_eq!(each(humanize, &[0.0, 1.0, 1_234_567.0, 0.12]), "0:1:1.235M:120m:");
    assert_eq!(
        each(humanize, &[f64::INFINITY, f64::NEG_INFINITY, f64::NAN]),
        "+Inf:-Inf:NaN:"
    );
    assert_eq!(humanize(1e30), "1e+06Y");
    assert_eq!(humanize(-2500.0), "-2.5k");
}

#[test]
fn humanize1024_matches_prometheus() {
    assert_eq!(humanize1024(1_048_576.0), "1Mi");
    assert_eq!(each(humanize1024, &[0.0, 1.0, 1_048_576.0, 0.12]), "0:1:1Mi:0.12:");
    assert_eq!(humanize1024(1536.0), "1.5ki");
}

#[test]
fn humanize_duration_matches_prometheus() {
    assert_eq!(humanize_duration(3661.0), "1h 1m 1s");
    assert_eq!(
        each(
            humanize_duration,
            &[
                0.0,
                1.0,
                60.0,
                3600.0,
                86400.0,
                86400.0 + 3600.0,
                -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0),
                899.99
            ]
        ),
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:"
    );
    assert_eq!(
        each(humanize_duration, &[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]),
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"
    );
}

#[test]
fn humanize_percentage_matches_prometheus() {
    assert_eq!(
        each(humanize_percentage, &[0.0, 0.1, 0.01, 0.001, 0.1234567]),
        "0%:10%:1%:0.1%:12.35%:"
    );
}

#[test]
fn go_g4_switches_to_an_exponent_where_go_does() {
    assert_eq!(go_g4(1234.5), "1234");
    assert_eq!(go_g4(12345.0), "1.234e+04");
    assert_eq!(go_g4(0.0001234), "0.0001234");
    assert_eq!(go_g4(0.00001234), "1.234e-05");
    assert_eq!(go_g4(100.0), "100");
}

#[test]
fn filters_and_functions_render_in_templates() {
    let v = [("value", Value::from(1_234_567.0)), ("uptime", Value::from(3661))];
    assert_eq!(render("{{ value|humanize }}", &v), "1.235M");
    assert_eq!(render("{{ humanize(value) }}", &v), "1.235M");
    assert_eq!(render("{{ uptime|humanizeDuration }}", &v), "1h 1m 1s");
    assert_eq!(render("{{ 1048576|humanize1024 }}B", &v), "1MiB");
    assert_eq!(render("{{ 0.25|humanizePercentage }}", &v), "25%");
    assert_eq!(render("{{ \"%.2f\"|format(value) }}", &v), "1234567.00");
    assert_eq!(render("{{ printf(\"%.1f MB\", value / 1000000) }}", &v), "1.2 MB");
    assert_eq!(render("{{ \"redis down\"|title }}", &v), "Redis Down");
    assert_eq!(
        render("{{ \"a\"|toUpper }}{{ \"B\"|toLower }}{{ \"c\"|upper }}", &v),
        "AbC"
    );
    assert_eq!(
        render("{{ reReplaceAll(\":[0-9]+$\", \"\", \"10.0.0.1:6379\") }}", &v),
        "10.0.0.1"
    );
    assert_eq!(
        render("{{ \"10.0.0.1:6379\"|reReplaceAll(\"(.*):(.*)\", \"$2\") }}", &v),
        "6379"
    );
    assert_eq!(render("{% if value > 1000 %}big{% else %}small{% endif %}", &v), "big");
}

#[test]
fn numbers_print_as_metrics_do() {
    let v = [("a", Value::from(92.5)), ("b", Value::from(3.0)), ("c", Value::from(7))];
    assert_eq!(render("{{ a }} {{ b }} {{ c }}", &v), "92.50 3 7");
}

#[test]
fn labels_read_one_by_one_or_print_together() {
    let labels = BTreeMap::from([
        ("env".to_owned(), "prod".to_owned()),
        ("svc".to_owned(), "cache".to_owned()),
    ]);
    let v = [("labels", labels_value(&labels))];
    assert_eq!(
        render("{{ labels.env }} | {{ labels }}", &v),
        "prod | env=prod, svc=cache"
    );
    assert_eq!(render("{{ labels.nope|default(\"-\") }}", &v), "-");
}

#[test]
fn the_old_syntax_still_renders() {
    let v = [("memory_used_pct", Value::from(91.2)), ("target", Value::from("cache"))];
    assert_eq!(
        render("Memory at {{ memory_used_pct }}% on {{target}}", &v),
        "Memory at 91.20% on cache"
    );
}

#[test]
fn syntax_errors_and_unknown_filters_fail_to_parse_with_an_offset() {
    let e = Template::parse("ab {{ x").unwrap_err();
    assert!(e.message.contains("syntax error"), "{e:?}");
    assert!(e.offset.is_some(), "{e:?}");
    let e = Template::parse("value: {{ value|humanise }}").unwrap_err();
    assert!(e.message.contains("unknown filter"), "{e:?}");
    assert_eq!(e.offset, Some(16), "{e:?}");
    let e = Template::parse("{{ nope(1) }}").unwrap_err();
    assert!(e.message.contains("unknown function"), "{e:?}");
}

#[test]
fn variables_lists_what_the_template_reads() {
    let t = Template::parse("{{ a }} {{ labels.env }} {{ printf(\"%d\", b|humanize) }}").unwrap();
    assert_eq!(
        t.variables(),
        BTreeSet::from(["a".to_owned(), "b".to_owned(), "labels".to_owned()])
    );
    assert_eq!(t.offset_of("b"), Some(41));
    assert_eq!(t.offset_of("env"), None);
}

#[test]
fn runaway_templates_stop_and_fall_back_to_their_text() {
    let t =
        Template::parse("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}").unwrap();
    let e = t.render(&Vars::new()).unwrap_err();
    assert!(e.message.contains("fuel"), "{e:?}");
    assert_eq!(t.render_or_raw(&Vars::new(), "test"), t.source());
}

#[test]
fn a_missing_variable_is_a_render_error_not_an_empty_string() {
    let t = Template::parse("down: {{ reason }}").unwrap();
    assert!(t.render(&Vars::new()).is_err());
    assert_eq!(t.render_or_raw(&Vars::new(), "test"), "down: {{ reason }}");
    let t = Template::parse("{% if reason is defined %}{{ reason }}{% else %}up{% endif %}").unwrap();
    assert_eq!(t.render(&Vars::new()).unwrap(), "up");
}
