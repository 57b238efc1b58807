//! BYOL (Grill et al., 2020): a predictor on the online network predicts what a target
//! network, the online one's moving average, makes of the other view; no negatives. The
//! target's momentum rises from `momentum` to 1 along a cosine over the run, as in the
//! paper and lightly's `cosine_schedule`.

use std::collections::HashMap;

use contrastive_losses::negative_cosine;
use contrastive_models::ModelConfig;
use contrastive_tensor::{Tensor, nn::VarStore};

use super::momentum::MomentumEncoder;
use super::predictor::Predictor;
use serde::{Deserialize, Serialize};

use super::{MethodSettings, attached, Progress, RunFacts, Setup, StepInputs, TrainMethod};
use crate::Result;
use crate::error::in_range;

/// `[method]` of `name = "byol"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ByolSettings {
    /// The target network's momentum at the start of the run (the paper's 0.996), rising
    /// to 1 along a cosine.
    pub momentum: f64,
}

impl Default for ByolSettings {
    fn default() -> Self {
        Self { momentum: 0.996 }
    }
}

impl MethodSettings for ByolSettings {
    fn check(&self, _: &RunFacts) -> Result<()> {
        in_range("method.momentum", self.momentum, 0.0, 1.0)
    }

    fn build(&self, _: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(Byol {
            momentum: self.momentum,
            parts: None,
        }))
    }
}

#[derive(Debug)]
struct Byol {
    /// The target's momentum at the start of the run.
    momentum: f64,
    /// The target network and the predictor, once attached.
    parts: Option<(MomentumEncoder, Predictor)>,
}

/// The momentum at `step` of `total`: from `base` at the first step along a cosine to 1 at
/// the last (lightly's `cosine_schedule(step, total, base, 1)`).
pub(super) fn cosine_momentum(base: f64, progress: Progress) -> f64 {
    if progress.total <= 1 {
        return 1.0;
    }
    let phase = progress.step.min(progress.total - 1) as f64 / (progress.total - 1) as f64;
    1.0 - (1.0 - base) * ((std::f64::consts::PI * phase).cos() + 1.0) / 2.0
}

impl TrainMethod for Byol {
    fn attach(&mut self, online: &VarStore, model: ModelConfig) -> Result<()> {
        let target = MomentumEncoder::copy_of(online, model, "target.")?;
        self.parts = Some((target, Predictor::for_model(online, model)));
        Ok(())
    }

    fn before_step(&mut self, online: &VarStore, progress: Progress) -> Result<()> {
        attached(&self.parts)?
            .0
            .follow(online, cosine_momentum(self.momentum, progress))
    }

    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let (target, predictor) = attached(&self.parts)?;
        let (z0, z1) = step.each_view()?;
        let (p0, p1) = (predictor.predict(&z0), predictor.predict(&z1));
        let (first, second) = step.batch.two_views();
        let t0 = (step.encode)(&target.model, &first, false)?;
        let t1 = (step.encode)(&target.model, &second, false)?;
        Ok((negative_cosine(&p0, &t1)? + negative_cosine(&p1, &t0)?) * 0.5)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let parts = self.parts.iter();
        parts
            .flat_map(|(target, predictor)| target.state().into_iter().chain(predictor.state()))
            .collect()
    }

    fn restore(&mut self, saved: &HashMap<String, Tensor>) -> Result<()> {
        let (target, predictor) = attached(&self.parts)?;
        target.restore(saved)?;
        predictor.restore(saved)
    }

    fn trainable(&self) -> Vec<(String, Tensor)> {
        self.parts.iter().flat_map(|(_, p)| p.trainable()).collect()
    }

    fn encoders(&self) -> Vec<&VarStore> {
        self.parts.iter().map(|(target, _)| &target.vs).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_used_before_attach_is_an_error_not_a_panic() {
        let setup = Setup {
            dim: 8,
            batch_size: 4,
            dataset_len: 16,
            device: contrastive_tensor::Device::Cpu,
        };
        let mut method = ByolSettings::default().build(&setup).unwrap();
        let online = VarStore::new(contrastive_tensor::Device::Cpu);
        let progress = Progress { step: 0, total: 1 };
        let err = method.before_step(&online, progress).unwrap_err();
        assert!(err.to_string().contains("before attach()"), "{err}");
        assert!(method.state().is_empty() && method.encoders().is_empty());
        assert!(method.restore(&HashMap::new()).is_err());
    }

    #[test]
    fn the_momentum_rises_from_its_base_to_one_along_a_cosine() {
        let at = |step, total| cosine_momentum(0.99, Progress { step, total });
        assert_eq!(at(0, 101), 0.99);
        assert!((at(50, 101) - 0.995).abs() < 1e-12);
        assert_eq!(at(100, 101), 1.0);
        assert_eq!(at(0, 1), 1.0);
    }
}
