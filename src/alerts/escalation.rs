//! The escalation timeline: which steps of a policy are due, as a pure
//! function of when the alert started and the time now.

use crate::config::EscalationConfig;

/// Where an escalation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The next step not yet notified.
    pub next_step: usize,
    /// When a step was last notified (ms), for `repeat`.
    pub last_step_ms: i64,
}

/// The steps due at `now_ms` (in order), and the progress after notifying
/// them. Past the last step, `repeat` notifies the last step again.
pub fn due(policy: &EscalationConfig, started_ms: i64, progress: Progress, now_ms: i64) -> (Vec<usize>, Progress) {
    let mut due = Vec::new();
    let mut p = progress;
    while p.next_step < policy.steps.len() {
        let at = started_ms + policy.steps[p.next_step].after.as_millis() as i64;
        if at > now_ms {
            break;
        }
        due.push(p.next_step);
        p.next_step += 1;
        p.last_step_ms = now_ms;
    }
    if due.is_empty()
        && p.next_step == policy.steps.len()
        && let Some(repeat) = policy.repeat.filter(|r| !r.is_zero())
        && now_ms - p.last_step_ms >= repeat.as_millis() as i64
    {
        due.push(policy.steps.len() - 1);
        p.last_step_ms = now_ms;
    }
    (due, p)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::notify::EscalationStep;

    fn critical() -> EscalationConfig {
        let step = |mins: u64, who: &str| EscalationStep {
            after: Duration::from_secs(mins * 60),
            notify: vec![who.into()],
        };
        EscalationConfig {
            steps: vec![step(0, "pager"), step(15, "secondary"), step(45, "director")],
            repeat: Some(Duration::from_secs(30 * 60)),
        }
    }

    const MIN: i64 = 60_000;

    /// Walks the timeline minute by minute, as the engine's tick would.
    fn walk(policy: &EscalationConfig, until_min: i64, stop_at: Option<i64>) -> Vec<(i64, usize)> {
        let mut p = Progress {
            next_step: 0,
            last_step_ms: 0,
        };
        let mut fired = Vec::new();
        for minute in 0..=until_min {
            if stop_at.is_some_and(|s| minute >= s) {
                break;
            }
            let (steps, next) = due(policy, 0, p, minute * MIN);
            fired.extend(steps.into_iter().map(|s| (minute, s)));
            p = next;
        }
        fired
    }

    #[test]
    fn steps_fire_at_their_offsets_then_repeat() {
        assert_eq!(
            walk(&critical(), 120, None),
            vec![(0, 0), (15, 1), (45, 2), (75, 2), (105, 2)]
        );
    }

    #[test]
    fn an_ack_or_resolve_stops_the_timeline() {
        // The engine stops calling `due` once acknowledged or resolved.
        assert_eq!(walk(&critical(), 120, Some(20)), vec![(0, 0), (15, 1)]);
    }

    #[test]
    fn a_late_tick_catches_up_in_order() {
        let (steps, p) = due(
            &critical(),
            0,
            Progress {
                next_step: 0,
                last_step_ms: 0,
            },
            50 * MIN,
        );
        assert_eq!(steps, vec![0, 1, 2]);
        // The repeat counts from the late tick, not from the missed step.
        assert_eq!(
            p,
            Progress {
                next_step: 3,
                last_step_ms: 50 * MIN
            }
        );
        assert!(due(&critical(), 0, p, 80 * MIN - 1).0.is_empty());
        assert_eq!(due(&critical(), 0, p, 80 * MIN).0, vec![2]);
    }

    #[test]
    fn without_repeat_it_ends_at_the_last_step() {
        let mut policy = critical();
        policy.repeat = None;
        assert_eq!(walk(&policy, 200, None), vec![(0, 0), (15, 1), (45, 2)]);
    }
}
