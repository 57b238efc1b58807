//! A FIFO of embedding rows written over a batch at a time, oldest first: MoCo's queue of
//! keys and NNCLR's support set. Its whole state is two named tensors (the rows and the
//! next row to write), so a checkpoint holds it exactly.

use contrastive_tensor::{Kind, Tensor, no_grad};

use crate::{Error, Result};

/// `[size, dim]` rows and the next one to write.
#[derive(Debug)]
pub(crate) struct Ring {
    rows: Tensor,
    next: i64,
    /// The owner's name, for errors.
    op: &'static str,
}

impl Ring {
    /// A ring that starts as `rows` `[size, dim]`.
    pub(crate) fn new(rows: Tensor, op: &'static str) -> Self {
        Self { rows, next: 0, op }
    }

    /// The rows, `[size, dim]`.
    pub(crate) fn rows(&self) -> &Tensor {
        &self.rows
    }

    /// Writes `batch` `[B, dim]` (detached, in the ring's kind) over the oldest rows. `B`
    /// must divide the ring's size, so batches never wrap around its end.
    pub(crate) fn push(&mut self, batch: &Tensor) -> Result<()> {
        let (b, size) = (batch.size()[0], self.rows.size()[0]);
        if batch.size().len() != 2
            || batch.size()[1] != self.rows.size()[1]
            || size % b != 0
            || self.next + b > size
        {
            return Err(Error::Shape {
                op: self.op,
                message: format!(
                    "a batch of {:?} does not fit {:?} rows at row {}",
                    batch.size(),
                    self.rows.size(),
                    self.next
                ),
            });
        }
        no_grad(|| {
            self.rows
                .narrow(0, self.next, b)
                .copy_(&batch.detach().to_kind(self.rows.kind()))
        });
        self.next = (self.next + b) % size;
        Ok(())
    }

    /// The state as `(rows_name, rows)` and `(next_name, next)`.
    pub(crate) fn state(&self, rows_name: &str, next_name: &str) -> Vec<(String, Tensor)> {
        vec![
            (rows_name.into(), self.rows.shallow_clone()),
            (next_name.into(), Tensor::from(self.next)),
        ]
    }

    /// Puts back what [`Ring::state`] saved: rows of this ring's shape and one whole-number
    /// position inside it.
    pub(crate) fn restore(&mut self, rows: &Tensor, next: &Tensor) -> Result<()> {
        if rows.size() != self.rows.size() {
            return Err(Error::Shape {
                op: self.op,
                message: format!(
                    "the saved rows are {:?}, these {:?}",
                    rows.size(),
                    self.rows.size()
                ),
            });
        }
        let whole = matches!(
            next.kind(),
            Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8
        );
        let next = match (next.numel(), whole) {
            (1, true) => next.int64_value(&[]),
            _ => {
                return Err(Error::Shape {
                    op: self.op,
                    message: format!(
                        "the saved position is {:?} of {:?}, not one whole number",
                        next.size(),
                        next.kind()
                    ),
                });
            }
        };
        if !(0..self.rows.size()[0]).contains(&next) {
            return Err(Error::Shape {
                op: self.op,
                message: format!("the saved position {next} is outside the rows"),
            });
        }
        no_grad(|| self.rows.copy_(rows));
        self.next = next;
        Ok(())
    }
}
