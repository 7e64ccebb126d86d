//! Rules: the model, loading with located diagnostics, the expression engine
//! with its look-back history, and the pure evaluator.

pub mod eval;
pub mod expr;
pub mod history;
pub mod load;
pub mod model;

pub use eval::{Action, Evaluator, Invocation};
pub use model::{Rule, SourceKind};
