//! From views to a ready tensor batch, and producing batches ahead of the training loop.

use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

#[cfg(feature = "tensor")]
use contrastive_tensor::{Normalize, Tensor, stack_hwc_u8, to_channels_last, u8_to_unit_float};

#[cfg(feature = "tensor")]
use crate::Image;
use crate::Result;

/// What a batch of views becomes.
#[cfg(feature = "tensor")]
#[derive(Debug, Clone, PartialEq)]
pub struct BatchFormat {
    /// `None`: `u8` values (convert on the device); `Some`: `f32` in `[0, 1]`, then
    /// normalised when a [`Normalize`] is given.
    pub float: Option<Option<Normalize>>,
    /// Lay the batch out channels-last (NHWC strides; the shape stays `[N, C, H, W]`).
    pub channels_last: bool,
}

#[cfg(feature = "tensor")]
impl BatchFormat {
    /// `u8` values, NCHW: the images as they are (for [`apply_plans`](crate::apply_plans),
    /// or to convert on the device).
    pub fn raw() -> Self {
        Self {
            float: None,
            channels_last: false,
        }
    }
}

/// Stacks views of one shape into a `[N, C, H, W]` tensor in `format`.
#[cfg(feature = "tensor")]
pub fn to_batch(views: &[Image], format: &BatchFormat) -> Result<Tensor> {
    let refs: Vec<_> = views.iter().map(|v| v.view()).collect();
    format_batch(stack_hwc_u8(&refs)?, format)
}

/// A `u8` `[N, C, H, W]` batch (as [`to_batch`] stacks it, or as
/// [`apply_plans`](crate::apply_plans) returns it) in `format`, on its own device.
#[cfg(feature = "tensor")]
pub fn format_batch(mut batch: Tensor, format: &BatchFormat) -> Result<Tensor> {
    if let Some(normalize) = &format.float {
        batch = u8_to_unit_float(&batch);
        if let Some(normalize) = normalize {
            batch = normalize.apply(&batch)?;
        }
    }
    if format.channels_last {
        batch = to_channels_last(&batch)?;
    } else {
        batch = batch.contiguous();
    }
    Ok(batch)
}

/// Items produced on a background thread, up to `depth` ahead of the consumer, in order: the
/// augmentation of batch `i + 1` overlaps with training on batch `i`. Dropping it stops the
/// thread at its next item.
pub struct Prefetcher<T> {
    receiver: Option<Receiver<Result<T>>>,
    worker: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Prefetcher<T> {
    /// Produces `produce(0)`, ..., `produce(count - 1)`; an error is delivered in its place
    /// and ends the sequence.
    pub fn new<F>(count: usize, depth: usize, mut produce: F) -> Self
    where
        F: FnMut(usize) -> Result<T> + Send + 'static,
    {
        let (sender, receiver) = sync_channel(depth.max(1));
        let worker = std::thread::spawn(move || {
            for i in 0..count {
                let item = produce(i);
                let failed = item.is_err();
                if sender.send(item).is_err() || failed {
                    break;
                }
            }
        });
        Self {
            receiver: Some(receiver),
            worker: Some(worker),
        }
    }
}

impl<T> Iterator for Prefetcher<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.as_ref()?.recv().ok()
    }
}

impl<T> Drop for Prefetcher<T> {
    fn drop(&mut self) {
        // Closing the channel makes the worker's next send fail, so it ends.
        drop(self.receiver.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
