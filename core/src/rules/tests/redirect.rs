//! Table-driven tests of `rules/redirect.rs`.

use super::*;
use crate::rules::redirect;

// ---------------------------------------------------------------------------------------------
// 5. redirect_uri_format
// ---------------------------------------------------------------------------------------------

/// A URI of exactly `len` characters on the TPP's host.
fn uri_of_len(len: usize) -> String {
    let head = "https://tpp.example.com/";
    let mut s = head.to_string();
    s.push_str(&"a".repeat(len - head.len()));
    assert_eq!(s.chars().count(), len);
    s
}

#[test]
fn redirect_uri_format_rule() {
    let p = uk_redirects();
    let u256 = uri_of_len(256);
    let u257 = uri_of_len(257);
    // 256 characters, more bytes: the limit counts characters.
    let mut u256_multibyte = "https://tpp.example.com/".to_string();
    while u256_multibyte.chars().count() < 256 {
        u256_multibyte.push('é');
    }
    assert!(u256_multibyte.len() > 256);

    let bad = |uri: &str| json!({ "redirect_uris": [uri] });
    let cases: Vec<Case> = vec![
        ("https passes", none(), none(), Ok(())),
        (
            "https with port, path and query passes",
            bad("https://tpp.example.com:8443/cb?x=1"),
            none(),
            Ok(()),
        ),
        (
            "uppercase scheme is normalised",
            bad("HTTPS://tpp.example.com/cb"),
            none(),
            Ok(()),
        ),
        (
            "host containing localhost as a label prefix passes",
            bad("https://localhost.example.com/cb"),
            none(),
            Ok(()),
        ),
        (
            "private address is not loopback",
            bad("https://10.0.0.1/cb"),
            none(),
            Ok(()),
        ),
        ("http fails", bad("http://tpp.example.com/cb"), none(), Err("must use https")),
        (
            "http localhost fails",
            bad("http://localhost/cb"),
            none(),
            Err("redirect URI"),
        ),
        (
            "localhost",
            bad("https://localhost/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "LOCALHOST",
            bad("https://LOCALHOST/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "localhost with port",
            bad("https://localhost:8443/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "localhost with trailing dot",
            bad("https://localhost./cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "percent-encoded localhost",
            bad("https://%6c%6f%63%61%6c%68%6f%73%74/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "fullwidth localhost (IDNA-mapped)",
            bad("https://\u{ff4c}\u{ff4f}\u{ff43}\u{ff41}\u{ff4c}\u{ff48}\u{ff4f}\u{ff53}\u{ff54}/cb"),
            none(),
            Err("is not a valid URI (RFC 3986)"),
        ),
        (
            "subdomain of localhost",
            bad("https://app.localhost/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "deep subdomain of localhost",
            bad("https://a.b.LocalHost/cb"),
            none(),
            Err("must not point at localhost"),
        ),
        (
            "127.0.0.1",
            bad("https://127.0.0.1/cb"),
            none(),
            Err("must not point at a loopback or unspecified address"),
        ),
        (
            "127.9.9.9",
            bad("https://127.9.9.9/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "127.255.255.255",
            bad("https://127.255.255.255/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        ("[::1]", bad("https://[::1]/cb"), none(), Err("loopback or unspecified address")),
        (
            "[0:0:0:0:0:0:0:1]",
            bad("https://[0:0:0:0:0:0:0:1]/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "[::ffff:127.0.0.1]",
            bad("https://[::ffff:127.0.0.1]/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        ("0.0.0.0", bad("https://0.0.0.0/cb"), none(), Err("redirect URI must not point")),
        ("[::]", bad("https://[::]/cb"), none(), Err("redirect URI must not point")),
        (
            "integer form of 127.0.0.1",
            bad("https://2130706433/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "short form 127.1",
            bad("https://127.1/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "hex form 0x7f.1",
            bad("https://0x7f.1/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "octal form 017700000001",
            bad("https://017700000001/cb"),
            none(),
            Err("loopback or unspecified address"),
        ),
        (
            "fragment",
            bad("https://a.example/cb#x"),
            none(),
            Err("redirect URI has a fragment"),
        ),
        (
            "trailing #",
            bad("https://a.example/cb#"),
            none(),
            Err("has a fragment"),
        ),
        (
            "relative",
            bad("/cb"),
            none(),
            Err("redirect URI must use https"),
        ),
        (
            "empty string",
            bad(""),
            none(),
            Err("redirect URI must use https"),
        ),
        (
            "not a URI",
            bad("not a uri"),
            none(),
            Err("is not a valid URI (RFC 3986)"),
        ),
        (
            "custom scheme",
            bad("custom-scheme:/cb"),
            none(),
            Err("must use https"),
        ),
        (
            "javascript scheme",
            bad("javascript:alert(1)"),
            none(),
            Err("must use https"),
        ),
        (
            "https with empty authority and port",
            bad("https://:443/cb"),
            none(),
            Err("redirect URI"),
        ),
        (
            "host that is only a dot",
            bad("https://./cb"),
            none(),
            Err("redirect URI"),
        ),
        ("exactly 256 characters", json!({ "redirect_uris": [u256.clone()] }), json!({"software_redirect_uris": [u256.clone()]}), Ok(())),
        (
            "non-ASCII characters (an IRI, not an RFC 3986 URI)",
            json!({ "redirect_uris": [u256_multibyte.clone()] }),
            none(),
            Err("is not a valid URI (RFC 3986)"),
        ),
        (
            "257 characters",
            json!({ "redirect_uris": [u257.clone()] }),
            none(),
            Err("redirect URI longer than 256 characters"),
        ),
        (
            "second request URI bad",
            json!({"redirect_uris": ["https://tpp.example.com/cb", "http://tpp.example.com/cb"]}),
            none(),
            Err("must use https: `http://tpp.example.com/cb`"),
        ),
        (
            "bad URI only in the SSA list",
            none(),
            json!({"software_redirect_uris": ["https://tpp.example.com/cb", "https://localhost/cb"]}),
            Err("must not point at localhost: `https://localhost/cb`"),
        ),
        (
            "257-character URI only in the SSA list",
            none(),
            json!({"software_redirect_uris": ["https://tpp.example.com/cb", u257.clone()]}),
            Err("longer than 256"),
        ),
        (
            "request list absent (subset rule reports it)",
            json!({"redirect_uris": DEL}),
            none(),
            Ok(()),
        ),
        (
            "SSA list absent",
            none(),
            json!({"software_redirect_uris": DEL}),
            Ok(()),
        ),
        (
            "redirect_uris a string",
            json!({"redirect_uris": "https://tpp.example.com/cb"}),
            none(),
            Err("claim `redirect_uris` must be an array of strings, not a string"),
        ),
        (
            "redirect_uris null",
            json!({"redirect_uris": null}),
            none(),
            Err("claim `redirect_uris` must be an array of strings, not null"),
        ),
        (
            "redirect_uris object",
            json!({"redirect_uris": {"0": "https://tpp.example.com/cb"}}),
            none(),
            Err("claim `redirect_uris` must be an array of strings, not an object"),
        ),
        (
            "redirect_uris element a number",
            json!({"redirect_uris": ["https://tpp.example.com/cb", 3]}),
            none(),
            Err("claim `redirect_uris` must hold only strings, not a number"),
        ),
        (
            "SSA list a string",
            none(),
            json!({"software_redirect_uris": "https://tpp.example.com/cb"}),
            Err("SSA claim `software_redirect_uris` must be an array of strings, not a string"),
        ),
        (
            "SSA list element null",
            none(),
            json!({"software_redirect_uris": [null]}),
            Err("SSA claim `software_redirect_uris` must hold only strings, not null"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::format(ctx, &p)
    });

    // The length limit is configurable.
    let short = RedirectUris {
        max_length: 30,
        ..uk_redirects()
    };
    let cases: Vec<Case> = vec![
        (
            "30 characters",
            json!({"redirect_uris": [uri_of_len(30)]}),
            json!({"software_redirect_uris": [uri_of_len(30)]}),
            Ok(()),
        ),
        (
            "31 characters",
            json!({"redirect_uris": [uri_of_len(31)]}),
            json!({"software_redirect_uris": [uri_of_len(30)]}),
            Err("longer than 30 characters"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::format(ctx, &short)
    });
}

/// `https:///cb` (empty authority), `https:/cb` and `https:cb` have no host in RFC 3986 (and RFC 9110
/// forbids an https URI with an empty host), but the WHATWG parser of the `url` crate turns them into
/// `https://cb/`, so the rule accepts them as if `cb` were the host.
#[test]
fn redirect_uri_format_hostless_https_must_fail() {
    let p = uk_redirects();
    let cases: Vec<Case> = ["https:///cb", "https:/cb", "https:cb"]
        .into_iter()
        .map(|u| {
            (
                u,
                json!({ "redirect_uris": [u] }),
                none(),
                Err("redirect URI"),
            )
        })
        .collect();
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::format(ctx, &p)
    });
}

/// The rule must check "parses as an absolute URI"; the WHATWG parser silently repairs strings that
/// are not RFC 3986 URIs (backslashes, surrounding whitespace, embedded tab/newline). Worst case:
/// `https://tpp.example.com\@localhost/cb` is host `tpp.example.com` to this filter but host
/// `localhost` to an RFC 3986 / java.net.URL parser (the reference AS is Java): a localhost bypass
/// through a parser differential.
#[test]
fn redirect_uri_format_non_rfc3986_strings_must_fail() {
    let p = uk_redirects();
    let cases: Vec<Case> = [
        "https://tpp.example.com\\@localhost/cb",
        "https:\\\\tpp.example.com\\cb",
        " https://tpp.example.com/cb",
        "https://tpp.example.com/cb ",
        "https://tpp.exa\tmple.com/cb",
        "https://tpp.example.com/c\nb",
    ]
    .into_iter()
    .map(|u| {
        (
            u,
            json!({ "redirect_uris": [u] }),
            none(),
            Err("redirect URI"),
        )
    })
    .collect();
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::format(ctx, &p)
    });
}

// ---------------------------------------------------------------------------------------------
// 6. redirect_uri_subset
// ---------------------------------------------------------------------------------------------

#[test]
fn redirect_uri_subset_rule() {
    let p = uk_redirects();
    let cases: Vec<Case> = vec![
        ("exact membership", none(), none(), Ok(())),
        (
            "both SSA URIs",
            json!({"redirect_uris": ["https://tpp.example.com/cb2", "https://tpp.example.com/cb"]}),
            none(),
            Ok(()),
        ),
        (
            "duplicate entries",
            json!({"redirect_uris": ["https://tpp.example.com/cb", "https://tpp.example.com/cb"]}),
            none(),
            Ok(()),
        ),
        (
            "not in the SSA",
            json!({"redirect_uris": ["https://evil.example/cb"]}),
            none(),
            Err("redirect URI `https://evil.example/cb` is not registered in the software statement"),
        ),
        (
            "second not in the SSA",
            json!({"redirect_uris": ["https://tpp.example.com/cb", "https://tpp.example.com/cb3"]}),
            none(),
            Err("`https://tpp.example.com/cb3` is not registered"),
        ),
        (
            "trailing slash differs",
            json!({"redirect_uris": ["https://tpp.example.com/cb/"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "host case differs",
            json!({"redirect_uris": ["https://TPP.example.com/cb"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "path case differs",
            json!({"redirect_uris": ["https://tpp.example.com/CB"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "explicit default port differs",
            json!({"redirect_uris": ["https://tpp.example.com:443/cb"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "added query differs",
            json!({"redirect_uris": ["https://tpp.example.com/cb?a=1"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "prefix of an SSA URI",
            json!({"redirect_uris": ["https://tpp.example.com/c"]}),
            none(),
            Err("is not registered"),
        ),
        (
            "request list missing",
            json!({"redirect_uris": DEL}),
            none(),
            Err("redirect_uris not found"),
        ),
        (
            "request list empty",
            json!({"redirect_uris": []}),
            none(),
            Err("redirect_uris cannot be empty"),
        ),
        (
            "request list a string",
            json!({"redirect_uris": "https://tpp.example.com/cb"}),
            none(),
            Err("claim `redirect_uris` must be an array of strings, not a string"),
        ),
        (
            "request list null",
            json!({"redirect_uris": null}),
            none(),
            Err("claim `redirect_uris` must be an array of strings, not null"),
        ),
        (
            "request element a number",
            json!({"redirect_uris": [1]}),
            none(),
            Err("claim `redirect_uris` must hold only strings, not a number"),
        ),
        (
            "SSA list missing",
            none(),
            json!({"software_redirect_uris": DEL}),
            Err("SSA claim `software_redirect_uris` not found"),
        ),
        (
            "SSA list empty",
            none(),
            json!({"software_redirect_uris": []}),
            Err("is not registered"),
        ),
        (
            "SSA list a string",
            none(),
            json!({"software_redirect_uris": "https://tpp.example.com/cb"}),
            Err("SSA claim `software_redirect_uris` must be an array of strings, not a string"),
        ),
        (
            "SSA list a number",
            none(),
            json!({"software_redirect_uris": 9}),
            Err("SSA claim `software_redirect_uris` must be an array of strings, not a number"),
        ),
        (
            "SSA list an object",
            none(),
            json!({"software_redirect_uris": {"a": "https://tpp.example.com/cb"}}),
            Err("SSA claim `software_redirect_uris` must be an array of strings, not an object"),
        ),
        (
            "SSA list element a number",
            none(),
            json!({"software_redirect_uris": ["https://tpp.example.com/cb", 2]}),
            Err("SSA claim `software_redirect_uris` must hold only strings"),
        ),
        (
            "long URI clipped in the message",
            json!({"redirect_uris": [format!("https://evil.example/{}", "x".repeat(5000))]}),
            none(),
            Err("is not registered"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::subset(ctx, &p)
    });
}

// ---------------------------------------------------------------------------------------------
// 7. uri_hostname
// ---------------------------------------------------------------------------------------------

#[test]
fn uri_hostname_rule() {
    let p = uk_redirects();
    let cases: Vec<Case> = vec![
        ("all on the same host", none(), none(), Ok(())),
        (
            "case difference in host",
            none(),
            json!({"software_logo_uri": "https://TPP.example.com/logo.png"}),
            Ok(()),
        ),
        (
            "case difference in the redirect host",
            none(),
            json!({"software_redirect_uris": ["https://Tpp.Example.Com/cb"]}),
            Ok(()),
        ),
        (
            "trailing dot in host",
            none(),
            json!({"software_tos_uri": "https://tpp.example.com./tos"}),
            Ok(()),
        ),
        (
            "different port, same host",
            none(),
            json!({"software_policy_uri": "https://tpp.example.com:8443/policy"}),
            Ok(()),
        ),
        (
            "logo on another host",
            none(),
            json!({"software_logo_uri": "https://cdn.example.net/logo.png"}),
            Err("SSA `software_logo_uri` host `cdn.example.net` differs from the `software_redirect_uris` host `tpp.example.com`"),
        ),
        (
            "subdomain is another host",
            none(),
            json!({"software_client_uri": "https://www.tpp.example.com"}),
            Err("SSA `software_client_uri` host `www.tpp.example.com` differs"),
        ),
        (
            "second redirect URI on another host",
            none(),
            json!({"software_redirect_uris": ["https://tpp.example.com/cb", "https://other.example/cb"]}),
            Err("SSA `software_redirect_uris` host `other.example` differs"),
        ),
        (
            "tos on another host",
            none(),
            json!({"software_tos_uri": "https://legal.example.org/tos"}),
            Err("`software_tos_uri` host `legal.example.org`"),
        ),
        (
            "policy on another host",
            none(),
            json!({"software_policy_uri": "https://legal.example.org/p"}),
            Err("`software_policy_uri`"),
        ),
        (
            "no redirects: first URI claim is the reference",
            none(),
            json!({"software_redirect_uris": DEL, "software_logo_uri": "https://cdn.example.net/l.png"}),
            Err("SSA `software_logo_uri` host `cdn.example.net` differs from the `software_client_uri` host `tpp.example.com`"),
        ),
        (
            "missing logo, tos, policy and client URIs are skipped",
            none(),
            json!({"software_logo_uri": DEL, "software_tos_uri": DEL, "software_policy_uri": DEL, "software_client_uri": DEL}),
            Ok(()),
        ),
        (
            "nothing at all",
            none(),
            json!({"software_redirect_uris": DEL, "software_logo_uri": DEL, "software_tos_uri": DEL, "software_policy_uri": DEL, "software_client_uri": DEL}),
            Ok(()),
        ),
        (
            "request URIs are not considered",
            json!({"redirect_uris": ["https://elsewhere.example/cb"], "logo_uri": "https://elsewhere.example/l"}),
            none(),
            Ok(()),
        ),
        (
            "unparseable URI",
            none(),
            json!({"software_tos_uri": "not a uri"}),
            Err("SSA `software_tos_uri` is not an absolute URI with a host"),
        ),
        (
            "empty URI",
            none(),
            json!({"software_policy_uri": ""}),
            Err("SSA `software_policy_uri` is not an absolute URI with a host"),
        ),
        (
            "URI without host",
            none(),
            json!({"software_logo_uri": "mailto:ops@tpp.example.com"}),
            Err("SSA `software_logo_uri` is not an absolute URI with a host"),
        ),
        (
            "unparseable redirect URI",
            none(),
            json!({"software_redirect_uris": ["::::"]}),
            Err("SSA `software_redirect_uris` is not an absolute URI with a host"),
        ),
        (
            "URI claim a number",
            none(),
            json!({"software_client_uri": 5}),
            Err("SSA claim `software_client_uri` must be a string, not a number"),
        ),
        (
            "URI claim null",
            none(),
            json!({"software_logo_uri": null}),
            Err("SSA claim `software_logo_uri` must be a string, not null"),
        ),
        (
            "URI claim an array",
            none(),
            json!({"software_tos_uri": ["https://tpp.example.com/tos"]}),
            Err("SSA claim `software_tos_uri` must be a string, not an array"),
        ),
        (
            "redirect claim a string",
            none(),
            json!({"software_redirect_uris": "https://tpp.example.com/cb"}),
            Err("SSA claim `software_redirect_uris` must be an array of strings"),
        ),
        (
            "very long host is clipped",
            none(),
            json!({"software_logo_uri": format!("https://{}.example/l", "h".repeat(60))}),
            Err("differs"),
        ),
    ];
    run_cases(&uk_request(), &uk_ssa(), &cases, &|ctx| {
        redirect::hostname(ctx, &p)
    });
}
