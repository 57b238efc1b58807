//! Optimisers (SGD, LARS, AdamW) whose whole state is named tensors, so a checkpoint holds
//! it and a resumed run continues exactly; and the warm-up + cosine learning-rate schedule.

use contrastive_tensor::{Kind, Tensor, nn::VarStore, no_grad};

use crate::Result;
use crate::checkpoint::Checkpoint;
use crate::config::{OptimizerConfig, OptimizerName};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// SGD with (Nesterov) momentum and L2 weight decay, as `torch.optim.SGD`.
    Sgd { nesterov: bool },
    /// LARS (You et al., 2017): SGD whose step for each decayed tensor is scaled by
    /// `eta * |w| / (|g| + wd |w|)`, as solo-learn's LARS wrapper computes it.
    Lars { eta: f64 },
    /// AdamW (Loshchilov and Hutter, 2019), as `torch.optim.AdamW` (eps 1e-8, beta2 0.999).
    AdamW,
}

#[derive(Debug)]
struct Param {
    name: String,
    value: Tensor,
    /// Weight decay (and LARS scaling) apply to it.
    decay: bool,
    /// Momentum buffer (SGD, LARS) or first moment (AdamW).
    first: Tensor,
    /// Second moment (AdamW only).
    second: Option<Tensor>,
}

/// An optimiser over the trainable variables of a [`VarStore`].
#[derive(Debug)]
pub struct Optimizer {
    rule: Rule,
    momentum: f64,
    weight_decay: f64,
    params: Vec<Param>,
}

impl Optimizer {
    /// An optimiser for every trainable variable of `vs` (named as in `vs`) and the
    /// `extra` named ones (a method's predictor). With `exclude_bn_bias`, tensors of rank
    /// <= 1 (biases, batch-norm weights) get no weight decay and no LARS scaling, as SimCLR
    /// and BYOL do.
    pub fn new(vs: &VarStore, extra: Vec<(String, Tensor)>, config: &OptimizerConfig) -> Self {
        let rule = match config.name {
            OptimizerName::Lars => Rule::Lars {
                eta: config.trust_coefficient,
            },
            OptimizerName::Adamw => Rule::AdamW,
            OptimizerName::Sgd => Rule::Sgd {
                nesterov: config.nesterov,
            },
        };
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .chain(extra)
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params = named
            .into_iter()
            .map(|(name, value)| Param {
                decay: !(config.exclude_bn_bias && value.dim() <= 1),
                first: value.zeros_like(),
                second: (rule == Rule::AdamW).then(|| value.zeros_like()),
                name,
                value,
            })
            .collect();
        Self {
            rule,
            momentum: config.momentum,
            weight_decay: config.weight_decay,
            params,
        }
    }

    /// The variables it trains, in name order (the same on every rank of a data-parallel
    /// run).
    pub fn variables(&self) -> Vec<Tensor> {
        self.params
            .iter()
            .map(|p| p.value.shallow_clone())
            .collect()
    }

