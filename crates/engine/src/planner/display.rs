//! How `berth up --dry-run` prints a plan: one line per step, the verb and
//! the container in aligned columns, then the reason.

use super::{Action, Plan, Step};
use std::fmt;

impl Action {
    /// The word the dry run prints for the action.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Nothing { .. } => "keep",
            Action::Create { .. } => "create",
            Action::Start { .. } => "start",
            Action::Restart { .. } => "restart",
            Action::Recreate { .. } => "recreate",
            Action::ScaleDown { .. } | Action::RemoveOrphan { .. } => "remove",
        }
    }

    /// The container acted on, if there is one.
    pub fn container(&self) -> Option<&str> {
        match self {
            Action::Nothing { container } => container.as_deref(),
            Action::Create { name, .. } => Some(name),
            Action::Start { container }
            | Action::Restart { container }
            | Action::Recreate { container, .. }
            | Action::ScaleDown { container }
            | Action::RemoveOrphan { container } => Some(container),
        }
    }
}

fn write_step(
    f: &mut fmt::Formatter<'_>,
    step: &Step,
    verb_w: usize,
    target_w: usize,
) -> fmt::Result {
    let target = step.action.container().unwrap_or("-");
    write!(
        f,
        "{:<verb_w$}  {:<target_w$}  {}",
        step.action.verb(),
        target,
        step.reason
    )
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_step(f, self, 0, 0)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        let verb_w = self
            .steps
            .iter()
            .map(|s| s.action.verb().len())
            .max()
            .unwrap_or(0);
        let target_w = self
            .steps
            .iter()
            .map(|s| s.action.container().unwrap_or("-").chars().count())
            .max()
            .unwrap_or(0);
        for step in &self.steps {
            write_step(f, step, verb_w, target_w)?;
            writeln!(f)?;
        }
        Ok(())
    }
}
