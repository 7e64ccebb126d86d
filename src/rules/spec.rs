//! A rule as written in TOML: the fields every rule has, and a closed enum
//! of what each source adds.
//!
//! The `source` key picks the variant, as `#[serde(tag = "source")]` would;
//! it is read by hand because serde's internally tagged enums buffer the
//! table first, which loses the spans of `toml::Spanned` fields and of every
//! error, and `#[serde(flatten)]` cannot share the common fields while
//! `deny_unknown_fields` rejects strays. Instead each key of a `[[rule]]`
//! goes to the part that declares it (common, condition, or the source's
//! own), each part is deserialized on its own with `deny_unknown_fields`,
//! and a key no part of this source declares is reported where it is
//! written: as a field of another source, or as unknown with the nearest
//! valid key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::model::SourceKind;
use crate::alerts::Severity;
use crate::config::document;
use crate::diagnostics::{Diagnostic, Diagnostics, SourceFile};

/// The fields every rule has, whatever its source. A new common field is
/// one line here (and its use in `load::compile`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommonSpec {
    pub name: Spanned<String>,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    #[serde(default)]
    pub playbook: Option<Spanned<String>>,
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    #[serde(default, with = "crate::config::duration::option")]
    pub cooldown: Option<Duration>,
    #[serde(default)]
    pub summary: Option<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub targets: Vec<Spanned<String>>,
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, Spanned<String>>,
}

fn default_severity() -> Severity {
    Severity::Warning
}

/// A condition and how long it must hold: sample, keyspace and health rules.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConditionSpec {
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    #[serde(default, rename = "for", with = "crate::config::duration::option")]
    pub for_: Option<Duration>,
    #[serde(default, with = "crate::config::duration::option")]
    pub keep_firing_for: Option<Duration>,
    #[serde(default)]
    pub clear: Option<Spanned<String>>,
}

/// Which keyspace events a keyspace rule counts, and over what window.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyspaceSpec {
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub keys: Option<String>,
    #[serde(default, with = "crate::config::duration::option")]
    pub window: Option<Duration>,
    #[serde(default)]
    pub db: Option<u32>,
}

/// The events a sentinel or cluster rule fires and resolves on; `when`
/// only narrows them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventSpec {
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    #[serde(default)]
    pub events: Vec<Spanned<String>>,
    #[serde(default)]
    pub resolve_events: Vec<Spanned<String>>,
    #[serde(default, with = "crate::config::duration::option")]
    pub resolve_after: Option<Duration>,
}

/// When a schedule rule runs its playbook.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleFields {
    #[serde(default)]
    pub cron: Option<Spanned<String>>,
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub catch_up: Option<crate::cron::CatchUp>,
}

/// What a rule's source adds to the common fields: one variant per source,
/// each holding only the fields that source reads.
#[derive(Debug, Clone)]
pub(super) enum SourceSpec {
    Sample(ConditionSpec),
    Keyspace(ConditionSpec, KeyspaceSpec),
    Health(ConditionSpec),
    Sentinel(EventSpec),
    Schedule(ScheduleFields),
    Cluster(EventSpec),
}

impl SourceSpec {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceSpec::Sample(_) => SourceKind::Sample,
            SourceSpec::Keyspace(..) => SourceKind::Keyspace,
            SourceSpec::Health(_) => SourceKind::Health,
            SourceSpec::Sentinel(_) => SourceKind::Sentinel,
            SourceSpec::Schedule(_) => SourceKind::Schedule,
            SourceSpec::Cluster(_) => SourceKind::Cluster,
        }
    }
}

/// A `[[rule]]` as written.
#[derive(Debug, Clone)]
pub(super) struct RuleSpec {
    pub common: CommonSpec,
    pub source: SourceSpec,
}

/// What is wrong with the shape of a `[[rule]]`, before its values are read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("rule has no `source`")]
    MissingSource,
    #[error("`{given}` is not a rule source")]
    UnknownSource { given: String },
    #[error("`source` must be a string")]
    SourceNotAString,
    #[error("`{field}` is not a field of a `{kind}` rule")]
    WrongSource {
        field: String,
        kind: SourceKind,
        /// The sources that do read this field.
        belongs_to: Vec<SourceKind>,
    },
    #[error("unknown field `{field}` in a `{kind}` rule")]
    UnknownField { field: String, kind: SourceKind },
}

