//! Scenario tests across crates, as one test binary (linking the whole server once):
//! the real server in-process on 127.0.0.1, real SDK clients with real WebRTC media,
//! and a real HTTP app server recording every callback. One module per area.

mod api;
mod auth;
mod bad_input;
mod calls;
mod chaos;
mod delivery;
mod engine;
mod hardening;
mod journal;
mod layering;
mod media;
mod postgres;
mod reconnect;
mod relay;
mod rooms;
mod sdk_constants;
