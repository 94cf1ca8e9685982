//! `rules.participant_status`: the au-cdr preset, sources field by field, and what is refused.

use serde_json::{json, Value};

use crate::config::tests::{minimal, parse};
use crate::status::Unknown;

fn au() -> Value {
    json!({"profile": "au-cdr",
           "directories": [{"issuer": "cdr-register", "jwks": [{"url": "https://k.example/jwks", "upstream": "k"}]}],
           "rules": {"audience": {"audiences": ["https://holder.example"]}}})
}

fn with(mut base: Value, ps: Value) -> Value {
    base["rules"]["participant_status"] = ps;
    base
}

fn source() -> Value {
    json!({"name": "participant", "url": "https://directory.example/participants", "upstream": "dir",
           "array": "", "id_member": "OrganisationId", "status_member": "Status",
           "ssa_claim": "org_id", "allowed": ["Active"]})
}

#[test]
fn off_unless_configured() {
    assert!(parse(&minimal())
        .unwrap()
        .rules
        .participant_status
        .is_empty());
    assert!(parse(&au()).unwrap().rules.participant_status.is_empty());
    let off = with(au(), json!({"enabled": false}));
    assert!(parse(&off).unwrap().rules.participant_status.is_empty());
}

#[test]
fn the_au_cdr_preset_names_both_register_documents() {
    let v = with(
        au(),
        json!({"register": {"base_url": "https://api.cdr.gov.au/cdr-register/v1/all/", "upstream": "cdr_register"}}),
    );
    let c = parse(&v).unwrap();
    let s = &c.rules.participant_status;
    assert_eq!(s.len(), 2);
    let sp = &s[0];
    assert_eq!(sp.name, "software product");
    assert_eq!(
        sp.url,
        "https://api.cdr.gov.au/cdr-register/v1/all/data-recipients/brands/software-products/status"
    );
    assert_eq!(sp.upstream, "cdr_register");
    assert_eq!(sp.authority, "api.cdr.gov.au");
    assert_eq!(
        sp.path,
        "/cdr-register/v1/all/data-recipients/brands/software-products/status"
    );
    assert_eq!(sp.headers, vec![("x-v".to_string(), "3".to_string())]);
    assert_eq!(sp.array, vec!["data".to_string()]);
    assert_eq!(
        (
            sp.id_member.as_str(),
            sp.status_member.as_str(),
            sp.ssa_claim.as_str()
        ),
        ("softwareProductId", "status", "software_id")
    );
    assert_eq!(sp.allowed, vec!["ACTIVE".to_string()]);
    assert_eq!(
        (sp.refresh, sp.max_staleness, sp.unknown),
        (300, 3600, Unknown::Refuse)
    );
    let dr = &s[1];
    assert_eq!(dr.name, "data recipient");
    assert_eq!(
        dr.url,
        "https://api.cdr.gov.au/cdr-register/v1/all/data-recipients/status"
    );
    assert_eq!(
        (dr.id_member.as_str(), dr.ssa_claim.as_str()),
        ("legalEntityId", "legal_entity_id")
    );
    // The preset's tunables, and an extra source beside it.
    let v = with(
        au(),
        json!({"register": {"base_url": "https://register.example/cdr-register/v1/banking", "upstream": "r",
                            "authority": "register.example:8443", "refresh_seconds": 60,
                            "max_staleness_seconds": 0, "max_bytes": 2048, "unknown": "allow"},
               "sources": [source()]}),
    );
    let c = parse(&v).unwrap();
    let s = &c.rules.participant_status;
    assert_eq!(s.len(), 3);
    assert_eq!(
        (
            s[0].authority.as_str(),
            s[0].refresh,
            s[0].max_staleness,
            s[0].max_bytes,
            s[0].unknown
        ),
        ("register.example:8443", 60, 0, 2048, Unknown::Allow)
    );
    assert_eq!(s[2].name, "participant");
    assert!(s[2].array.is_empty());
}

#[test]
fn a_source_field_by_field() {
    let mut s = source();
    s["array"] = json!("result.items");
    s["headers"] = json!({"X-V": "2", "x-min-v": "1"});
    s["unknown"] = json!("allow");
    let c = parse(&with(minimal(), json!({"sources": [s]}))).unwrap();
    let src = &c.rules.participant_status[0];
    assert_eq!(src.array, vec!["result".to_string(), "items".to_string()]);
    assert_eq!(
        src.headers,
        vec![
            ("x-v".to_string(), "2".to_string()),
            ("x-min-v".to_string(), "1".to_string())
        ]
    );
    assert_eq!(src.unknown, Unknown::Allow);
    assert_eq!(src.max_bytes, 1024 * 1024);
}

