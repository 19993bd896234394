//! The Switchboard call server as a library.

mod api;
pub mod auth;
pub mod call;
pub mod callbacks;
pub mod clock;
pub mod config;
mod handles;
pub mod limit;
mod listener;
pub mod media;
pub mod metrics;
pub mod outbox;
pub mod party;
pub mod presence;
pub mod room;
pub mod server;
mod signal;
pub mod store;
mod web;

pub use config::Config;
pub use server::{start, ServerHandle};
