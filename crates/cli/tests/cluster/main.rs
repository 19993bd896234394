//! Deployments of several nodes (each the real binary in a process of its own) on one
//! PostgreSQL and one Redis, as a test binary of their own: it runs after the other CLI
//! tests, whose tone tests count packets and came up short beside a deployment.

#[allow(dead_code)]
#[path = "../it/common.rs"]
mod common;

mod nodes;
