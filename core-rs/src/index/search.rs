//! Searching: the query tree as Tantivy queries (keyed terms), the filters, the per-segment
//! passes with shared counts, and the one-term fast path.

use super::*;

impl ArchiveIndex {
    fn substring_query(&self, s: &str) -> Box<dyn Query> {
        let chars: Vec<char> = s.chars().collect();
        let term = |field: Field, cs: &[char]| Term::from_field_text(field, &tokenizer::ngram_token(&self.key, cs));
        match chars.len() {
            0 => Box::new(AllQuery),
            1 => Box::new(TermQuery::new(term(self.fields.uni, &chars), IndexRecordOption::Basic)),
            2 => Box::new(TermQuery::new(term(self.fields.bi, &chars), IndexRecordOption::Basic)),
            n => {
                // bigrams at offsets 0, 2, 4, … plus the last one: they cover every character
                let mut offsets: Vec<usize> = (0..n - 1).step_by(2).collect();
                if offsets.last() != Some(&(n - 2)) {
                    offsets.push(n - 2);
                }
                let terms = offsets
                    .into_iter()
                    .map(|o| (o, term(self.fields.bi, &chars[o..o + 2])))
                    .collect();
                Box::new(PhraseQuery::new_with_offset(terms))
            }
        }
    }

    fn node_query(&self, n: &QueryNode) -> Box<dyn Query> {
        match n {
            QueryNode::All => Box::new(AllQuery),
            QueryNode::Substring(s) => self.substring_query(s),
            QueryNode::And(parts) => {
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = parts
                    .iter()
                    .map(|p| match p {
                        QueryNode::Not(inner) => (Occur::MustNot, self.node_query(inner)),
                        _ => (Occur::Must, self.node_query(p)),
                    })
                    .collect();
                if clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            QueryNode::Or(parts) => Box::new(BooleanQuery::new(
                parts.iter().map(|p| (Occur::Should, self.node_query(p))).collect(),
            )),
            QueryNode::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery)),
                (Occur::MustNot, self.node_query(inner)),
            ])),
        }
    }

    fn filters(&self, req: &SearchRequest) -> Vec<(Occur, Box<dyn Query>)> {
        let f = self.fields;
        let k = self.key;
        let term_q = |field: Field, kind: u8, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, &k.token(kind, v)),
                IndexRecordOption::Basic,
            ))
        };
        let mut out: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for p in &req.parties {
            out.push((Occur::Must, term_q(f.party, PARTY, p)));
        }
        if let Some(r) = &req.room {
            out.push((Occur::Must, term_q(f.room, ROOM, r)));
        }
        if let Some(c) = &req.conv {
            out.push((Occur::Must, term_q(f.conv, CONV, c)));
        }
        if let Some(types) = &req.msgtypes {
            out.push((
                Occur::Must,
                Box::new(TermSetQuery::new(
                    types.iter().map(|t| Term::from_field_text(f.msgtype, t)),
                )),
            ));
        }
        if let Some(scope) = &req.scope {
            let terms = scope
                .parties
                .iter()
                .map(|p| Term::from_field_text(f.party, &k.token(PARTY, p)))
                .chain(
                    scope
                        .rooms
                        .iter()
                        .map(|r| Term::from_field_text(f.room, &k.token(ROOM, r))),
                )
                .chain(
                    scope
                        .convs
                        .iter()
                        .map(|c| Term::from_field_text(f.conv, &k.token(CONV, c))),
                );
            out.push((Occur::Must, Box::new(TermSetQuery::new(terms))));
            if !scope.hidden.is_empty() {
                let hidden = scope
                    .hidden
                    .iter()
                    .map(|c| Term::from_field_text(f.conv, &k.token(CONV, c)));
                out.push((Occur::MustNot, Box::new(TermSetQuery::new(hidden))));
            }
        }
        out
    }

    /// Runs one search against the last commit seen.
    ///
    /// Segments never change once written, so a segment's number of matches for a request
    /// (query, filters, time bounds: everything but cursor and limit) is computed once and
    /// kept; a segment with a known count only needs its newest matches, found by the
    /// backward windowed scan. Paging through results (every page repeats the query) and
    /// repeated searches so cost a small part of the first, exact, full pass.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchPage> {
        let node = parse_query(&req.query)?;
        if let Some(page) = self.single_term_search(&node, req)? {
            return Ok(page);
        }
        let mut clauses = self.filters(req);
        clauses.push((Occur::Must, self.node_query(&node)));
        let q = BooleanQuery::new(clauses);
        let want = req.limit + 1; // one more than a page: is there a next page?
        let searcher = self.reader.searcher();
        let weight = q.weight(EnableScoring::disabled_from_searcher(&searcher))?;
        let key = req.count_key(&self.key);
        let segs: Vec<(&tantivy::SegmentReader, Option<u128>)> = searcher
            .segment_readers()
            .iter()
            .map(|seg| {
                (
                    seg,
                    seg.alive_bitset()
                        .is_none()
                        .then(|| seg_u128(seg.segment_id()))
                        .flatten(),
                )
            })
            .collect();
        // a count this process lacks may have been made by another one: look once
        if segs
            .iter()
            .any(|(_, id)| id.is_some_and(|id| self.counts.get(id, key).is_none()))
        {
            self.counts.refresh();
        }
        let mut total = 0u64;
        let mut top: Vec<(i64, u64)> = Vec::new();
        let mut new = Vec::new();
        for &(seg, id) in &segs {
            let cols = self.columns(seg)?;
            match id.and_then(|id| self.counts.get(id, key)) {
                Some(n) => {
                    total += n;
                    if n > 0 {
                        let open = || -> Result<Option<Box<dyn tantivy::query::Scorer>>> {
                            Ok(Some(weight.scorer(seg, 1.0)?))
                        };
                        top.extend(newest(seg.max_doc(), &cols, open, req, want)?);
                    }
                }
                None => {
                    let fruit = collect_all(seg, &cols, weight.as_ref(), req, want)?;
                    total += fruit.total;
                    top.extend(fruit.top);
                    if let Some(id) = id {
                        new.push((id, key, fruit.total));
                    }
                }
            }
        }
        if !new.is_empty() {
            self.counts.put_all(&new, true);
        }
        Ok(page_of(top, total, req.limit, node.positive_terms()))
    }
}

