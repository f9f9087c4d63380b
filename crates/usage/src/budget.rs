//! Monthly budgets: which threshold a Service's month-to-date cost reached, which crossing is
//! new (each is reported once per month, remembered in the usage database), and whether the
//! scale is capped. Pure; the binary reads the costs and applies the verdict.

use nimbus_api::budget::{Budget, BudgetAction};

/// The thresholds reported, in percent of the budget (as cloud budgets' default alerts).
pub const THRESHOLDS: [u8; 3] = [50, 90, 100];

/// Where a service stands against its budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Month-to-date cost.
    pub cost: f64,
    pub budget: f64,
    /// The highest threshold reached (0: none).
    pub level: u8,
    /// A threshold reached now and not reported yet this month (the highest, when several
    /// were crossed at once).
    pub crossed: Option<u8>,
    /// Whether the scale is to be capped (`cap-scale` and the budget spent).
    pub cap: bool,
}

/// The verdict for `cost` against `budget`, when `reported` (percent) was already reported
/// this month.
pub fn evaluate(cost: f64, budget: &Budget, reported: u8) -> Verdict {
    let percent = cost / budget.monthly * 100.0;
    let level = THRESHOLDS
        .iter()
        .copied()
        .filter(|t| percent >= f64::from(*t))
        .max()
        .unwrap_or(0);
    Verdict {
        cost,
        budget: budget.monthly,
        level,
        crossed: (level > reported).then_some(level),
        cap: budget.action == BudgetAction::CapScale && level >= 100,
    }
}

impl Verdict {
    /// The percentage of the budget spent.
    pub fn percent(&self) -> f64 {
        self.cost / self.budget * 100.0
    }

    /// The condition's reason (`WithinBudget`): `BelowThresholds`, `Reached50Percent`,
    /// `Reached90Percent` or `BudgetExceeded`.
    pub fn reason(&self) -> String {
        match self.level {
            0 => "BelowThresholds".into(),
            l if l >= 100 => "BudgetExceeded".into(),
            l => format!("Reached{l}Percent"),
        }
    }

    /// A sentence for the condition, the log and events.
    pub fn message(&self, currency: &str, capped_at: u32) -> String {
        let mut m = format!(
            "month-to-date cost {:.4} {currency} is {:.0}% of the monthly budget {} {currency}",
            self.cost,
            self.percent(),
            self.budget
        );
        if self.cap {
            m.push_str(&format!(
                "; scale capped at {capped_at} until next month or a larger budget"
            ));
        }
        m
    }
}

/// A Service (namespace and name) whose budget a verdict is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

/// Told about each threshold crossing, once per service, threshold and month. The binary logs
/// it; this is where a Kubernetes Event recorder plugs in (`Normal`/`Warning` event
/// `BudgetThresholdReached` on the Service).
pub trait BudgetNotifier: Send + Sync + 'static {
    fn crossed(&self, service: &ServiceRef, verdict: &Verdict, message: &str);
}

/// The notifier that writes a log line (warning) per crossing.
pub struct LogNotifier;

impl BudgetNotifier for LogNotifier {
    fn crossed(&self, service: &ServiceRef, verdict: &Verdict, message: &str) {
        tracing::warn!(
            namespace = %service.namespace,
            service = %service.name,
            threshold = verdict.crossed.unwrap_or(verdict.level),
            "budget threshold reached: {message}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(action: BudgetAction) -> Budget {
        Budget {
            monthly: 10.0,
            action,
        }
    }

    #[test]
    fn thresholds_are_crossed_once_each() {
        let b = budget(BudgetAction::Notify);
        let v = evaluate(4.0, &b, 0);
        assert_eq!((v.level, v.crossed, v.cap), (0, None, false));
        let v = evaluate(5.0, &b, 0);
        assert_eq!((v.level, v.crossed), (50, Some(50)));
        assert_eq!(
            evaluate(6.0, &b, 50).crossed,
            None,
            "50% was reported already"
        );
        let v = evaluate(12.0, &b, 50);
        assert_eq!((v.level, v.crossed, v.cap), (100, Some(100), false));
        assert_eq!(v.reason(), "BudgetExceeded");
        assert_eq!(evaluate(9.5, &b, 0).reason(), "Reached90Percent");
    }

    #[test]
    fn cap_scale_caps_only_while_over_budget() {
        let b = budget(BudgetAction::CapScale);
        assert!(evaluate(10.0, &b, 100).cap);
        assert!(!evaluate(9.99, &b, 100).cap);
        let raised = Budget { monthly: 20.0, ..b };
        assert!(
            !evaluate(10.0, &raised, 100).cap,
            "a larger budget lifts the cap"
        );
        let m = evaluate(10.0, &b, 0).message("USD", 1);
        assert!(
            m.contains("100% of the monthly budget 10 USD") && m.contains("capped at 1"),
            "{m}"
        );
    }
}
