//! `time.now()` and `sleep(seconds)`: waiting for a system to settle, never
//! past the run's deadline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rhai::{Engine, EvalAltResult};

use crate::playbooks::context;

#[derive(Debug, Clone, Copy)]
pub struct TimeApi;

pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<TimeApi>("Time");
    engine.register_fn("now", |_: &mut TimeApi| {
        if let Ok(Some(t)) = context::with_run(|run| run.ctx.scripted.as_ref().map(|w| w.now())) {
            return t;
        }
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    });
    engine.register_fn("sleep", |secs: f64| sleep(secs));
    engine.register_fn("sleep", |secs: i64| sleep(secs as f64));
}

/// Sleeps, but never past the deadline: a sleep that would cross it ends
/// the run as timed out instead of overrunning.
fn sleep(secs: f64) -> Result<(), Box<EvalAltResult>> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("sleep({secs}): seconds must be a positive number").into());
    }
    let wanted = Duration::from_secs_f64(secs);
    let (remaining, scripted) = context::with_run(|run| (run.remaining(), run.ctx.scripted.clone()))?;
    if let Some(world) = scripted {
        // Virtual time costs no real time but still counts against the
        // deadline: real time elapsed plus time slept must stay within it.
        if world.advance(wanted) >= remaining {
            return Err(EvalAltResult::ErrorTerminated("deadline".into(), rhai::Position::NONE).into());
        }
        return Ok(());
    }
    if wanted >= remaining {
        std::thread::sleep(remaining);
        return Err(EvalAltResult::ErrorTerminated("deadline".into(), rhai::Position::NONE).into());
    }
    std::thread::sleep(wanted);
    Ok(())
}
