//! The TOML parties file an operator writes: arbitrary text must parse to a
//! list of distinct, well-named parties or give a typed error, never panic.
//! Certificate paths resolve under a directory that does not exist, so the
//! target reads no file of the machine it runs on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/nonexistent-ppml-fuzz");
    for need_certs in [false, true] {
        if let Ok(p) = ppml_net::Parties::parse(text, base, need_certs) {
            let names = p.names();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "duplicate names accepted");
            for n in names {
                assert!(ppml_net::parties::check_name(n).is_ok());
                // Addresses are not resolved here: that would be DNS lookups.
                assert!(p.require(n).is_ok());
            }
        }
    }
});