impl ArchiveIndex {
    /// The fast path of the commonest and heaviest search: one term of one or two
    /// characters with no filter. The total is the term's document frequency (exact: the
    /// index never deletes single documents), and the page is found by scanning the
    /// posting list backwards in growing windows until no older block can hold a newer
    /// message than the page's oldest (per-block time maxima, computed once per segment).
    fn single_term_search(&self, node: &QueryNode, req: &SearchRequest) -> Result<Option<SearchPage>> {
        let QueryNode::Substring(s) = node else { return Ok(None) };
        let n = s.chars().count();
        let unfiltered = req.parties.is_empty()
            && req.room.is_none()
            && req.conv.is_none()
            && req.msgtypes.is_none()
            && req.since.is_none()
            && req.until.is_none()
            && req.scope.is_none();
        if !(1..=2).contains(&n) || !unfiltered {
            return Ok(None);
        }
        let field = if n == 1 { self.fields.uni } else { self.fields.bi };
        let term = Term::from_field_text(
            field,
            &tokenizer::ngram_token(&self.key, &s.chars().collect::<Vec<_>>()),
        );
        let searcher = self.reader.searcher();
        if searcher
            .segment_readers()
            .iter()
            .any(|seg| seg.alive_bitset().is_some())
        {
            return Ok(None);
        }
        let want = req.limit + 1; // one more than a page: is there a next page?
        let mut total = 0u64;
        let mut top: Vec<(i64, u64)> = Vec::new();
        for seg in searcher.segment_readers() {
            let inv = seg.inverted_index(field)?;
            let df = inv.doc_freq(&term).map_err(|e| Error::Index(e.to_string()))?;
            total += u64::from(df);
            if df == 0 || req.limit == 0 {
                continue;
            }
            let cols = self.columns(seg)?;
            let open = || {
                inv.read_postings(&term, IndexRecordOption::Basic)
                    .map_err(|e| Error::Index(e.to_string()))
            };
            top.extend(newest(seg.max_doc(), &cols, open, req, want)?);
        }
        Ok(Some(page_of(top, total, req.limit, node.positive_terms())))
    }

    /// A segment's `msgtime` and `seq` columns and its per-block time maxima, opened once
    /// per segment (opening a column reads its block headers: too slow to do per search).
    fn columns(&self, seg: &SegmentReader) -> Result<Arc<SegColumns>> {
        let id = seg.segment_id();
        if let Some(c) = self.columns.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(c.clone());
        }
        let times = seg.fast_fields().i64("msgtime")?;
        let seqs = seg.fast_fields().u64("seq")?;
        let max_doc = seg.max_doc();
        let mut maxima = vec![i64::MIN];
        let mut running = i64::MIN;
        let mut docs: Vec<DocId> = Vec::with_capacity(BLOCK as usize);
        let mut vals: Vec<Option<i64>> = vec![None; BLOCK as usize];
        let mut start = 0;
        while start < max_doc {
            let end = (start + BLOCK).min(max_doc);
            docs.clear();
            docs.extend(start..end);
            vals.resize(docs.len(), None);
            times.first_vals(&docs, &mut vals);
            running = vals.iter().flatten().fold(running, |m, &t| m.max(t));
            maxima.push(running);
            start = end;
        }
        let c = Arc::new(SegColumns { times, seqs, maxima });
        let mut cache = self.columns.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 256 {
            cache.clear(); // segments come and go with merges
        }
        cache.insert(id, c.clone());
        Ok(c)
    }
}
