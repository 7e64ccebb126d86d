//! `when` and `clear` expressions: Rhai, compiled once, evaluated against a
//! scope of metrics, with functions that look back over a metric's history.

use std::cell::RefCell;
use std::time::Duration;

use rhai::{AST, Dynamic, Engine, EvalAltResult, Position, Scope};
use tokio::time::Instant;

use super::history::History;

/// A compile error inside an expression, positioned relative to its text.
#[derive(Debug, Clone)]
pub struct ExprError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Why an expression gave no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    /// A metric it uses is absent from this sample, or its history is too
    /// short: not an error, just no data yet.
    NoData(String),
    /// A real fault in the expression (wrong type, limit reached).
    Failed(String),
}

pub struct ExprEngine {
    engine: Engine,
}

thread_local! {
    /// The history of the target being evaluated, lent to the look-back
    /// functions for the duration of one evaluation.
    static CURRENT: RefCell<Option<(History, Instant)>> = const { RefCell::new(None) };
}

/// The look-back functions, by name. `redops check` uses this list too.
pub const HISTORY_FUNCTIONS: &[&str] = &["delta", "rate", "changes", "avg_over", "min_over", "max_over"];

impl Default for ExprEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl ExprEngine {
    pub fn new() -> Self {
        let mut engine = Engine::new();
        // A condition is a comparison, not a program: small limits keep a
        // typo from ever costing real time on the evaluation path.
        engine.set_max_operations(50_000);
        engine.set_max_expr_depths(64, 16);
        engine.set_max_call_levels(16);
        engine.set_max_string_size(64 * 1024);
        engine.set_max_array_size(10_000);
        engine.set_max_map_size(10_000);
        engine.disable_symbol("eval");
        for name in HISTORY_FUNCTIONS {
            let name: &'static str = name;
            engine.register_fn(name, move |metric: &str, window: &str| look_back(name, metric, window));
        }
        ExprEngine { engine }
    }

    pub fn compile(&self, text: &str) -> Result<Compiled, ExprError> {
        let ast = self.engine.compile_expression(text).map_err(|e| {
            let (line, col) = position(e.position());
            ExprError {
                line,
                col,
                message: e.0.to_string(),
            }
        })?;
        Ok(Compiled {
            ast,
            quick: Comparison::parse(text),
        })
    }

    /// Evaluates a boolean expression with `history` available to the
    /// look-back functions.
    pub fn eval_bool(
        &self,
        compiled: &Compiled,
        scope: &mut Scope,
        history: &mut History,
        now: Instant,
    ) -> Result<bool, EvalError> {
        if let Some(quick) = &compiled.quick
            && let Some(value) = scope.get(&quick.metric).and_then(|v| v.as_float().ok())
        {
            return Ok(quick.holds(value));
        }
        let ast = &compiled.ast;
        CURRENT.with(|c| *c.borrow_mut() = Some((std::mem::take(history), now)));
        let result = self.engine.eval_ast_with_scope::<Dynamic>(scope, ast);
        if let Some((h, _)) = CURRENT.with(|c| c.borrow_mut().take()) {
            *history = h;
        }
        match result {
            Ok(v) => v
                .as_bool()
                .map_err(|t| EvalError::Failed(format!("the expression must be true or false, but it gave a {t}"))),
            Err(e) => Err(classify(*e)),
        }
    }
}

/// A compiled `when` or `clear`. The common `metric OP number` (`count >=
/// 100`, `memory_used_pct > 85`) is also kept as a plain comparison, done
/// without Rhai when the metric is a number, with Rhai's own float
/// comparison; anything else, or a metric that is absent or not a number,
/// goes to Rhai, which gives the same answer and the errors.
#[derive(Debug, Clone)]
pub struct Compiled {
    ast: AST,
    quick: Option<Comparison>,
}

#[derive(Debug, Clone, PartialEq)]
struct Comparison {
    /// Kept inline (up to 23 bytes, as Rhai keeps its scope's names): read
    /// for every keyspace rule every tick, it should not be a pointer to
    /// memory the cache has long dropped.
    metric: smartstring::alias::CompactString,
    op: Op,
    value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Ge,
    Le,
    Gt,
    Lt,
    Eq,
    Ne,
}

