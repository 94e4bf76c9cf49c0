//! The catalog's `implies` as a graph, answered by reachability.
//!
//! The graph has two kinds of node: a *key* node for each catalog key that implies something,
//! and a *target* node for each distinct scope written in an `implies` list. A key has an edge
//! to each target it implies; a target an edge to each key node it grants (itself, or every
//! key under a wildcard). Expanding a set of scopes walks from the key nodes they grant and
//! yields the targets it reaches.
//!
//! Why targets are nodes: written as key → key edges, `W` wildcards each implying `k:*` over
//! `K` keys are `W × K` edges, and every credential holding `*` walked them all again
//! (twenty-second pass: 1,000 × 1,000 × 1,000 credentials took 2.6 s, 4,000 × 4,000 × 2,400
//! minutes). Through the shared target `k:*` they are `W + K` edges, and a key that implies
//! nothing is no node at all, so a walk never visits it.
//!
//! Nothing is precomputed per key: a transitive closure per key costs the square of a chain's
//! length in time and memory (a 6,000-scope chain took 9 s and 400 MB). What is kept is the
//! closure of each distinct scope a credential or task declares ([`ImpliesGraph::memo`], filled
//! by the parse), so a thousand credentials holding `*` walk the graph once between them; its
//! size is bounded by the expansions the parse counts. Cycles are found once, at parse time,
//! as the strongly connected components of the graph (Tarjan, iterative).
//!
//! Bounds: the parse counts the scopes every credential's and task's expansion produces
//! ([`MAX_EXPANSION`]), the graph's edges as the catalog writes them (a wildcard `implies` one
//! per key it grants, [`MAX_EDGES`]), and every step the expansions take — scopes and catalog
//! keys looked at, nodes and edges walked, memoised scopes copied — ([`MAX_STEPS`]), and
//! refuses a policy over any of them with an error at the place where the budget ran out.

use std::ops::Range;

use rustc_hash::{FxHashMap, FxHashSet};

use super::scope::Scope;
use super::CatalogEntry;

/// Most scopes the expansions of all credentials and tasks of one policy may produce together.
pub const MAX_EXPANSION: usize = 20_000_000;

/// Most edges the catalog's `implies` may have, counted as written: each `implies` entry one per
/// catalog key it grants (a wildcard one per key under it).
pub const MAX_EDGES: usize = 20_000_000;

/// Most steps the expansions of all credentials and tasks of one policy may take together:
/// scopes and catalog keys looked at, graph nodes visited and edges followed, memoised scopes
/// copied. About a second of work; a policy that needs more is refused.
pub const MAX_STEPS: u64 = 100_000_000;

/// The `implies` graph. Nodes `0..targets` are targets (distinct implied scopes, in the order
/// first written), the rest key nodes (catalog keys that imply something, in name order).
#[derive(Debug, Clone, Default)]
pub(crate) struct ImpliesGraph {
    /// Implied scope (as written) → target node.
    target_of: FxHashMap<Box<str>, u32>,
    /// Catalog key that implies something → key node.
    key_of: FxHashMap<Box<str>, u32>,
    /// Per target node: its scope.
    targets: Vec<Scope>,
    /// Per key node (index `node - targets.len()`): the catalog key.
    keys: Vec<Box<str>>,
    /// Per node: its successors, sorted (a target's key nodes, a key's target nodes).
    edges: Vec<Box<[u32]>>,
    /// The target nodes each scope a credential or task declares reaches, filled by the
    /// parse ([`ImpliesGraph::set_memo`]): expansions of declared scopes read them.
    memo: FxHashMap<Box<str>, Box<[u32]>>,
}

/// Why the graph could not be built: too many edges, at the `implies` entry (span) that went
/// over.
pub(crate) struct TooManyEdges(pub(crate) Range<usize>);

/// A strongly connected component that is a cycle: its nodes (sorted) and, among them, its
/// key nodes (sorted, so in name order).
pub(crate) struct Cycle {
    nodes: Vec<u32>,
    pub(crate) keys: Vec<u32>,
}

