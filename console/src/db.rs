//! The incident store as the console uses it: one connection, driven from
//! `spawn_blocking` (the store's API is blocking), reopened after a failure.
//!
//! Events are read in pages ([`Db::scan_events`]), so a report over a busy
//! term aggregates in constant memory instead of loading every row.
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use incidents::{EventFilter, Store, StoreLocation};
use policy::event::BlockEvent;

/// Events read per page when scanning.
const PAGE: usize = 5_000;

/// A shared, lazily opened store connection.
#[derive(Clone)]
pub struct Db {
    location: Arc<StoreLocation>,
    conn: Arc<Mutex<Option<Store>>>,
}

impl Db {
    /// A store at `location`, opened on first use.
    pub fn new(location: StoreLocation) -> Db {
        Db {
            location: Arc::new(location),
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `f` on the store off the async workers. A store failure drops the
    /// connection so the next call reopens it.
    pub async fn run<T, F>(&self, f: F) -> Result<T, incidents::Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, incidents::Error> + Send + 'static,
    {
        let location = self.location.clone();
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            let store = match guard.as_mut() {
                Some(store) => store,
                None => guard.insert(Store::open(&location)?),
            };
            let out = f(store);
            if out.as_ref().is_err_and(incidents::Error::is_store_failure) {
                *guard = None;
            }
            out
        })
        .await
        .map_err(|e| incidents::Error::Internal(format!("store task: {e}")))?
    }
}

/// Calls `each` on every event matching `filter` (its `limit` is ignored),
/// oldest first, reading [`PAGE`] at a time. Events sharing the last page's
/// final millisecond are not seen twice: the next page starts at that
/// millisecond and skips the references already seen there.
pub fn scan_events(
    store: &mut Store,
    filter: &EventFilter,
    mut each: impl FnMut(&BlockEvent),
) -> Result<(), incidents::Error> {
    let mut page_filter = filter.clone();
    page_filter.limit = Some(PAGE);
    let mut seen_at_edge: HashSet<String> = HashSet::new();
    loop {
        let limit = page_filter.limit.unwrap_or(PAGE);
        let page = store.events(&page_filter)?;
        for ev in &page {
            if Some(ev.time_ms) == page_filter.since_ms && seen_at_edge.contains(&ev.reference) {
                continue;
            }
            each(ev);
        }
        let Some(edge) = page.last().map(|e| e.time_ms) else {
            return Ok(());
        };
        if page.len() < limit {
            return Ok(());
        }
        if page_filter.since_ms != Some(edge) {
            seen_at_edge.clear();
        }
        seen_at_edge.extend(
            page.iter()
                .filter(|e| e.time_ms == edge)
                .map(|e| e.reference.clone()),
        );
        if seen_at_edge.len() > 16 * PAGE {
            return Err(incidents::Error::Internal(format!(
                "more than {} events in one millisecond at {edge}",
                16 * PAGE
            )));
        }
        page_filter.since_ms = Some(edge);
        page_filter.limit = Some(PAGE + seen_at_edge.len());
    }
}
