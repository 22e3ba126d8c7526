#![no_main]

use berth_compose::interpolate::{extract_variables, substitute};
use libfuzzer_sys::fuzz_target;

/// Set, set-but-empty and unset names, so every operator branch is reachable.
fn lookup(name: &str) -> Option<String> {
    match name {
        "A" | "FOO" => Some("value".to_owned()),
        "B" | "EMPTY" => Some(String::new()),
        "NESTED" => Some("${A}".to_owned()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = substitute(template, &lookup) {
        // Formatting must not panic either.
        let _ = berth_compose::interpolate::describe_at("a.b", &err);
    }
    let _ = extract_variables(template);
});
