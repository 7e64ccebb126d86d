//! The engine's decision core as a plain state machine: the running loop
//! gathers [`Input`]s (events, the clock, reload outcomes, the HA ledger's
//! aligned actions, finished playbook runs), hands each to
//! [`Step::step`], and performs the [`Effect`]s it returns. Nothing here
//! does I/O, so the whole of what the loop decides is tested under tokio's
//! paused clock, with real rules.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;

use super::internal::reload_alert;
use crate::alerts::{Alert, AlertStatus};
use crate::event::Event;
use crate::invocation::{Action, Invocation};
use crate::playbooks::RunRecord;
use crate::rules::{Evaluator, Rule};

/// What the loop hands to [`Step::step`].
#[derive(Debug)]
pub enum Input {
    /// An event from a source, with the trend metrics history added.
    Event(Event),
    /// Once a second: time-based resolves and the router's timers.
    Tick,
    /// A reload finished.
    Reloaded(Reloaded),
    /// Under `[ha]`: actions the ledger gave their shared start.
    Aligned(Vec<Action>),
    /// A playbook run ended.
    PlaybookRecord(RunRecord),
}

/// How a reload ended, once the services took what they could.
#[derive(Debug)]
pub enum Reloaded {
    /// The new rules, and the events of the targets it started or stopped.
    Loaded {
        rules: Vec<Arc<Rule>>,
        target_events: Vec<Event>,
    },
    /// Nothing changed; the last good rules keep running.
    Failed { first_error: String, errors: usize },
}

/// What the loop does for the core.
#[derive(Debug)]
pub enum Effect {
    /// Under `[ha]`: have the ledger give these alerts the start all
    /// instances share, off the loop; they come back as [`Input::Aligned`].
    Align(Vec<Action>),
    /// Route an alert change, to the rule's `notify` receivers as well as
    /// the matching routes.
    Alert { alert: Alert, notify: Vec<String> },
    /// An alert redops raises about itself; the routes alone decide.
    Internal(Alert),
    /// Hand a playbook invocation to the runner.
    Invoke(Invocation),
    /// Record a finished run and tell the router its outcome.
    RecordRun(RunRecord),
    /// Let the router send what its group and escalation timers hold.
    RefreshRouter,
}

impl From<Action> for Effect {
    fn from(action: Action) -> Self {
        match action {
            Action::Alert { alert, notify } => Effect::Alert { alert, notify },
            Action::RunPlaybook(inv) => Effect::Invoke(inv),
        }
    }
}

pub struct Step {
    evaluator: Evaluator,
    /// Under `[ha]`, alert changes go through the ledger before they are
    /// routed.
    align: bool,
    /// Firing while reloads fail: `config_reload_failed`.
    reload_failed: Option<Alert>,
}

impl Step {
    pub fn new(evaluator: Evaluator, align: bool) -> Self {
        Step {
            evaluator,
            align,
            reload_failed: None,
        }
    }

    /// The rules evaluated now.
    pub fn rules(&self) -> &[Arc<Rule>] {
        self.evaluator.rules()
    }

    /// Whether the last reload (if any) succeeded.
    pub fn reload_ok(&self) -> bool {
        self.reload_failed.is_none()
    }

    /// Takes back the alerts firing when redops last stopped, so they go on
    /// firing rather than fire again; `unsent` (recorded, but nobody was
    /// told) are routed now rather than lost.
    pub fn restore(&mut self, restored: &[Alert], unsent: Vec<Alert>, now: Instant) -> Vec<Effect> {
        self.evaluator.restore(restored, now);
        let actions = unsent
            .into_iter()
            .map(|alert| {
                let notify = self
                    .rules()
                    .iter()
                    .find(|r| r.name == alert.rule)
                    .map(|r| r.notify.clone())
                    .unwrap_or_default();
                Action::Alert { alert, notify }
            })
            .collect();
        self.route(actions)
    }

    pub fn step(&mut self, input: Input, now: Instant, wall: SystemTime) -> Vec<Effect> {
        match input {
            Input::Event(event) => {
                let actions = self.evaluator.on_event(&event, now, wall);
                self.route(actions)
            }
            Input::Tick => {
                let actions = self.evaluator.tick(now, wall);
                let mut effects = self.route(actions);
                effects.push(Effect::RefreshRouter);
                effects
            }
            Input::Reloaded(reloaded) => self.reloaded(reloaded, now, wall),
            Input::Aligned(actions) => actions.into_iter().map(Effect::from).collect(),
            Input::PlaybookRecord(record) => vec![Effect::RecordRun(record)],
        }
    }

