//! The catalog's `implies` as a graph over catalog keys, answered by reachability.
//!
//! Nothing is precomputed per key: a transitive closure per key costs the square of a chain's
//! length in time and memory (a 6,000-scope chain took 9 s and 400 MB). Instead, expanding a
//! set of scopes walks the graph once from the catalog keys they grant, with one visited set
//! for the walk (the memo: each key is expanded at most once per walk however many paths reach
//! it), so one expansion costs O(keys reached + their edges). Cycles are found once, at parse
//! time, as the strongly connected components of the graph (Tarjan, iterative).
//!
//! Worst case, and the bound on it: a policy can make many credentials and tasks each reach a
//! long chain, which is (credentials + tasks) × chain length in total. The parser therefore
//! counts the scopes every credential's and task's expansion produces, and refuses a policy
//! whose total exceeds [`MAX_EXPANSION`] with an error at the credential or task where the
//! budget ran out; the graph's edges (a wildcard `implies` has one edge per key it grants) are
//! bounded the same way by [`MAX_EDGES`].

use std::ops::Range;

use rustc_hash::{FxHashMap, FxHashSet};

use super::scope::Scope;
use super::CatalogEntry;

/// Most scopes the expansions of all credentials and tasks of one policy may produce together.
pub const MAX_EXPANSION: usize = 20_000_000;

/// Most edges the catalog's `implies` graph may have (a wildcard counts one per key it grants).
pub const MAX_EDGES: usize = 20_000_000;

/// The `implies` graph: node `i` is the `i`-th catalog key in name order.
#[derive(Debug, Clone, Default)]
pub(crate) struct ImpliesGraph {
    /// Catalog key → node.
    index: FxHashMap<Box<str>, u32>,
    /// Per node: the scopes its entry implies, as written.
    implies: Vec<Box<[Scope]>>,
    /// Per node: the nodes (catalog keys) granted by what it implies.
    edges: Vec<Box<[u32]>>,
    /// Whether any entry implies anything (else expansion is the identity).
    any: bool,
}

/// Why the graph could not be built: too many edges, at the `implies` entry (span) that went
/// over.
pub(crate) struct TooManyEdges(pub(crate) Range<usize>);

impl ImpliesGraph {
    /// Build the graph. `granted_by(s)` lists the catalog keys a scope grants (itself, or the
    /// keys under a wildcard).
    pub(crate) fn build<'c>(
        catalog: impl Iterator<Item = (&'c String, &'c CatalogEntry)> + Clone,
        granted_by: impl Fn(&'c Scope) -> Vec<&'c String>,
    ) -> Result<ImpliesGraph, TooManyEdges> {
        let mut g = ImpliesGraph::default();
        for (i, (k, _)) in catalog.clone().enumerate() {
            g.index.insert(k.as_str().into(), i as u32);
        }
        let mut total = 0usize;
        for (_, e) in catalog {
            let mut out: Vec<u32> = Vec::new();
            for s in &e.implies {
                for k in granted_by(&s.value) {
                    out.push(g.index[k.as_str()]);
                }
                total += out.len();
                if total > MAX_EDGES {
                    return Err(TooManyEdges(s.span.clone()));
                }
            }
            out.sort_unstable();
            out.dedup();
            g.edges.push(out.into_boxed_slice());
            g.any |= !e.implies.is_empty();
            g.implies
                .push(e.implies.iter().map(|s| s.value.clone()).collect());
        }
        Ok(g)
    }

    /// Whether any catalog entry implies anything.
    pub(crate) fn is_trivial(&self) -> bool {
        !self.any
    }

    /// The node of a catalog key.
    pub(crate) fn node(&self, key: &str) -> Option<u32> {
        self.index.get(key).copied()
    }

    /// Every scope implied, transitively, by the nodes in `start`: each reached node's
    /// `implies`, each node visited once.
    pub(crate) fn walk<'g>(
        &'g self,
        start: impl IntoIterator<Item = u32>,
        mut f: impl FnMut(&'g Scope),
    ) {
        let mut seen: FxHashSet<u32> = FxHashSet::default();
        let mut stack: Vec<u32> = Vec::new();
        for n in start {
            if seen.insert(n) {
                stack.push(n);
            }
        }
        while let Some(n) = stack.pop() {
            let n = n as usize;
            self.implies[n].iter().for_each(&mut f);
            for &m in self.edges[n].iter() {
                if seen.insert(m) {
                    stack.push(m);
                }
            }
        }
    }

    /// The strongly connected components that are cycles (more than one node, or a node with
    /// an edge to itself), each as its nodes; found by an iterative Tarjan in O(nodes + edges).
    pub(crate) fn cycles(&self) -> Vec<Vec<u32>> {
        let n = self.edges.len();
        const UNSEEN: u32 = u32::MAX;
        let mut index = vec![UNSEEN; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<u32> = Vec::new();
        let mut next = 0u32;
        let mut out = Vec::new();
        // (node, position in its edge list)
        let mut call: Vec<(u32, usize)> = Vec::new();
        for root in 0..n as u32 {
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
                    if comp.len() > 1 || self.edges[vi].contains(&v) {
                        comp.sort_unstable();
                        out.push(comp);
                    }
                }
            }
        }
        out
    }

    /// A shortest cycle through `from` inside its component `comp` (sorted): `from`, …, `from`.
    pub(crate) fn cycle_path(&self, from: u32, comp: &[u32]) -> Vec<u32> {
        let mut parent: FxHashMap<u32, u32> = FxHashMap::default();
        let mut queue = std::collections::VecDeque::from([from]);
        while let Some(cur) = queue.pop_front() {
            for &next in self.edges[cur as usize].iter() {
                if next == from {
                    let mut back = vec![from];
                    let mut at = cur;
                    while at != from {
                        back.push(at);
                        at = parent[&at];
                    }
                    back.push(from);
                    back.reverse();
                    return back;
                }
                if comp.binary_search(&next).is_ok() && !parent.contains_key(&next) {
                    parent.insert(next, cur);
                    queue.push_back(next);
                }
            }
        }
        vec![from, from]
    }
}
