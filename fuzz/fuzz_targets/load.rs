//! The whole loader on arbitrary text given as `-f -`: YAML, v1 conversion,
//! interpolation, schema validation, merge, normalization, checks. It must
//! return Ok or Err, never panic, hang or blow the stack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let opts = berth_compose::Options {
        files: vec![PathBuf::from("-")],
        stdin: Some(text.to_string()),
        // An empty directory: no .env, and relative includes find nothing.
        cwd: std::env::temp_dir().join("berth-fuzz-empty"),
        project_name: Some("fuzz".into()),
        os_env: [("HOME".to_string(), "/nonexistent".to_string()), ("TAG".to_string(), "1".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    if let Ok(loaded) = berth_compose::load(&opts) {
        // Rendering and hashing the result must not panic either.
        let json = berth_compose::emit::ordered(&loaded.project);
        let _ = berth_compose::emit::to_yaml(&json);
        for svc in loaded.project.services.values() {
            let _ = berth_compose::hash::service_hash(svc);
        }
    }
});
