//! A Service's monthly cost budget, from its annotations (validated at apply time; evaluated by
//! `nimbus-usage`):
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     nimbus.dev/monthly-budget: "25"        # in the price table's currency, per calendar month (UTC)
//!     nimbus.dev/budget-action: cap-scale    # optional: notify (default) or cap-scale
//! ```

use std::collections::BTreeMap;

use crate::FieldError;

/// The monthly budget, a positive amount in the price table's currency.
pub const ANNOTATION_MONTHLY_BUDGET: &str = "nimbus.dev/monthly-budget";
/// What happens at 100%: `notify` (report only) or `cap-scale` (cap the scale at
/// [`CAPPED_MAX_SCALE`] until the next month or a larger budget).
pub const ANNOTATION_BUDGET_ACTION: &str = "nimbus.dev/budget-action";
/// The instances a capped service may run: one, so it stays reachable at the least cost.
pub const CAPPED_MAX_SCALE: u32 = 1;

/// What to do when the budget is spent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BudgetAction {
    /// Report the crossings only.
    #[default]
    Notify,
    /// Report, and cap the service's scale at [`CAPPED_MAX_SCALE`] while over budget.
    CapScale,
}

/// A Service's budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Per calendar month (UTC), in the price table's currency.
    pub monthly: f64,
    pub action: BudgetAction,
}

impl Budget {
    /// The budget the annotations at `path` (a Service's `metadata.annotations`) set (`None`:
    /// no budget), or every problem with them.
    pub fn from_annotations(
        annotations: Option<&BTreeMap<String, String>>,
        path: &str,
    ) -> Result<Option<Self>, Vec<FieldError>> {
        let get = |key: &str| annotations.and_then(|a| a.get(key));
        let at = |key: &str| format!("{path}[{key}]");
        let mut errors = Vec::new();
        let monthly = get(ANNOTATION_MONTHLY_BUDGET).and_then(|v| {
            parse_amount(v)
                .map_err(|e| errors.push(FieldError::new(at(ANNOTATION_MONTHLY_BUDGET), e)))
                .ok()
        });
        let action = match get(ANNOTATION_BUDGET_ACTION).map(|v| v.trim()) {
            None | Some("notify") => BudgetAction::Notify,
            Some("cap-scale") => BudgetAction::CapScale,
            Some(other) => {
                errors.push(FieldError::new(
                    at(ANNOTATION_BUDGET_ACTION),
                    format!("{other:?} is not a budget action; give notify or cap-scale"),
                ));
                BudgetAction::Notify
            }
        };
        if get(ANNOTATION_BUDGET_ACTION).is_some() && get(ANNOTATION_MONTHLY_BUDGET).is_none() {
            errors.push(FieldError::new(
                at(ANNOTATION_BUDGET_ACTION),
                format!("a budget action needs a budget: set {ANNOTATION_MONTHLY_BUDGET} too"),
            ));
        }
        match errors.is_empty() {
            true => Ok(monthly.map(|monthly| Self { monthly, action })),
            false => Err(errors),
        }
    }
}

fn parse_amount(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!(
            "{v:?} is not a budget; give a positive amount in the price table's currency, e.g. \"25\" or \"7.50\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_budget_and_its_action() {
        let a = annotations(&[
            (ANNOTATION_MONTHLY_BUDGET, "7.5"),
            (ANNOTATION_BUDGET_ACTION, "cap-scale"),
        ]);
        let b = Budget::from_annotations(Some(&a), "metadata.annotations")
            .unwrap()
            .unwrap();
        assert_eq!(
            b,
            Budget {
                monthly: 7.5,
                action: BudgetAction::CapScale
            }
        );
        assert_eq!(Budget::from_annotations(None, "m").unwrap(), None);
    }

    #[test]
    fn bad_values_name_their_field() {
        let a = annotations(&[
            (ANNOTATION_MONTHLY_BUDGET, "-3"),
            (ANNOTATION_BUDGET_ACTION, "stop"),
        ]);
        let errors = Budget::from_annotations(Some(&a), "metadata.annotations").unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                "metadata.annotations[nimbus.dev/monthly-budget]",
                "metadata.annotations[nimbus.dev/budget-action]"
            ]
        );
        let a = annotations(&[(ANNOTATION_BUDGET_ACTION, "cap-scale")]);
        assert!(Budget::from_annotations(Some(&a), "m").is_err());
        let a = annotations(&[(ANNOTATION_MONTHLY_BUDGET, "NaN")]);
        assert!(Budget::from_annotations(Some(&a), "m").is_err());
    }
}
