//! Turning the rows of several rounds into the report: medians and spreads per row, ours
//! paired with each peer that did the same work, the ratio and which side is better, and
//! the Markdown that goes into `docs/benchmarks.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One measured figure, as `contrastive-bench` and the peer scripts print it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `W1`...`W4`, `ceiling`, `criterion`.
    pub workload: String,
    /// What was measured; ours and a peer doing the same work share it.
    pub name: String,
    /// `ms`, `views/s`, `GFLOP/s`...
    pub unit: String,
    /// The figure (`None`: the run failed, see `note`).
    pub value: Option<f64>,
    /// Larger is better (rates) or smaller is (times).
    pub higher_is_better: bool,
    /// Peak memory one run adds, MiB.
    #[serde(default)]
    pub peak_mib: Option<f64>,
    /// Anything else worth saying (a clustering's NMI, a failure).
    #[serde(default)]
    pub note: Option<String>,
    /// The peer that measured it (absent: ours).
    #[serde(default)]
    pub peer: Option<String>,
}

/// A row's figures over every round.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The last round's row (unit, direction, note).
    pub row: Row,
    /// Median over the rounds that measured it.
    pub median: Option<f64>,
    /// Smallest and largest value.
    pub range: Option<(f64, f64)>,
    /// Median peak memory.
    pub peak_mib: Option<f64>,
}

/// The rows of every round, summarised per (workload, name, who), in first-seen order.
pub fn summarise(rows: &[Row]) -> Vec<Summary> {
    let mut order = Vec::new();
    let mut groups: BTreeMap<(String, String, String), Vec<&Row>> = BTreeMap::new();
    for row in rows {
        let key = (
            row.workload.clone(),
            row.name.clone(),
            row.peer.clone().unwrap_or_default(),
        );
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(row);
    }
    order
        .into_iter()
        .map(|key| {
            let group = &groups[&key];
            let values: Vec<f64> = group.iter().filter_map(|r| r.value).collect();
            let peaks: Vec<f64> = group.iter().filter_map(|r| r.peak_mib).collect();
            Summary {
                row: (*group.last().expect("groups are not empty")).clone(),
                median: median(&values),
                range: values.iter().copied().fold(None, |acc, v| match acc {
                    None => Some((v, v)),
                    Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
                }),
                peak_mib: median(&peaks),
            }
        })
        .collect()
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

/// Ours against one peer on one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Our summary.
    pub ours: Summary,
    /// The peer's, when a peer did the same work.
    pub peer: Option<Summary>,
}

impl Comparison {
    /// `ours / peer` of the medians.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.ours.median? / self.peer.as_ref()?.median?)
    }

    /// How many times better ours is (above 1) or worse (below 1): the ratio for rates,
    /// its inverse for times.
    pub fn advantage(&self) -> Option<f64> {
        let ratio = self.ratio()?;
        Some(if self.ours.row.higher_is_better {
            ratio
        } else {
            1.0 / ratio
        })
    }

    /// The ratio's range over the rounds: the extremes of ours over the extremes of the peer.
    pub fn ratio_range(&self) -> Option<(f64, f64)> {
        let (o_lo, o_hi) = self.ours.range?;
        let (p_lo, p_hi) = self.peer.as_ref()?.range?;
        Some((o_lo / p_hi, o_hi / p_lo))
    }
}

/// Pairs every summary of ours with each peer summary of the same workload and name
/// (a row of ours without a peer stands alone).
pub fn compare(summaries: &[Summary]) -> Vec<Comparison> {
    let ours = summaries.iter().filter(|s| s.row.peer.is_none());
    ours.flat_map(|o| {
        let peers: Vec<&Summary> = summaries
            .iter()
            .filter(|p| {
                p.row.peer.is_some() && p.row.workload == o.row.workload && p.row.name == o.row.name
            })
            .collect();
        if peers.is_empty() {
            vec![Comparison {
                ours: o.clone(),
                peer: None,
            }]
        } else {
            peers
                .into_iter()
                .map(|p| Comparison {
                    ours: o.clone(),
                    peer: Some(p.clone()),
                })
                .collect()
        }
    })
    .collect()
}

/// A figure with about four significant digits.
pub fn figure(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The Markdown table of `comparisons`: one line per (row, peer).
pub fn table(comparisons: &[Comparison]) -> String {
    let mut md = String::from(
        "| workload | row | unit | ours | peer | peer's | ours / peer (range) | better |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for c in comparisons {
        let o = &c.ours;
        let show = |s: &Summary| {
            let mut text = s.median.map_or_else(|| "failed".to_owned(), figure);
            if let Some(peak) = s.peak_mib {
                text.push_str(&format!(" ({} MiB)", figure(peak)));
            }
            if let Some(note) = &s.row.note {
                text.push_str(&format!(" — {note}"));
            }
            text
        };
        let (peer, theirs) = match &c.peer {
            Some(p) => (p.row.peer.clone().unwrap_or_default(), show(p)),
            None => ("—".to_owned(), "—".to_owned()),
        };
        let ratio = match (c.ratio(), c.ratio_range()) {
            (Some(r), Some((lo, hi))) => format!("{} ({}–{})", figure(r), figure(lo), figure(hi)),
            (Some(r), None) => figure(r),
            _ => "—".to_owned(),
        };
        let better = match c.advantage() {
            Some(a) if a >= 1.0 => format!("ours, {}x", figure(a)),
            Some(a) => format!("peer, {}x", figure(1.0 / a)),
            None => "—".to_owned(),
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {peer} | {theirs} | {ratio} | {better} |\n",
            o.row.workload,
            o.row.name,
            o.row.unit,
            show(o)
        ));
    }
    md
}

