//! `issuer` (the request comes from the software the SSA describes) and `audience` (it is addressed
//! to this bank).

use super::{Audience, Ctx};
use crate::claims::{opt_str, opt_str_or_array, req_str};
use crate::error::clip;

pub(crate) fn issuer(ctx: &Ctx<'_>) -> Result<(), String> {
    let software_id = req_str(ctx.ssa, "software_id").map_err(|m| format!("SSA {m}"))?;
    let iss = opt_str(ctx.request, "iss")?.ok_or("claim `iss` not found")?;
    if iss != software_id {
        return Err(format!(
            "request `iss` `{}` is not the SSA's software_id",
            clip(iss, 64)
        ));
    }
    if let Some(id) = opt_str(ctx.request, "software_id")? {
        if id != software_id {
            return Err("request `software_id` differs from the SSA's software_id".to_string());
        }
    }
    Ok(())
}

pub(crate) fn audience(ctx: &Ctx<'_>, p: &Audience) -> Result<(), String> {
    let aud = opt_str_or_array(ctx.request, "aud")?.ok_or("claim `aud` not found")?;
    if aud.iter().any(|a| p.audiences.iter().any(|x| x == a)) {
        Ok(())
    } else {
        Err("request `aud` does not name this authorization server".to_string())
    }
}
