//! `dcr-guard check-config`: a filter configuration validated by the parser the filter runs on
//! `on_configure` ([`Config::parse`], secrets from this process's environment), with the filter's messages.

use crate::{read_file, value, EXIT_OK, EXIT_REFUSED};
use dcr_guard_core::config::Config;

pub fn main(args: &[String]) -> Result<u8, String> {
    let (mut envoy, mut file) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--envoy" => envoy = Some(value(arg, &mut it)?),
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            path if file.is_none() => file = Some(path),
            extra => return Err(format!("unexpected argument `{extra}`")),
        }
    }
    match (envoy, file) {
        (Some(path), None) => crate::envoy::main(path),
        (None, Some(path)) => {
            let doc = read_file(path)?;
            let (code, line) = check(&doc);
            println!("{path}: {line}");
            Ok(code)
        }
        (Some(_), Some(_)) => Err("give either FILE.json or --envoy FILE.yaml, not both".into()),
        (None, None) => Err("check-config needs a configuration file".into()),
    }
}

/// The exit status and the one line that says whether `doc` is a valid configuration.
pub fn check(doc: &[u8]) -> (u8, String) {
    match Config::parse(doc, &|name| std::env::var(name).ok()) {
        Ok(cfg) => (EXIT_OK, format!("valid ({})", cfg.summary())),
        Err(e) => (EXIT_REFUSED, e.to_string()),
    }
}
