//! The semaphores of `meta.sema`: each id names one semaphore shared by every vertex of the
//! engine that names it, across swaps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::contract::meta::sema_count;

#[derive(Default)]
pub struct Semaphores(Mutex<HashMap<String, Arc<Semaphore>>>);

impl Semaphores {
    /// A permit of each semaphore of `ids`, taken in sorted order, so that two vertices that
    /// share two semaphores never each hold one and wait for the other.
    pub async fn acquire(&self, ids: &[String]) -> Vec<OwnedSemaphorePermit> {
        let mut ids: Vec<&String> = ids.iter().collect();
        ids.sort();
        ids.dedup();
        let mut permits = Vec::with_capacity(ids.len());
        for id in ids {
            let semaphore = self.get(id);
            // The semaphore is never closed, so acquiring cannot fail.
            if let Ok(permit) = semaphore.acquire_owned().await {
                permits.push(permit);
            }
        }
        permits
    }

    fn get(&self, id: &str) -> Arc<Semaphore> {
        let mut all = self.0.lock().unwrap();
        let count = sema_count(id).unwrap_or(1);
        all.entry(id.to_string()).or_insert_with(|| Arc::new(Semaphore::new(count))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_id_admits_its_count_at_once_and_other_ids_are_apart() {
        let s = Semaphores::default();
        let two = vec!["db:2".to_string()];
        let (a, b) = (s.acquire(&two).await, s.acquire(&two).await);
        assert_eq!((a.len(), b.len()), (1, 1));
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), s.acquire(&two)).await;
        assert!(third.is_err(), "a third holder of db:2 waits");
        // `db` (count 1) is another semaphore than `db:2`.
        assert_eq!(s.acquire(&["db".to_string()]).await.len(), 1);
        drop(a);
        let third = tokio::time::timeout(std::time::Duration::from_millis(500), s.acquire(&two)).await;
        assert!(third.is_ok(), "a released permit admits the next");
    }
}
