//! `software_roles`: every requested scope is allowed by what the SSA says the software may do.

use super::{Ctx, RolesMode, SoftwareRoles};
use crate::claims::{opt_str, scope_tokens};
use crate::error::clip;

pub(crate) fn software_roles(ctx: &Ctx<'_>, p: &SoftwareRoles) -> Result<(), String> {
    let scope = match opt_str(ctx.request, "scope")? {
        Some(s) => s,
        None => return Ok(()), // nothing requested (required_attributes decides if scope is mandatory)
    };
    let requested: Vec<&str> = scope_tokens(scope)
        .into_iter()
        .filter(|t| !p.free_scopes.iter().any(|f| f == t))
        .collect();
    if requested.is_empty() {
        return Ok(());
    }
    match p.mode {
        RolesMode::RoleMapping => {
            let roles = granted_roles(ctx, &p.roles_claim)?;
            for s in requested {
                let needed = p
                    .scope_roles
                    .iter()
                    .find(|(scope, _)| scope == s)
                    .map(|(_, r)| r)
                    .ok_or_else(|| format!("scope `{}` is not recognised", clip(s, 64)))?;
                if !needed.iter().any(|r| roles.contains(&r.as_str())) {
                    return Err(format!(
                        "scope `{s}` needs the role {} in the software statement",
                        needed.join(" or ")
                    ));
                }
            }
        }
        RolesMode::SsaScope => {
            let granted = opt_str(ctx.ssa, &p.ssa_scope_claim)
                .map_err(|m| format!("SSA {m}"))?
                .ok_or_else(|| format!("SSA claim `{}` not found", p.ssa_scope_claim))?;
            let granted = scope_tokens(granted);
            if let Some(s) = requested.iter().find(|s| !granted.contains(s)) {
                return Err(format!(
                    "scope `{}` is not granted by the software statement",
                    clip(s, 64)
                ));
            }
        }
    }
    Ok(())
}

/// The roles an SSA grants: an array of role names (UK `software_roles`), or of role objects of
/// which only those with `status` `Active` count (Brazil `software_statement_roles`).
fn granted_roles<'a>(ctx: &Ctx<'a>, claim: &str) -> Result<Vec<&'a str>, String> {
    use serde_json::Value;
    let items = match ctx.ssa.get(claim) {
        None => return Err(format!("SSA claim `{claim}` not found")),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "SSA claim `{claim}` must be an array, not {}",
                crate::claims::type_name(other)
            ))
        }
    };
    let mut roles = Vec::new();
    for item in items {
        match item {
            Value::String(s) => roles.push(s.as_str()),
            Value::Object(o) => {
                let active = o.get("status").and_then(Value::as_str) == Some("Active");
                match (active, o.get("role").and_then(Value::as_str)) {
                    (true, Some(role)) => roles.push(role),
                    (true, None) => return Err(format!("an entry of SSA `{claim}` has no `role`")),
                    (false, _) => {}
                }
            }
            other => {
                return Err(format!(
                    "SSA claim `{claim}` must hold role names or role objects, not {}",
                    crate::claims::type_name(other)
                ))
            }
        }
    }
    Ok(roles)
}
