//! The status document parser and the verdict, table-driven.

use super::*;
use serde_json::json;

fn src(array: &[&str], id: &str, status: &str, claim: &str) -> StatusSource {
    StatusSource {
        name: "software product".into(),
        url: "https://register.example/status".into(),
        cache_key: "https://register.example/status#0".into(),
        upstream: "register".into(),
        authority: "register.example".into(),
        path: "/status".into(),
        headers: vec![("x-v".into(), "3".into())],
        refresh: 300,
        max_staleness: 3600,
        max_bytes: 4096,
        array: array.iter().map(|s| s.to_string()).collect(),
        id_member: id.into(),
        status_member: status.into(),
        ssa_claim: claim.into(),
        allowed: vec!["ACTIVE".into()],
        unknown: Unknown::Refuse,
    }
}

fn cdr() -> StatusSource {
    src(&["data"], "softwareProductId", "status", "software_id")
}

#[test]
fn parser_table() {
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    let brackets = "[".repeat(100);
    let deep_in_string = format!(
        "{{\"data\":[{{\"softwareProductId\":\"{}\",\"status\":\"ACTIVE\"}}]}}",
        "[".repeat(100)
    );
    let big = format!(
        "{{\"data\":[{{\"softwareProductId\":\"a\",\"status\":\"ACTIVE\",\"pad\":\"{}\"}}]}}",
        "x".repeat(5000)
    );
    // (document, Ok(entries looked up) | Err(words))
    let cases: Vec<(String, Result<Vec<(&str, Option<&str>)>, &str>)> = vec![
        (
            json!({"data": [{"softwareProductId": "A1", "status": "ACTIVE"},
                            {"softwareProductId": "b2", "status": "INACTIVE"},
                            {"softwareProductId": "c3", "status": "REMOVED"}],
                   "links": {}, "meta": {}})
            .to_string(),
            Ok(vec![
                ("a1", Some("ACTIVE")),
                ("B2", Some("INACTIVE")),
                ("c3", Some("REMOVED")),
                ("d4", None),
            ]),
        ),
        // An empty list is a good document that lists no one.
        (json!({"data": []}).to_string(), Ok(vec![("a1", None)])),
        // Entries without a usable id are skipped, the others kept; a listed id whose status
        // cannot be read is listed as unreadable (allows nothing; never "unknown").
        (
            json!({"data": [1, "x", null, {"softwareProductId": 7, "status": "ACTIVE"},
                            {"softwareProductId": "a1"}, {"softwareProductId": "ok", "status": "ACTIVE"},
                            {"softwareProductId": "b2", "status": 3},
                            {"softwareProductId": "c3", "status": "x".repeat(300)},
                            {"softwareProductId": "x".repeat(300), "status": "ACTIVE"}]})
            .to_string(),
            Ok(vec![
                ("ok", Some("ACTIVE")),
                ("a1", Some(UNREADABLE)),
                ("b2", Some(UNREADABLE)),
                ("c3", Some(UNREADABLE)),
                ("x", None),
            ]),
        ),
        // ...and wins over a readable entry of the same id.
        (
            json!({"data": [{"softwareProductId": "a1", "status": "ACTIVE"},
                            {"softwareProductId": "a1", "status": null}]})
            .to_string(),
            Ok(vec![("a1", Some(UNREADABLE))]),
        ),
        // No entry with a readable status: the document is malformed (the last good one stays).
        (
            json!({"data": [{"softwareProductId": "a1", "state": "ACTIVE"}]}).to_string(),
            Err("no entry has a string `softwareProductId` and a string `status`"),
        ),
        // Listed twice: the status that does not allow registration stays, in either order.
        (
            json!({"data": [{"softwareProductId": "a1", "status": "ACTIVE"},
                            {"softwareProductId": "A1", "status": "REMOVED"},
                            {"softwareProductId": "b2", "status": "INACTIVE"},
                            {"softwareProductId": "b2", "status": "ACTIVE"}]})
            .to_string(),
            Ok(vec![("a1", Some("REMOVED")), ("b2", Some("INACTIVE"))]),
        ),
        (deep_in_string, Ok(vec![(brackets.as_str(), Some("ACTIVE"))])),
        ("not json".into(), Err("not JSON")),
        ("{\"data\": [".into(), Err("not JSON")),
        (json!({"dat": []}).to_string(), Err("no member `data`")),
        (json!({"data": {}}).to_string(), Err("`data` is not an array")),
        (json!([]).to_string(), Err("`data`")),
        (
            json!({"data": [{"id": "a1", "state": "ACTIVE"}]}).to_string(),
            Err("no entry has a string `softwareProductId`"),
        ),
        (deep, Err("nested deeper")),
        (big, Err("larger than 4096 bytes")),
    ];
    for (doc, want) in cases {
        let got = parse(doc.as_bytes(), &cdr());
        match (got, want) {
            (Ok(d), Ok(lookups)) => {
                for (id, status) in lookups {
                    assert_eq!(d.status(id), status, "{doc}: {id}");
                }
            }
            (Err(e), Err(words)) => assert!(e.contains(words), "{doc}: `{words}` not in {e}"),
            (got, want) => panic!("{doc}: got {got:?}, want {want:?}"),
        }
    }
    // A top-level array (the Open Finance Brasil participants list) and a nested path.
    let br = src(&[], "OrganisationId", "Status", "org_id");
    let d = parse(
        json!([{"OrganisationId": "org-1", "Status": "Active"}])
            .to_string()
            .as_bytes(),
        &br,
    )
    .unwrap();
    assert_eq!((d.status("org-1"), d.len()), (Some("Active"), 1));
    let nested = src(&["result", "items"], "software_id", "status", "software_id");
    let d = parse(
        br#"{"result": {"items": [{"software_id": "s", "status": "Active"}]}}"#,
        &nested,
    )
    .unwrap();
    assert_eq!(d.status("s"), Some("Active"));
    assert!(parse(br#"{"result": []}"#, &nested)
        .unwrap_err()
        .contains("no member `result.items`"));
}

#[test]
fn too_many_entries_are_refused() {
    let mut s = cdr();
    s.max_bytes = 64 * 1024 * 1024;
    let entry = "{},";
    let doc = format!("{{\"data\":[{}{{}}]}}", entry.repeat(MAX_ENTRIES));
    assert!(parse(doc.as_bytes(), &s).unwrap_err().contains("more than"));
}

#[test]
fn verdict_table() {
    let doc = Rc::new(
        parse(
            json!({"data": [{"softwareProductId": "active", "status": "ACTIVE"},
                            {"softwareProductId": "lower", "status": "active"},
                            {"softwareProductId": "inactive", "status": "INACTIVE"},
                            {"softwareProductId": "removed", "status": "REMOVED"},
                            {"softwareProductId": "odd", "status": "BAD\u{7}STATE"},
                            {"softwareProductId": "garbled", "status": {"code": "REMOVED"}}]})
            .to_string()
            .as_bytes(),
            &cdr(),
        )
        .unwrap(),
    );
    let empty = Rc::new(parse(br#"{"data": []}"#, &cdr()).unwrap());
    let ssa = |id: serde_json::Value| {
        let mut c = Claims::new();
        c.insert("software_id".into(), id);
        c
    };
    let base = cdr();
    let allow_unknown = StatusSource {
        unknown: Unknown::Allow,
        ..cdr()
    };
    let none = Got::Unavailable("never fetched".into());
    // (source, document, SSA software_id, Ok | Err((status, error, words)))
    let cases: Vec<(
        &StatusSource,
        Got,
        serde_json::Value,
        Result<(), (u16, &str, &str)>,
    )> = vec![
        (&base, Got::Doc(doc.clone()), json!("active"), Ok(())),
        (&base, Got::Doc(doc.clone()), json!("ACTIVE"), Ok(())),
        // Listed with a status that cannot be read: refused, even where unknown ones are allowed.
        (
            &allow_unknown,
            Got::Doc(doc.clone()),
            json!("garbled"),
            Err((
                400,
                "unapproved_software_statement",
                "software product status is (unreadable)",
            )),
        ),
        (&base, Got::Doc(doc.clone()), json!("lower"), Ok(())),
        (
            &base,
            Got::Doc(doc.clone()),
            json!("inactive"),
            Err((
                400,
                "unapproved_software_statement",
                "software product status is INACTIVE",
            )),
        ),
        (
            &base,
            Got::Doc(doc.clone()),
            json!("removed"),
            Err((
                400,
                "unapproved_software_statement",
                "software product status is REMOVED",
            )),
        ),
        (
            &base,
            Got::Doc(doc.clone()),
            json!("odd"),
            Err((400, "unapproved_software_statement", "status is BAD?STATE")),
        ),
        // Unknown: not "removed".
        (
            &base,
            Got::Doc(doc.clone()),
            json!("missing"),
            Err((503, "temporarily_unavailable", "`missing` is not listed")),
        ),
        (
            &base,
            Got::Doc(empty.clone()),
            json!("active"),
            Err((503, "temporarily_unavailable", "is not listed")),
        ),
        (
            &allow_unknown,
            Got::Doc(empty.clone()),
            json!("active"),
            Ok(()),
        ),
        (
            &allow_unknown,
            Got::Doc(doc.clone()),
            json!("removed"),
            Err((400, "unapproved_software_statement", "status is REMOVED")),
        ),
        // Never fetched, failed, or staler than allowed: fail closed, even if unknown is allowed.
        (
            &base,
            none.clone(),
            json!("active"),
            Err((503, "temporarily_unavailable", "cannot be checked now")),
        ),
        (
            &allow_unknown,
            none.clone(),
            json!("active"),
            Err((503, "temporarily_unavailable", "cannot be checked now")),
        ),
        // The claim that selects the entry.
        (
            &base,
            Got::Doc(doc.clone()),
            json!(7),
            Err((
                400,
                "unapproved_software_statement",
                "SSA claim `software_id`",
            )),
        ),
        (
            &base,
            Got::Doc(doc.clone()),
            json!(" "),
            Err((
                400,
                "unapproved_software_statement",
                "SSA claim `software_id`",
            )),
        ),
    ];
    for (s, got, id, want) in cases {
        let r = verdict(s, &got, &ssa(id.clone()), 7);
        match (r, want) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err((status, code, words))) => {
                assert_eq!((e.status, e.code.as_str()), (status, code), "{id}: {e}");
                assert!(e.description.contains(words), "{id}: `{words}` not in {e}");
                assert_eq!(
                    e.source,
                    crate::error::Source::Rule(RuleId::ParticipantStatus)
                );
                assert_eq!(e.retry_after, (status == 503).then_some(7), "{id}");
            }
            (r, want) => panic!("{id}: got {r:?}, want {want:?}"),
        }
    }
    // No claim at all.
    let e = verdict(&base, &Got::Doc(doc), &Claims::new(), 7).unwrap_err();
    assert_eq!(e.status, 400);
}

#[test]
fn the_cache_policy_follows_the_source() {
    let s = cdr();
    let p = s.cache_policy(2000);
    assert_eq!((p.default_ttl, p.min_ttl, p.max_ttl), (300, 300, 300));
    assert_eq!(p.stale_if_error, 3600);
    assert_eq!(p.lease_ttl, 5);
    assert_eq!(p.refresh_ahead, 0);
    assert_eq!(p.retry_backoff(), 5);
}

/// The reader before it streamed: the whole document as a `serde_json::Value`, then walked. The
/// streaming reader must give the same table or the same refusal for any document.
fn parse_value(doc: &[u8], src: &StatusSource) -> Result<StatusDoc, String> {
    if doc.len() > src.max_bytes {
        return Err(format!("document larger than {} bytes", src.max_bytes));
    }
    if too_deep(doc, MAX_DEPTH) {
        return Err(format!("document nested deeper than {MAX_DEPTH} levels"));
    }
    let root: serde_json::Value =
        serde_json::from_slice(doc).map_err(|e| format!("not JSON ({e})"))?;
    let mut at = &root;
    let mut walked = String::new();
    for member in &src.array {
        walked.push_str(if walked.is_empty() { "" } else { "." });
        walked.push_str(member);
        at = at
            .get(member.as_str())
            .ok_or_else(|| format!("no member `{}`", clip(&walked, 64)))?;
    }
    let list = at.as_array().ok_or_else(|| match walked.is_empty() {
        true => "the document is not an array".to_string(),
        false => format!("`{}` is not an array", clip(&walked, 64)),
    })?;
    if list.len() > MAX_ENTRIES {
        return Err(format!("more than {MAX_ENTRIES} entries"));
    }
    let mut entries: HashMap<String, String> = HashMap::new();
    let mut readable = false;
    for item in list {
        let Some(id) = item
            .get(src.id_member.as_str())
            .and_then(|v| v.as_str())
            .filter(|id| id.len() <= MAX_VALUE_BYTES)
        else {
            continue;
        };
        let status = match item
            .get(src.status_member.as_str())
            .and_then(|v| v.as_str())
            .filter(|s| s.len() <= MAX_VALUE_BYTES)
        {
            Some(s) => {
                readable = true;
                s
            }
            None => UNREADABLE,
        };
        let id = id.to_ascii_lowercase();
        match entries.get(&id) {
            Some(existing) if !src.allows(existing) => {}
            _ => {
                entries.insert(id, status.to_string());
            }
        }
    }
    if !readable && !list.is_empty() {
        return Err(format!(
            "no entry has a string `{}` and a string `{}`",
            clip(&src.id_member, 64),
            clip(&src.status_member, 64)
        ));
    }
    Ok(StatusDoc { entries })
}

/// A JSON document whose objects may name a member twice (a `Value` cannot say that).
#[derive(Debug, Clone)]
enum Node {
    Scalar(&'static str),
    Text(String),
    Array(Vec<Node>),
    Object(Vec<(&'static str, Node)>),
}

impl Node {
    fn write(&self, out: &mut String) {
        match self {
            Node::Scalar(s) => out.push_str(s),
            Node::Text(t) => out.push_str(&serde_json::to_string(t).unwrap()),
            Node::Array(items) => {
                out.push('[');
                for (i, n) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    n.write(out);
                }
                out.push(']');
            }
            Node::Object(members) => {
                out.push('{');
                for (i, (k, n)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("\"{k}\":"));
                    n.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn node() -> impl proptest::strategy::Strategy<Value = Node> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        // Not `1e400`: a `Value` refuses a number out of f64's range anywhere; the streaming
        // reader only where it reads (see `a_huge_number_where_nothing_is_read_is_no_error`).
        prop::sample::select(vec!["null", "true", "1", "-2.5", "18446744073709551616"])
            .prop_map(Node::Scalar),
        prop::sample::select(vec!["ACTIVE", "INACTIVE", "REMOVED", "a1", "A1", "b", ""])
            .prop_map(|s| Node::Text(s.to_string())),
        Just(Node::Text("x".repeat(MAX_VALUE_BYTES + 1))),
        Just(Node::Text("x".repeat(MAX_VALUE_BYTES))),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Node::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["data", "list", "id", "status", "other"]),
                    inner
                ),
                0..6
            )
            .prop_map(Node::Object),
        ]
    })
}

