//! `dcr-guard`: the filter's engine on the command line.
//!
//! - `dcr-guard check-config guard.json` validates a filter configuration with the parser the
//!   filter runs on `on_configure` (same messages).
//! - `dcr-guard check-config --envoy envoy.yaml` takes the configuration out of an Envoy bootstrap,
//!   an Istio `WasmPlugin` or a Kong declarative file, validates it, and checks the proxy settings
//!   the filter cannot see from inside.
//! - `dcr-guard verify --config guard.json request.jwt` runs a create's whole validation natively
//!   and prints every rule's verdict.
//! - `dcr-guard schema [--kong]` prints the configuration's JSON Schema (Draft 2020-12), or Kong's
//!   filter metadata with the Draft-4 `config_schema`, both derived from the configuration types.
//!
//! Exit status: 0 valid / would be forwarded, 1 invalid / would be refused (or a finding), 2 the
//! tool could not decide (usage, unreadable file, a key document it may not fetch).

mod cert;
mod check;
mod envoy;
mod fetch;
mod schema;
mod verify;

use std::process::ExitCode;

/// The configuration (or bootstrap) is valid; the request would be forwarded.
pub const EXIT_OK: u8 = 0;
/// The configuration is invalid (or a proxy setting is wrong); the request would be refused.
pub const EXIT_REFUSED: u8 = 1;
/// Usage error, unreadable input, or a key document the CLI may not fetch: no verdict.
pub const EXIT_ERROR: u8 = 2;

/// Longest input file read (configurations, bootstraps, requests, JWKS, certificates).
pub const MAX_FILE: u64 = 16 * 1024 * 1024;

const USAGE: &str = "\
usage:
  dcr-guard check-config FILE.json
  dcr-guard check-config --envoy FILE.yaml
  dcr-guard verify --config FILE.json [options] REQUEST
  dcr-guard schema [--kong]
  dcr-guard --version | --help

check-config FILE.json
  Validate a filter configuration exactly as the filter does on on_configure (same parser, same
  messages). Secrets the configuration names by environment variable are read from this
  process's environment.

check-config --envoy FILE.yaml
  Read the filter configuration out of an Envoy bootstrap, an Istio WasmPlugin or a Kong
  declarative file, validate it, and check the proxy settings around the filter.

verify --config FILE.json [options] REQUEST
  Run a DCR create's whole validation (the body in REQUEST: a signed request JWT, or the JSON
  body for br-ofb) and print every rule's verdict. Replay (request_jti, ssa_jti) is not checked.
    --now UNIX          validate at this time (seconds since the epoch) instead of now
    --jwks URL=FILE     serve the key document at URL from FILE (repeatable)
    --offline           fetch nothing: a URL without a --jwks file is an error
    --cacert FILE       trust the CA certificates in FILE (PEM) for HTTPS fetches, instead of the
                        built-in web PKI roots
    --cert FILE         the client certificate (PEM) for certificate_binding
    --xfcc VALUE        the client certificate as an x-forwarded-client-cert value
    --json              machine-readable output

schema [--kong]
  Print the configuration's JSON Schema (Draft 2020-12), derived from the filter's configuration
  types; with --kong, Kong's filter metadata (dcr_guard.meta.json) whose config_schema is the same
  schema in Draft 4, references inlined.

exit status: 0 valid / forwarded, 1 invalid / refused, 2 usage or input error (no verdict)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ExitCode::from(run(&args))
}

fn run(args: &[String]) -> u8 {
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return EXIT_ERROR;
    };
    let outcome = match command.as_str() {
        "check-config" => check::main(rest),
        "verify" => verify::main(rest),
        "schema" => schema::main(rest),
        "--version" | "-V" => {
            println!("dcr-guard {}", env!("CARGO_PKG_VERSION"));
            Ok(EXIT_OK)
        }
        "--help" | "-h" | "help" => {
            print!("{USAGE}");
            Ok(EXIT_OK)
        }
        other => Err(format!("unknown command `{other}`")),
    };
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("dcr-guard: {message}");
            eprintln!("(dcr-guard --help for usage)");
            EXIT_ERROR
        }
    }
}

/// A file's bytes, at most [`MAX_FILE`].
pub fn read_file(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read `{path}`: {e}"))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("`{path}` is larger than {MAX_FILE} bytes"));
    }
    Ok(bytes)
}

/// The value of an option that takes one (`--name VALUE`).
pub fn value<'a>(
    name: &str,
    it: &mut impl Iterator<Item = &'a String>,
) -> Result<&'a String, String> {
    it.next().ok_or_else(|| format!("{name} needs a value"))
}