impl Comparison {
    /// `name OP number`, the name an identifier and the number plain
    /// decimal digits (`_` allowed, as in Rhai) with an optional fraction.
    fn parse(text: &str) -> Option<Comparison> {
        let text = text.trim();
        let at = text.find(['<', '>', '=', '!'])?;
        let (metric, rest) = (text[..at].trim_end(), &text[at..]);
        let (op, number) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ]
        .into_iter()
        .find_map(|(symbol, op)| Some((op, rest.strip_prefix(symbol)?.trim_start())))?;
        let identifier = metric.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && metric.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
        let digits =
            |s: &str| s.starts_with(|c: char| c.is_ascii_digit()) && s.chars().all(|c| c.is_ascii_digit() || c == '_');
        if !identifier || !digits(whole) || !digits(fraction) || matches!(metric, "true" | "false" | "this") {
            return None;
        }
        Some(Comparison {
            metric: metric.into(),
            op,
            value: number.replace('_', "").parse().ok()?,
        })
    }

    /// As Rhai compares floats (and a float with an integer): within a
    /// relative `f64::EPSILON`, so that `0.1 + 0.2 == 0.3` (Rhai's
    /// `packages/logic.rs` and `func/builtin.rs`, checked build).
    fn holds(&self, x: f64) -> bool {
        let y = self.value;
        let max = if x * y == 0.0 { 1.0 } else { x.abs().max(y.abs()) };
        if max == 0.0 {
            return matches!(self.op, Op::Eq | Op::Ge | Op::Le);
        }
        match self.op {
            Op::Eq => (x - y).abs() / max <= f64::EPSILON,
            Op::Ne => (x - y).abs() / max > f64::EPSILON,
            Op::Gt => (x - y) / max > f64::EPSILON,
            Op::Ge => (x - y) / max > -f64::EPSILON,
            Op::Lt => (y - x) / max > f64::EPSILON,
            Op::Le => (y - x) / max > -f64::EPSILON,
        }
    }
}

fn position(p: Position) -> (usize, usize) {
    (p.line().unwrap_or(1), p.position().unwrap_or(1))
}

fn classify(e: EvalAltResult) -> EvalError {
    match e {
        EvalAltResult::ErrorVariableNotFound(name, _) => EvalError::NoData(format!("no metric `{name}`")),
        EvalAltResult::ErrorRuntime(value, _) if value.is_string() => {
            let msg = value.into_string().unwrap_or_default();
            match msg.strip_prefix(NO_DATA) {
                Some(rest) => EvalError::NoData(rest.trim().to_owned()),
                None => EvalError::Failed(msg),
            }
        }
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => classify(*inner),
        // Comparing a missing look-back result (`()`) with a number.
        EvalAltResult::ErrorFunctionNotFound(sig, _) if sig.contains("()") => {
            EvalError::NoData(format!("no data for `{sig}`"))
        }
        other => EvalError::Failed(other.to_string()),
    }
}

const NO_DATA: &str = "no data:";

fn look_back(function: &str, metric: &str, window: &str) -> Result<f64, Box<EvalAltResult>> {
    let window = humantime::parse_duration(window)
        .map_err(|e| format!("{function}(\"{metric}\", \"{window}\"): bad window: {e}"))?;
    let value = CURRENT.with(|c| {
        let c = c.borrow();
        let (history, now) = c.as_ref()?;
        let points = history.window(metric, *now, window)?;
        compute(function, &points, window)
    });
    value.ok_or_else(|| format!("{NO_DATA} {function}(\"{metric}\") needs more history").into())
}

