//! `run.time_budget`: a run that ends, evaluations included, within a given time on
//! whatever machine it meets.
//!
//! The run times its first [`CALIBRATION_STEPS`] steps, then fixes how many steps it takes
//! in all: as many as fit in the budget after the time already spent, the kNN monitors
//! that will fall due and the final evaluation (estimated from an embedding pass timed
//! then), and never more than `run.epochs` allow. At every epoch end after that it plans
//! again from what it has measured by then: the mean time of all its steps and the last
//! monitor's own time. Twenty steps and a sampled pass misjudge a run by up to a fifth (the
//! median of a Barlow Twins run's first steps was 14 % above its mean; a pass timed on
//! 1 024 images 30 % above a monitor), and a machine's speed drifts (the same run's epochs
//! took 80 to 94 s); whole epochs correct both.
//! From each decision on the learning-rate schedule spans exactly the planned steps (the
//! steps before it followed the schedule it replaced, a difference of a few percent in
//! their learning rate). The count is saved in every checkpoint; a resumed run makes the
//! decisions still due at the same steps, from its own measurements, so it ends where the
//! uninterrupted one would when stopped after the last one, or when `run.epochs` bound
//! both.

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::invalid;

/// The step after which the run fixes its length, from the times of its steps so far
/// (the first of a session, a warm-up, left out).
pub const CALIBRATION_STEPS: u64 = 20;

/// What a kNN monitor costs as embedding passes (embedding the training and held-out images
/// once, timed at calibration): the pass, and the vote over the features besides.
const MONITOR_PASSES: f64 = 1.25;
/// The final evaluation (kNN, linear probe, retrieval metrics, k-means) as embedding
/// passes.
const FINAL_PASSES: f64 = 2.5;
/// The final evaluation as kNN monitors, once one has been timed: it embeds the images as
/// a monitor does (or reuses the last monitor's features), then fits the probe and k-means
/// (Fashion-MNIST, the small CNN, 2 cores: 18.3 s after monitors of 13-15 s; 3.4 s
/// reusing them).
const FINAL_MONITORS: f64 = 1.5;

/// The seconds of a kNN monitor and of the final evaluation (0 without one), estimated
/// from the seconds `pass_s` of an embedding pass over the training and held-out images.
pub fn costs_from_pass(pass_s: f64, final_eval: bool) -> (f64, f64) {
    let final_s = if final_eval {
        FINAL_PASSES * pass_s
    } else {
        0.0
    };
    (MONITOR_PASSES * pass_s, final_s)
}

/// The seconds of a kNN monitor and of the final evaluation (0 without one), from a
/// monitor that took `monitor_s`.
pub fn costs_from_monitor(monitor_s: f64, final_eval: bool) -> (f64, f64) {
    let final_s = if final_eval {
        FINAL_MONITORS * monitor_s
    } else {
        0.0
    };
    (monitor_s, final_s)
}

/// Parses a duration such as `"12m"`, `"90s"`, `"1h30m"` or `"2.5h"` into seconds; the
/// error names the config `key` it came from.
pub fn parse_duration(key: &'static str, text: &str) -> Result<f64> {
    let bad = || {
        invalid(
            key,
            format!("{text:?} is not a duration such as \"12m\", \"90s\" or \"1h30m\""),
        )
    };
    let mut seconds = 0.0;
    let mut number = String::new();
    let mut parts = 0;
    for c in text.trim().chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'h' | 'm' | 's' if !number.is_empty() => {
                let value: f64 = number.parse().map_err(|_| bad())?;
                seconds += value
                    * match c {
                        'h' => 3600.0,
                        'm' => 60.0,
                        _ => 1.0,
                    };
                number.clear();
                parts += 1;
            }
            ' ' => {}
            _ => return Err(bad()),
        }
    }
    if parts == 0 || !number.is_empty() || !(seconds.is_finite() && seconds > 0.0) {
        return Err(bad());
    }
    Ok(seconds)
}

