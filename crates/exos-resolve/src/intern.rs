//! Interning: strings, and values parsed from strings, stored once and
//! named by a `u32`. Sharded by hash so that several threads can intern at
//! once while an index loads ([`Shared`]), and read without any lock
//! afterwards.

use std::hash::BuildHasher;
use std::sync::Mutex;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

fn hash(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

/// The id of entry `index` of shard `shard`.
fn id(shard: usize, index: usize) -> u32 {
    ((index as u32) << SHARD_BITS) | shard as u32
}

fn split(id: u32) -> (usize, usize) {
    ((id as usize) & (SHARDS - 1), (id >> SHARD_BITS) as usize)
}

/// Which shard a string goes to: middle bits of its hash, because the
/// table inside a shard uses the low bits (the bucket) and the top seven
/// (the tag it matches on); sharding by either made lookups compare
/// strings far more often.
fn shard_of(hash: u64) -> usize {
    ((hash >> 40) as usize) & (SHARDS - 1)
}

/// A string's place in a shard's text, kept in the hash table too so that
/// a lookup reads the table and the text, nothing in between.
#[derive(Clone, Copy)]
struct Entry {
    index: u32,
    start: u32,
    len: u32,
}

/// One shard: strings back to back, found by hash.
#[derive(Default)]
struct Strings {
    text: String,
    /// Where each string starts in `text`, and the end of the last one.
    starts: Vec<u32>,
    table: HashTable<Entry>,
}

impl Strings {
    fn get(&self, i: usize) -> &str {
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.text.len(), |&e| e as usize);
        &self.text[self.starts[i] as usize..end]
    }

    fn find(&self, hash: u64, s: &str) -> Option<usize> {
        self.table
            .find(hash, |e| {
                e.len as usize == s.len()
                    && &self.text[e.start as usize..(e.start + e.len) as usize] == s
            })
            .map(|e| e.index as usize)
    }

    /// The index of `s`, and whether it is new.
    fn intern(&mut self, hash: u64, s: &str) -> (usize, bool) {
        if let Some(i) = self.find(hash, s) {
            return (i, false);
        }
        let i = self.starts.len();
        let entry = Entry {
            index: i as u32,
            start: self.text.len() as u32,
            len: s.len() as u32,
        };
        self.starts.push(entry.start);
        self.text.push_str(s);
        let text = &self.text;
        self.table.insert_unique(hash, entry, |e| {
            self::hash(&text[e.start as usize..(e.start + e.len) as usize])
        });
        (i, true)
    }

    fn reserve(&mut self, strings: usize, bytes: usize) {
        self.text.reserve(bytes);
        self.starts.reserve(strings);
        let text = &self.text;
        self.table.reserve(strings, |e| {
            self::hash(&text[e.start as usize..(e.start + e.len) as usize])
        });
    }

    fn bytes(&self) -> usize {
        self.text.len() + self.starts.len() * 4 + self.table.len() * 13
    }
}

/// Strings interned into shards; ids are dense enough to index arrays by
/// (below [`Interner::id_bound`]).
pub(crate) struct Interner {
    shards: Vec<Strings>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            shards: (0..SHARDS).map(|_| Strings::default()).collect(),
        }
    }
}

impl Interner {
    pub(crate) fn get(&self, id: u32) -> &str {
        let (shard, index) = split(id);
        self.shards[shard].get(index)
    }

    pub(crate) fn find(&self, s: &str) -> Option<u32> {
        let h = hash(s);
        let shard = shard_of(h);
        self.shards[shard].find(h, s).map(|i| id(shard, i))
    }

    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        let h = hash(s);
        let shard = shard_of(h);
        id(shard, self.shards[shard].intern(h, s).0)
    }

    /// One more than the largest id.
    pub(crate) fn id_bound(&self) -> usize {
        let longest = self
            .shards
            .iter()
            .map(|s| s.starts.len())
            .max()
            .unwrap_or(0);
        longest << SHARD_BITS
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.starts.len()).sum()
    }

    pub(crate) fn reserve(&mut self, strings: usize, bytes: usize) {
        for s in &mut self.shards {
            s.reserve(strings / SHARDS, bytes / SHARDS);
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.shards.iter().map(Strings::bytes).sum()
    }

    /// Lends the shards to several threads (see [`Shared`]).
    pub(crate) fn share(&mut self) -> Shared<'_> {
        Shared {
            shards: self.shards.iter_mut().map(Mutex::new).collect(),
        }
    }
}

