//! `dcr-guard schema [--kong]`: the configuration's JSON Schema, derived from the filter's own
//! configuration types (`dcr_guard_core::config::schema`): Draft 2020-12, or with `--kong` Kong's
//! filter metadata (`dcr_guard.meta.json`, a Draft-4 `config_schema`). `make schema` writes both
//! into envoy/kong/.

use dcr_guard_core::config::schema;

use crate::EXIT_OK;

pub fn main(args: &[String]) -> Result<u8, String> {
    let doc = match args {
        [] => schema::draft_2020_12(),
        [flag] if flag == "--kong" => schema::kong_meta()?,
        _ => return Err("usage: dcr-guard schema [--kong]".into()),
    };
    print!("{}", schema::render(&doc));
    Ok(EXIT_OK)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The committed schemas (the kits', shipped by `make dist`) are exactly what the configuration
    /// types give now: a field, bound, description or default changed in core/src/config/raw.rs
    /// without `make schema` fails here.
    #[test]
    fn committed_schemas_are_what_the_types_give() {
        let kong = schema::kong_meta().unwrap();
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        for (file, doc) in [
            ("envoy/kong/dcr-guard.schema.json", schema::draft_2020_12()),
            ("envoy/kong/dcr_guard.meta.json", kong),
        ] {
            let committed = std::fs::read_to_string(format!("{root}/{file}"))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(
                committed == schema::render(&doc),
                "{file} is not what the configuration types give (core/src/config/raw.rs): run `make schema`"
            );
        }
    }

    #[test]
    fn usage() {
        assert!(main(&["--kong".into()]).is_ok());
        assert!(main(&[]).is_ok());
        assert!(main(&["--draft4".into()]).is_err());
    }
}
