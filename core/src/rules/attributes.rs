//! `required_attributes`: mandatory request claims present and non-empty; allowed values.

use serde_json::Value;

use super::{Ctx, RequiredAttributes};
use crate::claims::{scope_tokens, type_name};
use crate::error::clip;

pub(crate) fn required_attributes(ctx: &Ctx<'_>, p: &RequiredAttributes) -> Result<(), String> {
    for name in &p.claims {
        match ctx.request.get(name) {
            None => return Err(format!("{name} not found")),
            Some(Value::Null) => return Err(format!("{name} cannot be null")),
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(format!("{name} cannot be empty"))
            }
            Some(Value::Array(a)) if a.is_empty() => return Err(format!("{name} cannot be empty")),
            Some(Value::Object(o)) if o.is_empty() => {
                return Err(format!("{name} cannot be empty"))
            }
            Some(_) => {}
        }
    }
    for (name, allowed) in &p.allowed_values {
        let ok = |v: &str| allowed.iter().any(|a| a == v);
        match ctx.request.get(name) {
            None => {}
            Some(Value::String(s)) if name == "scope" => {
                if let Some(bad) = scope_tokens(s).into_iter().find(|t| !ok(t)) {
                    return Err(format!(
                        "Invalid {name}: `{}` is not allowed",
                        clip(bad, 64)
                    ));
                }
            }
            Some(Value::String(s)) if !ok(s) => {
                return Err(format!("Invalid {name}: `{}` is not allowed", clip(s, 64)));
            }
            Some(Value::String(_)) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::String(s) if ok(s) => {}
                        Value::String(s) => {
                            return Err(format!("Invalid {name}: `{}` is not allowed", clip(s, 64)))
                        }
                        other => {
                            return Err(format!(
                                "Invalid {name}: must hold only strings, not {}",
                                type_name(other)
                            ))
                        }
                    }
                }
            }
            Some(other) => {
                return Err(format!(
                    "Invalid {name}: must be a string or an array of strings, not {}",
                    type_name(other)
                ))
            }
        }
    }
    Ok(())
}
