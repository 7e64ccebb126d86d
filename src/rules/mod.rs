//! Rules: the model, loading with located diagnostics, the expression engine
//! with its look-back history, the pure evaluator, and the warnings of
//! `redops check`.

pub mod eval;
pub mod expr;
pub mod history;
pub mod lint;
pub mod load;
pub mod model;
pub mod spec;

pub use eval::Evaluator;
pub use model::{Rule, RuleKind, SourceKind, keyspace_rules};
