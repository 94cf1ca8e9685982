//! Bank-specific checks by composition (README "Bank-specific checks"): dcr-guard followed by
//! Envoy's native `ext_authz` filter (HTTP service mode) and a bank's authorizer, through a real
//! Envoy. The `ext_authz` entry, the routes, the local reply and the filter's `forward` and
//! `fact_headers` are taken from the shipped kit, envoy/ext-authz.yaml, so that what is tested is
//! what ships; only the cluster addresses are the test's.
//!
//! The authorizer, written here, is what a bank would write: it reads the verified software id from
//! dcr-guard's fact header (never from the body or the client's headers), refuses one software id
//! with an RFC 7591 error and allows another.
//!
//! `DCR_GUARD_TEST_WITHOUT_FILTER=1` leaves dcr-guard out: these tests must then fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{Arc, Mutex};

use common::dcr::{corrupt_signature, Tpp};
use common::keys::TestKey;
use common::{Envoy, EnvoyConfig, Recorded, Reply, Response, TestServer};
use serde_json::{json, Value};

const KIT: &str = "envoy/ext-authz.yaml";
/// The software the bank's authorizer approves, and the one it refuses (both hold a valid SSA).
const ALLOWED: &str = "AllowedSoftware0000001";
const REFUSED: &str = "RefusedSoftware0000002";
/// The verified-fact headers of the kit (checked against it in `kit_pieces`).
const FACT_SOFTWARE: &str = "x-dcr-guard-software-id";
const FACT_ORG: &str = "x-dcr-guard-org-id";

/// What the test authorizer does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Decides on the verified software id.
    Decide,
    /// Closes every connection without answering.
    HangUp,
    /// Answers 500 with a body of its own (a failing authorizer, not a decision).
    ServerError,
}

/// The bank's authorizer: allows `ALLOWED`, refuses anything else with an RFC 7591 error, reading
/// only dcr-guard's header. Its OK answer carries a fact header of its own, which must not reach
/// the AS (the kit lets no authorizer header through to the AS).
fn authorize(r: &Recorded) -> Reply {
    let refuse = |status: u16, code: &str, description: String| {
        Reply::json(
            status,
            &json!({"error": code, "error_description": description}),
        )
        .with_header("cache-control", "no-store")
    };
    match r.header_all(FACT_SOFTWARE).as_slice() {
        [id] if *id == ALLOWED => Reply::status(200).with_header(FACT_ORG, "set-by-the-authorizer"),
        [id] => refuse(
            400,
            "unapproved_software_statement",
            format!("software {id} is not approved by this bank"),
        ),
        _ => refuse(
            400,
            "invalid_client_metadata",
            "no verified software id".to_string(),
        ),
    }
}

/// The pieces of the kit the test runs: (dcr-guard's `forward` and `fact_headers`, the ext_authz
/// filter entry, the routes, the local reply configuration).
struct KitPieces {
    forward: Value,
    fact_headers: Value,
    ext_authz: Value,
    routes: Value,
    local_reply: Value,
}

fn kit_pieces() -> KitPieces {
    let kit = common::yaml::file(KIT);
    let hcm =
        &kit["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"].as_array().expect("http_filters");
    let names: Vec<&str> = filters
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.wasm",
            "envoy.filters.http.ext_authz",
            "envoy.filters.http.router"
        ],
        "{KIT}: dcr-guard, then ext_authz, then the router"
    );
    let guard: Value = serde_json::from_str(
        filters[0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let fact_headers = guard["fact_headers"].clone();
    let headers: Vec<&str> = fact_headers
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["header"].as_str().unwrap())
        .collect();
    assert_eq!(headers, [FACT_SOFTWARE, FACT_ORG], "{KIT}: fact_headers");

    let mut ext_authz = filters[1].clone();
    let server = &mut ext_authz["typed_config"]["http_service"]["server_uri"];
    assert_eq!(server["cluster"], "bank_authz");
    server["cluster"] = json!("authz");
    server["uri"] = json!("http://authz");

    let mut routes = hcm["route_config"]["virtual_hosts"][0]["routes"].clone();
    for r in routes.as_array_mut().unwrap() {
        assert_eq!(r["route"]["cluster"], "aspsp_as");
        r["route"]["cluster"] = json!("upstream");
    }
    KitPieces {
        forward: guard["forward"].clone(),
        fact_headers,
        ext_authz,
        routes,
        local_reply: hcm["local_reply_config"].clone(),
    }
}

/// A registration of `software_id`: an SSA from the directory naming it (and its JWKS URL) and a
/// request signed with the TPP's key, which the keystore publishes for both software ids.
fn registration(tpp: &Tpp, software_id: &str) -> String {
    let mut ssa = tpp.ssa_claims();
    ssa["software_id"] = json!(software_id);
    ssa["software_client_id"] = json!(software_id);
    ssa["software_jwks_endpoint"] = json!(format!(
        "https://{}/{}/{software_id}.jwks",
        tpp.jwks_host, tpp.org_id
    ));
    let ssa = tpp.directory.sign_default(&ssa);
    let mut request = tpp.request_claims(&ssa);
    request["iss"] = json!(software_id);
    request["software_id"] = json!(software_id);
    tpp.key.sign_default(&request)
}

