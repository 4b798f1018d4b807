//! The chunk cache shared by every package of a mounted view: decompressed
//! 64 KiB chunks, bounded in bytes as a whole, sharded so that FUSE worker
//! threads rarely wait on each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use exos_hpkg::heap::{Chunk, SharedChunkCache};

/// A decompression in progress: `None` until done, then the outcome
/// (errors are not shared: waiters retry themselves).
#[derive(Default)]
struct Loading {
    done: Mutex<Option<Option<Chunk>>>,
    ready: Condvar,
}
use rustc_hash::FxHashMap;

const SHARDS: usize = 16;

/// Byte-bounded cache with CLOCK eviction per shard.
pub struct ChunkCache {
    shards: Vec<Mutex<Shard>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A cache slot: key, chunk, CLOCK "referenced" bit.
type Slot = Option<((u64, u64), Chunk, bool)>;

struct Shard {
    /// Chunks being decompressed right now; others needing one wait.
    loading: FxHashMap<(u64, u64), Arc<Loading>>,
    capacity: usize,
    used: usize,
    map: FxHashMap<(u64, u64), usize>,
    /// Slots in CLOCK order: key, chunk, referenced bit.
    slots: Vec<Slot>,
    hand: usize,
}

impl ChunkCache {
    /// A cache holding at most `bytes` of decompressed data (0 disables it).
    pub fn new(bytes: u64) -> ChunkCache {
        let per_shard = (bytes / SHARDS as u64) as usize;
        ChunkCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        loading: FxHashMap::default(),
                        capacity: per_shard,
                        used: 0,
                        map: FxHashMap::default(),
                        slots: Vec::new(),
                        hand: 0,
                    })
                })
                .collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, owner: u64, index: u64) -> &Mutex<Shard> {
        let h =
            owner.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        &self.shards[(h >> 32) as usize % SHARDS]
    }

    /// (hits, misses, bytes held).
    pub fn stats(&self) -> (u64, u64, u64) {
        let used = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).used as u64)
            .sum();
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
            used,
        )
    }

    /// Drops every chunk of `owner` (its package left the view).
    pub fn forget_owner(&self, owner: u64) {
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
            let Shard {
                map, slots, used, ..
            } = &mut *s;
            map.retain(|key, slot| {
                if key.0 != owner {
                    return true;
                }
                if let Some((_, chunk, _)) = slots[*slot].take() {
                    *used -= chunk.len();
                }
                false
            });
        }
    }
}

/// A load in progress, announced to the waiters of its chunk when dropped.
struct Pending<'a> {
    shard: &'a Mutex<Shard>,
    key: (u64, u64),
    /// The loaded chunk; `None` (failure or panic) makes waiters retry.
    outcome: Option<Chunk>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let l = self
            .shard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .loading
            .remove(&self.key);
        if let Some(l) = l {
            *l.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.outcome.take());
            l.ready.notify_all();
        }
    }
}

