//! The layered neighbour graph of HNSW (Malkov & Yashunin, "Efficient and robust approximate
//! nearest neighbor search using Hierarchical Navigable Small World graphs", 2018): insertion
//! (their Algorithm 1 with the neighbour-selection heuristic of Algorithm 4) and the
//! best-first layer search (Algorithm 2).
//!
//! Neighbour lists are arrays of atomics: a count followed by fixed slots. Writers take the
//! node's lock; readers never lock and may see a list mid-update, which only ever holds
//! valid node ids, so searches run alongside insertions as in hnswlib.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Mutex, RwLock};

use super::distance::DistanceFn;

/// A node id with its distance to the current query; ordered by distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Near {
    pub(crate) distance: f32,
    pub(crate) node: u32,
}

impl Eq for Near {}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.node.cmp(&other.node))
    }
}

/// Which nodes one search has already scored: a stamp per node, so clearing is one
/// increment instead of a pass over a million flags.
pub(crate) struct Visited {
    stamps: Vec<u16>,
    current: u16,
}

impl Visited {
    /// Room for `n` nodes.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            stamps: vec![0; n],
            current: 0,
        }
    }

    /// Forgets every visit (and grows to `n` nodes).
    fn clear(&mut self, n: usize) {
        if self.stamps.len() < n {
            self.stamps.resize(n, 0);
        }
        self.current = self.current.wrapping_add(1);
        if self.current == 0 {
            self.stamps.fill(0);
            self.current = 1;
        }
    }

    /// Marks `node`; true when it was not marked yet.
    fn first_visit(&mut self, node: u32) -> bool {
        let stamp = &mut self.stamps[node as usize];
        let first = *stamp != self.current;
        *stamp = self.current;
        first
    }
}

/// Locks guarding neighbour-list writes, shared by nodes with the same id modulo their count.
const LOCKS: usize = 4096;

/// The graph and the rows it links.
pub(crate) struct Graph {
    /// Neighbours kept per node on the upper layers.
    pub(crate) m: usize,
    /// Neighbours kept per node on layer 0 (twice `m`, as in the paper's experiments).
    pub(crate) m0: usize,
    pub(crate) dim: usize,
    pub(crate) vectors: Vec<f32>,
    /// Highest layer of each node.
    pub(crate) levels: Vec<u8>,
    /// Per node: count, then `m0` slots.
    pub(crate) layer0: Vec<AtomicU32>,
    /// Per node with level `l > 0`: `l` lists of count + `m` slots, for layers 1..=l.
    pub(crate) upper: Vec<AtomicU32>,
    /// Where each node's upper lists start in `upper`.
    pub(crate) upper_start: Vec<usize>,
    /// The entry node and the top layer; `None` while the graph is empty.
    pub(crate) entry: RwLock<Option<(u32, u8)>>,
    /// Held by an insertion that raises the top layer, for its whole duration.
    raise: Mutex<()>,
    locks: Vec<Mutex<()>>,
    pub(crate) distance: DistanceFn,
}

impl Graph {
    /// An empty graph of `dim`-wide rows.
    pub(crate) fn new(m: usize, dim: usize, distance: DistanceFn) -> Self {
        Self {
            m,
            m0: 2 * m,
            dim,
            vectors: Vec::new(),
            levels: Vec::new(),
            layer0: Vec::new(),
            upper: Vec::new(),
            upper_start: Vec::new(),
            entry: RwLock::new(None),
            raise: Mutex::new(()),
            locks: (0..LOCKS).map(|_| Mutex::new(())).collect(),
            distance,
        }
    }

    /// Nodes in the graph (inserted or about to be).
    pub(crate) fn len(&self) -> usize {
        self.levels.len()
    }

    /// Appends rows with their levels and empty lists; [`Graph::insert`] links them.
    pub(crate) fn push(&mut self, rows: Vec<f32>, levels: &[u8]) {
        // The first rows are taken as they are: a copy would double the peak memory.
        if self.vectors.is_empty() {
            self.vectors = rows;
        } else {
            self.vectors.extend_from_slice(&rows);
        }
        for &level in levels {
            self.upper_start.push(self.upper.len());
            let slots = level as usize * (self.m + 1);
            self.upper.extend((0..slots).map(|_| AtomicU32::new(0)));
            self.layer0
                .extend((0..self.m0 + 1).map(|_| AtomicU32::new(0)));
            self.levels.push(level);
        }
    }

    pub(crate) fn row(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// The list of `node` on `layer`: the count slot, then the neighbour slots.
    fn list(&self, node: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let start = node as usize * (self.m0 + 1);
            &self.layer0[start..start + self.m0 + 1]
        } else {
            let start = self.upper_start[node as usize] + (layer - 1) * (self.m + 1);
            &self.upper[start..start + self.m + 1]
        }
    }