/// What the run measured and decided; in its checkpoints and report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetPlan {
    /// The budget, seconds.
    pub budget_s: f64,
    /// The seconds of a step it planned with: the median of the calibration steps, the
    /// mean of all steps once revised.
    pub step_s: f64,
    /// The estimated seconds of the monitors and the final evaluation.
    pub eval_s: f64,
    /// The estimated seconds of one kNN monitor (absent in plans saved before revisions
    /// existed: such a plan is revised only once a monitor has been timed).
    #[serde(default)]
    pub monitor_s: Option<f64>,
    /// The estimated seconds of the final evaluation (absent as `monitor_s`).
    #[serde(default)]
    pub final_s: Option<f64>,
    /// The step the first plan was made at; revisions come at epoch ends after it.
    #[serde(default)]
    pub planned_at: u64,
    /// Steps the run takes in all.
    pub steps: u64,
    /// Those steps in epochs.
    pub epochs: f64,
    /// The step of the last epoch end that revised the plan (absent before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_at: Option<u64>,
}

impl std::fmt::Display for BudgetPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} s: {} steps ({:.2} epochs) at {:.3} s a step",
            self.budget_s, self.steps, self.epochs, self.step_s
        )?;
        match self.revised_at {
            Some(step) => write!(f, ", revised at step {step}"),
            None => Ok(()),
        }
    }
}

/// The inputs of [`plan_steps`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetInputs {
    /// The budget, seconds.
    pub budget_s: f64,
    /// Training seconds already spent.
    pub elapsed_s: f64,
    /// Steps already done.
    pub done: u64,
    /// Seconds of a step.
    pub step_s: f64,
    /// Seconds of a kNN monitor ([`costs_from_pass`], [`costs_from_monitor`]). Measured,
    /// not derived from the step: a method's step may do several passes per view (BYOL's
    /// target, MoCo's key encoder) where an evaluation does one.
    pub monitor_s: f64,
    /// Seconds of the final evaluation (0 without one).
    pub final_s: f64,
    /// Steps per epoch.
    pub per_epoch: u64,
    /// The kNN monitor's period in epochs (0: none during training).
    pub monitor_every: u64,
    /// The most steps (what `run.epochs` allow).
    pub most: u64,
}

