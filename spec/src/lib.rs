//! The contract between the compiler (`relaydc`) and the runtime (`relayd-run`).
//!
//! Everything both sides must agree on lives here and nowhere else: the catalog of
//! diagnostic codes (with their explanations, embedded from `spec/diagnostics/`), the
//! relayd releases a configuration can be written for ([`era`]), and, as the project
//! grows, the plan types and the pure decision functions (filters, balancing, health).

pub mod balance;
pub mod codes;
pub mod era;
pub mod errorpage;
pub mod filter;
pub mod health;
pub mod plan;
pub mod tls;

pub use codes::{Code, CodeInfo, Severity};
pub use era::Release;
