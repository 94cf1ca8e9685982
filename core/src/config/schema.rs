//! The configuration's JSON Schema, derived from the types the filter reads it into
//! (config/raw.rs, and [`ParticipantStatus`] for the part config/status.rs reads by hand). Only with
//! the `schema` feature: the native CLI (`dcr-guard schema`) and the tests; never the filter.
//!
//! - [`draft_2020_12`]: the schema (envoy/kong/dcr-guard.schema.json).
//! - [`kong_meta`]: Kong's filter metadata (envoy/kong/dcr_guard.meta.json), whose `config_schema`
//!   is the same schema in JSON Schema Draft 4 (what Kong validates a filter's `config` with),
//!   every reference inlined.
//! - [`render`]: the text both files hold (keys sorted, two-space indent, a final newline), so that
//!   the same source gives the same bytes whatever serde_json's features in the build.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value};

use super::raw::RawConfig;
use super::status;

// -------------------------------------------------------------------------------------------
// Named pieces the raw types refer to (`#[schemars(with = ...)]`): each is one `$defs` entry.

/// A string with a non-space character.
pub(super) struct NonBlank;

impl JsonSchema for NonBlank {
    fn schema_name() -> Cow<'static, str> {
        "NonBlank".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": "\\S"})
    }
}

/// A list of non-blank names, each once.
pub(super) struct Names;

impl JsonSchema for Names {
    fn schema_name() -> Cow<'static, str> {
        "Names".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A list of non-blank names, each once.",
            "type": "array",
            "uniqueItems": true,
            "items": generator.subschema_for::<NonBlank>(),
        })
    }
}

/// A non-empty list of non-blank names, each once.
pub(super) struct NonEmptyNames;

impl JsonSchema for NonEmptyNames {
    fn schema_name() -> Cow<'static, str> {
        "NonEmptyNames".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A non-empty list of non-blank names, each once.",
            "type": "array",
            "minItems": 1,
            "uniqueItems": true,
            "items": generator.subschema_for::<NonBlank>(),
        })
    }
}

/// The JWS algorithms dcr-guard verifies (tests/kits.rs `schema_enums_match_the_filter` holds this
/// list to the filter's own).
const ALGORITHMS: [&str; 4] = ["PS256", "ES256", "RS256", "EdDSA"];

/// A non-empty list of [`ALGORITHMS`].
pub(super) struct Algorithms;

impl JsonSchema for Algorithms {
    fn schema_name() -> Cow<'static, str> {
        "Algorithms".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "JWS algorithms dcr-guard verifies. `none` and HS* are never allowed.",
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "enum": ALGORITHMS},
        })
    }
}

/// Algorithm names allowed in client metadata.
pub(super) struct MetadataAlgorithms;

impl JsonSchema for MetadataAlgorithms {
    fn schema_name() -> Cow<'static, str> {
        "MetadataAlgorithms".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Algorithm names allowed in client metadata. `none` and HS* are never allowed.",
            "type": "array",
            "minItems": 1,
            "uniqueItems": true,
            "items": {
                "type": "string",
                "pattern": "\\S",
                "not": {"anyOf": [{"enum": ["none"]}, {"pattern": "^HS"}]},
            },
        })
    }
}

/// An absolute https URL.
pub(super) struct HttpsUrl;

impl JsonSchema for HttpsUrl {
    fn schema_name() -> Cow<'static, str> {
        "HttpsUrl".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An absolute https URL with a host, without user information or fragment.",
            "type": "string",
            "pattern": "^https://[^/?#@]+([/?][^#]*)?$",
        })
    }
}

/// `directories[].jwks[].inline`: a JWKS document (its keys are checked by the filter).
pub(super) struct DirectoryJwksInline;

impl JsonSchema for DirectoryJwksInline {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "DirectoryJwksInline".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": false,
            "required": ["keys"],
            "properties": {
                "keys": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object"},
                },
            },
        })
    }
}

// -------------------------------------------------------------------------------------------
// `rules.participant_status`: read by hand (config/status.rs), described here. The tests below
// hold the two together: every property named here is read there, and nothing else.

/// Live participant status (README: Participant status): the verified SSA's participant must be listed with an allowed status in each document.
#[allow(dead_code)] // Never built: it only describes the document.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
pub(super) struct ParticipantStatus {
    #[schemars(extend("default" = true))]
    enabled: Option<bool>,
    register: Option<CdrRegister>,
    /// Status documents described field by field.
    #[schemars(length(max = status::MAX_SOURCES))]
    sources: Option<Vec<StatusSource>>,
}

