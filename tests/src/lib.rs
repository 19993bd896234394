//! scenario test helpers
