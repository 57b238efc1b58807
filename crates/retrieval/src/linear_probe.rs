//! A linear classifier on frozen features: the standard linear evaluation.

use contrastive_tensor::{Kind, Tensor, nn, nn::Module, nn::OptimizerConfig, seeded};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::invalid;
use crate::knn::{accuracy, check_inputs};
use crate::{Error, Result};

/// Trains `W x + b` with softmax cross-entropy on frozen features, standardised with the
/// training set's mean and deviation, by mini-batch Adam with a cosine learning rate.
/// Its initial weights and batch order come from its own `seed` alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearProbe {
    /// Passes over the training features.
    pub epochs: usize,
    /// Features per step.
    pub batch_size: usize,
    /// Adam's starting learning rate (decays to zero on a cosine).
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Seed of the initial weights and the shuffling.
    pub seed: u64,
}

impl Default for LinearProbe {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 256,
            lr: 1e-2,
            weight_decay: 1e-4,
            seed: 0,
        }
    }
}

/// What a probe reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearProbeReport {
    /// Top-1 accuracy on the training features.
    pub train_top1: f64,
    /// Top-1 accuracy on the test features.
    pub test_top1: f64,
}

impl LinearProbe {
    fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(invalid("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch_size", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(invalid("lr", format!("must be positive, got {}", self.lr)));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(invalid(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            ));
        }
        Ok(())
    }

    /// Fits on (`train`, `labels`) and measures top-1 on (`test`, `test_labels`); labels
    /// are in `0..classes`.
    pub fn evaluate(
        &self,
        train: &Tensor,
        labels: &Tensor,
        test: &Tensor,
        test_labels: &Tensor,
        classes: usize,
    ) -> Result<LinearProbeReport> {
        self.validate()?;
        check_inputs(train, labels, test)?;
        if test_labels.size() != [test.size()[0]] {
            return Err(Error::Shape {
                op: "linear probe",
                message: format!(
                    "{:?} test features but {:?} test labels",
                    test.size(),
                    test_labels.size()
                ),
            });
        }
        let device = train.device();
        let train = train.to_kind(Kind::Float).detach();
        let mean = train.mean_dim(0, true, Kind::Float);
        let std = train.std_dim(0, false, true).clamp_min(1e-6);
        let standardise = |x: &Tensor| (x.to_device(device).to_kind(Kind::Float) - &mean) / &std;
        let x = standardise(&train);
        let y = labels.to_device(device).to_kind(Kind::Int64);

        let (vs, linear) = seeded(self.seed, || {
            let vs = nn::VarStore::new(device);
            let linear = nn::linear(vs.root(), x.size()[1], classes as i64, Default::default());
            (vs, linear)
        });
        let mut opt = nn::AdamW {
            wd: self.weight_decay,
            ..Default::default()
        }
        .build(&vs, self.lr)?;
        let n = x.size()[0];
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut order: Vec<i64> = (0..n).collect();
        let batch = (self.batch_size as i64).min(n);
        let steps_per_epoch = (n + batch - 1) / batch;
        let total = (steps_per_epoch * self.epochs as i64) as f64;
        let mut step = 0.0;
        for _ in 0..self.epochs {
            order.shuffle(&mut rng);
            let order = Tensor::from_slice(&order).to_device(device);
            for s in 0..steps_per_epoch {
                let len = batch.min(n - s * batch);
                let index = order.narrow(0, s * batch, len);
                opt.set_lr(self.lr * 0.5 * (1.0 + (std::f64::consts::PI * step / total).cos()));
                let loss = linear
                    .forward(&x.index_select(0, &index))
                    .cross_entropy_for_logits(&y.index_select(0, &index));
                opt.backward_step(&loss);
                step += 1.0;
            }
        }
        let top1 = |x: &Tensor, y: &Tensor| {
            let predicted = contrastive_tensor::no_grad(|| linear.forward(x).argmax(1, false));
            accuracy(&predicted, y)
        };
        Ok(LinearProbeReport {
            train_top1: top1(&x, &y),
            test_top1: top1(&standardise(test), test_labels),
        })
    }
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::{Device, seeded};

    use super::*;

    #[test]
    fn separable_classes_are_learned() {
        // Three clusters around distinct centres in 16 dimensions.
        let ((x, y), (tx, ty)) = seeded(3, || {
            let centres = Tensor::randn([3, 16], (Kind::Float, Device::Cpu)) * 3.0;
            let make = |n: i64| {
                let y = Tensor::randint(3, [n], (Kind::Int64, Device::Cpu));
                let x = centres.index_select(0, &y)
                    + Tensor::randn([n, 16], (Kind::Float, Device::Cpu));
                (x, y)
            };
            (make(600), make(300))
        });
        let probe = LinearProbe {
            epochs: 50,
            batch_size: 64,
            ..Default::default()
        };
        let report = probe.evaluate(&x, &y, &tx, &ty, 3).unwrap();
        assert!(report.test_top1 > 0.95, "{report:?}");
        // The probe's own seed decides it, whatever the global generators did meanwhile
        // (other draws, under `seeded` like every draw of this binary's tests).
        let disturb = |seed| seeded(seed, || Tensor::randn([100], (Kind::Float, Device::Cpu)));
        let _ = disturb(98);
        let noisy = LinearProbe { epochs: 2, ..probe };
        let order = seeded(97, || Tensor::randperm(600, (Kind::Int64, Device::Cpu)));
        let shuffled = y.index_select(0, &order);
        let once = noisy.evaluate(&x, &shuffled, &tx, &ty, 3).unwrap();
        let _ = disturb(99);
        assert_eq!(noisy.evaluate(&x, &shuffled, &tx, &ty, 3).unwrap(), once);
        // Shuffled labels cannot be predicted on new data.
        let chance = probe.evaluate(&x, &shuffled, &tx, &ty, 3).unwrap();
        assert!(chance.test_top1 < 0.6, "{chance:?}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let x = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        let probe = LinearProbe {
            lr: -1.0,
            ..Default::default()
        };
        let err = probe.evaluate(&x, &y, &x, &y, 2).unwrap_err();
        assert!(err.to_string().contains("lr"), "{err}");
    }
}
