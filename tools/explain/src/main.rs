//! `./build.sh explain`: what duo_router does with one GitLab request, computed by the router's
//! own code (`duo_router::decide`, `codec`, `chat`, `prompts`) without Envoy: feature, unit
//! primitive, provider, model, cluster, the upstream request (method, path, headers, body), or
//! the answer GitLab would get instead.
//!
//! Input: duo_router's JSON configuration (`build.sh` extracts it from an Envoy bootstrap), the
//! request's method, path, headers and body. Exit status: 0 forwarded, 1 answered locally (the
//! answer is printed), 2 bad usage or configuration. Credentials are never printed.

mod explain;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let request = match explain::Args::parse(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("explain: {e}");
            return ExitCode::from(2);
        }
    };
    match explain::run(&request) {
        Ok(report) => {
            print!(
                "{}",
                if request.json {
                    report.to_json()
                } else {
                    report.to_text()
                }
            );
            if report.forwarded() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("explain: {e}");
            ExitCode::from(2)
        }
    }
}
