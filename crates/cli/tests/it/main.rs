//! Tests of the `switchboard` binary, as one test binary: each runs the real binary
//! (`serve`, `token`, `call`, `answer`, `join`) as a user or an operator would.

mod common;

mod cli;
mod crash;
mod disk_full;
mod drain;
#[cfg(feature = "tone")]
mod tone;
mod turn;