struct Stack {
    tpp: Tpp,
    _keystore: TestServer,
    upstream: TestServer,
    authorizer: Option<TestServer>,
    mode: Arc<Mutex<Mode>>,
    envoy: Envoy,
}

impl Stack {
    fn start() -> Stack {
        let tpp = Tpp::new(TestKey::rsa("directory"), TestKey::rsa("tpp"));
        let directory_doc = tpp.directory_jwks();
        let software_doc = tpp.software_jwks();
        let software_paths: Vec<String> = [ALLOWED, REFUSED]
            .iter()
            .map(|id| format!("/{}/{id}.jwks", tpp.org_id))
            .collect();
        let keystore = TestServer::start(move |r| {
            if r.path == common::DIRECTORY_JWKS_PATH {
                Reply::json(200, &directory_doc)
            } else if software_paths.contains(&r.path) {
                Reply::json(200, &software_doc)
            } else {
                Reply::text(404, "text/plain", "not found")
            }
        });
        let upstream = TestServer::always(
            Reply::json(201, &json!({"client_id": "generated-client-id"}))
                .with_header("x-upstream", "as"),
        );
        let mode = Arc::new(Mutex::new(Mode::Decide));
        let m = Arc::clone(&mode);
        let authorizer = TestServer::start(move |r| match *m.lock().unwrap() {
            Mode::Decide => authorize(r),
            Mode::HangUp => Reply::hang_up(),
            Mode::ServerError => Reply::text(500, "text/html", "<h1>Internal Server Error</h1>"),
        });

        let kit = kit_pieces();
        let mut filter = tpp.filter_config("keystore", "keystore");
        filter["forward"] = kit.forward.clone();
        filter["fact_headers"] = kit.fact_headers.clone();
        let mut cfg = EnvoyConfig::new(filter, upstream.port())
            .cluster("keystore", keystore.port())
            .cluster("authz", authorizer.port())
            .edit(move |b| {
                let hcm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                    [0]["typed_config"];
                let filters = hcm["http_filters"].as_array_mut().unwrap();
                let router = filters.len() - 1;
                filters.insert(router, kit.ext_authz.clone());
                hcm["route_config"]["virtual_hosts"][0]["routes"] = kit.routes.clone();
                hcm["local_reply_config"] = kit.local_reply.clone();
            });
        if std::env::var_os("DCR_GUARD_TEST_WITHOUT_FILTER").is_some() {
            // Proof that these tests test the filter: they must fail without it.
            cfg = cfg.without_filter();
        }
        let envoy = Envoy::start(&cfg);
        Stack {
            tpp,
            _keystore: keystore,
            upstream,
            authorizer: Some(authorizer),
            mode,
            envoy,
        }
    }

    fn authorizer(&self) -> &TestServer {
        self.authorizer.as_ref().unwrap()
    }

    fn register(&self, path: &str, body: &str, extra: &[(&str, &str)]) -> Response {
        let mut headers = vec![("content-type", "application/jwt")];
        headers.extend_from_slice(extra);
        self.envoy.send("POST", path, &headers, body.as_bytes())
    }
}

/// A refusal reaching the TPP: `status`, an RFC 7591 error body with `code`, JSON, not stored, and
/// nothing reached the AS.
fn assert_refused(s: &Stack, what: &str, r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{what}: {} {}", r.status, r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{what}: {:?}",
        r.headers
    );
    assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
    let body = r.json();
    assert_eq!(body["error"], code, "{what}: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: {body}"
    );
    assert!(
        r.header("x-upstream").is_none(),
        "{what}: answered by the AS"
    );
    assert_eq!(s.upstream.requests().len(), 0, "{what}: the AS saw it");
}

/// The authorizer sees an accepted registration with dcr-guard's verified facts and the verified
/// JSON body, and decides: the approved software reaches the AS, the other gets the authorizer's
/// RFC 7591 error (its status, body and content-type) and never reaches the AS.
#[test]
fn the_authorizer_decides_on_the_verified_software_id() {
    let s = Stack::start();

    let r = s.register("/register", &registration(&s.tpp, ALLOWED), &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("x-upstream"), Some("as"));
    let asked = s.authorizer().requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let check = &asked[0];
    assert_eq!(check.method, "POST");
    assert_eq!(check.path, "/check/register", "the kit's path_prefix");
    assert_eq!(check.header_all(FACT_SOFTWARE), [ALLOWED]);
    assert_eq!(check.header_all(FACT_ORG), [s.tpp.org_id.as_str()]);
    // The verified registration as JSON ("forward": "json"), whole.
    assert_eq!(check.header("content-type"), Some("application/json"));
    assert!(check.complete);
    let body = check.json();
    assert_eq!(body["software_id"], ALLOWED, "{body}");
    assert!(body["software_statement"].is_string(), "{body}");
    assert!(body.get("exp").is_none(), "JWT envelope claims: {body}");
    // The AS got the registration with dcr-guard's facts, not the authorizer's header.
    let seen = s.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header_all(FACT_SOFTWARE), [ALLOWED]);
    assert_eq!(seen[0].header_all(FACT_ORG), [s.tpp.org_id.as_str()]);
    assert_eq!(seen[0].json(), body, "the AS gets what the authorizer saw");

    s.upstream.clear();
    s.authorizer().clear();
    let r = s.register("/register", &registration(&s.tpp, REFUSED), &[]);
    assert_refused(
        &s,
        "refused software",
        &r,
        400,
        "unapproved_software_statement",
    );
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains(REFUSED),
        "the authorizer's own body: {}",
        r.text()
    );
    assert_eq!(s.authorizer().requests().len(), 1);

    // Every spelling dcr-guard treats as the registration path goes through the authorizer too.
    s.authorizer().clear();
    let r = s.register("/Register", &registration(&s.tpp, REFUSED), &[]);
    assert_refused(&s, "/Register", &r, 400, "unapproved_software_statement");
    assert_eq!(s.authorizer().requests().len(), 1);
}

