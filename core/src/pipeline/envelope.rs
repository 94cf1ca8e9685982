//! What the request's headers alone decide, before any body is read: refused method overrides
//! and repeated singleton headers, the method allowed on each registration path, the content type
//! and coding of a registration body, and a declared length. The host glue reads the headers and
//! calls these; each refusal is the error the client gets.

use crate::config::Config;
use crate::error::DcrError;
use crate::path::Route;

/// The methods a client path (`/register/{client_id}`) allows (RFC 7592).
pub const MANAGEMENT_METHODS: &str = "GET, PUT, DELETE";

/// Headers that must appear at most once on a registration request: the filter reads the first,
/// another parser may use the last (a token, a media type, a length the filter did not check).
pub const SINGLETON_HEADERS: [&str; 6] = [
    "authorization",
    "content-type",
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "x-forwarded-client-cert",
];

/// Headers that ask some frameworks to treat a request as another method: refused on the
/// registration path, where the method decides which checks run.
pub const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers describing the body as the client sent it: removed when JSON forwarding replaces it.
pub const BODY_DESCRIBING_HEADERS: [&str; 5] = [
    "content-encoding",
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
];

/// The headers every registration request is checked for: a method override (`present` tells
/// whether the request carries a header) and a singleton header sent twice (`repeated`, the first
/// such header the host found).
pub fn check_headers(
    present: impl Fn(&str) -> bool,
    repeated: Option<&str>,
) -> Result<(), DcrError> {
    if let Some(name) = METHOD_OVERRIDES.iter().find(|h| present(h)) {
        let why = match *name {
            "x-http-method-override" => {
                "the X-HTTP-Method-Override header is not allowed on the registration path"
            }
            "x-http-method" => "the X-HTTP-Method header is not allowed on the registration path",
            _ => "the X-Method-Override header is not allowed on the registration path",
        };
        return Err(DcrError::invalid_request(why));
    }
    // Singleton fields sent twice: malformed, refused.
    if let Some(name) = repeated {
        let why = format!("the {name} header must not be sent more than once");
        return Err(DcrError::invalid_request(why));
    }
    Ok(())
}

/// What a registration request is, by its route and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// POST on the registration path.
    Create,
    /// PUT on a client path.
    Update { client_id: String },
    /// GET or DELETE on a client path.
    Manage { method: Bodiless, client_id: String },
}

/// The methods of a request that must not have a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodiless {
    Get,
    Delete,
}

impl Bodiless {
    pub fn as_str(self) -> &'static str {
        match self {
            Bodiless::Get => "GET",
            Bodiless::Delete => "DELETE",
        }
    }

    /// The refusal of a body sent with this method (an upstream might act on it).
    pub fn body_refused(self) -> DcrError {
        DcrError::invalid_request(match self {
            Bodiless::Get => "a GET on the registration path must not have a body",
            Bodiless::Delete => "a DELETE on the registration path must not have a body",
        })
    }
}

/// The request a route and a method make, or its refusal. `route` is not [`Route::NotDcr`] (the
/// glue lets those through untouched); if it is, the request is refused as a bad path.
pub fn request(route: Route, method: &str) -> Result<Request, DcrError> {
    match route {
        Route::NotDcr => Err(DcrError::invalid_request("not a registration path")),
        Route::Invalid(why) => Err(DcrError::invalid_request(why)),
        Route::Collection if method != "POST" => Err(DcrError::method_not_allowed("POST")),
        Route::Collection => Ok(Request::Create),
        Route::Client(client_id) => match method {
            "PUT" => Ok(Request::Update { client_id }),
            "GET" => Ok(Request::Manage {
                method: Bodiless::Get,
                client_id,
            }),
            "DELETE" => Ok(Request::Manage {
                method: Bodiless::Delete,
                client_id,
            }),
            _ => Err(DcrError::method_not_allowed(MANAGEMENT_METHODS)),
        },
    }
}

/// A GET or DELETE whose headers did not end the stream declares a body (a length other than 0,
/// or a transfer coding): refused at once.
pub fn declares_body(content_length: Option<&str>, transfer_encoding: Option<&str>) -> bool {
    content_length.is_some_and(|l| l.trim() != "0") || transfer_encoding.is_some()
}

/// The headers of a POST or PUT that announce its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyHeaders<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub content_length: Option<&'a str>,
}

