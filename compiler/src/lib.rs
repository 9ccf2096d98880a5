//! relaydc: relayd.conf to diagnostics (and, later, to a frozen plan).
//!
//! The data flows one way: [`source`] → [`lex`] → [`parse`] → [`check`], each reporting
//! into a [`diag::Diagnostics`] sink; [`cli`] renders them at the edge.

pub mod check;
pub mod cli;
pub mod diag;
pub mod era;
pub mod freeze;
pub mod ir;
pub mod lex;
pub mod lower;
pub mod parse;
pub mod services;
pub mod source;
pub mod verify;
