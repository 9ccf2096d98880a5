//! relayd-run: the runtime half of relaydc.
//!
//! It loads a plan written by `relaydc compile` and (as the project grows) runs it; it
//! never links the parser. Today it loads and validates plans ([`plan`]), binds what a
//! `--late-bind` plan left for the deploy host ([`bind`]), and has the
//! command line ([`cli`]), whose `--check` validates a plan like `relayd -n`; serving
//! relays comes next.

pub mod bind;
pub mod cli;
pub mod plan;

pub use plan::{
    load, load_bytes, load_public, validate, Inconsistency, KeysSection, LoadError, Loaded,
    Problem, PublicPlan,
};
