//! PromQL alert expressions → redops `when` conditions.
//!
//! A Prometheus alert fires for every series its expression returns; a
//! redops rule is evaluated on each target's sample and fires when its
//! condition is true. So a PromQL expression translates when it is, per
//! target, a comparison (or `and`/`or`/`unless` of comparisons) of
//! redis_exporter gauges, look-back functions and numbers. Aggregations
//! across instances translate only where a Sentinel group's own sample has
//! the same figure (`count(redis_instance_info{role="master"})` is
//! `masters_seen`). Everything else is refused with the reason.

use promql_parser::label::MatchOp;
use promql_parser::parser::{
    self, AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, VectorSelector,
};

use super::metric_map::{self, Mapped};

/// A translated condition, and what the reader should know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The Rhai expression for `when`.
    pub when: String,
    /// Where the meaning differs from Prometheus's, one line each.
    pub notes: Vec<String>,
    /// Whether it reads a Sentinel group's metrics (`masters_seen`, ...),
    /// which only the group's own sample has.
    pub group: bool,
}

/// Why an expression cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Untranslatable(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, Untranslatable> {
    Err(Untranslatable(why.into()))
}

/// Rhai's precedence, low to high: the translation adds parentheses only
/// where Rhai would otherwise group differently.
const OR: u8 = 1;
const AND: u8 = 2;
const CMP: u8 = 3;
const ADD: u8 = 5;
const MUL: u8 = 6;
const POW: u8 = 7;
const ATOM: u8 = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A number per target.
    Num,
    /// True or false per target.
    Bool,
}

/// Whose metrics a part reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Numbers only.
    Any,
    /// A node's sample.
    Node,
    /// A Sentinel group's sample.
    Group,
}

#[derive(Debug, Clone)]
struct Part {
    text: String,
    prec: u8,
    kind: Kind,
    scope: Scope,
}

impl Part {
    fn atom(text: impl Into<String>, kind: Kind, scope: Scope) -> Self {
        Part {
            text: text.into(),
            prec: ATOM,
            kind,
            scope,
        }
    }

    /// The text, in parentheses when a parent of precedence `parent` needs them.
    fn within(&self, parent: u8, right: bool) -> String {
        if self.prec < parent || (right && self.prec == parent) {
            format!("({})", self.text)
        } else {
            self.text.clone()
        }
    }
}

fn join_scope(a: Scope, b: Scope) -> Result<Scope, Untranslatable> {
    match (a, b) {
        (Scope::Any, s) | (s, Scope::Any) => Ok(s),
        (x, y) if x == y => Ok(x),
        _ => refuse(
            "it mixes a node's metrics with an aggregate over the instances: redops evaluates a node's sample and \
             a Sentinel group's sample apart",
        ),
    }
}

struct Translator {
    notes: Vec<String>,
}

impl Translator {
    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// Translates one alert expression.
pub fn translate(expr: &str) -> Result<Translated, Untranslatable> {
    let ast = parser::parse(expr).map_err(|e| Untranslatable(format!("PromQL does not parse: {e}")))?;
    let mut t = Translator { notes: Vec::new() };
    let part = t.expr(&ast)?;
    if part.kind != Kind::Bool {
        return refuse(
            "the expression is a value, not a condition: a Prometheus alert on it fires whenever the series \
             exists, and redops conditions are comparisons",
        );
    }
    Ok(Translated {
        when: part.text,
        notes: t.notes,
        group: part.scope == Scope::Group,
    })
}

impl Translator {
    fn expr(&mut self, e: &Expr) -> Result<Part, Untranslatable> {
        match e {
            Expr::NumberLiteral(n) => number(n.val),
            Expr::Paren(p) => {
                let inner = self.expr(&p.expr)?;
                if inner.prec == ATOM {
                    return Ok(inner);
                }
                Ok(Part::atom(format!("({})", inner.text), inner.kind, inner.scope))
            }
            Expr::Unary(u) => {
                let inner = self.num(&u.expr, "a minus sign")?;
                Ok(Part::atom(
                    format!("-{}", inner.within(ATOM, false)),
                    Kind::Num,
                    inner.scope,
                ))
            }
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::Binary(b) => self.binary_expr(b),
            Expr::Call(c) => self.call(c),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::MatrixSelector(m) => refuse(format!(
                "`{m}` is a range of samples; only a look-back function (delta, changes, avg_over_time, ...) over \
                 it translates"
            )),
            Expr::Subquery(_) => refuse("subqueries have no redops equivalent"),
            Expr::StringLiteral(_) => refuse("a string is not a condition"),
            Expr::Extension(_) => refuse("an extension expression has no redops equivalent"),
        }
    }

