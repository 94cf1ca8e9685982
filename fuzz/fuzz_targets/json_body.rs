//! The strict JSON object parser behind the `br-ofb` registration body (and JOSE headers and
//! payloads), and the `br-ofb` create path that uses it.
//!
//! Properties:
//! * it accepts exactly the documents that serde_json parses as an object in which no object, at
//!   any depth, repeats a member name (a reference that only collects names is the oracle), and
//!   then yields the same map serde_json does;
//! * an accepted object with its first member repeated (any value) is refused as a duplicate
//!   naming where it is, at the top level, nested one level down (`{"x": <that object>}`) and
//!   inside an array (`{"x": [1, <that object>]}`);
//! * through the `br-ofb` pipeline (`Create::parse`), a body with a duplicated top-level member is
//!   never accepted, and a body the parser refuses is never accepted either.
#![no_main]

use std::sync::OnceLock;

use dcr_guard::fuzzing::parse_json_object;
use dcr_guard_core::config::Config;
use dcr_guard_core::jose::JoseError;
use dcr_guard_core::pipeline::{Create, Verdicts};
use dcr_guard_fuzz::{
    top_level, unique_object_at_every_depth, with_duplicate, TopLevel, PIPELINE_FIXTURES,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn br_config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let f: Value = serde_json::from_str(PIPELINE_FIXTURES).unwrap();
        let br = f["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["profile"] == "br-ofb")
            .unwrap();
        Config::from_json(br.to_string().as_bytes()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let reference = top_level(data);
    let unique = unique_object_at_every_depth(data);
    let parsed = parse_json_object(data);
    match &parsed {
        Ok(map) => {
            assert!(unique, "accepted a duplicate member: {reference:?}");
            let Ok(Value::Object(want)) = serde_json::from_slice::<Value>(data) else {
                panic!("accepted what serde_json does not read as an object")
            };
            assert_eq!(map, &want);
            for v in [Value::Null, Value::from(1), Value::from("x")] {
                if let Some(dup) = with_duplicate(map, &v) {
                    assert!(
                        Create::parse(br_config(), dup.as_bytes(), &Verdicts::default()).is_err()
                    );
                    // Refused as a duplicate, with the path to the object that holds it.
                    let nested = format!(r#"{{"x":{dup}}}"#);
                    let in_array = format!(r#"{{"x":[1,{dup}]}}"#);
                    for (doc, want_at) in [(dup.as_str(), ""), (&nested, "x"), (&in_array, "x[1]")]
                    {
                        match parse_json_object(doc.as_bytes()) {
                            Err(JoseError::DuplicateMember { at, .. }) => {
                                assert_eq!(at, want_at, "{doc}")
                            }
                            other => panic!("duplicate not refused as one: {doc}: {other:?}"),
                        }
                    }
                }
            }
        }
        Err(_) => assert!(!unique, "refused a duplicate-free object: {reference:?}"),
    }
    let verdict = Create::parse(br_config(), data, &Verdicts::default());
    if verdict.is_ok() {
        assert!(
            parsed.is_ok(),
            "br-ofb accepted a body the strict parser refuses"
        );
        assert!(matches!(reference, TopLevel::Object(_)) && unique);
    }
});
