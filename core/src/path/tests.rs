use super::model::check;
use super::*;

const BASE: &str = "/register";

fn invalid(path: &str) -> bool {
    matches!(classify(BASE, path), Route::Invalid(_))
}

#[test]
fn literal_routes() {
    let cases: &[(&str, Route)] = &[
        ("/register", Route::Collection),
        ("/register/", Route::Collection),
        ("/register?x=1", Route::Collection),
        ("/register?x=/../%2F", Route::Collection),
        ("/REGISTER", Route::Collection),
        ("/Register/abc", Route::Client("abc".into())),
        ("/register/abc?q=1", Route::Client("abc".into())),
        ("/register/a%20b", Route::Client("a%20b".into())),
        ("/register/a.b", Route::Client("a.b".into())),
        ("/register/...", Route::Client("...".into())),
        ("/register/a%2Eb", Route::Client("a%2Eb".into())),
        (
            "/register/3f8c1a2e-9b7d-4c1e-8f00-000000000001",
            Route::Client("3f8c1a2e-9b7d-4c1e-8f00-000000000001".into()),
        ),
        ("http://bank.example/register", Route::Collection),
        (
            "https://bank.example:8443/register/abc",
            Route::Client("abc".into()),
        ),
    ];
    for (path, want) in cases {
        assert_eq!(&classify(BASE, path), want, "{path}");
    }
}

#[test]
fn other_literal_paths_are_untouched() {
    for path in [
        "/registers",
        "/register-x",
        "/register_x",
        "/register2/abc",
        "/regist%65rs",
        "/other",
        "/",
        "",
        "*",
        "/reg",
        "/re/gister",
        "/api/register",
        "/accounts/123?x=/register",
        "/x?/register",
        "http://bank.example/other",
        "http://bank.example",
        "/registerX",
    ] {
        assert_eq!(classify(BASE, path), Route::NotDcr, "{path}");
    }
}

/// Every form the issue reports as a bypass, and its neighbours: 400, never "not DCR".
#[test]
fn everything_that_can_normalise_to_the_registration_path_is_refused() {
    for path in [
        // encoded separators after the base
        "/register%2F",
        "/REGISTER%2f",
        "/register%5C",
        "/register%5c",
        "/register%2Fabc",
        "/register%5Cabc",
        "/register%2F..",
        // suffixes an upstream may trim or ignore
        "/register.json",
        "/register.",
        "/register%2e",
        "/register%2E",
        "/register%20",
        "/register%09",
        "/register%00",
        "/register%3B",
        "/register%3bx",
        "/register;x",
        "/register;jsessionid=1",
        "/register~",
        "/register:",
        "/register%3F",
        "/register%23",
        // double (and deeper) encoding
        "/register%252F",
        "/register%25252F",
        "/regist%2565r",
        "/%2572egister",
        // encoded letters of the base
        "/regist%65r",
        "/regist%65r/abc",
        "/%72%65%67%69%73%74%65%72",
        // backslashes
        "/register\\",
        "/register\\abc",
        "\\register",
        "/x\\..\\register",
        // empty and dot segments, before and after the base
        "//register",
        "/./register",
        "/x/../register",
        "/x/%2e%2e/register",
        "/x/%2E%2E%2Fregister",
        "/register//",
        "/register//abc",
        "/register/.",
        "/register/..",
        "/register/%2e",
        "/register/%2e%2e",
        "/register/./abc",
        "/register/abc/..",
        "/register/abc/.",
        "/register/abc/",
        "/register/a/b",
        "/register/a%2Fb",
        "/register/a%2fb",
        "/register/a%5Cb",
        "/register/a%252Fb",
        "/register/a%3Bb",
        "/register/a;b",
        "/register/a%00b",
        "/register/a%C3%A9",
        "/register/a%",
        "/register/a%zz",
        "/;x/register",
        "/register;/abc",
        // non-ASCII stand-ins for letters of the base
        "/regïster",
        "/r%C3%A9gister",
        // absolute-form targets
        "http://bank.example/register%2F",
        "http://bank.example//register",
        "http://bank.example/register.json",
    ] {
        assert!(invalid(path), "{path}: {:?}", classify(BASE, path));
    }
}

#[test]
fn reasons_name_the_odd_feature() {
    let cases = [
        (
            "/register%2F",
            "encoded slashes are not allowed in the registration path",
        ),
        (
            "/register%252F",
            "double percent-encoding in the registration path",
        ),
        (
            "/regist%65r",
            "percent-encoded characters in the registration path",
        ),
        (
            "/register\\abc",
            "backslashes are not allowed in the registration path",
        ),
        (
            "/register;x",
            "path parameters are not allowed on the registration path",
        ),
        ("/register//abc", "empty path segment"),
        ("/register/..", "dot segments are not allowed"),
        ("/register/abc/", "trailing slash after the client id"),
        (
            "/register/a/b",
            "the client id must be exactly one path segment",
        ),
    ];
    for (path, want) in cases {
        assert_eq!(classify(BASE, path), Route::Invalid(want), "{path}");
    }
}