/// The number of steps that, with the evaluations they bring, fits in the budget: at least
/// the steps already done, at most `most`.
pub fn plan_steps(inputs: BudgetInputs) -> BudgetPlan {
    let i = inputs;
    let evals_s = |steps: u64| {
        let monitors = match i.monitor_every {
            0 => 0,
            every => steps / i.per_epoch.max(1) / every,
        };
        monitors as f64 * i.monitor_s + i.final_s
    };
    let fits = |steps: u64| {
        i.elapsed_s + (steps - i.done) as f64 * i.step_s + evals_s(steps) <= i.budget_s
    };
    // The largest count that fits: time grows with the count, so bisect.
    let (mut low, mut high) = (i.done, i.most.max(i.done));
    if fits(high) {
        low = high;
    }
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if fits(mid) {
            low = mid;
        } else {
            high = mid;
        }
    }
    // A plan within 1 % of a whole epoch ends with it (a default run planned 1637 steps
    // of 234 an epoch): the overrun is under 1 % of an epoch's steps (and the monitor that
    // epoch end may bring, whose features the final evaluation then reuses). A budget
    // already spent stops at once.
    let per_epoch = i.per_epoch.max(1);
    let short = per_epoch - low % per_epoch;
    if low > i.done && low % per_epoch != 0 && short * 100 <= per_epoch && low + short <= i.most {
        low += short;
    }
    BudgetPlan {
        budget_s: i.budget_s,
        step_s: i.step_s,
        eval_s: evals_s(low),
        monitor_s: Some(i.monitor_s),
        final_s: Some(i.final_s),
        planned_at: i.done,
        steps: low,
        epochs: low as f64 / per_epoch as f64,
        revised_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_hours_minutes_and_seconds() {
        assert_eq!(parse_duration("run.time_budget", "12m").unwrap(), 720.0);
        assert_eq!(parse_duration("run.time_budget", "1h30m").unwrap(), 5400.0);
        assert_eq!(parse_duration("run.time_budget", "2.5h").unwrap(), 9000.0);
        assert_eq!(parse_duration("run.time_budget", " 90s ").unwrap(), 90.0);
        for bad in ["", "12", "m", "12 parsecs", "-5m", "0s", "1.2.3m"] {
            let err = parse_duration("run.time_budget", bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("run.time_budget"), "{bad}: {err}");
        }
    }

    #[test]
    fn evaluations_are_costed_from_a_pass_then_from_a_monitor() {
        // Before a monitor has run: passes timed on a sample; the final evaluation fits a
        // probe and k-means besides.
        assert_eq!(costs_from_pass(20.0, true), (25.0, 50.0));
        assert_eq!(costs_from_pass(20.0, false), (25.0, 0.0));
        assert_eq!(costs_from_monitor(12.0, true), (12.0, 18.0));
        assert_eq!(costs_from_monitor(12.0, false), (12.0, 0.0));
    }

    #[test]
    fn a_plan_saved_before_revisions_existed_still_reads() {
        let old = r#"{"budget_s":720.0,"step_s":0.375,"eval_s":172.1,"steps":1462,"epochs":6.25}"#;
        let plan: BudgetPlan = serde_json::from_str(old).unwrap();
        assert_eq!((plan.steps, plan.planned_at), (1462, 0));
        // No costs to revise with until a monitor is timed; never revised yet.
        assert_eq!(
            (plan.monitor_s, plan.final_s, plan.revised_at),
            (None, None, None)
        );
        assert_eq!(
            plan.to_string(),
            "720 s: 1462 steps (6.25 epochs) at 0.375 s a step"
        );
    }

    fn inputs() -> BudgetInputs {
        let (monitor_s, final_s) = costs_from_pass(20.0, true);
        BudgetInputs {
            budget_s: 600.0,
            elapsed_s: 10.0,
            done: 20,
            step_s: 0.5,
            monitor_s,
            final_s,
            per_epoch: 234,
            monitor_every: 1,
            most: 10_000,
        }
    }

    #[test]
    fn the_plan_fills_the_budget_with_its_evaluations() {
        let plan = plan_steps(BudgetInputs {
            budget_s: 650.0,
            ..inputs()
        });
        // A monitor every epoch is 1.25 passes of 20 s; the final evaluation 2.5 passes.
        let time = |steps: u64| {
            10.0 + (steps - 20) as f64 * 0.5 + (steps / 234) as f64 * 1.25 * 20.0 + 2.5 * 20.0
        };
        assert_eq!(plan.steps, 1000, "mid-epoch: {plan:?}");
        assert!(time(plan.steps) <= 650.0, "{plan:?}");
        assert!(time(plan.steps + 1) > 650.0, "{plan:?}");
        assert!(
            (plan.eval_s - (time(plan.steps) - 10.0 - (plan.steps - 20) as f64 * 0.5)).abs() < 1e-9
        );
        assert!((plan.epochs - plan.steps as f64 / 234.0).abs() < 1e-12);
        // What a revision needs: where the plan was made and the costs it counted.
        assert_eq!(
            (
                plan.planned_at,
                plan.monitor_s,
                plan.final_s,
                plan.revised_at
            ),
            (20, Some(25.0), Some(50.0), None)
        );
    }

    #[test]
    fn a_plan_a_step_short_of_an_epoch_ends_with_it() {
        // 1637 steps fit; 7 epochs are 1638.
        let plan = plan_steps(BudgetInputs {
            budget_s: 10.0 + 1617.0 * 0.5,
            monitor_s: 0.0,
            final_s: 0.0,
            ..inputs()
        });
        assert_eq!((plan.steps, plan.epochs), (1638, 7.0));
        // At 234 steps an epoch, up to 2 steps short (1 %) are made up; 3 are not.
        let three_short = plan_steps(BudgetInputs {
            budget_s: 10.0 + 1615.0 * 0.5,
            monitor_s: 0.0,
            final_s: 0.0,
            ..inputs()
        });
        assert_eq!(three_short.steps, 1635, "{three_short:?}");
    }

    #[test]
    fn the_plan_stays_within_the_epochs_and_after_the_steps_done() {
        // Short epochs are never rounded up: one step of 3 is a third of an epoch.
        let short_epochs = plan_steps(BudgetInputs {
            budget_s: 10.0 + 11.0 * 0.5,
            monitor_s: 0.0,
            final_s: 0.0,
            per_epoch: 3,
            ..inputs()
        });
        assert_eq!(short_epochs.steps, 31);
        let roomy = plan_steps(BudgetInputs {
            budget_s: 1e9,
            ..inputs()
        });
        assert_eq!(roomy.steps, 10_000);
        let spent = plan_steps(BudgetInputs {
            elapsed_s: 700.0,
            ..inputs()
        });
        assert_eq!(spent.steps, 20, "over budget already: stop at once");
        let no_evals = plan_steps(BudgetInputs {
            monitor_s: 0.0,
            final_s: 0.0,
            ..inputs()
        });
        assert_eq!(no_evals.steps, 20 + (590.0 / 0.5) as u64);
    }
}
