//! The error model of spec §8: RFC 7591 / RFC 6750 error codes, HTTP status, a bounded description.

use std::fmt;

/// Error codes the filter answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidSoftwareStatement,
    UnapprovedSoftwareStatement,
    InvalidRequest,
    InvalidToken,
    /// RFC 6750 §3.1: a valid token without the scope the request needs (403).
    InsufficientScope,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidSoftwareStatement => "invalid_software_statement",
            ErrorCode::UnapprovedSoftwareStatement => "unapproved_software_statement",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// What produced an error: a rule of spec §4 (by id), or the request envelope (§3 step 1–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Envelope,
    /// The RFC 7592 body rules of an update (PUT).
    Update,
    /// Building the forwarded body (JSON forwarding).
    Forwarding,
    Rule(RuleId),
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Envelope => "envelope",
            Source::Update => "rfc7592",
            Source::Forwarding => "forwarding",
            Source::Rule(r) => r.as_str(),
        }
    }
}

/// Rule ids of spec §4, in the order the engine runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    TokenClientBinding,
    SsaIssuer,
    SsaSignature,
    RequestSignature,
    IssuanceTime,
    SoftwareStatus,
    RequiredAttributes,
    Issuer,
    Audience,
    RedirectUriFormat,
    RedirectUriSubset,
    UriHostname,
    TokenEndpointAuth,
    SigningAlgorithms,
    GrantAndResponseTypes,
    SoftwareRoles,
    CertificateBinding,
    /// Live participant status (`participant_status`): after every other check of the
    /// registration, before replay.
    ParticipantStatus,
    RequestJti,
    SsaJti,
}

impl RuleId {
    /// Every rule, in the order of the enum.
    pub const ALL: [RuleId; 20] = [
        RuleId::TokenClientBinding,
        RuleId::SsaIssuer,
        RuleId::SsaSignature,
        RuleId::RequestSignature,
        RuleId::IssuanceTime,
        RuleId::SoftwareStatus,
        RuleId::RequiredAttributes,
        RuleId::Issuer,
        RuleId::Audience,
        RuleId::RedirectUriFormat,
        RuleId::RedirectUriSubset,
        RuleId::UriHostname,
        RuleId::TokenEndpointAuth,
        RuleId::SigningAlgorithms,
        RuleId::GrantAndResponseTypes,
        RuleId::SoftwareRoles,
        RuleId::CertificateBinding,
        RuleId::ParticipantStatus,
        RuleId::RequestJti,
        RuleId::SsaJti,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::TokenClientBinding => "token_client_binding",
            RuleId::SsaIssuer => "ssa_issuer",
            RuleId::SsaSignature => "ssa_signature",
            RuleId::RequestSignature => "request_signature",
            RuleId::IssuanceTime => "issuance_time",
            RuleId::SoftwareStatus => "software_status",
            RuleId::RequiredAttributes => "required_attributes",
            RuleId::Issuer => "issuer",
            RuleId::Audience => "audience",
            RuleId::RedirectUriFormat => "redirect_uri_format",
            RuleId::RedirectUriSubset => "redirect_uri_subset",
            RuleId::UriHostname => "uri_hostname",
            RuleId::TokenEndpointAuth => "token_endpoint_auth",
            RuleId::SigningAlgorithms => "signing_algorithms",
            RuleId::GrantAndResponseTypes => "grant_and_response_types",
            RuleId::SoftwareRoles => "software_roles",
            RuleId::CertificateBinding => "certificate_binding",
            RuleId::ParticipantStatus => "participant_status",
            RuleId::RequestJti => "request_jti",
            RuleId::SsaJti => "ssa_jti",
        }
    }

    /// The one error code a failure of this rule produces (spec §4).
    pub fn error_code(self) -> ErrorCode {
        match self {
            RuleId::SsaSignature | RuleId::SsaJti => ErrorCode::InvalidSoftwareStatement,
            RuleId::SsaIssuer | RuleId::SoftwareStatus | RuleId::ParticipantStatus => {
                ErrorCode::UnapprovedSoftwareStatement
            }
            RuleId::RedirectUriFormat | RuleId::RedirectUriSubset => ErrorCode::InvalidRedirectUri,
            RuleId::TokenClientBinding => ErrorCode::InvalidToken,
            _ => ErrorCode::InvalidClientMetadata,
        }
    }
}

