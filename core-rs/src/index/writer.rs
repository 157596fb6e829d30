//! Opening an index and writing to it: one writer per index across processes, documents
//! added only after their batch is durable in the store, nothing visible before `commit`.

use super::*;

impl ArchiveIndex {
    /// Opens the index in `path`, creating it when the directory holds none; `key` keys
    /// every term (an index made with another key finds nothing).
    pub fn open(path: &Path, key: TokenKey) -> Result<ArchiveIndex> {
        std::fs::create_dir_all(path).map_err(|e| index_err(path, e))?;
        let (schema, fields) = schema();
        let dir = MmapDirectory::open(path).map_err(|e| index_err(path, e))?;
        let another = |e: String| index_err(path, format!("{e} (an index of another layout: run `scrm reindex`)"));
        let index = if Index::exists(&dir).map_err(|e| another(e.to_string()))? {
            let index = Index::open(dir).map_err(|e| another(e.to_string()))?;
            let found = index.schema();
            if found != schema && found != earlier_schema() {
                return Err(another("an index exists but its schema does not match".into()));
            }
            index
        } else {
            Index::create(dir, schema, IndexSettings::default()).map_err(|e| another(e.to_string()))?
        };
        index.tokenizers().register(
            tokenizer::UNIGRAM,
            TextAnalyzer::from(tokenizer::NgramTokenizer::unigrams(key)),
        );
        index.tokenizers().register(
            tokenizer::BIGRAM,
            TextAnalyzer::from(tokenizer::NgramTokenizer::bigrams(key)),
        );
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(|e| index_err(path, e))?;
        let me = ArchiveIndex {
            path: path.to_path_buf(),
            index,
            fields,
            reader,
            writer: Mutex::new(None),
            columns: Mutex::new(Default::default()),
            counts: CountCache::new(path),
            key,
        };
        if let Some(layout) = me.committed()?.map(|c| c.0) {
            if layout != LAYOUT {
                return Err(index_err(
                    path,
                    format!("index layout {layout}, this version reads {LAYOUT}: run `scrm reindex`"),
                ));
            }
        }
        Ok(me)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(layout, max_seq)` recorded by the last commit, if any.
    pub fn committed(&self) -> Result<Option<(u32, u64)>> {
        let metas = self.index.load_metas().map_err(|e| index_err(&self.path, e))?;
        let Some(p) = metas.payload else { return Ok(None) };
        let v: serde_json::Value = serde_json::from_str(&p).map_err(|e| index_err(&self.path, e))?;
        Ok(Some((
            v["layout"].as_u64().unwrap_or(0) as u32,
            v["max_seq"].as_u64().unwrap_or(0),
        )))
    }

    /// Takes the index's writer lock (one writer per index, across processes):
    /// `threads` indexing threads sharing `heap_bytes` of buffers.
    pub fn open_writer(&self, threads: usize, heap_bytes: usize) -> Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if w.is_none() {
            let writer = self
                .index
                .writer_with_num_threads(threads.max(1), heap_bytes.max((threads.max(1) * 16) << 20))
                .map_err(|e| index_err(&self.path, format!("{e} (is another ingest or reindex running?)")))?;
            *w = Some(writer);
        }
        Ok(())
    }

    fn with_writer<T>(&self, f: impl FnOnce(&mut IndexWriter) -> Result<T>) -> Result<T> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match w.as_mut() {
            Some(writer) => f(writer),
            None => Err(index_err(&self.path, "not opened for writing")),
        }
    }

    /// Adds stored records (msgpack values of the `records` table); returns how many.
    /// Parsing runs on all cores; tokenizing on the writer's threads.
    pub fn add_stored<B: AsRef<[u8]> + Sync>(&self, values: &[B]) -> Result<usize> {
        let docs: Vec<TantivyDocument> = values
            .par_iter()
            .map(|v| {
                let r: StoredView = rmp_serde::from_slice(v.as_ref()).map_err(|e| Error::Record(e.to_string()))?;
                Ok(self.document(&r))
            })
            .collect::<Result<_>>()?;
        self.add_documents(docs)
    }

    /// Adds records already in hand (a batch just committed: [`StoredView::of`]), with no
    /// msgpack to read back; returns how many. The documents are made on the calling
    /// thread (about a microsecond each): an ingest's call must not queue behind the RSA
    /// work filling the pool, or its committing thread waits there for a batch's decrypt.
    pub fn add_views(&self, views: &[StoredView<'_>]) -> Result<usize> {
        let docs: Vec<TantivyDocument> = views.iter().map(|r| self.document(r)).collect();
        self.add_documents(docs)
    }

    fn add_documents(&self, docs: Vec<TantivyDocument>) -> Result<usize> {
        let n = docs.len();
        self.with_writer(|w| {
            for d in docs {
                w.add_document(d)?;
            }
            Ok(n)
        })
    }

    /// The index document of a record: its text twice (unigram and bigram fields), its
    /// parties, room and conversation as keyed tokens.
    fn document(&self, r: &StoredView<'_>) -> TantivyDocument {
        let f = self.fields;
        // the text twice, the tokens, the fast values: one buffer, no growing
        let mut doc = TantivyDocument::with_capacity(2 * r.text.len() + 24 * (r.tolist.len() + 4) + 64);
        doc.add_text(f.uni, &r.text);
        doc.add_text(f.bi, &r.text);
        doc.add_u64(f.seq, r.seq);
        doc.add_i64(f.msgtime, r.msgtime);
        let mut token = String::with_capacity(crate::crypto::vault::TOKEN_CHARS);
        let mut keyed = |field, kind, text: &str| {
            token.clear();
            self.key.token_into(kind, text.as_bytes(), &mut token);
            doc.add_text(field, &token);
        };
        keyed(f.party, PARTY, &r.from);
        for t in &r.tolist {
            if t.as_ref() != r.from.as_ref() {
                keyed(f.party, PARTY, t);
            }
        }
        if !r.roomid.is_empty() {
            keyed(f.room, ROOM, &r.roomid);
        }
        keyed(f.conv, CONV, &r.conv);
        doc.add_text(f.msgtype, &r.msgtype);
        doc
    }

    /// Drops every document (before a rebuild); takes effect at the next commit.
    pub fn clear(&self) -> Result<()> {
        self.with_writer(|w| {
            w.delete_all_documents()?;
            Ok(())
        })
    }

    /// Makes everything added so far durable and visible, recording `max_seq`.
    pub fn commit(&self, max_seq: u64) -> Result<()> {
        self.with_writer(|w| {
            let mut prepared = w.prepare_commit()?;
            prepared.set_payload(&serde_json::json!({"layout": LAYOUT, "max_seq": max_seq}).to_string());
            prepared.commit()?;
            Ok(())
        })?;
        self.reload()
    }

    /// Releases the writer, first letting running segment merges finish.
    pub fn close_writer(&self) -> Result<()> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = w {
            w.wait_merging_threads()?;
        }
        self.reload()
    }

    /// Sees the latest commit now (otherwise it is seen within a second).
    pub fn reload(&self) -> Result<()> {
        self.reader.reload().map_err(|e| index_err(&self.path, e))
    }

    /// Documents in the last commit seen.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Segments in the last commit seen.
    pub fn num_segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    /// The seqs of every indexed message, ascending (for reconciling with the store).
    pub fn seqs(&self) -> Result<Vec<u64>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::with_capacity(searcher.num_docs() as usize);
        for seg in searcher.segment_readers() {
            let col = seg.fast_fields().u64("seq")?;
            for d in seg.doc_ids_alive() {
                if let Some(s) = col.first(d) {
                    out.push(s);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}