impl ImpliesGraph {
    /// Build the graph. `granted_by(s)` lists the catalog keys a scope grants (itself, or the
    /// keys under a wildcard); it is asked once per distinct implied scope.
    pub(crate) fn build<'c>(
        catalog: impl Iterator<Item = (&'c String, &'c CatalogEntry)> + Clone,
        granted_by: impl Fn(&'c Scope) -> Vec<&'c String>,
    ) -> Result<ImpliesGraph, TooManyEdges> {
        let mut g = ImpliesGraph::default();
        for (k, e) in catalog.clone() {
            for s in &e.implies {
                if !g.target_of.contains_key(s.value.as_str()) {
                    g.target_of
                        .insert(s.value.as_str().into(), g.targets.len() as u32);
                    g.targets.push(s.value.clone());
                }
            }
            if !e.implies.is_empty() {
                g.keys.push(k.as_str().into());
            }
        }
        let first_key = g.targets.len() as u32;
        for (i, k) in g.keys.iter().enumerate() {
            g.key_of.insert(k.clone(), first_key + i as u32);
        }
        // Each target's key nodes, found when an entry first names it; the edges as written
        // counted per entry (MAX_EDGES), so a catalog over the bound stops at that entry.
        let mut target_edges: Vec<Option<(usize, Box<[u32]>)>> = vec![None; g.targets.len()];
        let mut key_edges: Vec<Box<[u32]>> = Vec::with_capacity(g.keys.len());
        let mut total = 0usize;
        for (_, e) in catalog {
            let mut out: Vec<u32> = Vec::with_capacity(e.implies.len());
            for s in &e.implies {
                let t = g.target_of[s.value.as_str()];
                out.push(t);
                let (granted, _) = target_edges[t as usize].get_or_insert_with(|| {
                    let keys = granted_by(&s.value);
                    let mut nodes: Vec<u32> = keys
                        .iter()
                        .filter_map(|k| g.key_of.get(k.as_str()).copied())
                        .collect();
                    nodes.sort_unstable();
                    (keys.len(), nodes.into_boxed_slice())
                });
                total += *granted;
                if total > MAX_EDGES {
                    return Err(TooManyEdges(s.span.clone()));
                }
            }
            if !out.is_empty() {
                out.sort_unstable();
                out.dedup();
                key_edges.push(out.into_boxed_slice());
            }
        }
        g.edges = target_edges
            .into_iter()
            .map(|e| e.map(|(_, n)| n).unwrap_or_default())
            .chain(key_edges)
            .collect();
        Ok(g)
    }