    /// The neighbours of `node` on `layer`, as they are now.
    pub(crate) fn neighbours(&self, node: u32, layer: usize) -> impl Iterator<Item = u32> + '_ {
        let list = self.list(node, layer);
        let count = (list[0].load(Acquire) as usize).min(list.len() - 1);
        list[1..=count].iter().map(|slot| slot.load(Relaxed))
    }

    fn near(&self, query: &[f32], node: u32) -> Near {
        Near {
            distance: (self.distance)(query, self.row(node)),
            node,
        }
    }

    /// Greedy descent from `from` through the layers above `down_to`: the closest node found.
    pub(crate) fn descend(&self, query: &[f32], from: Near, top: usize, down_to: usize) -> Near {
        let mut best = from;
        for layer in (down_to + 1..=top).rev() {
            let mut moved = true;
            while moved {
                moved = false;
                for n in self.neighbours(best.node, layer) {
                    let candidate = self.near(query, n);
                    if candidate.distance < best.distance {
                        best = candidate;
                        moved = true;
                    }
                }
            }
        }
        best
    }

    /// Best-first search of one layer from `entries`: up to `ef` nodes, closest first.
    pub(crate) fn search_layer(
        &self,
        query: &[f32],
        entries: &[Near],
        ef: usize,
        layer: usize,
        visited: &mut Visited,
    ) -> Vec<Near> {
        visited.clear(self.len());
        let mut candidates = BinaryHeap::with_capacity(ef * 2);
        let mut found = BinaryHeap::with_capacity(ef + 1);
        for &e in entries {
            if visited.first_visit(e.node) {
                candidates.push(Reverse(e));
                found.push(e);
            }
        }
        while found.len() > ef {
            found.pop();
        }
        while let Some(Reverse(current)) = candidates.pop() {
            let worst = found.peek().map_or(f32::INFINITY, |w: &Near| w.distance);
            if current.distance > worst && found.len() >= ef {
                break;
            }
            for n in self.neighbours(current.node, layer) {
                if !visited.first_visit(n) {
                    continue;
                }
                let candidate = self.near(query, n);
                let worst = found.peek().map_or(f32::INFINITY, |w: &Near| w.distance);
                if found.len() < ef || candidate.distance < worst {
                    candidates.push(Reverse(candidate));
                    found.push(candidate);
                    if found.len() > ef {
                        found.pop();
                    }
                }
            }
        }
        found.into_sorted_vec()
    }

    /// Algorithm 4 of the paper: from `candidates` (closest first) keep up to `m` that are
    /// closer to the base node than to every node kept before them, so the links point in
    /// different directions instead of all into the nearest cluster.
    fn select(&self, candidates: &[Near], m: usize) -> Vec<Near> {
        let mut kept: Vec<Near> = Vec::with_capacity(m);
        for &c in candidates {
            if kept.len() == m {
                break;
            }
            let row = self.row(c.node);
            if kept
                .iter()
                .all(|k| (self.distance)(row, self.row(k.node)) > c.distance)
            {
                kept.push(c);
            }
        }
        kept
    }

    fn write(&self, list: &[AtomicU32], nodes: impl ExactSizeIterator<Item = u32>) {
        let count = nodes.len();
        for (slot, node) in list[1..].iter().zip(nodes) {
            slot.store(node, Relaxed);
        }
        list[0].store(count as u32, Release);
    }

    /// Links `node` (already pushed) into the graph. Safe to call from many threads at once
    /// for different nodes.
    pub(crate) fn insert(&self, node: u32, ef_construction: usize, visited: &mut Visited) {
        let level = self.levels[node as usize];
        let read_entry = || *self.entry.read().expect("the entry lock is never poisoned");
        // A node above the top layer becomes the entry; it holds the raise lock for its whole
        // insertion so that no other such node interleaves.
        let _raise;
        let (entry, top) = match read_entry() {
            Some((entry, top)) if level <= top => (entry, top),
            _ => {
                _raise = self.raise.lock().expect("the raise lock is never poisoned");
                match read_entry() {
                    Some(current) => current,
                    None => {
                        *self.entry.write().expect("never poisoned") = Some((node, level));
                        return;
                    }
                }
            }
        };
        let query = self.row(node);
        let start = self.descend(query, self.near(query, entry), top as usize, level as usize);
        let mut entries = vec![start];
        for layer in (0..=level.min(top) as usize).rev() {
            let found = self.search_layer(query, &entries, ef_construction, layer, visited);
            let chosen = self.select(&found, self.m);
            {
                let _lock = self.lock(node);
                self.write(self.list(node, layer), chosen.iter().map(|c| c.node));
            }
            for c in &chosen {
                self.link_back(c.node, node, c.distance, layer);
            }
            entries = found;
        }
        if level > top {
            *self.entry.write().expect("never poisoned") = Some((node, level));
        }
    }

    fn lock(&self, node: u32) -> std::sync::MutexGuard<'_, ()> {
        self.locks[node as usize % LOCKS]
            .lock()
            .expect("a neighbour-list lock is never poisoned")
    }

    /// Adds `node` to the list of `to` on `layer`, re-selecting when the list is full.
    fn link_back(&self, to: u32, node: u32, distance: f32, layer: usize) {
        let cap = if layer == 0 { self.m0 } else { self.m };
        let _lock = self.lock(to);
        let list = self.list(to, layer);
        let count = list[0].load(Acquire) as usize;
        let current: Vec<u32> = list[1..=count].iter().map(|s| s.load(Relaxed)).collect();
        if current.contains(&node) {
            return;
        }
        if count < cap {
            list[count + 1].store(node, Relaxed);
            list[0].store(count as u32 + 1, Release);
            return;
        }
        let base = self.row(to);
        let mut candidates: Vec<Near> = current.iter().map(|&n| self.near(base, n)).collect();
        candidates.push(Near { distance, node });
        candidates.sort_unstable();
        let kept = self.select(&candidates, cap);
        self.write(list, kept.iter().map(|k| k.node));
    }
}
