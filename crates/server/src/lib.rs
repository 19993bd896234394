//! The Switchboard call server as a library.

pub mod auth;
pub mod call;
pub mod config;
pub mod limit;
