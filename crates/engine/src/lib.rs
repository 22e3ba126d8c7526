//! berth's engine: the planner (the pure function that turns the desired
//! project and the observed containers into an explained [`Plan`]) and the
//! [`backend::Backend`] trait every engine implements to apply it.

pub mod backend;
pub mod hooks;
pub mod interrupt;
pub mod planner;
pub mod project_files;
pub mod terminal;
pub mod time;

pub use backend::{Backend, BackendError, Container, Context, ErrorKind, ProjectStatus, Status};
pub use planner::{
    plan, Action, ContainerState, Desired, ObservedContainer, Plan, PlanError, PlanOptions, Step,
    Strategy,
};
