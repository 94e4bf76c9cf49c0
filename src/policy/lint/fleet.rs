//! Fleet rules (`[locations.NAME]` and the tasks' `locations`): `unknown-location`,
//! `invalid-recipient`, `shared-recipient`, `location-without-tasks`, `task-without-locations`.

use std::collections::hash_map::Entry;
use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;

use super::{Linter, RuleId};

impl Linter<'_> {
    /// The fleet rules, one pass over the locations and one over the tasks.
    pub(super) fn fleet(&mut self) {
        let p = self.policy;
        // In the file's order, so that a shared recipient is reported at the later location.
        let mut locations: Vec<_> = p.locations.iter().collect();
        locations.sort_by_key(|(_, l)| l.span.start);
        // Each recipient (its canonical form: an upper-case copy is the same key) and the
        // first location that has it.
        let mut first: HashMap<String, &str> = HashMap::default();
        for (name, loc) in locations {
            let r = &loc.recipient;
            let recipient = match crate::fleet::recipient::parse(&r.value) {
                Ok(recipient) => recipient,
                Err(why) => {
                    let shown: String = r.value.chars().take(80).collect();
                    self.push(
                        RuleId::InvalidRecipient,
                        r.span.clone(),
                        format!(
                            "location `{name}` has an invalid recipient {:?}: {why}",
                            shown
                        ),
                        "copy the `age1…` line `scopevault recipient` prints on the checkpoint"
                            .to_owned(),
                        None,
                        None,
                        Vec::new(),
                    );
                    self.detail(format!("location:{name}"));
                    continue;
                }
            };
            match first.entry(recipient.to_string()) {
                Entry::Occupied(other) => {
                    let other = *other.get();
                    self.push(
                        RuleId::SharedRecipient,
                        r.span.clone(),
                        format!("locations `{other}` and `{name}` have the same recipient: both bundles are encrypted to one vault, which can read the credentials of both, and the other location's checkpoint cannot decrypt its bundle"),
                        format!("give [locations.{name}] the `age1…` line `scopevault recipient` prints on its own checkpoint (was `{other}`'s pasted by mistake?): every checkpoint has a vault, and a recipient, of its own"),
                        None,
                        None,
                        Vec::new(),
                    );
                    self.detail(format!("location:{name}"));
                }
                Entry::Vacant(slot) => {
                    slot.insert(name);
                }
            }
        }
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for (tname, task) in &p.tasks {
            if task.locations.is_empty() && !p.locations.is_empty() {
                self.push(
                    RuleId::TaskWithoutLocations,
                    task.span.clone(),
                    format!(
                        "task `{tname}` names no location: `scopevault publish` sends it nowhere"
                    ),
                    format!("add `locations = [\"NAME\"]` to [tasks.{tname}]"),
                    None,
                    Some(tname),
                    Vec::new(),
                );
            }
            for l in &task.locations {
                if p.locations.contains_key(&l.value) {
                    used.insert(l.value.as_str());
                    continue;
                }
                let hint = super::did_you_mean_within(
                    &l.value,
                    p.locations.keys().map(String::as_str),
                    &mut self.suggest_budget,
                );
                self.push(
                    RuleId::UnknownLocation,
                    l.span.clone(),
                    format!("task `{tname}` names location `{}`, which is not declared", l.value),
                    match hint {
                        Some(h) => format!("did you mean `{h}`? Otherwise declare [locations.{}]", l.value),
                        None => format!(
                            "declare [locations.{}] with the checkpoint's recipient, or remove it from the task",
                            l.value
                        ),
                    },
                    None,
                    Some(tname),
                    Vec::new(),
                );
                self.detail(format!("location:{}", l.value));
            }
        }
        for (name, loc) in &p.locations {
            if !used.contains(name.as_str()) {
                self.push(
                    RuleId::LocationWithoutTasks,
                    loc.span.clone(),
                    format!("no task runs at location `{name}`: its bundle would be empty"),
                    format!("list `{name}` in the `locations` of the tasks that run there, or remove [locations.{name}]"),
                    None,
                    None,
                    Vec::new(),
                );
                self.detail(format!("location:{name}"));
            }
        }
    }
}
