#![no_main]

use berth_compose::dotenv::parse;
use libfuzzer_sys::fuzz_target;

fn lookup(name: &str) -> Option<String> {
    match name {
        "A" | "HOME" => Some("value".to_owned()),
        "B" => Some(String::new()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(content) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = parse(content, &lookup) {
        let _ = err.to_string();
    }
});
