//! NNCLR's support set (Dwibedi et al., 2021): a FIFO bank of past embeddings, whose nearest
//! neighbour of each embedding stands in for it as the positive (lightly's
//! `NNMemoryBankModule`).

use contrastive_tensor::{Device, Kind, Tensor, no_grad};

use crate::error::invalid;
use crate::pairs::{self, embeddings};
use crate::{Error, Result};

const OP: &str = "NNCLR support set";

/// A bank of `[size, dim]` embeddings, started with random unit vectors.
#[derive(Debug)]
pub struct NearestNeighbourBank {
    bank: Tensor,
    next: i64,
}

impl NearestNeighbourBank {
    /// A bank of `size` embeddings `dim` wide; `size` must be a positive multiple of the
    /// `batch` enqueued at a time.
    pub fn new(size: usize, dim: i64, batch: usize, device: Device) -> Result<Self> {
        if batch == 0 || size == 0 || !size.is_multiple_of(batch) {
            return Err(invalid(
                "support_size",
                format!("must be a positive multiple of the batch size {batch}, got {size}"),
            ));
        }
        let bank = pairs::normalize(&Tensor::randn([size as i64, dim], (Kind::Float, device)));
        Ok(Self { bank, next: 0 })
    }

    /// A bank that starts as `support` `[size, dim]` (a support set of one's own; kept in
    /// its floating-point kind).
    pub fn from_embeddings(support: &Tensor) -> Result<Self> {
        let bank = embeddings(OP, "support set", support)?;
        Ok(Self {
            bank: bank.detach().copy(),
            next: 0,
        })
    }

    /// The bank, `[size, dim]`.
    pub fn embeddings(&self) -> &Tensor {
        &self.bank
    }

    /// For each row of `z` `[N, dim]`, the bank's row of highest cosine similarity (as
    /// stored, without gradient).
    pub fn nearest(&self, z: &Tensor) -> Result<Tensor> {
        let z = embeddings(OP, "embeddings", z)?;
        self.check_width(&z)?;
        Ok(no_grad(|| {
            let similarity = pairs::normalize(&z).matmul(&pairs::normalize(&self.bank).tr());
            self.bank
                .index_select(0, &similarity.argmax(1, false))
                .to_kind(z.kind())
        }))
    }

    /// Puts `z` `[B, dim]` (detached) in place of the oldest rows.
    pub fn enqueue(&mut self, z: &Tensor) -> Result<()> {
        let z = embeddings(OP, "embeddings", z)?;
        self.check_width(&z)?;
        let (batch, size) = (z.size()[0], self.bank.size()[0]);
        if size % batch != 0 {
            return Err(Error::Shape {
                op: OP,
                message: format!("a batch of {batch} does not divide the bank of {size}"),
            });
        }
        no_grad(|| {
            self.bank
                .narrow(0, self.next, batch)
                .copy_(&z.detach().to_kind(self.bank.kind()))
        });
        self.next = (self.next + batch) % size;
        Ok(())
    }

    /// The bank as named tensors for a checkpoint: `nnclr.bank` and `nnclr.next`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("nnclr.bank".into(), self.bank.shallow_clone()),
            ("nnclr.next".into(), Tensor::from(self.next)),
        ]
    }

    /// Restores what [`NearestNeighbourBank::state`] saved; shapes must match this bank.
    pub fn restore(&mut self, bank: &Tensor, next: &Tensor) -> Result<()> {
        if bank.size() != self.bank.size() {
            return Err(Error::Shape {
                op: OP,
                message: format!(
                    "saved bank is {:?}, this one {:?}",
                    bank.size(),
                    self.bank.size()
                ),
            });
        }
        let next = next.int64_value(&[]);
        if !(0..self.bank.size()[0]).contains(&next) {
            return Err(Error::Shape {
                op: OP,
                message: format!("saved bank position {next} is out of range"),
            });
        }
        no_grad(|| self.bank.copy_(bank));
        self.next = next;
        Ok(())
    }

    fn check_width(&self, z: &Tensor) -> Result<()> {
        if z.size()[1] != self.bank.size()[1] {
            return Err(Error::Shape {
                op: OP,
                message: format!(
                    "embeddings are {} wide, the bank {}",
                    z.size()[1],
                    self.bank.size()[1]
                ),
            });
        }
        Ok(())
    }
}
