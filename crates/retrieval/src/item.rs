//! What a stored embedding stands for: an item's id, source, label and content hash.

use serde::{Deserialize, Serialize};

/// One item of a collection: what it is, where its image is and its label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its id, unique in the collection: a file path or `dataset:split:index`.
    pub id: String,
    /// Where its image is read from (a file path, or the dataset id again).
    pub source: String,
    /// Its class, when known.
    pub label: Option<String>,
    /// The hex SHA-256 of its pixels as the model sees them (`contrastive_data::pixel_hash`
    /// of the prepared image), when known: a collection holds one item per content, so a
    /// copy of a held image under another name is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Item {
    /// An item read from its id (its source), without label or content hash.
    pub fn new(id: String) -> Self {
        Self {
            source: id.clone(),
            id,
            label: None,
            content: None,
        }
    }
}