    /// Clears every gradient.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.value.zero_grad();
        }
    }

    /// Scales the gradients so their global L2 norm is at most `max_norm`; returns the norm
    /// before clipping (as `torch.nn.utils.clip_grad_norm_`).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| p.value.grad())
            .filter(|g| g.defined())
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads
            .iter()
            .map(|g| g.norm().to_kind(Kind::Float))
            .collect();
        let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
        let scale = max_norm / (total + 1e-6);
        if scale < 1.0 {
            no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            });
        }
        total
    }

    /// One update with learning rate `lr`; `t` is the 1-based step number (AdamW's bias
    /// correction). Variables without a gradient are left alone.
    pub fn step(&mut self, lr: f64, t: u64) {
        let (m, wd) = (self.momentum, self.weight_decay);
        no_grad(|| {
            for p in &mut self.params {
                let grad = p.value.grad();
                if !grad.defined() {
                    continue;
                }
                let wd = if p.decay { wd } else { 0.0 };
                match self.rule {
                    Rule::Sgd { nesterov } => {
                        let g = if wd > 0.0 {
                            &grad + &p.value * wd
                        } else {
                            grad
                        };
                        let _ = p.first.g_mul_scalar_(m).g_add_(&g);
                        let d = if nesterov {
                            g + &p.first * m
                        } else {
                            p.first.shallow_clone()
                        };
                        let _ = p.value.g_add_(&(d * -lr));
                    }
                    Rule::Lars { eta } => {
                        let mut g = grad;
                        if p.decay {
                            let w_norm = p.value.norm().double_value(&[]);
                            let g_norm = g.norm().double_value(&[]);
                            let mut scaled = if wd > 0.0 { &g + &p.value * wd } else { g };
                            if w_norm > 0.0 && g_norm > 0.0 {
                                scaled *= eta * w_norm / (g_norm + wd * w_norm);
                            }
                            g = scaled;
                        }
                        let _ = p.first.g_mul_scalar_(m).g_add_(&g);
                        let _ = p.value.g_add_(&(&p.first * -lr));
                    }
                    Rule::AdamW => {
                        let (b1, b2, eps) = (m, 0.999, 1e-8);
                        let second = p.second.as_mut().expect("AdamW keeps a second moment");
                        if wd > 0.0 {
                            let _ = p.value.g_mul_scalar_(1.0 - lr * wd);
                        }
                        let _ = p.first.lerp_(&grad, 1.0 - b1);
                        let _ = second
                            .g_mul_scalar_(b2)
                            .g_add_(&(&grad * &grad * (1.0 - b2)));
                        let t = t.max(1) as i32;
                        let c1 = 1.0 - b1.powi(t);
                        let c2 = 1.0 - b2.powi(t);
                        let denom = (&*second / c2).sqrt() + eps;
                        let _ = p.value.g_add_(&(&p.first / denom * (-lr / c1)));
                    }
                }
            }
        });
    }

    /// The state as named tensors (`optim.<param>.first`, `optim.<param>.second`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in &self.params {
            out.push((format!("optim.{}.first", p.name), p.first.shallow_clone()));
            if let Some(second) = &p.second {
                out.push((format!("optim.{}.second", p.name), second.shallow_clone()));
            }
        }
        out
    }

    /// Restores what [`Optimizer::state`] saved, from the checkpoint `saved`; every tensor
    /// must be there with the shape and kind of this optimiser's own.
    pub fn restore(&mut self, saved: &Checkpoint) -> Result<()> {
        no_grad(|| {
            for p in &mut self.params {
                let first = saved.tensor(&format!("optim.{}.first", p.name), &p.first)?;
                p.first.f_copy_(first)?;
                if let Some(second) = &mut p.second {
                    let name = format!("optim.{}.second", p.name);
                    let saved = saved.tensor(&name, second)?;
                    second.f_copy_(saved)?;
                }
            }
            Ok(())
        })
    }
}

