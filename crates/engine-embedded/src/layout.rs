//! Where the embedded engine keeps named volumes under its state directory.

use std::path::{Path, PathBuf};

/// Where named volume `name` lives: `<state>/volumes/<name>`. The loader
/// already refuses names that are not docker object names; this is the
/// store's own guard, so no name can ever reach outside `volumes/` (a
/// `down -v` would delete whatever it names).
pub fn volume_dir(state: &Path, name: &str) -> Result<PathBuf, String> {
    let single = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && Path::new(name).components().count() == 1;
    if !single {
        return Err(format!(
            "volume name {name:?} is not a single path component"
        ));
    }
    Ok(state.join("volumes").join(name))
}