/// Prometheus-like semantics over the points inside the window.
fn compute(function: &str, points: &[(Instant, f64)], window: Duration) -> Option<f64> {
    let (first, last) = (points.first()?, points.last()?);
    let values = points.iter().map(|p| p.1);
    match function {
        "delta" if points.len() >= 2 => Some(last.1 - first.1),
        "rate" if points.len() >= 2 => {
            // A counter that went down was reset: count from zero after it.
            let increase: f64 = points
                .windows(2)
                .map(|w| if w[1].1 >= w[0].1 { w[1].1 - w[0].1 } else { w[1].1 })
                .sum();
            let secs = last.0.duration_since(first.0).as_secs_f64().max(1e-9);
            let _ = window;
            Some(increase / secs)
        }
        "changes" => Some(points.windows(2).filter(|w| w[0].1 != w[1].1).count() as f64),
        "avg_over" => Some(values.sum::<f64>() / points.len() as f64),
        "min_over" => values.reduce(f64::min),
        "max_over" => values.reduce(f64::max),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_once_and_evaluates_against_a_scope() {
        let e = ExprEngine::new();
        let ast = e.compile("memory_used_pct > 85").unwrap();
        let mut h = History::default();
        let now = Instant::now();
        let mut scope = Scope::new();
        scope.push("memory_used_pct", 90.0_f64);
        assert_eq!(e.eval_bool(&ast, &mut scope, &mut h, now), Ok(true));
        let mut scope = Scope::new();
        assert!(matches!(
            e.eval_bool(&ast, &mut scope, &mut h, now),
            Err(EvalError::NoData(_))
        ));
    }

    /// The comparison done without Rhai answers as Rhai does, and only
    /// the plain form takes it.
    #[test]
    fn plain_comparisons_answer_as_rhai_does() {
        let e = ExprEngine::new();
        let mut h = History::default();
        let now = Instant::now();
        let values = [
            -1.0,
            0.0,
            0.25,
            0.250_000_000_000_000_06,
            5.0,
            99.5,
            99.999_999_999_999_99,
            100.0,
            100.000_000_000_000_01,
            100.5,
            999_999.999_999_999_9,
            1e6,
            1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let mut quick = 0;
        for op in [">=", "<=", ">", "<", "==", "!="] {
            for number in ["0", "100", "100.0", "100.5", "1_000_000", "0.25"] {
                for spacing in ["", " ", "  "] {
                    let text = format!(" count{spacing}{op}{spacing}{number} ");
                    let compiled = e.compile(&text).unwrap();
                    assert!(compiled.quick.is_some(), "{text}");
                    quick += 1;
                    let rhai_only = Compiled {
                        quick: None,
                        ..compiled.clone()
                    };
                    for v in values {
                        let mut scope = Scope::new();
                        scope.push_constant("count", v);
                        let fast = e.eval_bool(&compiled, &mut scope, &mut h, now);
                        let slow = e.eval_bool(&rhai_only, &mut scope, &mut h, now);
                        assert_eq!(fast, slow, "{text} with count = {v}");
                    }
                    // Not a number, or absent: Rhai answers (or explains).
                    let mut scope = Scope::new();
                    scope.push_constant("count", "many".to_owned());
                    let fast = e.eval_bool(&compiled, &mut scope, &mut h, now);
                    assert_eq!(fast, e.eval_bool(&rhai_only, &mut scope, &mut h, now), "{text}");
                    let mut empty = Scope::new();
                    assert!(matches!(
                        e.eval_bool(&compiled, &mut empty, &mut h, now),
                        Err(EvalError::NoData(_))
                    ));
                }
            }
        }
        assert_eq!(quick, 6 * 6 * 3);
        for other in [
            "count >= 1 && role == \"master\"",
            "count >= -1",
            "count >= 1e3",
            "count >= limit",
            "count >= 0x10",
            "rate(\"x\", \"1m\") > 0",
            "true",
            "count => 1",
            "2 < count",
            "count >= 1.",
        ] {
            if let Ok(compiled) = e.compile(other) {
                assert_eq!(compiled.quick, None, "{other}");
            }
        }
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = ExprEngine::new().compile("memory_used_pct >> > 85").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.col > 1, "{err:?}");
        assert!(
            ExprEngine::new().compile("x = 1").is_err(),
            "assignments are not expressions"
        );
    }

    #[test]
    fn look_back_functions_read_the_history() {
        let e = ExprEngine::new();
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(600));
        for i in 0..=6 {
            h.record("used_memory", t0 + Duration::from_secs(i * 10), (i * 100) as f64);
        }
        let now = t0 + Duration::from_secs(60);
        let mut scope = Scope::new();
        for (expr, expected) in [
            ("delta(\"used_memory\", \"1m\") == 600.0", true),
            ("rate(\"used_memory\", \"1m\") == 10.0", true),
            ("changes(\"used_memory\", \"1m\") == 6.0", true),
            ("max_over(\"used_memory\", \"30s\") == 600.0", true),
            ("min_over(\"used_memory\", \"30s\") == 300.0", true),
            ("avg_over(\"used_memory\", \"1m\") == 300.0", true),
        ] {
            let ast = e.compile(expr).unwrap();
            assert_eq!(e.eval_bool(&ast, &mut scope, &mut h, now), Ok(expected), "{expr}");
        }
        let ast = e.compile("delta(\"nope\", \"1m\") > 0").unwrap();
        assert!(matches!(
            e.eval_bool(&ast, &mut scope, &mut h, now),
            Err(EvalError::NoData(_))
        ));
    }
}
