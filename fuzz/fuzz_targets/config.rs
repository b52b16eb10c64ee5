//! The configuration loader: any file content loads (and validates or not) or is refused with
//! an error naming the cause, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(loaded) = rtcd::config::load_text(text, |_| None) {
        let _ = loaded.config.validate();
        let _ = loaded.config.masked().to_toml_string();
    }
});