impl SpecError {
    pub fn hint(&self) -> String {
        match self {
            SpecError::MissingSource | SpecError::SourceNotAString => {
                format!("write source = one of {}", quoted_sources())
            }
            SpecError::UnknownSource { given } => {
                let names: Vec<&str> = SourceKind::ALL.iter().map(|k| k.as_str()).collect();
                match document::closest(given, &names) {
                    Some(best) => format!("did you mean `{best}`? sources are {}", quoted_sources()),
                    None => format!("sources are {}", quoted_sources()),
                }
            }
            SpecError::WrongSource {
                field,
                kind,
                belongs_to,
            } => {
                let owners = belongs_to.iter().map(|k| k.as_str()).collect::<Vec<_>>();
                let mut hint = format!("`{field}` belongs to {} rules", and_list(&owners));
                let why = match (kind, field.as_str()) {
                    (SourceKind::Schedule, "when" | "for" | "clear" | "keep_firing_for") => {
                        Some("a schedule runs its playbook on its clock and has no condition")
                    }
                    (SourceKind::Sentinel | SourceKind::Cluster, "for" | "clear" | "keep_firing_for") => Some(
                        "an event rule fires on each event and resolves on `resolve_events` or after `resolve_after`",
                    ),
                    _ => None,
                };
                if let Some(why) = why {
                    hint = format!("{hint}; {why}");
                }
                hint
            }
            SpecError::UnknownField { field, kind } => {
                let valid = fields_of(*kind);
                match document::closest(field, &valid) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("valid keys here: {}", valid.join(", ")),
                }
            }
        }
    }
}

fn quoted_sources() -> String {
    let names: Vec<String> = SourceKind::ALL.iter().map(|k| format!("\"{k}\"")).collect();
    names.join(", ")
}

/// "a", "a and b", "a, b and c".
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The keys a part declares, in serde's spelling (`for`, not `for_`).
type Part = fn() -> &'static [&'static str];

/// The parts a source's rules are made of, after the common one.
fn parts_of(source: SourceKind) -> &'static [Part] {
    match source {
        SourceKind::Sample | SourceKind::Health => &[field_names::<ConditionSpec>],
        SourceKind::Keyspace => &[field_names::<ConditionSpec>, field_names::<KeyspaceSpec>],
        SourceKind::Sentinel | SourceKind::Cluster => &[field_names::<EventSpec>],
        SourceKind::Schedule => &[field_names::<ScheduleFields>],
    }
}

/// Every key a rule of `source` may have, `source` included.
pub fn fields_of(source: SourceKind) -> Vec<&'static str> {
    let mut fields = vec!["source"];
    fields.extend(field_names::<CommonSpec>());
    for part in parts_of(source) {
        fields.extend(part());
    }
    fields
}

/// The field names a derived `Deserialize` struct declares. serde hands
/// them to `deserialize_struct`; this deserializer records them and stops.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Names<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("names read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut names));
    names
}