    fn num(&mut self, e: &Expr, what: &str) -> Result<Part, Untranslatable> {
        let part = self.expr(e)?;
        if part.kind != Kind::Num {
            return refuse(format!(
                "{what} of a condition (`{e}`): redops conditions are true or false, not filtered series"
            ));
        }
        Ok(part)
    }

    fn boolean(&mut self, e: &Expr, what: &str) -> Result<Part, Untranslatable> {
        let part = self.expr(e)?;
        if part.kind != Kind::Bool {
            return refuse(format!(
                "`{what}` with a value (`{e}`) rather than a condition: it selects series, which redops has no \
                 notion of"
            ));
        }
        Ok(part)
    }

    fn selector(&mut self, vs: &VectorSelector) -> Result<Part, Untranslatable> {
        if vs.offset.is_some() || vs.at.is_some() {
            return refuse(format!("`{vs}`: `offset` and `@` have no redops equivalent"));
        }
        let Some(name) = vs.name.as_deref() else {
            return refuse(format!("`{vs}` selects by labels only; redops metrics are named"));
        };
        let mut role = None;
        let mut db = None;
        for m in vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten())
        {
            match (m.name.as_str(), &m.op) {
                ("__name__", _) => {}
                ("job", _) => self.note(format!(
                    "the matcher {m} is dropped: a redops rule applies to every target unless `targets` names some"
                )),
                ("role", MatchOp::Equal | MatchOp::NotEqual) if name == metric_map::INSTANCE_INFO => {
                    role = Some((m.op.clone(), m.value.clone()));
                }
                ("db", MatchOp::Equal) => db = Some(m.value.clone()),
                _ => {
                    return refuse(format!(
                        "`{vs}`: the matcher {m} selects series by label; redops rules select targets with `targets`"
                    ));
                }
            }
        }
        if name == metric_map::INSTANCE_INFO {
            let Some((op, value)) = role else {
                return refuse(format!(
                    "`{vs}`: of redis_instance_info only the `role` label translates"
                ));
            };
            // The exporter says `slave`, as Redis does; redops says `replica`.
            let value = if value == "slave" { "replica".to_owned() } else { value };
            let op = if op == MatchOp::Equal { "==" } else { "!=" };
            return Ok(Part {
                text: format!("role {op} {}", quoted(&value)),
                prec: CMP,
                kind: Kind::Bool,
                scope: Scope::Node,
            });
        }
        if let Some((_, suffix, scale)) = metric_map::PER_DB.iter().find(|(from, _, _)| *from == name) {
            let Some(db) = db.filter(|d| d.strip_prefix("db").is_some_and(|n| n.parse::<u32>().is_ok())) else {
                return refuse(format!("`{vs}` needs a matcher db=\"dbN\" naming one database"));
            };
            return Ok(scaled(format!("{db}{suffix}"), *scale));
        }
        if db.is_some() {
            return refuse(format!("`{vs}`: `{name}` has no db label"));
        }
        if name == metric_map::LAST_SAVE_TIMESTAMP {
            return refuse(format!(
                "`{name}` translates only as `time() - {name}` (redops's seconds_since_last_save)"
            ));
        }
        match metric_map::lookup(name) {
            Some(Mapped::Gauge { name, scale }) => Ok(scaled(name.to_owned(), scale)),
            Some(Mapped::Counter { rate }) => refuse(format!(
                "`{name}` is a counter: redops keeps it as the rate `{rate}`, so only rate(), irate() or \
                 increase() over it translates"
            )),
            None => refuse(format!(
                "no redops metric for `{name}` (see docs/migrating-from-prometheus.md for the map)"
            )),
        }
    }

