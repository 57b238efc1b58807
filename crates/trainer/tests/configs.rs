//! Every config shipped in `configs/` parses and passes validation.

use contrastive_trainer::TrainConfig;

#[test]
fn shipped_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config =
                TrainConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(config.run.out.starts_with("runs"), "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 5, "found {checked} configs");
}
