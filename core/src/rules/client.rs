//! `token_endpoint_auth`, `signing_algorithms`, `grant_and_response_types`: the client metadata the
//! bank's profile allows.

use serde_json::Value;

use super::{Ctx, GrantTypes, SigningAlgorithms, TokenEndpointAuth};
use crate::claims::{opt_str, opt_str_array, type_name};
use crate::error::clip;

pub(crate) fn token_endpoint_auth(ctx: &Ctx<'_>, p: &TokenEndpointAuth) -> Result<(), String> {
    let method = opt_str(ctx.request, "token_endpoint_auth_method")?
        .ok_or("token_endpoint_auth_method not found")?;
    if !p.methods.iter().any(|m| m == method) {
        return Err(format!(
            "token_endpoint_auth_method `{}` is not allowed",
            clip(method, 64)
        ));
    }
    match method {
        "private_key_jwt" => {
            let alg = opt_str(ctx.request, "token_endpoint_auth_signing_alg")?
                .ok_or("private_key_jwt needs token_endpoint_auth_signing_alg")?;
            if !p.signing_algorithms.iter().any(|a| a == alg) {
                return Err(format!(
                    "token_endpoint_auth_signing_alg `{}` is not allowed",
                    clip(alg, 32)
                ));
            }
        }
        "tls_client_auth" => {
            match opt_str(ctx.request, "tls_client_auth_subject_dn")? {
                Some(dn) if !dn.trim().is_empty() => {}
                _ => return Err("tls_client_auth needs tls_client_auth_subject_dn".to_string()),
            }
            if let Some(k) = ctx
                .request
                .keys()
                .find(|k| k.starts_with("tls_client_auth_san_"))
            {
                return Err(format!(
                    "tls_client_auth_subject_dn and `{}` cannot both be used",
                    clip(k, 48)
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

pub(crate) fn signing_algorithms(ctx: &Ctx<'_>, p: &SigningAlgorithms) -> Result<(), String> {
    for claim in &p.claims {
        if let Some(alg) = opt_str(ctx.request, claim)? {
            if !p.algorithms.iter().any(|a| a == alg) {
                return Err(format!("{claim} `{}` is not allowed", clip(alg, 32)));
            }
        }
    }
    Ok(())
}

/// A `response_types` entry as a sorted set of its space-separated values, so that
/// `id_token code` equals `code id_token`.
pub(crate) fn normalize_response_type(v: &str) -> String {
    let mut parts: Vec<&str> = v.split(' ').filter(|s| !s.is_empty()).collect();
    parts.sort_unstable();
    parts.dedup();
    parts.join(" ")
}

const CIBA: &str = "urn:openid:params:grant-type:ciba";

pub(crate) fn grant_and_response_types(ctx: &Ctx<'_>, p: &GrantTypes) -> Result<(), String> {
    // RFC 7591 §2 defaults when absent.
    let grants =
        opt_str_array(ctx.request, "grant_types")?.unwrap_or_else(|| vec!["authorization_code"]);
    if let Some(g) = grants
        .iter()
        .find(|g| !p.grant_types.iter().any(|a| a == *g))
    {
        return Err(format!("grant type `{}` is not allowed", clip(g, 64)));
    }
    if let Some(r) = p
        .required_grant_types
        .iter()
        .find(|r| !grants.contains(&r.as_str()))
    {
        return Err(format!("grant_types must include `{r}`"));
    }
    if let Some(types) = opt_str_array(ctx.request, "response_types")? {
        let allowed: Vec<String> = p
            .response_types
            .iter()
            .map(|t| normalize_response_type(t))
            .collect();
        if let Some(t) = types
            .iter()
            .find(|t| !allowed.contains(&normalize_response_type(t)))
        {
            return Err(format!("response type `{}` is not allowed", clip(t, 64)));
        }
    }
    if let Some(app) = opt_str(ctx.request, "application_type")? {
        if !p.application_types.iter().any(|a| a == app) {
            return Err(format!(
                "application_type `{}` is not allowed",
                clip(app, 32)
            ));
        }
    }
    if grants.contains(&CIBA) {
        ciba(ctx, p)?;
    }
    Ok(())
}

fn ciba(ctx: &Ctx<'_>, p: &GrantTypes) -> Result<(), String> {
    let mode = opt_str(ctx.request, "backchannel_token_delivery_mode")?
        .ok_or("the CIBA grant needs backchannel_token_delivery_mode")?;
    if !p.ciba_delivery_modes.iter().any(|m| m == mode) {
        return Err(format!(
            "backchannel_token_delivery_mode `{}` is not allowed",
            clip(mode, 32)
        ));
    }
    if mode == "ping" {
        let endpoint = opt_str(ctx.request, "backchannel_client_notification_endpoint")?
            .ok_or("ping delivery needs backchannel_client_notification_endpoint")?;
        super::redirect::check_https_uri(
            "backchannel_client_notification_endpoint",
            endpoint,
            2048,
        )?;
    }
    let alg = opt_str(
        ctx.request,
        "backchannel_authentication_request_signing_alg",
    )?
    .ok_or("the CIBA grant needs backchannel_authentication_request_signing_alg")?;
    if !p.ciba_signing_algorithms.iter().any(|a| a == alg) {
        return Err(format!(
            "backchannel_authentication_request_signing_alg `{}` is not allowed",
            clip(alg, 32)
        ));
    }
    match ctx.request.get("backchannel_user_code_parameter_supported") {
        None | Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) => {
            Err("backchannel_user_code_parameter_supported must be false".to_string())
        }
        Some(other) => Err(format!(
            "claim `backchannel_user_code_parameter_supported` must be a boolean, not {}",
            type_name(other)
        )),
    }
}