    fn binary_expr(&mut self, b: &BinaryExpr) -> Result<Part, Untranslatable> {
        let op = b.op.to_string();
        if let Some(m) = &b.modifier {
            if m.return_bool {
                return refuse(format!(
                    "`{op} bool` has no redops equivalent: conditions are true or false"
                ));
            }
            match &m.matching {
                None => {}
                Some(LabelModifier::Include(l)) if l.labels.iter().any(|l| l == "instance") => {}
                Some(LabelModifier::Exclude(l)) if !l.labels.iter().any(|l| l == "instance") => {}
                Some(other) => {
                    return refuse(format!(
                        "vector matching {} matches series across instances; a redops rule sees one target",
                        modifier_text(other, "on", "ignoring")
                    ));
                }
            }
        }
        // time() - redis_rdb_last_save_timestamp_seconds
        if op == "-"
            && let (Expr::Call(c), Expr::VectorSelector(vs)) = (strip(&b.lhs), strip(&b.rhs))
            && c.func.name == "time"
            && vs.name.as_deref() == Some(metric_map::LAST_SAVE_TIMESTAMP)
        {
            return Ok(Part::atom("seconds_since_last_save", Kind::Num, Scope::Node));
        }
        // (count(...) or vector(0)): the group's sample always has its counts.
        if op == "or"
            && let Expr::Call(c) = strip(&b.rhs)
            && c.func.name == "vector"
        {
            let lhs = self.expr(&b.lhs)?;
            if lhs.scope != Scope::Group {
                return refuse(
                    "`or vector(...)` gives a default to a series that may be absent; redops has no data then and \
                     changes no alert",
                );
            }
            self.note(format!(
                "`or {c}` is dropped: a Sentinel group's sample always carries its counts"
            ));
            return Ok(lhs);
        }
        match op.as_str() {
            "and" | "or" | "unless" => {
                let lhs = self.boolean(&b.lhs, &op)?;
                let rhs = self.boolean(&b.rhs, &op)?;
                let scope = join_scope(lhs.scope, rhs.scope)?;
                let (text, prec) = match op.as_str() {
                    "and" => (format!("{} && {}", lhs.within(AND, false), rhs.within(AND, true)), AND),
                    "or" => (format!("{} || {}", lhs.within(OR, false), rhs.within(OR, true)), OR),
                    _ => (format!("{} && !({})", lhs.within(AND, false), rhs.text), AND),
                };
                Ok(Part {
                    text,
                    prec,
                    kind: Kind::Bool,
                    scope,
                })
            }
            "==" | "!=" | ">" | "<" | ">=" | "<=" => {
                let lhs = self.num(&b.lhs, "a comparison")?;
                let rhs = self.num(&b.rhs, "a comparison")?;
                let scope = join_scope(lhs.scope, rhs.scope)?;
                Ok(Part {
                    text: format!("{} {op} {}", lhs.within(CMP + 1, false), rhs.within(CMP + 1, true)),
                    prec: CMP,
                    kind: Kind::Bool,
                    scope,
                })
            }
            "+" | "-" | "*" | "/" | "%" | "^" => {
                let lhs = self.num(&b.lhs, "arithmetic")?;
                let rhs = self.num(&b.rhs, "arithmetic")?;
                let scope = join_scope(lhs.scope, rhs.scope)?;
                let (rhai_op, prec) = match op.as_str() {
                    "+" | "-" => (op.as_str(), ADD),
                    "^" => ("**", POW),
                    _ => (op.as_str(), MUL),
                };
                // `^` groups to the right in both languages.
                let right_assoc = prec == POW;
                Ok(Part {
                    text: format!(
                        "{} {rhai_op} {}",
                        lhs.within(prec, right_assoc),
                        rhs.within(prec, !right_assoc)
                    ),
                    prec,
                    kind: Kind::Num,
                    scope,
                })
            }
            other => refuse(format!("the operator `{other}` has no redops equivalent")),
        }
    }