/// Longest `error_description` sent to a client (spec §8).
pub const MAX_DESCRIPTION: usize = 500;

/// One rejection: status, code, a description safe to show the client, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcrError {
    pub status: u16,
    pub code: ErrorCode,
    pub description: String,
    pub source: Source,
    /// Seconds for `Retry-After` (503 only).
    pub retry_after: Option<u32>,
    /// Methods for `Allow` (405 only).
    pub allow: Option<&'static str>,
    /// Content codings for `Accept-Encoding` (415 only).
    pub accept_encoding: Option<&'static str>,
    /// `WWW-Authenticate` (401 and 403 only).
    pub challenge: Option<Challenge>,
}

/// The bearer challenge of a 401 or 403 (RFC 6750 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No credentials were sent: `Bearer` with no error, and no body (RFC 6750 §3.1).
    Bare,
    /// `Bearer error="invalid_token"`.
    InvalidToken,
    /// `Bearer error="insufficient_scope", scope="…"` (the configured scope, never the token's).
    InsufficientScope(String),
}

impl DcrError {
    fn make(status: u16, code: ErrorCode, source: Source, description: impl Into<String>) -> Self {
        DcrError {
            status,
            code,
            description: description.into(),
            source,
            retry_after: None,
            allow: None,
            accept_encoding: None,
            challenge: None,
        }
    }