/// A POST or PUT: its content type, an uncoded body, a declared length within the limit, and a
/// body at all (`end_of_stream`: the headers ended the request).
pub fn check_body_headers(
    cfg: &Config,
    h: &BodyHeaders<'_>,
    end_of_stream: bool,
) -> Result<(), DcrError> {
    let media = h
        .content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (ok, expected) = if cfg.json_body {
        (
            media == "application/json",
            "content type must be application/json",
        )
    } else {
        (
            media == "application/jwt" || media == "application/jose",
            "content type must be application/jwt or application/jose",
        )
    };
    if !ok {
        return Err(DcrError::invalid_request(expected));
    }
    if let Some(coding) = h.content_encoding {
        check_content_coding(coding)?;
    }
    if let Some(len) = h.content_length {
        match len.trim().parse::<u64>() {
            Ok(n) if n > cfg.limits.body_bytes as u64 => {
                return Err(DcrError::too_large(cfg.limits.body_bytes))
            }
            Ok(_) => {}
            Err(_) => return Err(DcrError::invalid_request("invalid content-length")),
        }
    }
    if end_of_stream {
        return Err(DcrError::invalid_request("a registration body is required"));
    }
    Ok(())
}

/// A `Content-Encoding` value (RFC 9110 §8.4: a list of codings, in the order applied). The
/// filter validates the bytes it sees, and an AS would decode a coded body into other bytes than
/// those validated; no decoder is carried (the module's size). So only `identity` (no coding) is
/// accepted, in any letter case, listed any number of times (empty list elements ignored);
/// anything else — `gzip`, `br`, `deflate`, `compress`, `zstd`, an unknown token, a list with
/// one of them, or a value naming no coding at all — is 415 with `Accept-Encoding: identity`.
pub fn check_content_coding(value: &str) -> Result<(), DcrError> {
    let mut codings = value
        .split(',')
        .map(|c| c.trim_matches([' ', '\t']))
        .filter(|c| !c.is_empty())
        .peekable();
    let named = codings.peek().is_some();
    if named && codings.all(|c| c.eq_ignore_ascii_case("identity")) {
        Ok(())
    } else {
        Err(DcrError::coded_body())
    }
}

