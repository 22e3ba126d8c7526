//! berth's engine. For now it holds the planner: the pure function that
//! turns the desired project and the observed containers into an explained
//! [`Plan`]. The executor and the backends will apply that plan.

pub mod embedded;
pub mod planner;
pub mod project_files;

pub use planner::{
    plan, Action, ContainerState, Desired, ObservedContainer, Plan, PlanError, PlanOptions, Step,
    Strategy,
};
