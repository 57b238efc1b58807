//! SimSiam (Chen and He, 2021): a predictor on the network predicts the network's own
//! embedding of the other view, through a stop-gradient; no negatives, no momentum copy.

use std::collections::HashMap;

use contrastive_losses::negative_cosine;
use contrastive_models::ModelConfig;
use contrastive_tensor::{Tensor, nn::VarStore};

use super::predictor::Predictor;
use serde::{Deserialize, Serialize};

use super::{MethodSettings, attached, RunFacts, Setup, StepInputs, TrainMethod};
use crate::Result;

/// `[method]` of `name = "simsiam"`: no keys of its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimsiamSettings {}

impl MethodSettings for SimsiamSettings {
    fn check(&self, _: &RunFacts) -> Result<()> {
        Ok(())
    }

    fn build(&self, _: &Setup) -> Result<Box<dyn TrainMethod>> {
        Ok(Box::new(SimSiam { predictor: None }))
    }
}

#[derive(Debug)]
struct SimSiam {
    predictor: Option<Predictor>,
}

impl TrainMethod for SimSiam {
    fn attach(&mut self, online: &VarStore, model: ModelConfig) -> Result<()> {
        self.predictor = Some(Predictor::for_model(online, model));
        Ok(())
    }

    fn loss(&mut self, step: &StepInputs<'_>) -> Result<Tensor> {
        let (z0, z1) = step.each_view()?;
        let predictor = attached(&self.predictor)?;
        let (p0, p1) = (predictor.predict(&z0), predictor.predict(&z1));
        // `negative_cosine` stops the gradient into its second argument.
        Ok((negative_cosine(&p0, &z1)? + negative_cosine(&p1, &z0)?) * 0.5)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.predictor.iter().flat_map(|p| p.state()).collect()
    }

    fn restore(&mut self, saved: &HashMap<String, Tensor>) -> Result<()> {
        attached(&self.predictor)?.restore(saved)
    }

    fn trainable(&self) -> Vec<(String, Tensor)> {
        self.predictor.iter().flat_map(|p| p.trainable()).collect()
    }
}