/// The learning rate at `step` (0-based) of `total`: linear warm-up from `base / warmup`
/// over the first `warmup` steps, then a cosine from `base` down to zero at `total`.
pub fn learning_rate(base: f64, step: u64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use contrastive_tensor::{Device, nn};

    use super::*;

    fn config(name: OptimizerName) -> OptimizerConfig {
        OptimizerConfig {
            name,
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.01,
            exclude_bn_bias: true,
            warmup_epochs: 0.0,
            clip_grad_norm: None,
            trust_coefficient: 1e-3,
        }
    }

    /// Minimises |w - target|^2 with each rule; all must get close.
    #[test]
    fn every_rule_minimises_a_quadratic() {
        for name in [
            OptimizerName::Sgd,
            OptimizerName::Lars,
            OptimizerName::Adamw,
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            // Seeded: other tests of this binary draw from (and reseed) the same
            // process-wide generator on other threads.
            let w = contrastive_tensor::seeded(0, || vs.root().randn("w", &[4, 4], 0.0, 1.0));
            let target = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
            let mut c = config(name);
            c.weight_decay = 0.0;
            if name == OptimizerName::Lars {
                c.trust_coefficient = 0.02;
            }
            let mut opt = Optimizer::new(&vs, Vec::new(), &c);
            let loss = |w: &Tensor| (w - &target).square().sum(Kind::Float);
            let before = loss(&w).double_value(&[]);
            for t in 1..=300 {
                opt.zero_grad();
                loss(&w).backward();
                opt.step(0.05, t);
            }
            let after = loss(&w).double_value(&[]);
            assert!(after < before * 0.01, "{name:?}: {before} -> {after}");
        }
    }

    /// The first SGD steps by hand: buffer = g, then 0.9 g + g.
    #[test]
    fn sgd_matches_pytorch_semantics() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().ones("w", &[1]);
        let mut c = config(OptimizerName::Sgd);
        c.exclude_bn_bias = false;
        let mut opt = Optimizer::new(&vs, Vec::new(), &c);
        let mut expected = 1.0f64;
        let mut buf = 0.0;
        for t in 1..=3 {
            opt.zero_grad();
            (&w * &w).sum(Kind::Float).backward();
            opt.step(0.1, t);
            let g = 2.0 * expected + 0.01 * expected;
            buf = 0.9 * buf + g;
            expected -= 0.1 * buf;
        }
        assert!((w.double_value(&[0]) - expected).abs() < 1e-6);
    }

    #[test]
    fn biases_are_excluded_from_decay_on_request() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bias = vs.root().ones("bias", &[3]);
        let mut opt = Optimizer::new(&vs, Vec::new(), &config(OptimizerName::Adamw));
        opt.zero_grad();
        (&bias * 0.0).sum(Kind::Float).backward();
        opt.step(0.1, 1);
        // Zero gradient and no decay: the bias stays exactly.
        assert!(bias.equal(&Tensor::ones([3], (Kind::Float, Device::Cpu))));
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().ones("w", &[10]);
        let mut opt = Optimizer::new(&vs, Vec::new(), &config(OptimizerName::Sgd));
        (&w * 10.0).sum(Kind::Float).backward();
        let before = opt.clip_grad_norm(1.0);
        assert!((before - 10.0 * 10f64.sqrt()).abs() < 1e-3);
        assert!((w.grad().norm().double_value(&[]) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn state_round_trips() {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().ones("w", &[2]);
        let mut opt = Optimizer::new(&vs, Vec::new(), &config(OptimizerName::Adamw));
        (&w * 3.0).sum(Kind::Float).backward();
        opt.step(0.1, 1);
        let saved: HashMap<String, Tensor> = opt
            .state()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        let mut fresh = Optimizer::new(&vs, Vec::new(), &config(OptimizerName::Adamw));
        let checkpoint = |tensors| Checkpoint {
            path: "last.safetensors".into(),
            tensors,
            position: Default::default(),
        };
        let shallow = |map: &HashMap<String, Tensor>| -> HashMap<String, Tensor> {
            map.iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect()
        };
        fresh.restore(&checkpoint(shallow(&saved))).unwrap();
        for (name, t) in fresh.state() {
            assert!(t.equal(&saved[&name]), "{name}");
        }
        assert!(fresh.restore(&checkpoint(HashMap::new())).is_err());
        let first = saved.keys().next().unwrap().clone();
        let wrong_kind: HashMap<String, Tensor> = saved
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    if *n == first {
                        t.to_kind(Kind::Double)
                    } else {
                        t.copy()
                    },
                )
            })
            .collect();
        let err = fresh
            .restore(&checkpoint(wrong_kind))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&first) && err.contains("Double"), "{err}");
    }

    #[test]
    fn schedule_warms_up_then_follows_a_cosine() {
        assert!((learning_rate(1.0, 0, 10, 110) - 0.1).abs() < 1e-12);
        assert!((learning_rate(1.0, 9, 10, 110) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 10, 10, 110) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 60, 10, 110) - 0.5).abs() < 1e-12);
        assert!(learning_rate(1.0, 110, 10, 110).abs() < 1e-12);
        assert!((learning_rate(0.06, 0, 0, 100) - 0.06).abs() < 1e-12);
    }
}