/// The relative spread ((max - min) / median over the rounds) of every summary measured
/// more than once, with its row, largest first: the noise the report states.
pub fn spreads(summaries: &[Summary]) -> Vec<(f64, String)> {
    let mut spreads: Vec<(f64, String)> = summaries
        .iter()
        .filter_map(|s| {
            let (lo, hi) = s.range?;
            let m = s.median?;
            let who = s.row.peer.as_deref().unwrap_or("ours");
            let name = format!("{} {} ({who})", s.row.workload, s.row.name);
            (m != 0.0 && hi > lo).then(|| ((hi - lo) / m.abs(), name))
        })
        .collect();
    spreads.sort_by(|a, b| b.0.total_cmp(&a.0));
    spreads
}

/// `document` with the text between `BEGIN` and `END` replaced by `section` (the markers
/// kept); without the markers, the section is appended with them.
pub fn splice(document: &str, section: &str) -> String {
    let body = format!("{BEGIN}\n{}\n{END}", section.trim_end());
    match (document.find(BEGIN), document.find(END)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{body}{}", &document[..a], &document[b + END.len()..])
        }
        _ => format!("{}\n\n{body}\n", document.trim_end()),
    }
}

/// Marks where the generated section of `docs/benchmarks.md` begins.
pub const BEGIN: &str = "<!-- cargo xtask bench: generated section begins -->";
/// Marks where it ends.
pub const END: &str = "<!-- cargo xtask bench: generated section ends -->";

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, value: f64, peer: Option<&str>, higher: bool) -> Row {
        Row {
            workload: "W3".into(),
            name: name.into(),
            unit: if higher { "views/s" } else { "ms" }.into(),
            value: Some(value),
            higher_is_better: higher,
            peak_mib: None,
            note: None,
            peer: peer.map(Into::into),
        }
    }

    #[test]
    fn rounds_become_medians_paired_with_each_peer() {
        let rows = vec![
            row("loss", 2.0, None, false),
            row("loss", 8.0, Some("pml"), false),
            row("loss", 4.0, Some("torch"), false),
            row("loss", 3.0, None, false),
            row("loss", 10.0, Some("pml"), false),
            row("loss", 4.0, Some("torch"), false),
            row("loss", 2.5, None, false),
            row("rate", 50.0, None, true),
        ];
        let summaries = summarise(&rows);
        assert_eq!(summaries.len(), 4);
        assert_eq!(summaries[0].median, Some(2.5));
        assert_eq!(summaries[0].range, Some((2.0, 3.0)));
        let comparisons = compare(&summaries);
        assert_eq!(
            comparisons.len(),
            3,
            "two peers for `loss`, none for `rate`"
        );
        let pml = &comparisons[0];
        assert_eq!(pml.ratio(), Some(0.25));
        assert_eq!(
            pml.advantage(),
            Some(4.0),
            "a quarter of the time is 4x better"
        );
        assert_eq!(pml.ratio_range(), Some((0.2, 3.0 / 8.0)));
        assert!(comparisons[2].ratio().is_none());
        let md = table(&comparisons);
        assert!(
            md.contains("| W3 | loss | ms | 2.50 | pml | 10.0 | 0.25 (0.20–0.38) | ours, 4.00x |"),
            "{md}"
        );
        assert!(md.contains("| torch | 4.00 | 0.62"), "{md}");
        assert!(md.contains("| rate | views/s | 50.0 | — |"), "{md}");
        let spreads = spreads(&summaries);
        assert!(
            (spreads[0].0 - 0.4).abs() < 1e-9,
            "ours: (3 - 2) / 2.5: {spreads:?}"
        );
        assert_eq!(spreads[0].1, "W3 loss (ours)");
        assert_eq!(spreads.len(), 2, "torch's two equal values have no spread");
    }

    #[test]
    fn a_failed_peer_run_is_shown_not_compared() {
        let mut failed = row("big", 0.0, Some("pml"), false);
        failed.value = None;
        failed.note = Some("failed: out of memory".into());
        let comparisons = compare(&summarise(&[row("big", 30.0, None, false), failed]));
        assert_eq!(comparisons[0].ratio(), None);
        let md = table(&comparisons);
        assert!(md.contains("failed — failed: out of memory"), "{md}");
    }

    #[test]
    fn the_section_is_replaced_between_its_markers_only() {
        let doc = format!("# B\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## Kept\n");
        let new = splice(&doc, "new table\n");
        assert!(new.contains("new table") && !new.contains("old"), "{new}");
        assert!(
            new.starts_with("# B\n\nintro") && new.ends_with("## Kept\n"),
            "{new}"
        );
        let appended = splice("# B\n", "first");
        assert!(
            appended.contains(BEGIN) && appended.contains("first"),
            "{appended}"
        );
        assert_eq!(splice(&appended, "first"), appended, "idempotent");
    }
}