    /// A 400 from the request envelope (content type, body, path).
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::make(
            400,
            ErrorCode::InvalidRequest,
            Source::Envelope,
            description,
        )
    }

    /// A 400 `invalid_client_metadata` from the update rules or from forwarding.
    pub fn metadata(source: Source, description: impl Into<String>) -> Self {
        Self::make(400, ErrorCode::InvalidClientMetadata, source, description)
    }

    /// A 400 from the envelope with a specific code (e.g. a missing `software_statement`).
    pub fn envelope(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::make(400, code, Source::Envelope, description)
    }

    /// 413: the body is larger than the configured limit.
    pub fn too_large(limit: usize) -> Self {
        Self::make(
            413,
            ErrorCode::InvalidRequest,
            Source::Envelope,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 405 with the methods the path accepts.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::make(
            405,
            ErrorCode::InvalidRequest,
            Source::Envelope,
            "method not allowed on this registration path",
        );
        e.allow = Some(allow);
        e
    }

    /// 415: the body is sent with a content coding; only `identity` is accepted, as
    /// `Accept-Encoding: identity` says (RFC 9110 §15.5.16, RFC 7694 §3).
    pub fn coded_body() -> Self {
        let mut e = Self::make(
            415,
            ErrorCode::InvalidRequest,
            Source::Envelope,
            "the registration body must be sent without a content coding (Content-Encoding): only identity is accepted",
        );
        e.accept_encoding = Some("identity");
        e
    }

    /// 401 without credentials: `WWW-Authenticate: Bearer`, no error, no body.
    pub fn unauthenticated() -> Self {
        let mut e = Self::make(
            401,
            ErrorCode::InvalidToken,
            Source::Rule(RuleId::TokenClientBinding),
            "no bearer token",
        );
        e.challenge = Some(Challenge::Bare);
        e
    }

    /// 401 `invalid_token` with `WWW-Authenticate: Bearer error="invalid_token"`.
    pub fn invalid_token(description: impl Into<String>) -> Self {
        let mut e = Self::make(
            401,
            ErrorCode::InvalidToken,
            Source::Rule(RuleId::TokenClientBinding),
            description,
        );
        e.challenge = Some(Challenge::InvalidToken);
        e
    }

    /// 403 `insufficient_scope`: the token is good for this client but lacks `scope`.
    pub fn insufficient_scope(scope: &str) -> Self {
        let mut e = Self::make(
            403,
            ErrorCode::InsufficientScope,
            Source::Rule(RuleId::TokenClientBinding),
            "the access token lacks the required scope",
        );
        e.challenge = Some(Challenge::InsufficientScope(scope.to_string()));
        e
    }

    /// A rule failure: HTTP 400 with the rule's error code.
    pub fn rule(rule: RuleId, description: impl Into<String>) -> Self {
        Self::make(400, rule.error_code(), Source::Rule(rule), description)
    }

    /// A dependency fault while running `rule`: 503 `temporarily_unavailable` with `Retry-After`.
    pub fn unavailable(rule: RuleId, description: impl Into<String>, retry_after: u32) -> Self {
        let mut e = Self::make(
            503,
            ErrorCode::TemporarilyUnavailable,
            Source::Rule(rule),
            description,
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn is_dependency_fault(&self) -> bool {
        self.code == ErrorCode::TemporarilyUnavailable
    }

    /// The JSON body: `{"error": ..., "error_description": ...}`, description cut to 500 characters.
    pub fn body(&self) -> String {
        if self.challenge == Some(Challenge::Bare) {
            return String::new();
        }
        let description: String = self.description.chars().take(MAX_DESCRIPTION).collect();
        serde_json::json!({
            "error": self.code.as_str(),
            "error_description": description,
        })
        .to_string()
    }

    /// Response headers besides the status.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("cache-control", "no-store".to_string())];
        match &self.challenge {
            Some(Challenge::InsufficientScope(scope)) => {
                h.push(("content-type", "application/json".to_string()));
                h.push((
                    "www-authenticate",
                    format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
                ));
            }
            Some(Challenge::Bare) => h.push(("www-authenticate", "Bearer".to_string())),
            Some(Challenge::InvalidToken) => {
                h.push(("content-type", "application/json".to_string()));
                h.push((
                    "www-authenticate",
                    "Bearer error=\"invalid_token\"".to_string(),
                ));
            }
            None => h.push(("content-type", "application/json".to_string())),
        }
        if let Some(s) = self.retry_after {
            h.push(("retry-after", s.to_string()));
        }
        if let Some(a) = self.allow {
            h.push(("allow", a.to_string()));
        }
        if let Some(a) = self.accept_encoding {
            h.push(("accept-encoding", a.to_string()));
        }
        h
    }
}

impl fmt::Display for DcrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.status,
            self.code.as_str(),
            self.source.as_str(),
            self.description
        )
    }
}

/// Shorten a client-supplied string before it goes into a description or a log line.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_rfc7591_json_and_bounded() {
        let e = DcrError::rule(RuleId::SsaSignature, "x".repeat(2000));
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"], "invalid_software_statement");
        assert_eq!(
            v["error_description"].as_str().unwrap().chars().count(),
            500
        );
        assert_eq!(e.status, 400);
    }

    #[test]
    fn codes_follow_the_rule() {
        assert_eq!(
            RuleId::SsaIssuer.error_code(),
            ErrorCode::UnapprovedSoftwareStatement
        );
        assert_eq!(
            RuleId::RequestSignature.error_code(),
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            RuleId::IssuanceTime.error_code(),
            ErrorCode::InvalidClientMetadata
        );
        assert_eq!(
            RuleId::RedirectUriSubset.error_code(),
            ErrorCode::InvalidRedirectUri
        );
    }

    #[test]
    fn unavailable_has_retry_after() {
        let e = DcrError::unavailable(RuleId::SsaSignature, "down", 5);
        assert_eq!(e.status, 503);
        assert!(e.headers().contains(&("retry-after", "5".to_string())));
        let m = DcrError::method_not_allowed("POST");
        assert_eq!(m.status, 405);
        assert!(m.headers().contains(&("allow", "POST".to_string())));
    }

    #[test]
    fn clip_marks_cut() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