    fn call(&mut self, c: &Call) -> Result<Part, Untranslatable> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
        match (name, args.as_slice()) {
            ("abs" | "ceil" | "floor", [arg]) => {
                let inner = self.num(arg, name)?;
                Ok(Part::atom(format!("{name}({})", inner.text), Kind::Num, inner.scope))
            }
            (_, [Expr::MatrixSelector(m)]) => self.look_back(name, m),
            ("absent" | "absent_over_time", _) => refuse(format!(
                "{name}() has no redops equivalent: a target that stops answering is a `redis_up == 0` or a \
                 health rule's business"
            )),
            ("time", _) => refuse("time() translates only as `time() - redis_rdb_last_save_timestamp_seconds`"),
            _ => refuse(format!("{name}() has no redops equivalent")),
        }
    }

    /// `f(metric[window])`: redops's look-back functions.
    fn look_back(&mut self, func: &str, m: &MatrixSelector) -> Result<Part, Untranslatable> {
        let window = humantime::format_duration(m.range).to_string();
        if let Some(name) = m.vs.name.as_deref()
            && let Some(Mapped::Counter { rate }) = metric_map::lookup(name)
        {
            // No counter in redops: its rate per second between samples stands in.
            let look = format!("avg_over({}, {})", quoted(rate), quoted(&window));
            return match func {
                "rate" => {
                    self.note(format!(
                        "{func}({name}[{window}]) is the mean of redops's per-sample `{rate}` over {window}"
                    ));
                    Ok(Part::atom(look, Kind::Num, Scope::Node))
                }
                "irate" => {
                    self.note(format!(
                        "irate({name}[{window}]) is `{rate}`, the rate over the last sample interval"
                    ));
                    Ok(Part::atom(rate, Kind::Num, Scope::Node))
                }
                "increase" | "delta" => {
                    let secs = m.range.as_secs_f64();
                    self.note(format!(
                        "{func}({name}[{window}]) is the mean of `{rate}` over {window} times {} s",
                        number_text(secs)
                    ));
                    Ok(Part {
                        text: format!("{look} * {}", number_text(secs)),
                        prec: MUL,
                        kind: Kind::Num,
                        scope: Scope::Node,
                    })
                }
                _ => refuse(format!(
                    "{func}() over the counter `{name}` has no redops equivalent (redops keeps `{rate}`)"
                )),
            };
        }
        let metric = self.selector(&m.vs)?;
        if metric.kind != Kind::Num || metric.prec != ATOM {
            return refuse(format!("{func}() over `{}` has no redops equivalent", m.vs));
        }
        let redops = match func {
            "delta" | "idelta" => "delta",
            "changes" | "resets" => "changes",
            "avg_over_time" => "avg_over",
            "min_over_time" => "min_over",
            "max_over_time" => "max_over",
            "rate" | "irate" | "increase" => {
                return refuse(format!(
                    "{func}() over `{}`, a gauge: Prometheus treats it as a counter; use delta() or a threshold",
                    m.vs
                ));
            }
            _ => return refuse(format!("{func}() has no redops look-back function")),
        };
        if func == "idelta" || func == "resets" {
            self.note(format!("{func}() is approximated by redops's {redops}()"));
        }
        Ok(Part::atom(
            format!("{redops}({}, {})", quoted(&metric.text), quoted(&window)),
            Kind::Num,
            metric.scope,
        ))
    }

    fn aggregate(&mut self, a: &AggregateExpr) -> Result<Part, Untranslatable> {
        let op = a.op.to_string();
        let per_target =
            matches!(&a.modifier, Some(LabelModifier::Include(l)) if l.labels.iter().any(|l| l == "instance"));
        if per_target && matches!(op.as_str(), "sum" | "min" | "max" | "avg") {
            // One series per instance: the aggregate is the value itself.
            return self.num(&a.expr, &op);
        }
        if let Some(m) = &a.modifier {
            self.note(format!(
                "{op} {} is taken over a Sentinel group's nodes",
                modifier_text(m, "by", "without")
            ));
        }
        let Expr::VectorSelector(vs) = strip(&a.expr) else {
            return refuse(format!(
                "{op}(...) over an expression across instances has no redops equivalent"
            ));
        };
        let name = vs.name.as_deref().unwrap_or_default();
        let role = vs.matchers.find_matchers("role");
        let (text, note) = match (op.as_str(), name) {
            ("count", metric_map::INSTANCE_INFO)
                if role.len() == 1 && role[0].op == MatchOp::Equal && role[0].value == "master" =>
            {
                ("masters_seen", "count of masters is a Sentinel group's `masters_seen`")
            }
            ("count", "redis_up" | "redis_connected_slaves") => (
                "(replicas + 1)",
                "a count of instances is a Sentinel group's `replicas + 1` (the master and its replicas)",
            ),
            ("sum", "redis_connected_slaves") => (
                "(replicas_up - replicas_link_down)",
                "the sum of connected replicas is a Sentinel group's replicas that are up with their link to the \
                 master up",
            ),
            _ => {
                return refuse(format!(
                    "{op}({vs}) aggregates across instances; a redops rule is evaluated per target, and a Sentinel \
                     group's sample has no equivalent"
                ));
            }
        };
        self.note(note);
        Ok(Part::atom(text, Kind::Num, Scope::Group))
    }
}

/// The expression under any parentheses.
fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip(&p.expr),
        other => other,
    }
}

fn modifier_text(m: &LabelModifier, include: &str, exclude: &str) -> String {
    let (word, labels) = match m {
        LabelModifier::Include(l) => (include, l),
        LabelModifier::Exclude(l) => (exclude, l),
    };
    format!("{word} ({})", labels.labels.join(", "))
}

fn scaled(name: String, scale: f64) -> Part {
    if scale == 1.0 {
        Part::atom(name, Kind::Num, Scope::Node)
    } else {
        Part {
            text: format!("{name} * {}", number_text(scale)),
            prec: MUL,
            kind: Kind::Num,
            scope: Scope::Node,
        }
    }
}

fn number(v: f64) -> Result<Part, Untranslatable> {
    if !v.is_finite() {
        return refuse(format!("the number {v} has no redops equivalent"));
    }
    let text = number_text(v);
    Ok(Part {
        prec: if v < 0.0 { ADD } else { ATOM },
        text,
        kind: Kind::Num,
        scope: Scope::Any,
    })
}

/// A number as Rhai reads it: integers without a fraction, others in full
/// (Rust never writes an exponent for `{}`).
fn number_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests;