#[test]
fn nested_base() {
    let base = "/open-banking/v3.3/register";
    assert_eq!(
        classify(base, "/open-banking/v3.3/register"),
        Route::Collection
    );
    assert_eq!(
        classify(base, "/Open-Banking/V3.3/Register/x"),
        Route::Client("x".into())
    );
    assert_eq!(
        classify(base, "/open-banking/v3.3/registerx"),
        Route::NotDcr
    );
    assert_eq!(classify(base, "/open-banking/v3.3"), Route::NotDcr);
    assert!(matches!(
        classify(base, "/open-banking/v3.3%2Fregister"),
        Route::Invalid(_)
    ));
    assert!(matches!(
        classify(base, "/open-banking/v3%2E3/register"),
        Route::Invalid(_)
    ));
    assert!(matches!(
        classify(base, "/open-banking//v3.3/register"),
        Route::Invalid(_)
    ));
    assert!(matches!(
        classify(base, "/open-banking/x/../v3.3/register"),
        Route::Invalid(_)
    ));
}

#[test]
fn never_panics_on_odd_input() {
    for p in [
        "%",
        "%%",
        "/register%",
        "/register/%",
        "/regi%",
        "/é",
        "/register/é",
        "/ré%gister",
        "://",
        "a://",
        "1://x/register",
        "http://",
        "http:///register",
        "%%%%2F",
        "/\u{80}",
    ] {
        let _ = classify(BASE, p);
    }
}

const PIECES: &[&str] = &[
    "/",
    "/",
    "/",
    "http://h",
    "register",
    "REGISTER",
    "Register",
    "regist",
    "er",
    "r",
    "%65",
    "%72",
    "%2F",
    "%2f",
    "%5C",
    "\\",
    "%25",
    "%252F",
    "2F",
    "%2e",
    "%2E",
    ".",
    "..",
    "/..",
    "/.",
    ";",
    ";x=1",
    "%3B",
    "%20",
    " ",
    ".json",
    "s",
    "-x",
    "_y",
    "abc",
    "x",
    "?",
    "?q=/register",
    "#",
    "%3F",
    "é",
    "%C3%A9",
    "//",
    "%",
    "%4",
    "~",
    ":",
    "@",
    "%00",
    "%09",
];

fn from_pieces(idx: &[usize]) -> String {
    idx.iter().map(|&i| PIECES[i % PIECES.len()]).collect()
}

#[test]
fn classifier_agrees_with_the_model_exhaustively_on_short_paths() {
    // Every sequence of up to two pieces, and of three of the first 24 (the separators, the base
    // and its parts, the encodings): ~16k paths. The fuzz target `path` searches further.
    let n = PIECES.len();
    let mut checked = 0;
    for a in 0..n {
        check(BASE, &from_pieces(&[a]));
        for b in 0..n {
            check(BASE, &from_pieces(&[a, b]));
            checked += 1;
        }
    }
    for a in 0..24 {
        for b in 0..24 {
            for c in 0..24 {
                check(BASE, &from_pieces(&[a, b, c]));
                checked += 1;
            }
        }
    }
    assert!(checked > 15_000);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4_000))]

    #[test]
    fn classifier_agrees_with_the_model(idx in proptest::collection::vec(0usize..1000, 0..9)) {
        check(BASE, &from_pieces(&idx));
    }

    #[test]
    fn classifier_agrees_with_the_model_on_any_ascii(path in "[ -~]{0,16}") {
        check(BASE, &path);
        check(BASE, &format!("/register{path}"));
    }

    /// `{base}` followed by a letter, digit, `-` or `_` is another literal path, whatever follows.
    #[test]
    fn other_literal_paths_stay_untouched(
        next in "[a-z0-9_-]",
        tail in "[a-zA-Z0-9_/-]{0,12}",
    ) {
        let path = format!("/register{next}{tail}");
        proptest::prop_assert_eq!(classify(BASE, &path), Route::NotDcr, "{}", path);
    }
}

#[test]
fn long_paths_are_bounded() {
    // A plain long path is other traffic, whatever it holds.
    let plain = format!("/files/{}/register", "x".repeat(10_000));
    assert_eq!(classify(BASE, &plain), Route::NotDcr);
    // A long encoded path without the registration path's letters in order is other traffic.
    let other = format!("/files/{}", "a%20b/".repeat(2_000));
    assert_eq!(classify(BASE, &other), Route::NotDcr);
    // One that holds them and needs normalising is refused without being examined.
    let long = format!("/{}register%2F", "x/../".repeat(1_000));
    assert!(long.len() > MAX_NORMALISED_BYTES);
    assert_eq!(
        classify(BASE, &long),
        Route::Invalid(
            "a path this long must not need decoding or normalising near the registration path"
        )
    );
    // Just under the bound it is examined (and refused, since it reaches the base).
    let short = format!("/{}register%2F", "x/../".repeat(800));
    assert!(short.len() <= MAX_NORMALISED_BYTES);
    assert_eq!(
        classify(BASE, &short),
        Route::Invalid("encoded slashes are not allowed in the registration path")
    );
}
