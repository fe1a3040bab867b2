//! The three filters' plugin configurations, as an admin (or a broken template) writes them:
//! parse and validate must answer Ok or an error naming a field, never panic.
//! The first byte picks the filter, so one corpus crosses all three.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, json)) = data.split_first() else { return };
    match which % 3 {
        0 => {
            if let Err(e) = duo_auth::config::Config::parse(json) {
                assert!(!e.to_string().is_empty());
            }
        }
        1 => {
            if let Err(e) = duo_router::config::Config::parse(json) {
                assert!(!e.to_string().is_empty());
            }
        }
        _ => {
            if let Err(e) = duo_logger::config::LoggerConfig::parse(json) {
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
