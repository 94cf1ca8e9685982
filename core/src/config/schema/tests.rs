//! The derived schema: the participant status description held to the hand reader
//! (config/status.rs), every object closed, no `null` let in, and Kong's Draft-4 form.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{draft_2020_12, kong_meta, render};
use crate::config::status::{REGISTER_FIELDS, SOURCE_FIELDS, STATUS_FIELDS};
use crate::config::tests::parse;

fn def<'a>(schema: &'a Value, name: &str) -> &'a Value {
    schema
        .pointer(&format!("/$defs/{name}"))
        .unwrap_or_else(|| panic!("no $defs/{name}"))
}

fn properties(object: &Value) -> BTreeSet<String> {
    object["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn required(object: &Value) -> BTreeSet<String> {
    object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn au_with(ps: Value) -> Value {
    json!({"profile": "au-cdr",
           "directories": [{"issuer": "cdr-register", "jwks": [{"url": "https://k.example/jwks", "upstream": "k"}]}],
           "rules": {"audience": {"audiences": ["https://holder.example"]}, "participant_status": ps}})
}

/// Every member of `register`, each with a value the reader accepts.
fn full_register() -> Value {
    json!({"base_url": "https://api.cdr.gov.au/cdr-register/v1/all", "upstream": "cdr_register",
           "authority": "api.cdr.gov.au", "refresh_seconds": 300, "max_staleness_seconds": 3600,
           "max_bytes": 1048576, "unknown": "refuse"})
}

/// Every member of a `sources[]` entry, each with a value the reader accepts.
fn full_source() -> Value {
    json!({"name": "participant", "url": "https://directory.example/participants", "upstream": "dir",
           "authority": "directory.example", "headers": {"x-v": "1"}, "refresh_seconds": 300,
           "max_staleness_seconds": 3600, "max_bytes": 1048576, "array": "", "id_member": "OrganisationId",
           "status_member": "Status", "ssa_claim": "org_id", "allowed": ["Active"], "unknown": "allow"})
}

/// The three objects of `rules.participant_status`: where each sits in a document, its schema
/// definition, the members the reader knows, and a document using every member.
fn status_objects(schema: &Value) -> Vec<(&'static str, &Value, &'static [&'static str], Value)> {
    let full = |register: Value, sources: Value| {
        au_with(json!({"enabled": true, "register": register, "sources": sources}))
    };
    vec![
        (
            "/rules/participant_status",
            def(schema, "ParticipantStatus"),
            STATUS_FIELDS,
            full(full_register(), json!([full_source()])),
        ),
        (
            "/rules/participant_status/register",
            def(schema, "CdrRegister"),
            REGISTER_FIELDS,
            full(full_register(), json!([])),
        ),
        (
            "/rules/participant_status/sources/0",
            def(schema, "StatusSource"),
            SOURCE_FIELDS,
            au_with(json!({"sources": [full_source()]})),
        ),
    ]
}

/// The schema of `rules.participant_status` and the hand reader name the same members, both ways:
/// the member lists the reader checks are the schema's properties; a document using every property
/// the schema names is accepted; an unknown member is refused by the reader (and the schema says
/// so); a member the schema requires is required by the reader, and one it does not is optional.
#[test]
fn participant_status_schema_is_what_the_reader_reads() {
    let schema = draft_2020_12();
    assert_eq!(
        schema.pointer("/$defs/Rules/properties/participant_status/$ref"),
        Some(&json!("#/$defs/ParticipantStatus"))
    );
    for (at, object, known, doc) in status_objects(&schema) {
        assert_eq!(
            properties(object),
            names(known),
            "{at}: schema vs config/status.rs"
        );
        assert_eq!(object["additionalProperties"], false, "{at}");
        let used: BTreeSet<String> = doc
            .pointer(at)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            used,
            properties(object),
            "{at}: the test document uses every property"
        );
        if let Err(e) = parse(&doc) {
            panic!("{at}: a document with every property the schema names is refused: {e}");
        }

        let mut unknown = doc.clone();
        unknown.pointer_mut(at).unwrap()["no_such_member"] = json!(1);
        let e = parse(&unknown)
            .err()
            .unwrap_or_else(|| panic!("{at}: an unknown member is accepted"));
        assert!(
            e.message.contains("unknown field `no_such_member`"),
            "{at}: {e}"
        );

        for member in properties(object) {
            let mut without = doc.clone();
            without
                .pointer_mut(at)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(&member);
            let outcome = parse(&without);
            if required(object).contains(&member) {
                let e = outcome.err().unwrap_or_else(|| {
                    panic!("{at}: `{member}` is required by the schema, not by the reader")
                });
                assert!(
                    e.to_string().contains(&member),
                    "{at} without {member}: {e}"
                );
            } else if let Err(e) = outcome {
                panic!("{at}: `{member}` is optional in the schema, but the reader refuses its absence: {e}");
            }
        }
    }
}

/// Every object the schema describes refuses unknown members, as the readers do
/// (`deny_unknown_fields`): a struct that drops it fails here.
#[test]
fn every_object_is_closed() {
    fn walk(v: &Value, at: &str, objects: &mut usize) {
        match v {
            Value::Object(m) => {
                if m.contains_key("properties") {
                    *objects += 1;
                    assert_eq!(m.get("additionalProperties"), Some(&json!(false)), "{at}");
                }
                for (k, c) in m {
                    walk(c, &format!("{at}/{k}"), objects);
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, at, objects)),
            _ => {}
        }
    }
    let mut objects = 0;
    walk(&draft_2020_12(), "#", &mut objects);
    assert!(objects > 30, "{objects} objects");
}

/// `Option<T>` fields are left out, not `null` (serde would read `null` as absent; the schema
/// asks for the field to be left out), and schemars' integer formats are not JSON Schema ones.
#[test]
fn no_null_and_no_integer_formats() {
    let text = render(&draft_2020_12());
    assert!(!text.contains("\"null\""), "{text}");
    // (`request_jti.format` is a property: an object follows it, never a string.)
    assert!(!text.contains("\"format\": \""), "{text}");
}

/// The schema's bounds and defaults are the resolvers' (a few, read from the schema).
#[test]
fn bounds_and_defaults_come_from_the_code() {
    let s = draft_2020_12();
    let cases = [
        (
            "/$defs/Limits/properties/body_bytes",
            1024,
            super::super::MAX_BODY_BYTES as u64,
            65536,
        ),
        ("/$defs/Replay/properties/buckets", 1, 4096, 64),
        (
            "/$defs/JwksCache/properties/default_ttl_seconds",
            1,
            7 * 86_400,
            600,
        ),
        (
            "/$defs/StatusSource/properties/max_bytes",
            1024,
            16 * 1024 * 1024,
            1024 * 1024,
        ),
        ("/properties/leeway_seconds", 0, 600, 60),
        ("/properties/retry_after_seconds", 1, 3600, 5),
    ];
    for (at, min, max, default) in cases {
        let p = s.pointer(at).unwrap_or_else(|| panic!("{at}"));
        assert_eq!(
            (
                p["minimum"].as_u64(),
                p["maximum"].as_u64(),
                p["default"].as_u64()
            ),
            (Some(min), Some(max), Some(default)),
            "{at}"
        );
    }
    // Every bounded number is refused one past its maximum by the filter, naming the field.
    for (field, at) in [
        ("limits.body_bytes", "/$defs/Limits/properties/body_bytes"),
        ("replay.buckets", "/$defs/Replay/properties/buckets"),
        ("retry_after_seconds", "/properties/retry_after_seconds"),
        ("leeway_seconds", "/properties/leeway_seconds"),
    ] {
        let max = s.pointer(at).unwrap()["maximum"].as_u64().unwrap();
        let with = |n: u64| {
            let mut doc = crate::config::tests::minimal();
            let mut slot = &mut doc;
            for p in field.split('.') {
                if slot.get(p).is_none() {
                    slot[p] = json!({});
                }
                slot = &mut slot[p];
            }
            *slot = json!(n);
            doc
        };
        assert!(
            parse(&with(max)).is_ok(),
            "{field} = {max} (the schema's maximum) is refused"
        );
        let e = parse(&with(max + 1))
            .err()
            .unwrap_or_else(|| panic!("{field} = {} is accepted", max + 1));
        assert_eq!(e.field, field);
    }
}

/// Kong's form: Draft 4, every reference inlined, the same properties.
#[test]
fn kong_meta_is_draft_4_without_references() {
    let meta = kong_meta().unwrap();
    let cs = &meta["config_schema"];
    assert_eq!(cs["$schema"], "http://json-schema.org/draft-04/schema#");
    let text = render(cs);
    for later in [
        "\"$ref\"",
        "\"$defs\"",
        "\"definitions\"",
        "\"const\"",
        "\"exclusiveMinimum\"",
    ] {
        assert!(!text.contains(later), "{later} in the Kong config_schema");
    }
    assert_eq!(properties(cs), properties(&draft_2020_12()));
    // An inlined definition keeps the description of the place it is used.
    assert_eq!(
        cs.pointer("/properties/request_algorithms/description"),
        Some(&json!("Allowed request JWT algorithms."))
    );
    assert_eq!(
        cs.pointer("/properties/request_algorithms/minItems"),
        Some(&json!(1))
    );
}
