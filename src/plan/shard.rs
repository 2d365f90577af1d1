//! Shards: a run split over several machines (`--shard I/N`). Each shard
//! takes its exact share of users, journey counts and arrivals. Pure; imports
//! nothing from the crate.

/// A slice of the work: shard `index` of `count` (`0/1` when not sharded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Parses `I/N` (0-based index).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not I/N, e.g. 0/3"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("shard index `{i}` is not a number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count `{n}` is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index}/{count}: the index must be below the count (0-based)"
            ));
        }
        Ok(Shard { index, count })
    }

    /// This shard's share of `total`: the remainder goes to the lowest indexes,
    /// so the shares add up to `total` exactly.
    pub fn share(&self, total: u64) -> u64 {
        let n = u64::from(self.count);
        total / n + u64::from(u64::from(self.index) < total % n)
    }

    /// The global user index of this shard's `local`-th user.
    pub fn global_user(&self, local: usize) -> usize {
        local * self.count as usize + self.index as usize
    }

    /// This shard's part of exact journey counts: global users are given to
    /// the journeys in order (the first `counts[0]` to the first, ...), and
    /// this shard runs global users `index`, `index + count`, ...; so the
    /// parts of every shard add up to each journey's count exactly, and to
    /// this shard's [`share`](Self::share) of the users.
    pub fn journey_counts(&self, counts: &[u64]) -> Vec<u64> {
        let n = u64::from(self.count);
        let i = u64::from(self.index);
        // Global users below `g` that are this shard's: g = i, i + n, ...
        let mine_below = |g: u64| if g <= i { 0 } else { (g - i).div_ceil(n) };
        let mut start = 0u64;
        counts
            .iter()
            .map(|&c| {
                let part = mine_below(start + c) - mine_below(start);
                start += c;
                part
            })
            .collect()
    }
}