/// An [`Interner`] several threads intern into at once; each shard has its
/// own lock, so they rarely wait for each other.
pub(crate) struct Shared<'a> {
    shards: Vec<Mutex<&'a mut Strings>>,
}

impl Shared<'_> {
    pub(crate) fn intern(&self, s: &str) -> u32 {
        let h = hash(s);
        let shard = shard_of(h);
        let mut strings = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        id(shard, strings.intern(h, s).0)
    }
}

/// Values parsed from text, each stored once. Every spelling met maps to
/// an id, and spellings of equal values (`1.A`, `1.a`) to the same id,
/// through the value's canonical text.
pub(crate) struct Parsed<T> {
    /// Canonical texts; a value's id is its canonical text's id.
    canonical: Interner,
    /// Per shard of `canonical`, the values in id order.
    values: Vec<Vec<T>>,
    /// Other spellings (as written in indexes) and the id they stand for.
    spellings: Interner,
    spelling_ids: Vec<Vec<u32>>,
}

impl<T> Default for Parsed<T> {
    fn default() -> Self {
        Parsed {
            canonical: Interner::default(),
            values: (0..SHARDS).map(|_| Vec::new()).collect(),
            spellings: Interner::default(),
            spelling_ids: (0..SHARDS).map(|_| Vec::new()).collect(),
        }
    }
}

impl<T: ToString> Parsed<T> {
    pub(crate) fn get(&self, id: u32) -> &T {
        let (shard, index) = split(id);
        &self.values[shard][index]
    }

    pub(crate) fn find(&self, value: &T) -> Option<u32> {
        self.canonical.find(&value.to_string())
    }

    pub(crate) fn intern(&mut self, value: T) -> u32 {
        let text = value.to_string();
        let h = hash(&text);
        let shard = shard_of(h);
        let (index, new) = self.canonical.shards[shard].intern(h, &text);
        if new {
            self.values[shard].push(value);
        }
        id(shard, index)
    }

    pub(crate) fn len(&self) -> usize {
        self.values.iter().map(Vec::len).sum()
    }

    pub(crate) fn bytes(&self, value_bytes: impl Fn(&T) -> usize) -> usize {
        self.canonical.bytes()
            + self.spellings.bytes()
            + self.spelling_ids.iter().map(|v| v.len() * 4).sum::<usize>()
            + self.values.iter().flatten().map(value_bytes).sum::<usize>()
    }

    /// Lends the tables to several threads (see [`SharedParsed`]).
    pub(crate) fn share(&mut self) -> SharedParsed<'_, T> {
        SharedParsed {
            canonical: self
                .canonical
                .shards
                .iter_mut()
                .zip(self.values.iter_mut())
                .map(Mutex::new)
                .collect(),
            spellings: self
                .spellings
                .shards
                .iter_mut()
                .zip(self.spelling_ids.iter_mut())
                .map(Mutex::new)
                .collect(),
        }
    }
}

type CanonicalShard<'a, T> = (&'a mut Strings, &'a mut Vec<T>);
type SpellingShard<'a> = (&'a mut Strings, &'a mut Vec<u32>);

/// A [`Parsed`] several threads intern into at once.
pub(crate) struct SharedParsed<'a, T> {
    canonical: Vec<Mutex<CanonicalShard<'a, T>>>,
    spellings: Vec<Mutex<SpellingShard<'a>>>,
}

impl<T: ToString> SharedParsed<'_, T> {
    /// The id of the value spelt `text`, parsing it the first time.
    pub(crate) fn intern_text(
        &self,
        text: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<u32, String> {
        let h = hash(text);
        let shard = shard_of(h);
        {
            let spellings = self.spellings[shard]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(i) = spellings.0.find(h, text) {
                return Ok(spellings.1[i]);
            }
        }
        let value = parse(text)?;
        let canonical = value.to_string();
        let ch = hash(&canonical);
        let cshard = shard_of(ch);
        let vid = {
            let mut c = self.canonical[cshard]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let (index, new) = c.0.intern(ch, &canonical);
            if new {
                c.1.push(value);
            }
            id(cshard, index)
        };
        let mut spellings = self.spellings[shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if spellings.0.intern(h, text).1 {
            spellings.1.push(vid);
        }
        Ok(vid)
    }
}
