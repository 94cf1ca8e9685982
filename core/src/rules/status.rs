//! `software_status`: the organisation and software are Active, and the SSA is for this
//! deployment's environment.

use serde_json::Value;

use super::{Ctx, SoftwareStatus};
use crate::claims::{opt_str, type_name, Claims};
use crate::error::clip;

pub(crate) fn software_status(ctx: &Ctx<'_>, p: &SoftwareStatus) -> Result<(), String> {
    for check in &p.checks {
        match lookup(ctx.ssa, &check.claim)? {
            None if check.required => {
                return Err(format!("SSA claim `{}` not found", check.claim));
            }
            None => {}
            Some(Value::String(s)) if *s == check.equals => {}
            Some(Value::String(s)) => {
                return Err(format!(
                    "SSA `{}` is `{}`, not `{}`",
                    check.claim,
                    clip(s, 32),
                    check.equals
                ));
            }
            Some(other) => {
                return Err(format!(
                    "SSA claim `{}` must be a string, not {}",
                    check.claim,
                    type_name(other)
                ));
            }
        }
    }
    if let Some(claim) = &p.active_role_claim {
        let roles = match ctx.ssa.get(claim) {
            None => return Err(format!("SSA claim `{claim}` not found")),
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(format!(
                    "SSA claim `{claim}` must be an array, not {}",
                    type_name(other)
                ))
            }
        };
        let active = roles.iter().any(|r| {
            r.as_object()
                .and_then(|o| o.get("status"))
                .and_then(Value::as_str)
                == Some("Active")
        });
        if !active {
            return Err(format!("no entry of SSA `{claim}` is Active"));
        }
    }
    if let Some(env) = &p.environment {
        let claim = p.environment_claim.as_str();
        match opt_str(ctx.ssa, claim).map_err(|m| format!("SSA {m}"))? {
            None => return Err(format!("SSA claim `{claim}` not found")),
            Some(v) if v == env => {}
            Some(v) => {
                return Err(format!(
                    "SSA is for the `{}` environment, this deployment serves `{env}`",
                    clip(v, 32)
                ))
            }
        }
    }
    Ok(())
}

/// A member by dotted path. An absent member is `None`; a parent that is present but not an
/// object (or `null`) is a wrong type, never a silent pass.
fn lookup<'a>(ssa: &'a Claims, path: &str) -> Result<Option<&'a Value>, String> {
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or("");
    let mut v = match ssa.get(first) {
        None => return Ok(None),
        Some(v) => v,
    };
    let mut walked = first.to_string();
    for part in parts {
        let obj = v.as_object().ok_or_else(|| {
            format!(
                "SSA claim `{walked}` must be an object, not {}",
                type_name(v)
            )
        })?;
        v = match obj.get(part) {
            None => return Ok(None),
            Some(v) => v,
        };
        walked.push('.');
        walked.push_str(part);
    }
    Ok(Some(v))
}
