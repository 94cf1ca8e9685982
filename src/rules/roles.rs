//! `software_roles`: every requested scope is allowed by what the SSA says the software may do.

use super::{Ctx, RolesMode, SoftwareRoles};
use crate::claims::{opt_str, opt_str_array, scope_tokens};
use crate::error::clip;

pub fn software_roles(ctx: &Ctx<'_>, p: &SoftwareRoles) -> Result<(), String> {
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
            let roles = opt_str_array(ctx.ssa, &p.roles_claim)
                .map_err(|m| format!("SSA {m}"))?
                .ok_or_else(|| format!("SSA claim `{}` not found", p.roles_claim))?;
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