    fn reloaded(&mut self, reloaded: Reloaded, now: Instant, wall: SystemTime) -> Vec<Effect> {
        match reloaded {
            Reloaded::Loaded { rules, target_events } => {
                let mut actions = self.evaluator.replace_rules(rules, wall);
                for event in &target_events {
                    actions.extend(self.evaluator.on_event(event, now, wall));
                }
                let mut effects = Vec::new();
                if let Some(mut alert) = self.reload_failed.take() {
                    alert.status = AlertStatus::Resolved;
                    alert.ends_at = Some(wall);
                    effects.push(Effect::Internal(alert));
                }
                effects.extend(self.route(actions));
                effects
            }
            Reloaded::Failed { first_error, errors } => {
                let alert = reload_alert(&first_error, errors, self.reload_failed.as_ref(), wall);
                // One alert per run of failures; a new first error updates it.
                let changed = self.reload_failed.as_ref().is_none_or(|a| a.summary != alert.summary);
                self.reload_failed = Some(alert.clone());
                if changed {
                    vec![Effect::Internal(alert)]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Under `[ha]` alert changes wait for their shared start, off the loop;
    /// otherwise they go out at once.
    fn route(&self, actions: Vec<Action>) -> Vec<Effect> {
        if actions.is_empty() {
            Vec::new()
        } else if self.align {
            vec![Effect::Align(actions)]
        } else {
            actions.into_iter().map(Effect::from).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use tokio::time::advance;

    use super::*;
    use crate::diagnostics::{Diagnostics, SourceFile};
    use crate::event::{MetricValue, Metrics, Sample};
    use crate::rules::expr::ExprEngine;
    use crate::rules::load::{References, parse_rule_file};

    const RULES: &str = r#"
[[rule]]
name = "memory_high"
source = "sample"
when = "memory_used_pct > 85"
clear = "memory_used_pct < 80"
for = "1m"
severity = "critical"
playbook = "optimize_memory"
cooldown = "15m"
notify = ["pager"]
summary = "Memory at {{ memory_used_pct }}% on {{ target }}"
"#;

    fn rules(text: &str, expr: &ExprEngine) -> Vec<Arc<Rule>> {
        let refs = References {
            playbooks: vec!["optimize_memory"],
            targets: vec!["cache"],
            receivers: vec!["pager"],
        };
        let mut diags = Diagnostics::default();
        let rules = parse_rule_file(&SourceFile::new("rules/memory.toml", text), &refs, expr, &mut diags);
        assert!(!diags.has_errors(), "{}", diags.render());
        rules.into_iter().map(Arc::new).collect()
    }

    fn core(text: &str, align: bool) -> Step {
        let labels = [("cache".to_owned(), BTreeMap::new())];
        let expr = Arc::new(ExprEngine::new());
        let evaluator = Evaluator::new(rules(text, &expr), expr, labels, Duration::from_secs(600));
        Step::new(evaluator, align)
    }

    fn memory(pct: f64) -> Input {
        Input::Event(Event::Sample(Sample {
            target: "cache".into(),
            at: SystemTime::now(),
            metrics: Metrics::from([("memory_used_pct".to_owned(), MetricValue::Num(pct))]),
        }))
    }

    fn step(core: &mut Step, input: Input) -> Vec<Effect> {
        core.step(input, Instant::now(), SystemTime::now())
    }

    /// The effects as short words, for assertions that read like the story.
    fn said(effects: &[Effect]) -> Vec<String> {
        let status = |alert: &Alert| format!("{:?}", alert.status).to_lowercase();
        effects
            .iter()
            .map(|e| match e {
                Effect::Align(actions) => format!("align {}", actions.len()),
                Effect::Alert { alert, notify } => format!("{} {} to {notify:?}", alert.rule, status(alert)),
                Effect::Internal(alert) => format!("internal {} {}", alert.rule, status(alert)),
                Effect::Invoke(inv) => format!("run {}", inv.playbook),
                Effect::RecordRun(r) => format!("record {}", r.id),
                Effect::RefreshRouter => "refresh".into(),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_sample_above_threshold_for_its_for_fires_once_with_the_rules_receivers() {
        let mut core = core(RULES, false);
        assert!(step(&mut core, memory(90.0)).is_empty(), "pending is silent");
        advance(Duration::from_secs(30)).await;
        assert!(step(&mut core, memory(91.0)).is_empty(), "still pending after 30 s");
        advance(Duration::from_secs(31)).await;
        assert_eq!(
            said(&step(&mut core, memory(92.0))),
            ["memory_high firing to [\"pager\"]", "run optimize_memory"]
        );
        advance(Duration::from_secs(5)).await;
        assert!(step(&mut core, memory(93.0)).is_empty(), "fires once");
        assert_eq!(said(&step(&mut core, Input::Tick)), ["refresh"]);
        assert_eq!(
            said(&step(&mut core, memory(70.0))),
            ["memory_high resolved to [\"pager\"]"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_firing_within_the_cooldown_notifies_without_running_the_playbook() {
        let mut core = core(&RULES.replace("for = \"1m\"", "for = \"0s\""), false);
        assert_eq!(said(&step(&mut core, memory(90.0))).len(), 2, "fires and runs");
        step(&mut core, memory(70.0));
        advance(Duration::from_secs(5 * 60)).await;
        assert_eq!(
            said(&step(&mut core, memory(90.0))),
            ["memory_high firing to [\"pager\"]"],
            "cooldown holds the playbook"
        );
        step(&mut core, memory(70.0));
        advance(Duration::from_secs(11 * 60)).await;
        assert_eq!(
            said(&step(&mut core, memory(90.0))),
            ["memory_high firing to [\"pager\"]", "run optimize_memory"],
            "after the cooldown it runs again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_reload_keeps_the_rules_and_raises_one_alert_until_a_reload_succeeds() {
        let mut core = core(&RULES.replace("for = \"1m\"", "for = \"0s\""), false);
        let failed = |first: &str| {
            Input::Reloaded(Reloaded::Failed {
                first_error: first.into(),
                errors: 1,
            })
        };
        let effects = step(&mut core, failed("rules/memory.toml:3:8: unknown field `wen`"));
        assert_eq!(said(&effects), ["internal config_reload_failed firing"]);
        let Effect::Internal(alert) = &effects[0] else {
            unreachable!()
        };
        assert!(alert.summary.contains("rules/memory.toml:3:8"), "{}", alert.summary);
        assert!(!core.reload_ok());
        assert!(
            step(&mut core, failed("rules/memory.toml:3:8: unknown field `wen`")).is_empty(),
            "the same failure again says nothing new"
        );
        // The last good rules still evaluate.
        assert_eq!(
            said(&step(&mut core, memory(90.0)))[0],
            "memory_high firing to [\"pager\"]"
        );
        let rules = core.rules().to_vec();
        let effects = step(
            &mut core,
            Input::Reloaded(Reloaded::Loaded {
                rules,
                target_events: Vec::new(),
            }),
        );
        assert_eq!(said(&effects), ["internal config_reload_failed resolved"]);
        assert!(core.reload_ok());
        assert!(
            step(&mut core, memory(91.0)).is_empty(),
            "an unchanged rule keeps firing, silently"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_restored_alert_is_not_fired_again_and_an_unsent_one_is_routed_once() {
        let mut first = core(&RULES.replace("for = \"1m\"", "for = \"0s\""), false);
        let effects = step(&mut first, memory(90.0));
        let Effect::Alert { alert, .. } = &effects[0] else {
            panic!("{effects:?}")
        };
        let firing = alert.clone();

        // A restart: the store says it fires, and nobody was told.
        let mut core = core(&RULES.replace("for = \"1m\"", "for = \"0s\""), false);
        let restored = core.restore(std::slice::from_ref(&firing), vec![firing.clone()], Instant::now());
        assert_eq!(said(&restored), ["memory_high firing to [\"pager\"]"]);
        advance(Duration::from_secs(1)).await;
        assert!(step(&mut core, memory(95.0)).is_empty(), "not fired again");
        let effects = step(&mut core, memory(70.0));
        assert_eq!(said(&effects), ["memory_high resolved to [\"pager\"]"]);
        let Effect::Alert { alert, .. } = &effects[0] else {
            unreachable!()
        };
        assert_eq!(
            alert.starts_at, firing.starts_at,
            "the restored firing is the one that resolves"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn under_ha_alert_changes_go_to_the_ledger_first_and_come_back_in_order() {
        let mut core = core(&RULES.replace("for = \"1m\"", "for = \"0s\""), true);
        let effects = step(&mut core, memory(90.0));
        assert_eq!(said(&effects), ["align 2"]);
        let Some(Effect::Align(actions)) = effects.into_iter().next() else {
            unreachable!()
        };
        assert_eq!(
            said(&step(&mut core, Input::Aligned(actions))),
            ["memory_high firing to [\"pager\"]", "run optimize_memory"]
        );
        // Redops's own alerts do not wait on the ledger.
        let failed = Input::Reloaded(Reloaded::Failed {
            first_error: "x".into(),
            errors: 1,
        });
        assert_eq!(said(&step(&mut core, failed)), ["internal config_reload_failed firing"]);
    }
}
