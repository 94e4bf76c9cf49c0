//! Ticket rules (a task's `schedulers`): `empty-schedulers`, `duplicate-scheduler`.
//!
//! Whether each named user is also a `serve --scheduler` cannot be known here: the daemon's
//! flags are not in the policy.

use std::collections::BTreeSet;

use super::{Linter, RuleId};

impl Linter<'_> {
    /// One pass over the tasks that have `schedulers`.
    pub(super) fn schedulers(&mut self) {
        let p = self.policy;
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for (tname, task) in &p.tasks {
            let Some(list) = &task.schedulers else {
                continue;
            };
            if list.value.is_empty() {
                self.push(
                    RuleId::EmptySchedulers,
                    list.span.clone(),
                    format!(
                        "task `{tname}` has `schedulers = []`: no scheduler may ask for its tickets, as without the key"
                    ),
                    format!(
                        "name the scheduler's user in `schedulers = [\"USER\"]` of [tasks.{tname}], or remove the key"
                    ),
                    None,
                    Some(tname),
                    Vec::new(),
                );
                continue;
            }
            seen.clear();
            for u in list.value.iter() {
                if !seen.insert(u.value.as_str()) {
                    self.push(
                        RuleId::DuplicateScheduler,
                        u.span.clone(),
                        format!("task `{tname}` names scheduler `{}` twice", u.value),
                        format!(
                            "remove the second `{}` from `schedulers` of [tasks.{tname}], or correct it to the user that was meant",
                            u.value
                        ),
                        None,
                        Some(tname),
                        Vec::new(),
                    );
                    self.detail(format!("scheduler:{}", u.value));
                }
            }
        }
    }
}
