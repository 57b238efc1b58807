//! NNCLR's support set (Dwibedi et al., 2021): a FIFO bank of past embeddings, whose nearest
//! neighbour of each embedding stands in for it as the positive (lightly's
//! `NNMemoryBankModule`).

use contrastive_tensor::{Device, Kind, Tensor, no_grad};

use crate::error::invalid;
use crate::pairs::{self, embeddings};
use crate::ring::Ring;
use crate::{Error, Result};

const OP: &str = "NNCLR support set";

/// A bank of `[size, dim]` embeddings, started with random unit vectors.
#[derive(Debug)]
pub struct NearestNeighbourBank {
    bank: Ring,
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
        Ok(Self {
            bank: Ring::new(bank, OP),
        })
    }

    /// A bank that starts as `support` `[size, dim]` (a support set of one's own; kept in
    /// its floating-point kind).
    pub fn from_embeddings(support: &Tensor) -> Result<Self> {
        let bank = embeddings(OP, "support set", support)?;
        Ok(Self {
            bank: Ring::new(bank.detach().copy(), OP),
        })
    }

    /// The bank, `[size, dim]`.
    pub fn embeddings(&self) -> &Tensor {
        self.bank.rows()
    }

    /// For each row of `z` `[N, dim]`, the bank's row of highest cosine similarity (as
    /// stored, without gradient).
    pub fn nearest(&self, z: &Tensor) -> Result<Tensor> {
        let z = embeddings(OP, "embeddings", z)?;
        let bank = self.bank.rows();
        if z.size()[1] != bank.size()[1] {
            return Err(Error::Shape {
                op: OP,
                message: format!(
                    "embeddings are {} wide, the bank {}",
                    z.size()[1],
                    bank.size()[1]
                ),
            });
        }
        Ok(no_grad(|| {
            let similarity = pairs::normalize(&z).matmul(&pairs::normalize(bank).tr());
            bank.index_select(0, &similarity.argmax(1, false))
                .to_kind(z.kind())
        }))
    }

    /// Puts `z` `[B, dim]` (detached) in place of the oldest rows.
    pub fn enqueue(&mut self, z: &Tensor) -> Result<()> {
        let z = embeddings(OP, "embeddings", z)?;
        self.bank.push(&z)
    }

    /// The bank as named tensors for a checkpoint: `nnclr.bank` and `nnclr.next`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.bank.state("nnclr.bank", "nnclr.next")
    }

    /// Restores what [`NearestNeighbourBank::state`] saved; shapes must match this bank.
    pub fn restore(&mut self, bank: &Tensor, next: &Tensor) -> Result<()> {
        self.bank.restore(bank, next)
    }
}
