//! The Switchboard call server as a library. `docs/architecture.md` is the map: the
//! floors below, from the leaves up, and the tasks that run them.
//!
//! - leaves: [`ids`], [`clock`], [`records`], [`media_link`], [`limit`], [`auth`];
//! - logic, sans IO: [`core`] (presence, calls, rooms), [`session`] (one connection's
//!   protocol), [`media::relay`] (the SFU), [`outbox`]'s dispatcher;
//! - persistence: [`store`] (journal, recovery, queries);
//! - IO shells and edges: [`server`] (wiring the tasks), `signal` (WebSocket), `api`
//!   (REST), `web`, [`media`] (relay shards), [`outbox`]'s runner, [`callbacks`].

mod api;
pub mod auth;
pub mod backend_tls;
pub mod callbacks;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod core;
mod handles;
pub mod ids;
pub mod limit;
mod listener;
pub mod media;
pub mod media_link;
pub mod metrics;
pub mod outbox;
pub mod proxies;
pub mod records;
pub mod server;
pub mod session;
mod signal;
pub mod store;
pub mod tls;
pub mod turn;
mod web;

pub use config::Config;
pub use server::{start, ServerHandle};