#[test]
fn refused_with_the_field_named() {
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut s = source();
        f(&mut s);
        with(minimal(), json!({"sources": [s]}))
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        // On without a document (uk: sources; au: the preset named in the message).
        (
            with(minimal(), json!({})),
            "rules.participant_status",
            "sources",
        ),
        (
            with(au(), json!({})),
            "rules.participant_status",
            "register",
        ),
        (
            with(au(), json!({"sources": []})),
            "rules.participant_status",
            "base_url",
        ),
        // A half-configured preset.
        (
            with(au(), json!({"register": {"upstream": "r"}})),
            "rules.participant_status.register.base_url",
            "required",
        ),
        (
            with(
                au(),
                json!({"register": {"base_url": "https://r.example/cdr-register/v1/all"}}),
            ),
            "rules.participant_status.register.upstream",
            "required",
        ),
        (
            with(
                au(),
                json!({"register": {"base_url": "http://r.example/x", "upstream": "r"}}),
            ),
            "rules.participant_status.register.base_url",
            "https",
        ),
        (
            with(
                au(),
                json!({"register": {"base_url": "https://r.example/x?industry=all", "upstream": "r"}}),
            ),
            "rules.participant_status.register.base_url",
            "query",
        ),
        (
            with(
                au(),
                json!({"register": {"base_url": "https://r.example/x", "upstream": "r", "refresh_seconds": 0}}),
            ),
            "rules.participant_status.register.refresh_seconds",
            "between",
        ),
        (
            with(
                au(),
                json!({"register": {"base_url": "https://r.example/x", "upstream": "r", "bogus": 1}}),
            ),
            "rules.participant_status.register",
            "bogus",
        ),
        // The preset is AU's only.
        (
            with(
                minimal(),
                json!({"register": {"base_url": "https://r.example/x", "upstream": "r"}}),
            ),
            "rules.participant_status.register",
            "au-cdr",
        ),
        (
            with(minimal(), json!({"sources": [source(), source()]})),
            "rules.participant_status",
            "twice",
        ),
        (
            edit(&|s| s["url"] = json!("http://d.example/p")),
            "rules.participant_status.sources[0].url",
            "https",
        ),
        (
            edit(&|s| s["upstream"] = json!(" ")),
            "rules.participant_status.sources[0].upstream",
            "empty",
        ),
        (
            edit(&|s| s["name"] = json!("")),
            "rules.participant_status.sources[0].name",
            "empty",
        ),
        (
            edit(&|s| s["allowed"] = json!([])),
            "rules.participant_status.sources[0].allowed",
            "at least one",
        ),
        (
            edit(&|s| s["allowed"] = json!(["Active", " "])),
            "rules.participant_status.sources[0].allowed",
            "empty",
        ),
        (
            edit(&|s| s["unknown"] = json!("maybe")),
            "rules.participant_status.sources[0].unknown",
            "refuse, allow",
        ),
        (
            edit(&|s| s["array"] = json!("data..x")),
            "rules.participant_status.sources[0].array",
            "empty names",
        ),
        (
            edit(&|s| s["id_member"] = json!("")),
            "rules.participant_status.sources[0].id_member",
            "empty",
        ),
        (
            edit(&|s| s["ssa_claim"] = json!("")),
            "rules.participant_status.sources[0].ssa_claim",
            "empty",
        ),
        (
            edit(&|s| s["headers"] = json!({":path": "/x"})),
            "rules.participant_status.sources[0].headers.:path",
            "header name",
        ),
        (
            edit(&|s| s["headers"] = json!({"X-V": "1", "x-v": "2"})),
            "rules.participant_status.sources[0].headers.x-v",
            "twice",
        ),
        (
            edit(&|s| s["headers"] = json!({"host": "x"})),
            "rules.participant_status.sources[0].headers.host",
            "header name",
        ),
        (
            edit(&|s| s["headers"] = json!({"x-v": "a\nb"})),
            "rules.participant_status.sources[0].headers.x-v",
            "printable",
        ),
        (
            edit(&|s| s["authority"] = json!("a b")),
            "rules.participant_status.sources[0].authority",
            "host name",
        ),
        (
            edit(&|s| s["max_bytes"] = json!(10)),
            "rules.participant_status.sources[0].max_bytes",
            "between",
        ),
        (
            edit(&|s| s["max_staleness_seconds"] = json!(999_999_999)),
            "rules.participant_status.sources[0].max_staleness_seconds",
            "between",
        ),
        (
            edit(&|s| s["extra"] = json!(1)),
            "rules.participant_status.sources[0]",
            "extra",
        ),
        (
            edit(&|s| {
                s.as_object_mut().unwrap().remove("status_member");
            }),
            "rules.participant_status.sources[0]",
            "status_member",
        ),
    ];
    for (v, field, words) in cases {
        let e = parse(&v).err().unwrap_or_else(|| panic!("accepted: {v}"));
        assert!(e.field.starts_with(field), "{field}: got {e}");
        assert!(
            e.to_string().contains(words),
            "{field}: `{words}` not in {e}"
        );
    }
}
