//! The proxy with a chosen block-event sink, for benches/blocked.sh: the same
//! proxy `hallpass run` serves, with its block events going either to the
//! JSON-lines file (`jsonl`) or to the incident store `[incidents]` names
//! (`store`: SQLite in the state directory, or PostgreSQL), so blocked-request
//! throughput can be compared between the two in one run.
//!
//! Usage: `bench-sink-proxy CONFIG jsonl|store` — prints `listening on ADDR`,
//! serves until stdin closes, then prints the events the sink received.
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proxy::arc_swap::ArcSwap;
use proxy::events::{EventSink, EventSinkError};

/// Block events into the incident store, as `hallpass run` records them.
struct StoreSink {
    recorder: incidents::Recorder,
    written: Arc<AtomicU64>,
}

impl EventSink for StoreSink {
    fn write_batch(&mut self, events: &[policy::event::BlockEvent]) -> Result<(), EventSinkError> {
        self.recorder
            .record(events, &[])
            .map_err(|e| EventSinkError::Store(e.to_string()))?;
        self.written
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let config = PathBuf::from(
        args.next()
            .expect("usage: bench-sink-proxy CONFIG jsonl|store"),
    );
    let sink = args
        .next()
        .expect("usage: bench-sink-proxy CONFIG jsonl|store");
    let snap = proxy::snapshot::load(&config, 1).unwrap_or_else(|e| panic!("{e}"));
    let settings = proxy::Settings::from_config(&snap.config, &snap.config_dir);
    let written = Arc::new(AtomicU64::new(0));
    let store_sink: Option<Box<dyn EventSink>> = match sink.as_str() {
        "jsonl" => None,
        "store" => {
            let mut incident_settings: incidents::Settings = snap
                .config
                .incidents
                .clone()
                .try_into()
                .expect("[incidents]");
            incident_settings.alerts.resolve_paths(&settings.state_dir);
            let location = incident_settings
                .location(&settings.state_dir)
                .expect("store location");
            let rules = incidents::RuleEngine::new(
                incident_settings.rules.clone(),
                incidents::LockedCategories::of(&snap.policy),
            );
            let recorder = incidents::Recorder::new(
                move || incidents::Store::open(&location),
                rules,
                Arc::new(incidents::SystemClock),
                Duration::from_secs(1),
            );
            Some(Box::new(StoreSink {
                recorder,
                written: written.clone(),
            }))
        }
        other => panic!("unknown sink `{other}`: jsonl or store"),
    };
    // As `hallpass run`: one thread when confined to one CPU.
    let runtime = proxy::runtime().expect("runtime");
    runtime.block_on(async move {
        let snapshots = Arc::new(ArcSwap::from_pointee(snap));
        let mut builder = proxy::ProxyBuilder::new(settings, snapshots);
        if let Some(s) = store_sink {
            builder = builder.event_sink(s);
        }
        let server = builder.bind().await.expect("bind");
        println!("listening on {}", server.local_addrs()[0]);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            for _ in std::io::stdin().lock().lines() {}
            let _ = tx.send(());
        });
        server
            .run(async move {
                let _ = rx.await;
            })
            .await
            .expect("serve");
    });
    println!("store events written: {}", written.load(Ordering::Relaxed));
}
