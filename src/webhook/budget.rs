//! How many bytes of request bodies the webhook holds at once. A review reserves its declared
//! length before reading its body (or reserves as it reads, without one); past the budget it
//! waits briefly, then is refused with 429, so a burst of large reviews slows down instead of
//! taking the process over its memory limit.

use std::{path::Path, sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Without a memory limit to size it from.
pub const DEFAULT_BUDGET: u64 = 64 * 1024 * 1024;
/// How long a review waits for room before it is refused.
pub const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// Bytes of request bodies that may be held at once.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
    wait: Duration,
}

/// Bytes reserved for one body, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: BodyBudget,
    permit: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    pub fn new(bytes: u64) -> Self {
        let total = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
            wait: BUDGET_WAIT,
        }
    }

    /// How long a review waits for room before it is refused.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Nothing reserved yet.
    pub fn empty(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            permit: None,
        }
    }

    /// Reserves `bytes`, waiting up to the budget's wait for room; `None` if none came. A body
    /// larger than the whole budget reserves all of it, so it is served, alone.
    pub async fn reserve(&self, bytes: usize) -> Option<Reservation> {
        let mut reservation = self.empty();
        let wanted = self.permits(bytes)?;
        if wanted == 0 {
            return Some(reservation);
        }
        let acquire = self.bytes.clone().acquire_many_owned(wanted);
        let permit = tokio::time::timeout(self.wait, acquire).await.ok()?.ok()?;
        reservation.permit = Some(permit);
        Some(reservation)
    }

    fn permits(&self, bytes: usize) -> Option<u32> {
        u32::try_from(bytes.min(self.total)).ok()
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Grows the reservation to `bytes` if there is room now: a body without a declared length
    /// does not wait while holding part of the budget, which could starve every other body.
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        let bytes = bytes.min(self.budget.total);
        let more = bytes.saturating_sub(self.bytes());
        if more == 0 {
            return true;
        }
        let Some(more) = self.budget.permits(more) else {
            return false;
        };
        let Ok(added) = self.budget.bytes.clone().try_acquire_many_owned(more) else {
            return false;
        };
        match &mut self.permit {
            Some(permit) => permit.merge(added),
            None => self.permit = Some(added),
        }
        true
    }
}

/// The budget for a container with `limit` bytes of memory: a quarter of it, since a review
/// costs about twice its body and the process needs the rest; [`DEFAULT_BUDGET`] without one.
pub fn from_memory_limit(limit: Option<u64>) -> u64 {
    limit.map_or(DEFAULT_BUDGET, |limit| (limit / 4).max(1))
}

/// The memory limit of the container this process runs in, from cgroup v2 or v1; `None`
/// without one (or outside a container).
pub fn container_memory_limit() -> Option<u64> {
    memory_limit_in(Path::new("/sys/fs/cgroup"))
}

/// The memory limit under the cgroup file system mounted at `root`.
pub fn memory_limit_in(root: &Path) -> Option<u64> {
    // cgroup v2: "max", or a number. cgroup v1: a number, near i64::MAX when unlimited.
    let v2 = std::fs::read_to_string(root.join("memory.max"));
    let v1 = || std::fs::read_to_string(root.join("memory/memory.limit_in_bytes"));
    let text = v2.or_else(|_| v1()).ok()?;
    let limit: u64 = text.trim().parse().ok()?;
    (limit < 1 << 60).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_limit_of_cgroup_v2_and_v1() {
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("memory.max"), "67108864\n").unwrap();
        assert_eq!(memory_limit_in(v2.path()), Some(64 << 20));
        std::fs::write(v2.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(memory_limit_in(v2.path()), None);

        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir(v1.path().join("memory")).unwrap();
        let file = v1.path().join("memory/memory.limit_in_bytes");
        std::fs::write(&file, "134217728\n").unwrap();
        assert_eq!(memory_limit_in(v1.path()), Some(128 << 20));
        std::fs::write(&file, "9223372036854771712\n").unwrap();
        assert_eq!(memory_limit_in(v1.path()), None);

        assert_eq!(from_memory_limit(Some(64 << 20)), 16 << 20);
        assert_eq!(from_memory_limit(None), DEFAULT_BUDGET);
    }

    #[tokio::test]
    async fn a_reservation_waits_for_room_then_gives_up() {
        let budget = BodyBudget::new(100).with_wait(Duration::from_millis(50));
        let held = budget.reserve(80).await.unwrap();
        assert_eq!(held.bytes(), 80);
        assert!(budget.reserve(30).await.is_none(), "over the budget");
        let mut growing = budget.empty();
        assert!(growing.grow_to(20));
        assert!(!growing.grow_to(21), "no waiting while holding a part");
        drop(held);
        assert!(growing.grow_to(60));
        assert_eq!(budget.reserve(500).await.map(|r| r.bytes()), None);
        drop(growing);
        assert_eq!(budget.reserve(500).await.map(|r| r.bytes()), Some(100));
    }
}