/// Reads one `[[rule]]`, reporting each problem with its location. `None`
/// means at least one diagnostic was pushed.
pub(super) fn read(file: &SourceFile, item: Spanned<DeValue<'_>>, diags: &mut Diagnostics) -> Option<RuleSpec> {
    let span = item.span();
    let DeValue::Table(table) = item.into_inner() else {
        diags.push(Diagnostic::error(file, span, "a rule is a table, written [[rule]]"));
        return None;
    };
    let mut entries: Vec<_> = table.into_iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);

    let source = match entries.iter().find(|(key, _)| key.get_ref() == "source") {
        None => Err((SpecError::MissingSource, name_span(&entries).unwrap_or(span.clone()))),
        Some((_, value)) => match value.get_ref() {
            DeValue::String(s) => SourceKind::from_name(s).ok_or_else(|| {
                let given = s.to_string();
                (SpecError::UnknownSource { given }, value.span())
            }),
            _ => Err((SpecError::SourceNotAString, value.span())),
        },
    };
    let source = match source {
        Ok(source) => source,
        Err((error, at)) => {
            push(file, at, &error, diags);
            return None;
        }
    };

    let common_names = field_names::<CommonSpec>();
    let parts = parts_of(source);
    let mut common = DeTable::new();
    let mut own: Vec<DeTable<'_>> = parts.iter().map(|_| DeTable::new()).collect();
    let errors_before = diags.error_count();
    for (key, value) in entries {
        let name: &str = key.get_ref();
        if name == "source" {
            continue;
        }
        if common_names.contains(&name) {
            common.insert(key, value);
        } else if let Some(i) = parts.iter().position(|part| part().contains(&name)) {
            own[i].insert(key, value);
        } else {
            let error = misplaced(name, source);
            push(file, key.span(), &error, diags);
        }
    }

    let table = |t| Spanned::new(span.clone(), DeValue::Table(t));
    let common = document::deserialize::<CommonSpec>(file, table(common), diags);
    let mut own = own.into_iter().map(table);
    let mut next_part = || own.next().expect("a table for each part of the source");
    let source = match source {
        SourceKind::Sample => document::deserialize(file, next_part(), diags).map(SourceSpec::Sample),
        SourceKind::Health => document::deserialize(file, next_part(), diags).map(SourceSpec::Health),
        SourceKind::Keyspace => {
            let condition = document::deserialize(file, next_part(), diags);
            let keyspace = document::deserialize(file, next_part(), diags);
            condition.zip(keyspace).map(|(c, k)| SourceSpec::Keyspace(c, k))
        }
        SourceKind::Sentinel => document::deserialize(file, next_part(), diags).map(SourceSpec::Sentinel),
        SourceKind::Cluster => document::deserialize(file, next_part(), diags).map(SourceSpec::Cluster),
        SourceKind::Schedule => document::deserialize(file, next_part(), diags).map(SourceSpec::Schedule),
    };
    if diags.error_count() > errors_before {
        return None;
    }
    Some(RuleSpec {
        common: common?,
        source: source?,
    })
}

/// Why a key no part of a `source` rule declares is there.
fn misplaced(field: &str, source: SourceKind) -> SpecError {
    let belongs_to: Vec<SourceKind> = SourceKind::ALL
        .into_iter()
        .filter(|k| parts_of(*k).iter().any(|part| part().contains(&field)))
        .collect();
    if belongs_to.is_empty() {
        SpecError::UnknownField {
            field: field.to_owned(),
            kind: source,
        }
    } else {
        SpecError::WrongSource {
            field: field.to_owned(),
            kind: source,
            belongs_to,
        }
    }
}

/// Where the rule's name is written, to locate a missing `source`.
fn name_span(entries: &[(Spanned<std::borrow::Cow<'_, str>>, Spanned<DeValue<'_>>)]) -> Option<std::ops::Range<usize>> {
    entries
        .iter()
        .find(|(key, _)| key.get_ref() == "name")
        .map(|(_, value)| value.span())
}

