//! The rules of spec §4. Each is a pure function over claims, configuration and time.

pub mod time;