/// A body of `size` bytes received so far: refused once it is over the limit.
pub fn check_body_size(cfg: &Config, size: usize) -> Result<(), DcrError> {
    if size > cfg.limits.body_bytes {
        return Err(DcrError::too_large(cfg.limits.body_bytes));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;
    use dcr_guard_testkit::dcr::Tpp;
    use dcr_guard_testkit::keys::TestKey;

    /// (status, the error's description) of a refusal.
    fn said(r: Result<(), DcrError>) -> Option<(u16, String)> {
        r.err().map(|e| (e.status, e.description))
    }

    #[test]
    fn headers_every_registration_request_is_checked_for() {
        let cases: &[(&[&str], Option<&str>, Option<&str>)] = &[
            (&[], None, None),
            (&["accept"], None, None),
            (
                &["x-http-method-override"],
                None,
                Some("the X-HTTP-Method-Override header is not allowed on the registration path"),
            ),
            (
                &["x-http-method"],
                None,
                Some("the X-HTTP-Method header is not allowed on the registration path"),
            ),
            (
                &["x-method-override"],
                Some("authorization"),
                Some("the X-Method-Override header is not allowed on the registration path"),
            ),
            (
                &[],
                Some("content-type"),
                Some("the content-type header must not be sent more than once"),
            ),
        ];
        for (present, repeated, want) in cases {
            let got = said(check_headers(|h| present.contains(&h), *repeated));
            assert_eq!(
                got,
                want.map(|w| (400, w.to_string())),
                "{present:?} {repeated:?}"
            );
        }
    }

    #[test]
    fn route_and_method_make_the_request() {
        let id = || "abc".to_string();
        let cases: Vec<(Route, &str, Result<Request, u16>)> = vec![
            (Route::Collection, "POST", Ok(Request::Create)),
            (Route::Collection, "PUT", Err(405)),
            (Route::Collection, "GET", Err(405)),
            (
                Route::Client(id()),
                "PUT",
                Ok(Request::Update { client_id: id() }),
            ),
            (
                Route::Client(id()),
                "GET",
                Ok(Request::Manage {
                    method: Bodiless::Get,
                    client_id: id(),
                }),
            ),
            (
                Route::Client(id()),
                "DELETE",
                Ok(Request::Manage {
                    method: Bodiless::Delete,
                    client_id: id(),
                }),
            ),
            (Route::Client(id()), "POST", Err(405)),
            (Route::Client(id()), "PATCH", Err(405)),
            (Route::Invalid("bad path"), "POST", Err(400)),
            (Route::NotDcr, "POST", Err(400)),
        ];
        for (route, method, want) in cases {
            let got = request(route.clone(), method).map_err(|e| e.status);
            assert_eq!(got, want, "{route:?} {method}");
        }
        let allow = request(Route::Client(id()), "PATCH").unwrap_err();
        assert!(allow
            .headers()
            .contains(&("allow", MANAGEMENT_METHODS.to_string())));
    }

    #[test]
    fn a_bodiless_request_declares_no_body() {
        let cases = [
            (None, None, false),
            (Some("0"), None, false),
            (Some(" 0 "), None, false),
            (Some("1"), None, true),
            (None, Some("chunked"), true),
        ];
        for (len, te, want) in cases {
            assert_eq!(declares_body(len, te), want, "{len:?} {te:?}");
        }
        assert_eq!(
            said(Err(Bodiless::Delete.body_refused())),
            Some((
                400,
                "a DELETE on the registration path must not have a body".to_string()
            ))
        );
    }

    #[test]
    fn only_the_identity_coding_is_accepted() {
        let cases = [
            ("identity", true),
            (" Identity ", true),
            ("IDENTITY", true),
            ("identity, identity", true),
            ("identity,,\tidentity ,", true),
            ("gzip", false),
            ("x-gzip", false),
            ("deflate", false),
            ("br", false),
            ("compress", false),
            ("zstd", false),
            ("aes128gcm", false),
            ("x-unknown", false),
            ("identity, gzip", false),
            ("gzip, identity", false),
            ("identity;q=1", false),
            ("", false),
            (" , ", false),
        ];
        for (value, ok) in cases {
            match check_content_coding(value) {
                Ok(()) => assert!(ok, "{value:?} accepted"),
                Err(e) => {
                    assert!(!ok, "{value:?} refused");
                    assert_eq!((e.status, e.code.as_str()), (415, "invalid_request"));
                    assert!(e
                        .headers()
                        .contains(&("accept-encoding", "identity".to_string())));
                }
            }
        }
    }

    #[test]
    fn body_headers_of_a_post_or_put() {
        let tpp = Tpp::new(TestKey::ec("dir"), TestKey::ec("tpp"));
        let jwt = Config::from_json(tpp.filter_config("d", "s").to_string().as_bytes()).unwrap();
        let json =
            Config::from_json(tpp.br_filter_config("d", "s").to_string().as_bytes()).unwrap();
        let max = jwt.limits.body_bytes;
        let over = (max + 1).to_string();
        let h = |ct: &'static str| BodyHeaders {
            content_type: Some(ct),
            ..BodyHeaders::default()
        };
        let jwt_type = "content type must be application/jwt or application/jose";
        let cases: Vec<(&Config, BodyHeaders<'_>, bool, Option<(u16, &str)>)> = vec![
            (&jwt, h("application/jwt"), false, None),
            (&jwt, h("Application/JOSE; charset=utf-8"), false, None),
            (&jwt, h("application/json"), false, Some((400, jwt_type))),
            (&jwt, BodyHeaders::default(), false, Some((400, jwt_type))),
            (&json, h("application/json"), false, None),
            (
                &json,
                h("application/jwt"),
                false,
                Some((400, "content type must be application/json")),
            ),
            (
                &jwt,
                BodyHeaders {
                    content_encoding: Some("gzip"),
                    ..h("application/jwt")
                },
                false,
                Some((
                    415,
                    "the registration body must be sent without a content coding (Content-Encoding): only identity is accepted",
                )),
            ),
            (
                &jwt,
                BodyHeaders {
                    content_encoding: Some(" Identity "),
                    ..h("application/jwt")
                },
                false,
                None,
            ),
            (
                &jwt,
                BodyHeaders {
                    content_length: Some("12x"),
                    ..h("application/jwt")
                },
                false,
                Some((400, "invalid content-length")),
            ),
            (
                &jwt,
                h("application/jwt"),
                true,
                Some((400, "a registration body is required")),
            ),
        ];
        for (i, (cfg, headers, end, want)) in cases.iter().enumerate() {
            let got = said(check_body_headers(cfg, headers, *end));
            assert_eq!(got, want.map(|(s, w)| (s, w.to_string())), "case {i}");
        }
        let too_long = BodyHeaders {
            content_length: Some(&over),
            ..h("application/jwt")
        };
        assert_eq!(
            check_body_headers(&jwt, &too_long, false)
                .unwrap_err()
                .status,
            413
        );
        assert!(check_body_size(&jwt, max).is_ok());
        assert_eq!(check_body_size(&jwt, max + 1).unwrap_err().status, 413);
    }
}