fn push(file: &SourceFile, at: std::ops::Range<usize>, error: &SpecError, diags: &mut Diagnostics) {
    diags.push(Diagnostic::error(file, at, error.to_string()).with_hint(error.hint()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_one(text: &str) -> (Option<RuleSpec>, Diagnostics) {
        let file = SourceFile::new("r.toml", text);
        let mut diags = Diagnostics::default();
        let root = document::parse(&file, &mut diags).expect("valid TOML");
        let (_, value) = root.into_inner().into_iter().next().expect("a [[rule]]");
        let item = crate::config::array_items(&file, value, "[[rule]]", &mut diags)
            .into_iter()
            .next()
            .expect("one rule");
        (read(&file, item, &mut diags), diags)
    }

    fn only_error(diags: &Diagnostics) -> &Diagnostic {
        let all: Vec<_> = diags.iter().collect();
        assert_eq!(all.len(), 1, "{}", diags.render());
        all[0]
    }

    #[test]
    fn field_names_follow_serde_renames() {
        assert_eq!(
            field_names::<ConditionSpec>(),
            ["when", "for", "keep_firing_for", "clear"]
        );
        assert!(field_names::<CommonSpec>().contains(&"name"));
    }

    #[test]
    fn each_source_reads_only_its_own_fields() {
        let (spec, diags) = read_one(
            "[[rule]]\nname = \"r\"\nsource = \"keyspace\"\nevents = [\"evicted\"]\nwindow = \"1m\"\nwhen = \"count > 1\"\n",
        );
        assert!(diags.is_empty(), "{}", diags.render());
        let Some(RuleSpec {
            source: SourceSpec::Keyspace(condition, keyspace),
            ..
        }) = spec
        else {
            panic!("a keyspace spec: {spec:?}");
        };
        assert_eq!(condition.when.map(|w| w.into_inner()).as_deref(), Some("count > 1"));
        assert_eq!(keyspace.events, ["evicted"]);
        assert_eq!(keyspace.window, Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_field_of_another_source_is_named_and_located() {
        let (spec, diags) =
            read_one("[[rule]]\nname = \"r\"\nsource = \"sample\"\ncron = \"0 * * * *\"\nwhen = \"true\"\n");
        assert!(spec.is_none());
        let d = only_error(&diags);
        assert_eq!(d.location(), "r.toml:4:1");
        let rendered = diags.render();
        assert!(
            rendered.contains("`cron` is not a field of a `sample` rule"),
            "{rendered}"
        );
        assert!(rendered.contains("`cron` belongs to schedule rules"), "{rendered}");
        assert_eq!(
            misplaced("events", SourceKind::Health),
            SpecError::WrongSource {
                field: "events".into(),
                kind: SourceKind::Health,
                belongs_to: vec![SourceKind::Keyspace, SourceKind::Sentinel, SourceKind::Cluster],
            }
        );
    }

    #[test]
    fn a_condition_field_on_an_event_rule_says_how_event_alerts_end() {
        let error = misplaced("for", SourceKind::Sentinel);
        assert_eq!(error.to_string(), "`for` is not a field of a `sentinel` rule");
        assert!(error.hint().contains("resolve_events"), "{}", error.hint());
        assert!(misplaced("when", SourceKind::Schedule).hint().contains("no condition"));
    }

    #[test]
    fn an_unknown_field_suggests_the_nearest_of_this_source() {
        assert_eq!(
            misplaced("whne", SourceKind::Sample),
            SpecError::UnknownField {
                field: "whne".into(),
                kind: SourceKind::Sample
            }
        );
        assert_eq!(misplaced("whne", SourceKind::Sample).hint(), "did you mean `when`?");
        assert_eq!(misplaced("crn", SourceKind::Schedule).hint(), "did you mean `cron`?");
    }

    #[test]
    fn a_missing_source_is_located_at_the_name_and_lists_the_sources() {
        let (spec, diags) = read_one("[[rule]]\nname = \"r\"\nwhen = \"true\"\n");
        assert!(spec.is_none());
        assert_eq!(only_error(&diags).location(), "r.toml:2:8");
        let rendered = diags.render();
        assert!(rendered.contains("rule has no `source`"), "{rendered}");
        assert!(rendered.contains("\"sample\", \"keyspace\", \"health\", \"sentinel\", \"schedule\", \"cluster\""));
    }

    #[test]
    fn an_unknown_source_is_located_at_its_value() {
        let (spec, diags) = read_one("[[rule]]\nname = \"r\"\nsource = \"sentinal\"\n");
        assert!(spec.is_none());
        assert_eq!(only_error(&diags).location(), "r.toml:3:10");
        assert!(diags.render().contains("did you mean `sentinel`?"));
        let (_, diags) = read_one("[[rule]]\nname = \"r\"\nsource = 3\n");
        assert!(diags.render().contains("`source` must be a string"));
    }

    #[test]
    fn every_misplaced_field_of_a_rule_is_reported_at_once() {
        let (_, diags) = read_one(
            "[[rule]]\nname = \"r\"\nsource = \"sample\"\nwhen = \"true\"\nkeys = \"a:*\"\nwindow = \"1m\"\ncron = \"x\"\n",
        );
        let locations: Vec<String> = diags.iter().map(Diagnostic::location).collect();
        assert_eq!(locations, ["r.toml:5:1", "r.toml:6:1", "r.toml:7:1"]);
    }
}