/// au-cdr only: presets the CDR Register's software product and data recipient status documents.
#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct CdrRegister {
    /// The Register API base with the industry, e.g. `https://api.cdr.gov.au/cdr-register/v1/all`.
    #[schemars(length(min = 1))]
    base_url: String,
    /// The Envoy cluster that reaches the Register.
    #[schemars(length(min = 1))]
    upstream: String,
    /// `:authority` of the fetch (default: the URL's host and port).
    #[schemars(length(min = 1))]
    authority: Option<String>,
    /// How long a fetched document is current; refreshed in the background then.
    #[schemars(
        range(min = status::REFRESH.min, max = status::REFRESH.max),
        extend("default" = status::DEFAULT_REFRESH),
    )]
    refresh_seconds: Option<u64>,
    /// How long past its refresh time the last good document may serve while fetches fail.
    #[schemars(
        range(min = status::STALENESS.min, max = status::STALENESS.max),
        extend("default" = status::DEFAULT_MAX_STALENESS),
    )]
    max_staleness_seconds: Option<u64>,
    /// Largest document accepted.
    #[schemars(
        range(min = status::DOCUMENT_BYTES.min, max = status::DOCUMENT_BYTES.max),
        extend("default" = status::DEFAULT_MAX_BYTES),
    )]
    max_bytes: Option<usize>,
    /// A document that parses but does not list the SSA's participant: 503 until one does (`refuse`), or let it through (`allow`).
    #[schemars(extend("enum" = ["refuse", "allow"], "default" = "refuse"))]
    unknown: Option<String>,
}

#[allow(dead_code)]
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct StatusSource {
    /// What the entries are, in error descriptions: `software product`.
    #[schemars(length(min = 1))]
    name: String,
    /// The document's https URL.
    #[schemars(length(min = 1))]
    url: String,
    /// The Envoy cluster that serves it.
    #[schemars(length(min = 1))]
    upstream: String,
    /// `:authority` of the fetch (default: the URL's host and port).
    #[schemars(length(min = 1))]
    authority: Option<String>,
    /// Extra request headers (e.g. `x-v`); no credentials.
    #[schemars(extend("maxProperties" = status::MAX_HEADERS))]
    headers: Option<BTreeMap<String, String>>,
    /// How long a fetched document is current; refreshed in the background then.
    #[schemars(
        range(min = status::REFRESH.min, max = status::REFRESH.max),
        extend("default" = status::DEFAULT_REFRESH),
    )]
    refresh_seconds: Option<u64>,
    /// How long past its refresh time the last good document may serve while fetches fail.
    #[schemars(
        range(min = status::STALENESS.min, max = status::STALENESS.max),
        extend("default" = status::DEFAULT_MAX_STALENESS),
    )]
    max_staleness_seconds: Option<u64>,
    /// Largest document accepted.
    #[schemars(
        range(min = status::DOCUMENT_BYTES.min, max = status::DOCUMENT_BYTES.max),
        extend("default" = status::DEFAULT_MAX_BYTES),
    )]
    max_bytes: Option<usize>,
    /// Members leading to the array of entries, joined by `.`; empty: the document is the array.
    array: String,
    /// The member of an entry holding its id.
    #[schemars(length(min = 1))]
    id_member: String,
    /// The member of an entry holding its status.
    #[schemars(length(min = 1))]
    status_member: String,
    /// The verified SSA's claim looked up as the id.
    #[schemars(length(min = 1))]
    ssa_claim: String,
    /// Statuses that allow registration.
    #[schemars(length(min = 1), inner(length(min = 1)))]
    allowed: Vec<String>,
    /// A document that parses but does not list the SSA's participant: 503 until one does (`refuse`), or let it through (`allow`).
    #[schemars(extend("enum" = ["refuse", "allow"], "default" = "refuse"))]
    unknown: Option<String>,
}

// -------------------------------------------------------------------------------------------
// The documents.

/// The configuration's schema, JSON Schema Draft 2020-12.
pub fn draft_2020_12() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<RawConfig>().to_value();
    not_null(&mut schema);
    schema
}

/// What `Option<T>` adds that the schema leaves out, recursively: `null` (serde reads it as an
/// absent field; the schema asks for the field to be left out, as before), and schemars' integer
/// `format`s (`uint64`, ...: not JSON Schema formats; `minimum`/`maximum` say it).
fn not_null(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(types)) = m.get_mut("type") {
                types.retain(|t| t != "null");
                if let [one] = types.as_slice() {
                    let one = one.clone();
                    m.insert("type".into(), one);
                }
            }
            if let Some(Value::Array(any)) = m.get("anyOf") {
                let null = serde_json::json!({"type": "null"});
                let rest: Vec<Value> = any.iter().filter(|s| **s != null).cloned().collect();
                if rest.len() < any.len() {
                    m.remove("anyOf");
                    match <[Value; 1]>::try_from(rest) {
                        Ok([Value::Object(only)]) => {
                            for (k, s) in only {
                                m.entry(k).or_insert(s);
                            }
                        }
                        Ok([other]) => {
                            m.insert("allOf".into(), Value::Array(vec![other]));
                        }
                        Err(rest) => {
                            m.insert("anyOf".into(), Value::Array(rest));
                        }
                    }
                }
            }
            if m.get("type").and_then(Value::as_str) == Some("integer") {
                m.remove("format");
            }
            m.values_mut().for_each(not_null);
        }
        Value::Array(a) => a.iter_mut().for_each(not_null),
        _ => {}
    }
}

