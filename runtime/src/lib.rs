//! relayd-run: the runtime half of relaydc.
//!
//! It will load a plan written by `relaydc compile` and run it; it never links the
//! parser. Nothing is implemented yet: the plan format comes first (see ARCHITECTURE.md).