/// Documents shaped like a status document (an array of entries at one of the paths, entries
/// with ids and statuses of every kind, members named twice), or anything at all.
fn document() -> impl proptest::strategy::Strategy<Value = Node> {
    use proptest::prelude::*;
    let text = prop::sample::select(vec!["ACTIVE", "INACTIVE", "a1", "A1", "b", ""])
        .prop_map(|s| Node::Text(s.to_string()));
    let value = prop_oneof![3 => text, 1 => node()];
    let entry = prop::collection::vec(
        (
            prop::sample::select(vec!["id", "id", "status", "status", "other"]),
            value,
        ),
        0..5,
    )
    .prop_map(Node::Object);
    let entries = prop::collection::vec(prop_oneof![4 => entry, 1 => node()], 0..8);
    prop_oneof![
        1 => node(),
        2 => entries.clone().prop_map(Node::Array),
        2 => (entries.clone(), node()).prop_map(|(e, n)| Node::Object(vec![
            ("meta", n),
            ("data", Node::Array(e)),
        ])),
        1 => (entries, node()).prop_map(|(e, n)| Node::Object(vec![(
            "data",
            Node::Object(vec![("list", Node::Array(e)), ("list", n)]),
        )])),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
    /// Any document, any of three paths: the streaming reader and the `Value` one agree.
    #[test]
    fn the_streaming_reader_reads_what_a_value_would(
        doc in document(),
        path in proptest::sample::select(vec![vec![], vec!["data"], vec!["data", "list"]]),
        cut in proptest::prelude::any::<proptest::sample::Index>(),
        truncate in proptest::prelude::any::<proptest::sample::Index>(),
    ) {
        let mut text = String::new();
        doc.write(&mut text);
        if truncate.index(5) == 0 {
            // Broken JSON too.
            text.truncate(cut.index(text.len() + 1));
        }
        let mut s = src(&path, "id", "status", "software_id");
        s.max_bytes = 1 << 20;
        let streamed = parse(text.as_bytes(), &s).map(|d| d.entries);
        let whole = parse_value(text.as_bytes(), &s).map(|d| d.entries);
        match (&streamed, &whole) {
            (Err(a), Err(b)) if a.starts_with("not JSON") && b.starts_with("not JSON") => {}
            _ => proptest::prop_assert_eq!(&streamed, &whole, "{}", text),
        }
    }
}

/// The one difference from reading a `Value`: a number beyond f64's range in a part of the
/// document nothing reads is skipped, not a reason to refuse the whole document.
#[test]
fn a_huge_number_where_nothing_is_read_is_no_error() {
    let s = src(&["data"], "id", "status", "software_id");
    let doc = br#"{"meta":{"n":1e400},"data":[{"id":"a","status":"ACTIVE","n":1e400}]}"#;
    assert!(parse_value(doc, &s).is_err());
    let got = parse(doc, &s).unwrap();
    assert_eq!(got.entries.get("a").map(String::as_str), Some("ACTIVE"));
}