    /// Whether any catalog entry implies anything.
    pub(crate) fn is_trivial(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key node of a catalog key, if it implies anything.
    pub(crate) fn key(&self, key: &str) -> Option<u32> {
        self.key_of.get(key).copied()
    }

    /// The key nodes an implied scope grants, if `scope` is one (what a declared scope that
    /// is also written in an `implies` starts from, without a scan of the catalog).
    pub(crate) fn keys_granted_by_target(&self, scope: &str) -> Option<&[u32]> {
        self.target_of.get(scope).map(|&t| &*self.edges[t as usize])
    }

    /// The catalog key of a key node.
    pub(crate) fn key_name(&self, node: u32) -> &str {
        &self.keys[node as usize - self.targets.len()]
    }

    /// The scope of a target node.
    pub(crate) fn target(&self, node: u32) -> &Scope {
        &self.targets[node as usize]
    }

    /// The target nodes a declared scope reaches, if the parse memoised it.
    pub(crate) fn memo(&self, scope: &str) -> Option<&[u32]> {
        self.memo.get(scope).map(|m| &**m)
    }

    /// Keep the target nodes each declared scope reaches ([`ImpliesGraph::memo`]).
    pub(crate) fn set_memo(&mut self, memo: FxHashMap<Box<str>, Box<[u32]>>) {
        self.memo = memo;
    }

    /// Every target reached, transitively, from the key nodes in `start`, each once; returns
    /// the steps taken (nodes visited and edges followed).
    pub(crate) fn walk(&self, start: impl IntoIterator<Item = u32>, mut f: impl FnMut(u32)) -> u64 {
        let mut steps = 0u64;
        let mut seen: FxHashSet<u32> = FxHashSet::default();
        let mut stack: Vec<u32> = Vec::new();
        for n in start {
            steps += 1;
            if seen.insert(n) {
                stack.push(n);
            }
        }
        let first_key = self.targets.len() as u32;
        while let Some(n) = stack.pop() {
            if n < first_key {
                f(n);
            }
            let out = &self.edges[n as usize];
            steps += 1 + out.len() as u64;
            for &m in out.iter() {
                if seen.insert(m) {
                    stack.push(m);
                }
            }
        }
        steps
    }

    /// The strongly connected components that are cycles (more than one node: a key and what
    /// it implies never coincide), found by an iterative Tarjan in O(nodes + edges).
    pub(crate) fn cycles(&self) -> Vec<Cycle> {
        let n = self.edges.len();
        let first_key = self.targets.len() as u32;
        const UNSEEN: u32 = u32::MAX;
        let mut index = vec![UNSEEN; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<u32> = Vec::new();
        let mut next = 0u32;
        let mut out = Vec::new();
        // (node, position in its edge list)
        let mut call: Vec<(u32, usize)> = Vec::new();
        // Roots in key order, so components come out in a stable order.
        for root in (first_key..n as u32).chain(0..first_key) {
            if index[root as usize] != UNSEEN {
                continue;
            }
            call.push((root, 0));
            index[root as usize] = next;
            low[root as usize] = next;
            next += 1;
            stack.push(root);
            on_stack[root as usize] = true;
            while let Some(top) = call.last_mut() {
                let (v, pos) = *top;
                let vi = v as usize;
                if let Some(&w) = self.edges[vi].get(pos) {
                    top.1 += 1;
                    let wi = w as usize;
                    if index[wi] == UNSEEN {
                        index[wi] = next;
                        low[wi] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[wi] = true;
                        call.push((w, 0));
                    } else if on_stack[wi] {
                        low[vi] = low[vi].min(index[wi]);
                    }
                    continue;
                }
                call.pop();
                if let Some(&(u, _)) = call.last() {
                    low[u as usize] = low[u as usize].min(low[vi]);
                }
                if low[vi] == index[vi] {
                    let mut comp = Vec::new();
                    loop {
                        let w = stack.pop().expect("Tarjan stack holds the component");
                        on_stack[w as usize] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if comp.len() > 1 {
                        comp.sort_unstable();
                        let keys = comp.iter().copied().filter(|&m| m >= first_key).collect();
                        out.push(Cycle { nodes: comp, keys });
                    }
                }
            }
        }
        out.sort_by_key(|c| c.keys[0]);
        out
    }

    /// A shortest cycle through the key node `from` inside its component: its keys, `from`,
    /// …, `from`.
    pub(crate) fn cycle_path(&self, from: u32, cycle: &Cycle) -> Vec<u32> {
        let first_key = self.targets.len() as u32;
        let mut parent: FxHashMap<u32, u32> = FxHashMap::default();
        let mut queue = std::collections::VecDeque::from([from]);
        while let Some(cur) = queue.pop_front() {
            for &next in self.edges[cur as usize].iter() {
                if next == from {
                    let mut back = vec![from];
                    let mut at = cur;
                    while at != from {
                        if at >= first_key {
                            back.push(at);
                        }
                        at = parent[&at];
                    }
                    back.push(from);
                    back.reverse();
                    return back;
                }
                if cycle.nodes.binary_search(&next).is_ok() && !parent.contains_key(&next) {
                    parent.insert(next, cur);
                    queue.push_back(next);
                }
            }
        }
        vec![from, from]
    }
}
