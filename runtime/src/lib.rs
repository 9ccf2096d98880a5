//! relayd-run: the runtime half of relaydc.
//!
//! It loads a plan written by `relaydc compile` and (as the project grows) runs it; it
//! never links the parser. Today it loads and validates plans ([`plan`]), binds what a
//! `--late-bind` plan left for the deploy host ([`bind`]), and has the
//! command line ([`cli`]), whose `--check` validates a plan like `relayd -n`. [`serve`]
//! runs TCP and HTTP relays (worker threads with SO_REUSEPORT listeners, relayd's HTTP
//! framing from [`http`], balancing over tables, relayd's session close lines via
//! [`log`]) with health checks ([`health`]) and the control socket that `relayctl` talks
//! to ([`control`]).

pub mod bind;
pub mod cli;
pub mod control;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod helper;
pub mod http;
pub mod log;
pub mod notify;
pub mod plan;
pub mod privs;
pub mod redirect;
pub mod router;
pub mod seccomp;
pub mod serve;
pub mod signer;
pub mod tls;

pub use plan::{
    load, load_bytes, load_public, validate, Inconsistency, KeysSection, LoadError, Loaded,
    Problem, PublicPlan,
};
