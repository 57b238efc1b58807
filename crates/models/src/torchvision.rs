//! Moving backbone weights to and from torchvision's `state_dict` layout.
//!
//! Our ResNet variables already carry torchvision's names; what differs is what torchvision
//! adds: a `num_batches_tracked` counter beside every batch-norm and the `fc` classifier.
//! In Python, `safetensors.torch.save_file(model.state_dict(), "r18.safetensors")` writes a
//! file [`load_torchvision`] reads, and `model.load_state_dict(load_file(path), strict=False)`
//! (no `fc`) reads what [`save_torchvision`] writes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use contrastive_tensor::{SafetensorsFile, Tensor, nn::VarStore, save_safetensors};

use crate::Result;

const COUNTER: &str = ".num_batches_tracked";

/// The variables of `vs` under `prefix` (`""` for the root, or e.g. `"backbone."`), keyed
/// by their name without it.
fn under_prefix(vs: &VarStore, prefix: &str) -> HashMap<String, Tensor> {
    vs.variables()
        .into_iter()
        .filter_map(|(name, t)| name.strip_prefix(prefix).map(|rest| (rest.to_owned(), t)))
        .collect()
}

/// Loads a torchvision backbone checkpoint into the variables of `vs` under `prefix`:
/// `num_batches_tracked` counters and the `fc` classifier in the file are left out, and
/// everything else must match by name and shape (errors name the tensors that do not).
pub fn load_torchvision(vs: &VarStore, prefix: &str, path: &Path) -> Result<()> {
    let mut file = SafetensorsFile::read(path)?;
    file.tensors
        .retain(|name, _| !name.ends_with(COUNTER) && !name.starts_with("fc."));
    Ok(file.copy_into(&under_prefix(vs, prefix))?)
}

/// Saves the variables of `vs` under `prefix` in torchvision's layout: names without the
/// prefix, plus a `num_batches_tracked` counter (set to `batches_seen`) for every
/// batch-norm, so `load_state_dict` accepts the file without `strict=False` complaints
/// about missing counters.
pub fn save_torchvision(vs: &VarStore, prefix: &str, path: &Path, batches_seen: i64) -> Result<()> {
    let vars = under_prefix(vs, prefix);
    let counter = Tensor::from(batches_seen);
    let mut names: Vec<String> = vars.keys().cloned().collect();
    names.sort();
    let counters: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".running_mean"))
        .map(|bn| format!("{bn}{COUNTER}"))
        .collect();
    let mut named: Vec<(&str, &Tensor)> = names.iter().map(|n| (n.as_str(), &vars[n])).collect();
    named.extend(counters.iter().map(|n| (n.as_str(), &counter)));
    Ok(save_safetensors(path, &named, &BTreeMap::new())?)
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::{Device, Kind, nn};

    use super::*;
    use crate::{ResNet, ResNetDepth, Stem};

    #[test]
    fn torchvision_files_round_trip_with_counters_and_without_the_classifier() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r18.safetensors");
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = ResNet::new(
            &(vs.root() / "backbone"),
            ResNetDepth::R18,
            3,
            Stem::ImageNet,
        );
        save_torchvision(&vs, "backbone.", &path, 7).unwrap();

        let saved = SafetensorsFile::read(&path).unwrap();
        let counters: Vec<_> = saved
            .tensors
            .keys()
            .filter(|k| k.ends_with(COUNTER))
            .collect();
        assert_eq!(counters.len(), 20, "ResNet-18 has 20 batch-norms");
        assert!(
            saved
                .tensors
                .contains_key("layer4.1.bn2.num_batches_tracked")
        );
        assert_eq!(saved.tensors["bn1.num_batches_tracked"].int64_value(&[]), 7);
        assert!(saved.tensors.keys().all(|k| !k.starts_with("backbone.")));

        // Add a classifier, as torchvision's files have, and load into a fresh model.
        let mut with_fc: Vec<(String, Tensor)> = saved.tensors.into_iter().collect();
        with_fc.push((
            "fc.weight".into(),
            Tensor::zeros([1000, 512], (Kind::Float, Device::Cpu)),
        ));
        let named: Vec<(&str, &Tensor)> = with_fc.iter().map(|(n, t)| (n.as_str(), t)).collect();
        save_safetensors(&path, &named, &BTreeMap::new()).unwrap();
        let fresh = nn::VarStore::new(Device::Cpu);
        let _net = ResNet::new(
            &(fresh.root() / "backbone"),
            ResNetDepth::R18,
            3,
            Stem::ImageNet,
        );
        load_torchvision(&fresh, "backbone.", &path).unwrap();
        for (name, t) in vs.variables() {
            assert!(t.equal(&fresh.variables()[&name]), "{name}");
        }

        // A ResNet-34 file does not fit a ResNet-18.
        let r34 = nn::VarStore::new(Device::Cpu);
        let _net = ResNet::new(&r34.root(), ResNetDepth::R34, 3, Stem::ImageNet);
        save_torchvision(&r34, "", &path, 0).unwrap();
        let err = load_torchvision(&fresh, "backbone.", &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer1.2"), "{err}");
    }
}
