//! relayd-run: the runtime half of relaydc.
//!
//! It loads a plan written by `relaydc compile` and (as the project grows) runs it; it
//! never links the parser. Today it loads and validates plans ([`plan`]), binds what a
//! `--late-bind` plan left for the deploy host ([`bind`]), and has the
//! command line ([`cli`]), whose `--check` validates a plan like `relayd -n`. [`serve`]
//! runs TCP relays (worker threads with SO_REUSEPORT listeners, balancing over tables,
//! relayd's session close lines via [`log`]); HTTP, TLS and health checks come next.

pub mod bind;
pub mod cli;
pub mod health;
pub mod http;
pub mod log;
pub mod plan;
pub mod serve;

pub use plan::{
    load, load_bytes, load_public, validate, Inconsistency, KeysSection, LoadError, Loaded,
    Problem, PublicPlan,
};
