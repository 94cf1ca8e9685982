//! Entry points for the coverage-guided fuzz targets in `fuzz/` (feature `fuzzing`, never part of
//! the filter build): the host emulator the stream tests use, and the engine's fuzzing entry points.

pub use crate::filter::fake::Fake;
pub use dcr_guard_core::fuzzing::parse_json_object;
