//! `high-risk-scope-unneeded`'s question for a wildcard — does it grant a high-risk catalog
//! scope the task does not need? — answered with ranges of the sorted high-risk scopes, not a
//! scan of the catalog under the wildcard for every task.
//!
//! What a scope grants is at most two ranges of any sorted list of scopes: a plain scope
//! itself; a wildcard `p:*` the scope `p` and every scope starting with `p:`; `*` everything
//! ([`Scope::grants`](super::Scope::grants)). So the high-risk scopes a task's needs grant are
//! a few ranges of [`HighRiskIndex`], merged once per task ([`HighCover`]), and an excess
//! wildcard grants an unneeded one exactly when one of its ranges is not inside a merged one:
//! a binary search each.

use std::ops::Range;

use super::scope::GrantSet;

/// The scope catalog's `risk = "high"` scopes, sorted: built once by the parse.
#[derive(Debug, Clone, Default)]
pub(crate) struct HighRiskIndex {
    scopes: Box<[Box<str>]>,
}

/// The positions in a [`HighRiskIndex`] that one task's needs grant, as sorted, disjoint,
/// non-adjacent ranges; built on the first question about the task, reused for the rest.
#[derive(Debug, Default)]
pub(crate) struct HighCover {
    built: bool,
    merged: Vec<Range<usize>>,
}

impl HighCover {
    /// Forget the task: the next question builds the cover again.
    pub(crate) fn clear(&mut self) {
        self.built = false;
        self.merged.clear();
    }
}

impl HighRiskIndex {
    /// The index of `high`, the catalog's high-risk scopes.
    pub(crate) fn new<'a>(high: impl Iterator<Item = &'a str>) -> Self {
        let mut scopes: Vec<Box<str>> = high.map(Box::from).collect();
        scopes.sort_unstable();
        scopes.dedup();
        HighRiskIndex {
            scopes: scopes.into_boxed_slice(),
        }
    }

    /// The positions of the scopes `s` grants, as at most two ranges (possibly empty).
    fn ranges(&self, s: &str) -> [Range<usize>; 2] {
        let all = &self.scopes;
        let point = |x: &str| {
            let i = all.partition_point(|k| &**k < x);
            if all.get(i).is_some_and(|k| &**k == x) {
                i..i + 1
            } else {
                i..i
            }
        };
        if s == "*" {
            return [0..all.len(), 0..0];
        }
        let Some(p) = s.strip_suffix(":*") else {
            return [point(s), 0..0];
        };
        // Every scope starting with `p:`: contiguous in sorted order.
        let under = |k: &str| {
            k.as_bytes().starts_with(p.as_bytes()) && k.as_bytes().get(p.len()) == Some(&b':')
        };
        let start = all.partition_point(|k| k.bytes().lt(p.bytes().chain([b':'])));
        let end = start + all[start..].partition_point(|k| under(k));
        [point(p), start..end]
    }

    /// Whether the wildcard or plain scope `s` grants a high-risk catalog scope that `needs`
    /// (a task's expanded needs, whose cover `cover` keeps) does not grant. Adds the steps
    /// taken to `steps`: one per question, one per need when the cover is built, one per
    /// merged range.
    pub(crate) fn grants_unneeded(
        &self,
        s: &str,
        needs: &GrantSet<'_>,
        cover: &mut HighCover,
        steps: &mut u64,
    ) -> bool {
        *steps += 1;
        let want = self.ranges(s);
        if want.iter().all(Range::is_empty) {
            return false;
        }
        if !cover.built {
            let mut rs: Vec<Range<usize>> = Vec::new();
            for n in needs.iter() {
                *steps += 1;
                rs.extend(self.ranges(n).into_iter().filter(|r| !r.is_empty()));
            }
            rs.sort_unstable_by_key(|r| r.start);
            for r in rs {
                match cover.merged.last_mut() {
                    Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                    _ => cover.merged.push(r),
                }
            }
            *steps += cover.merged.len() as u64;
            cover.built = true;
        }
        want.into_iter().filter(|r| !r.is_empty()).any(|r| {
            let i = cover.merged.partition_point(|m| m.end <= r.start);
            !cover
                .merged
                .get(i)
                .is_some_and(|m| m.start <= r.start && r.end <= m.end)
        })
    }
}
