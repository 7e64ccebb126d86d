//! `history.trend(metric)` and `history.trend(metric, #{days: N})`: how a
//! metric of the run's target moved over the last days, from the sample
//! history the engine keeps in its state directory (docs/operations.md,
//! "History"). The capacity report reads its weekly growth from it.
//!
//! Reading history has no side effect, so it runs in a dry run too. A run
//! without a state directory (`redops test`) has no history: `()`.

use rhai::{Dynamic, Engine, EvalAltResult, Map};

use crate::history::store::HistoryStore;
use crate::playbooks::context;

#[derive(Debug, Clone, Copy)]
pub struct HistoryApi;

/// The window `trend` looks at when the call does not say.
const DEFAULT_DAYS: f64 = 7.0;
/// Less history than this gives no trend: a few minutes of a daily cycle
/// would extrapolate to nonsense.
const MIN_SPAN_MS: f64 = 3_600_000.0;

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<HistoryApi>("History");
    engine.register_fn("trend", |_: &mut HistoryApi, metric: &str| trend(metric, Map::new()));
    engine.register_fn("trend", |_: &mut HistoryApi, metric: &str, options: Map| {
        trend(metric, options)
    });
}

/// `#{per_week, per_day, now, span_days}`: the fitted growth per week and
/// per day, the fitted current value, and how many days of history the fit
/// saw. `()` when there is under an hour of history for the metric.
fn trend(metric: &str, options: Map) -> Result<Dynamic, Box<EvalAltResult>> {
    let days = match options.get("days") {
        None => DEFAULT_DAYS,
        Some(d) => d
            .as_float()
            .or_else(|_| d.as_int().map(|i| i as f64))
            .ok()
            .filter(|d| *d > 0.0 && d.is_finite())
            .ok_or_else(|| format!("history.trend: days must be a positive number, got {d}"))?,
    };
    let (state_dir, target) = context::with_run(|run| {
        (
            run.ctx.backups.as_ref().map(|b| b.state_dir.clone()),
            run.ctx.target.clone(),
        )
    })?;
    let Some(state_dir) = state_dir else {
        return Ok(Dynamic::UNIT);
    };
    let failed = |e: crate::store::StoreError| format!("history.trend: cannot read the sample history: {e}");
    let history = crate::store::Store::open(&state_dir)
        .and_then(HistoryStore::open)
        .map_err(failed)?;
    let now = crate::history::now_ms();
    let from = now - (days * 86_400_000.0) as i64;
    let Some(fit) = history
        .trend(&target, metric, from, now + 1, MIN_SPAN_MS)
        .map_err(failed)?
    else {
        return Ok(Dynamic::UNIT);
    };
    let mut out = Map::new();
    out.insert("per_week".into(), fit.growth_per_week().into());
    out.insert("per_day".into(), fit.slope_per_day.into());
    out.insert("now".into(), fit.value_at_end.into());
    out.insert("span_days".into(), (fit.span_ms / 86_400_000.0).into());
    Ok(out.into())
}
