//! `contrastive-draw`: the project's pictures, without tensors or libtorch. Charts
//! ([`line_chart`], [`scatter`] with a legend, [`factor_chart`] of ratios either side of 1)
//! and image sheets ([`contact_sheet`] of a query and its neighbours, [`cluster_grid`] of
//! each cluster's members, [`view_grid`] of images beside their augmented views), written as
//! PNG. Text needs a font: `$CONTRASTIVE_FONT`, or
//! DejaVu Sans or Liberation Sans where the system has them (Debian: `fonts-dejavu-core`);
//! without one the pictures are drawn without text.
//!
//! ```no_run
//! use contrastive_draw::{Series, line_chart};
//!
//! let loss = Series {
//!     label: "loss".into(),
//!     color: [20, 80, 160],
//!     points: vec![(1.0, 4.0), (2.0, 3.1), (3.0, 2.7)],
//! };
//! line_chart("loss.png".as_ref(), "Training loss", "step", "loss", &[loss])?;
//! # Ok::<(), contrastive_draw::Error>(())
//! ```

mod charts;
mod sheets;

use std::path::PathBuf;

pub use crate::charts::{CHART_SIZE, PALETTE, Series, factor_chart, line_chart, scatter};
pub use crate::sheets::{Tile, cluster_grid, contact_sheet, view_grid};

/// An image, `[height, width, channels]` of bytes (1 gray, 3 RGB), as the other crates
/// hold them.
pub type Image = ndarray::Array3<u8>;

/// What can go wrong while drawing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The picture could not be written.
    #[error("writing {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
