//! Collecting a page: the newest-first windowed scan of a segment with known counts, and
//! the full counting pass of one without.

use super::*;

/// The page of `limit` newest of `top` (unsorted, from every segment).
pub(super) fn page_of(mut top: Vec<(i64, u64)>, total: u64, limit: usize, terms: Vec<String>) -> SearchPage {
    top.sort_unstable_by(|a, b| b.cmp(a));
    let more = top.len() > limit;
    top.truncate(limit);
    let next = if more { top.last().copied() } else { None };
    SearchPage {
        total,
        hits: top,
        next,
        terms,
    }
}

/// The `want` newest `(msgtime, seq)` of one segment's matches that are older than the
/// request's cursor and inside its time bounds: scans the matches backwards in growing
/// windows of doc ids (`open` gives a fresh doc set standing on its first match) until no
/// older block can hold a newer message than the oldest kept (per-block time maxima).
pub(super) fn newest<D: DocSet>(
    max_doc: DocId,
    cols: &SegColumns,
    mut open: impl FnMut() -> Result<Option<D>>,
    req: &SearchRequest,
    want: usize,
) -> Result<Vec<(i64, u64)>> {
    let (times, seqs, maxima) = (&cols.times, &cols.seqs, &cols.maxima);
    let since = req.since.unwrap_or(i64::MIN);
    let until = req.until.unwrap_or(i64::MAX);
    let mut heap: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::with_capacity(want + 1);
    let mut hi = max_doc;
    let mut width = BLOCK;
    while hi > 0 {
        let lo = (hi.saturating_sub(width) / BLOCK) * BLOCK;
        let Some(mut docs) = open()? else { break };
        // a fresh set stands on its first doc; seek only forwards
        let mut doc = if docs.doc() < lo { docs.seek(lo) } else { docs.doc() };
        while doc < hi {
            let t = times.first(doc).unwrap_or(0);
            let full = heap.len() == want;
            if (since..=until).contains(&t) && (!full || heap.peek().is_some_and(|Reverse((mt, _))| t >= *mt)) {
                let sq = seqs.first(doc).unwrap_or(0);
                if req.before.is_none_or(|b| (t, sq) < b) {
                    heap.push(Reverse((t, sq)));
                    if heap.len() > want {
                        heap.pop();
                    }
                }
            }
            doc = docs.advance();
        }
        if lo == 0 {
            break;
        }
        // every doc below `lo` is at most `older_max`: done when that is older than the
        // page's oldest, or than the time bound
        let older_max = maxima[(lo / BLOCK) as usize];
        if older_max < since || (heap.len() == want && heap.peek().is_some_and(|Reverse((mt, _))| older_max < *mt)) {
            break;
        }
        hi = lo;
        width = width.saturating_mul(2);
    }
    Ok(heap.into_iter().map(|Reverse(x)| x).collect())
}

/// What the page search reads of a segment besides postings (see [`ArchiveIndex::columns`]).
pub(super) struct SegColumns {
    pub(super) times: Column<i64>,
    pub(super) seqs: Column<u64>,
    /// `maxima[b]`: the newest msgtime among docs `[0, b·BLOCK)`.
    pub(super) maxima: Vec<i64>,
}

/// One full pass over a segment's matches: counts every match inside the time bounds and
/// keeps the `want` newest older than the cursor.
pub(super) fn collect_all(
    seg: &SegmentReader,
    cols: &SegColumns,
    weight: &dyn tantivy::query::Weight,
    req: &SearchRequest,
    want: usize,
) -> Result<PageFruit> {
    let mut ps = PageSegment {
        msgtime: cols.times.clone(),
        times: Vec::new(),
        seq: cols.seqs.clone(),
        heap: BinaryHeap::with_capacity(want + 1),
        total: 0,
        limit: want,
        before: req.before,
        since: req.since.unwrap_or(i64::MIN),
        until: req.until.unwrap_or(i64::MAX),
    };
    match seg.alive_bitset() {
        None => weight.for_each_no_score(seg, &mut |docs| ps.collect_block(docs))?,
        Some(alive) => weight.for_each_no_score(seg, &mut |docs| {
            for &d in docs {
                if alive.is_alive(d) {
                    ps.collect(d, 0.0);
                }
            }
        })?,
    }
    Ok(ps.harvest())
}

/// One segment's share of a page: the newest matches and the counts.
pub(super) struct PageFruit {
    pub(super) total: u64,
    pub(super) top: Vec<(i64, u64)>,
}

pub(super) struct PageSegment {
    msgtime: Column<i64>,
    times: Vec<Option<i64>>,
    seq: Column<u64>,
    heap: BinaryHeap<Reverse<(i64, u64)>>,
    total: u64,
    limit: usize,
    before: Option<(i64, u64)>,
    since: i64,
    until: i64,
}

impl PageSegment {
    #[inline]
    pub(super) fn offer(&mut self, t: i64, doc: DocId) {
        if self.limit == 0 {
            return;
        }
        if self.heap.len() == self.limit {
            if let Some(Reverse((mt, _))) = self.heap.peek() {
                if t < *mt {
                    return;
                }
            }
        }
        let s = self.seq.first(doc).unwrap_or(0);
        if let Some((bt, bs)) = self.before {
            if (t, s) >= (bt, bs) {
                return;
            }
        }
        self.heap.push(Reverse((t, s)));
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }
}

impl PageSegment {
    #[inline]
    pub(super) fn consider(&mut self, doc: DocId, t: i64) {
        if t < self.since || t > self.until {
            return;
        }
        self.total += 1;
        if self.before.is_some_and(|(bt, _)| t > bt) {
            return; // newer than the cursor (ties are settled by seq in `offer`)
        }
        self.offer(t, doc);
    }
}

impl SegmentCollector for PageSegment {
    type Fruit = PageFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let t = self.msgtime.first(doc).unwrap_or(0);
        self.consider(doc, t);
    }

    /// Reads the block's times in one batched column read.
    fn collect_block(&mut self, docs: &[DocId]) {
        let mut times = std::mem::take(&mut self.times);
        times.clear();
        times.resize(docs.len(), None);
        self.msgtime.first_vals(docs, &mut times);
        for (&doc, t) in docs.iter().zip(&times) {
            self.consider(doc, t.unwrap_or(0));
        }
        self.times = times;
    }

    fn harvest(self) -> PageFruit {
        let mut top: Vec<(i64, u64)> = self.heap.into_iter().map(|Reverse(x)| x).collect();
        top.sort_unstable_by(|a, b| b.cmp(a));
        PageFruit { total: self.total, top }
    }
}