/// Kong's filter metadata: `{"config_schema": <the schema in Draft 4>}`.
///
/// Draft 4 has no `$defs` (every `$ref` is replaced by its definition, so that no reference is
/// left for Kong's validator to resolve), no `const` (a one-value `enum`), and a boolean
/// `exclusiveMinimum`/`exclusiveMaximum`. A keyword outside Draft 4 is an error naming where it is,
/// so that a schema change cannot silently give Kong a schema that means something else.
pub fn kong_meta() -> Result<Value, String> {
    let schema = draft_2020_12();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let Value::Object(body) = draft4(&schema, &defs, "#", 0)? else {
        return Err("the schema is not an object".into());
    };
    let mut config_schema = Map::new();
    config_schema.insert(
        "$schema".into(),
        "http://json-schema.org/draft-04/schema#".into(),
    );
    config_schema.extend(body);
    let mut meta = Map::new();
    meta.insert("config_schema".into(), Value::Object(config_schema));
    Ok(Value::Object(meta))
}

/// Keywords of Draft 4 (http://json-schema.org/draft-04/schema) kept as they are (their values
/// converted where they hold schemas).
const DRAFT4: &[&str] = &[
    "title",
    "description",
    "default",
    "type",
    "enum",
    "format",
    "properties",
    "additionalProperties",
    "patternProperties",
    "required",
    "items",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "multipleOf",
    "minProperties",
    "maxProperties",
    "dependencies",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
];

/// Keywords whose value is data, not schemas.
const DATA: &[&str] = &[
    "title",
    "description",
    "default",
    "type",
    "enum",
    "format",
    "required",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "multipleOf",
    "minProperties",
    "maxProperties",
];

/// Definitions nested deeper than this are a cycle (the configuration has none).
const MAX_DEPTH: usize = 32;

fn draft4(
    node: &Value,
    defs: &Map<String, Value>,
    at: &str,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("{at}: definitions nested too deep (a cycle?)"));
    }
    let Value::Object(m) = node else {
        return Err(format!(
            "{at}: a boolean schema has no Draft 4 form here; write an object schema"
        ));
    };
    let mut out = Map::new();
    if let Some(r) = m.get("$ref") {
        let name = r
            .as_str()
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .ok_or_else(|| format!("{at}/$ref: only #/$defs/ references are inlined, not {r}"))?;
        let def = defs
            .get(name)
            .ok_or_else(|| format!("{at}/$ref: no definition {name}"))?;
        let Value::Object(def) = draft4(def, defs, &format!("#/$defs/{name}"), depth + 1)? else {
            return Err(format!("#/$defs/{name}: not an object"));
        };
        out.extend(def);
    }
    for (key, value) in m {
        let where_ = format!("{at}/{key}");
        match key.as_str() {
            "$schema" | "$defs" | "$ref" => {}
            "const" => {
                out.insert("enum".into(), Value::Array(vec![value.clone()]));
            }
            "exclusiveMinimum" | "exclusiveMaximum" => {
                return Err(format!(
                    "{where_}: a numeric {key} (Draft 6+) has no Draft 4 form here; use minimum/maximum"
                ));
            }
            "properties" | "patternProperties" => {
                let Value::Object(props) = value else {
                    return Err(format!("{where_}: not an object"));
                };
                let mut converted = Map::new();
                for (name, s) in props {
                    converted.insert(
                        name.clone(),
                        draft4(s, defs, &format!("{where_}/{name}"), depth)?,
                    );
                }
                out.insert(key.clone(), Value::Object(converted));
            }
            "additionalProperties" | "additionalItems" if value.is_boolean() => {
                out.insert(key.clone(), value.clone());
            }
            "allOf" | "anyOf" | "oneOf" => {
                let Value::Array(list) = value else {
                    return Err(format!("{where_}: not an array"));
                };
                let converted = list
                    .iter()
                    .enumerate()
                    .map(|(i, s)| draft4(s, defs, &format!("{where_}/{i}"), depth))
                    .collect::<Result<Vec<_>, _>>()?;
                out.insert(key.clone(), Value::Array(converted));
            }
            k if DATA.contains(&k) => {
                // A definition's description gives way to the one at the place it is used.
                out.insert(key.clone(), value.clone());
            }
            k if DRAFT4.contains(&k) => {
                out.insert(key.clone(), draft4(value, defs, &where_, depth)?);
            }
            other => {
                return Err(format!(
                    "{where_}: `{other}` is not a Draft 4 keyword: teach config::schema::kong_meta its Draft 4 form"
                ))
            }
        }
    }
    Ok(Value::Object(out))
}

/// The text of a generated document: keys sorted at every level, two-space indent, a final
/// newline.
pub fn render(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .filter_map(|k| m.get(k).map(|c| (k.clone(), sorted(c))))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let mut text = serde_json::to_string_pretty(&sorted(v)).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests;