/// A client's own copy of a verified-fact header never reaches the authorizer (nor the AS): the
/// refused software cannot pass itself off as the approved one, and on a path that is not a
/// registration the header is removed too (and the authorizer is not asked).
#[test]
fn a_forged_fact_header_cannot_influence_the_authorizer() {
    let s = Stack::start();

    let r = s.register(
        "/register",
        &registration(&s.tpp, REFUSED),
        &[(FACT_SOFTWARE, ALLOWED), (FACT_ORG, "forged-org")],
    );
    assert_refused(
        &s,
        "forged header",
        &r,
        400,
        "unapproved_software_statement",
    );
    let asked = s.authorizer().requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].header_all(FACT_SOFTWARE), [REFUSED]);
    assert_eq!(asked[0].header_all(FACT_ORG), [s.tpp.org_id.as_str()]);

    // The approved software's registration is not spoiled by a forged header either.
    s.authorizer().clear();
    let r = s.register(
        "/register",
        &registration(&s.tpp, ALLOWED),
        &[(FACT_SOFTWARE, REFUSED)],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        s.authorizer().requests()[0].header_all(FACT_SOFTWARE),
        [ALLOWED]
    );
    assert_eq!(
        s.upstream.requests()[0].header_all(FACT_SOFTWARE),
        [ALLOWED]
    );

    // Not a registration: no bank check, and the forged header does not reach the AS.
    s.upstream.clear();
    s.authorizer().clear();
    let r = s.envoy.send(
        "GET",
        "/registers",
        &[(FACT_SOFTWARE, ALLOWED), (FACT_ORG, "forged-org")],
        b"",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.authorizer().requests().len(), 0, "not a registration");
    let seen = s.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].header(FACT_SOFTWARE).is_none(), "{:?}", seen[0]);
    assert!(seen[0].header(FACT_ORG).is_none(), "{:?}", seen[0]);
}

/// A registration dcr-guard refuses is answered by dcr-guard and never reaches the authorizer.
#[test]
fn a_registration_dcr_guard_refuses_never_reaches_the_authorizer() {
    let s = Stack::start();
    let cases = [
        (
            "request signature",
            corrupt_signature(&registration(&s.tpp, ALLOWED)),
        ),
        ("not a JWS", "not-a-jwt".to_string()),
    ];
    for (what, body) in &cases {
        let r = s.register("/register", body, &[(FACT_SOFTWARE, ALLOWED)]);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        assert!(r.json()["error"].is_string(), "{what}: {}", r.text());
        assert_eq!(
            s.authorizer().requests().len(),
            0,
            "{what}: the authorizer was asked"
        );
        assert_eq!(s.upstream.requests().len(), 0, "{what}: the AS saw it");
    }
}

/// The authorizer failing fails closed: 503 with an RFC 7591 shaped body (the kit's local reply),
/// never forwarded — whether it answers 5xx (Envoy takes that for an error, not a decision), hangs
/// up, or nothing listens any more.
#[test]
fn the_authorizer_down_fails_closed() {
    let mut s = Stack::start();
    *s.mode.lock().unwrap() = Mode::ServerError;
    let r = s.register("/register", &registration(&s.tpp, ALLOWED), &[]);
    assert_refused(
        &s,
        "authorizer answers 500",
        &r,
        503,
        "temporarily_unavailable",
    );
    assert_eq!(
        s.authorizer().requests().len(),
        1,
        "the authorizer was asked"
    );

    *s.mode.lock().unwrap() = Mode::HangUp;
    let r = s.register("/register", &registration(&s.tpp, ALLOWED), &[]);
    assert_refused(
        &s,
        "authorizer hangs up",
        &r,
        503,
        "temporarily_unavailable",
    );

    drop(s.authorizer.take());
    let r = s.register("/register", &registration(&s.tpp, ALLOWED), &[]);
    assert_refused(&s, "authorizer gone", &r, 503, "temporarily_unavailable");
    // Not a registration: not affected.
    let r = s.envoy.get("/.well-known/openid-configuration");
    assert_eq!(r.status, 201, "{}", r.text());
}