impl SharedChunkCache for ChunkCache {
    fn get_or_load(
        &self,
        owner: u64,
        index: u64,
        load: &mut dyn FnMut() -> exos_hpkg::Result<Chunk>,
    ) -> exos_hpkg::Result<Chunk> {
        let key = (owner, index);
        let shard = self.shard(owner, index);
        let waiting = {
            let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = s.map.get(&key).copied() {
                if let Some(entry) = s.slots[i].as_mut() {
                    entry.2 = true;
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(entry.1.clone());
                }
            }
            match s.loading.get(&key) {
                Some(l) => Some(l.clone()),
                None => {
                    s.loading.insert(key, Arc::default());
                    None
                }
            }
        };
        if let Some(l) = waiting {
            let mut done = l.done.lock().unwrap_or_else(|e| e.into_inner());
            while done.is_none() {
                done = l.ready.wait(done).unwrap_or_else(|e| e.into_inner());
            }
            if let Some(Some(c)) = done.as_ref() {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(c.clone());
            }
            drop(done);
            return load();
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Waiters are released when this guard drops: after the load, or
        // while unwinding if the load panics (they then load themselves).
        let mut pending = Pending {
            shard,
            key,
            outcome: None,
        };
        let result = load();
        if let Ok(c) = &result {
            self.insert(owner, index, c.clone());
            pending.outcome = Some(c.clone());
        }
        drop(pending);
        result
    }

    fn contains(&self, owner: u64, index: u64) -> bool {
        self.shard(owner, index)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .contains_key(&(owner, index))
    }

    fn get(&self, owner: u64, index: u64) -> Option<Chunk> {
        let mut s = self
            .shard(owner, index)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let slot = s.map.get(&(owner, index)).copied();
        match slot.and_then(|i| s.slots[i].as_mut()) {
            Some(entry) => {
                entry.2 = true;
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry.1.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn insert(&self, owner: u64, index: u64, chunk: Chunk) {
        let mut guard = self
            .shard(owner, index)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let len = chunk.len();
        if len > s.capacity || s.map.contains_key(&(owner, index)) {
            return;
        }
        // Evict with CLOCK until the chunk fits.
        while s.used + len > s.capacity && !s.slots.is_empty() {
            let hand = s.hand % s.slots.len();
            s.hand = hand + 1;
            match &mut s.slots[hand] {
                Some((_, _, referenced)) if *referenced => *referenced = false,
                Some(_) => {
                    if let Some((key, old, _)) = s.slots[hand].take() {
                        s.used -= old.len();
                        s.map.remove(&key);
                    }
                }
                None => {}
            }
        }
        let free = s.slots.iter().position(Option::is_none);
        let slot = match free {
            Some(i) => i,
            None => {
                s.slots.push(None);
                s.slots.len() - 1
            }
        };
        s.slots[slot] = Some(((owner, index), chunk, false));
        s.map.insert((owner, index), slot);
        s.used += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_loads_of_one_chunk_decompress_once() {
        use std::sync::atomic::AtomicUsize;
        let cache = Arc::new(ChunkCache::new(1 << 20));
        let loads = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, loads) = (cache.clone(), loads.clone());
                std::thread::spawn(move || {
                    cache
                        .get_or_load(7, 3, &mut || {
                            loads.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok(Arc::new(vec![42u8; 100]))
                        })
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap()[0], 42);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // A failed load is not cached; the next caller tries again.
        let err = cache.get_or_load(7, 4, &mut || {
            Err(exos_hpkg::Error::from(exos_hpkg::ErrorKind::Unsupported(
                "x".into(),
            )))
        });
        assert!(err.is_err());
        assert!(cache
            .get_or_load(7, 4, &mut || Ok(Arc::new(vec![1])))
            .is_ok());
    }

    #[test]
    fn a_panicking_load_releases_its_waiters() {
        let cache = Arc::new(ChunkCache::new(1 << 20));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let c = cache.clone();
        let loader = std::thread::spawn(move || {
            c.get_or_load(1, 1, &mut || {
                started_tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(100));
                panic!("loader failed");
            })
        });
        started_rx.recv().unwrap();
        // This caller waits for the panicking load, then loads itself.
        let waiter = {
            let c = cache.clone();
            std::thread::spawn(move || c.get_or_load(1, 1, &mut || Ok(Arc::new(vec![9]))))
        };
        assert!(loader.join().is_err());
        assert_eq!(waiter.join().unwrap().unwrap()[0], 9);
    }

    #[test]
    fn stays_within_its_byte_budget() {
        let cache = ChunkCache::new(16 * 4 * 1000);
        for owner in 0..3 {
            for i in 0..500 {
                cache.insert(owner, i, Arc::new(vec![0u8; 1000]));
                let (_, _, used) = cache.stats();
                assert!(used <= 64_000, "{used}");
            }
        }
        // Recently inserted chunks are found again.
        assert!(cache.get(2, 499).is_some());
        cache.forget_owner(2);
        assert!(cache.get(2, 499).is_none());
        let disabled = ChunkCache::new(0);
        disabled.insert(1, 1, Arc::new(vec![1]));
        assert!(disabled.get(1, 1).is_none());
    }
}
