//! The durable engine's commit (fjall, `SyncPolicy::Always`): 32 record writes made durable one
//! by one (a sync each) against the same 32 as one batch (`Engine::apply`, one sync), as the
//! node's committer writes them. The ratio is what group commit saves per write.

#![allow(missing_docs)] // criterion_group! generates undocumented public functions.

use criterion::{Criterion, criterion_group, criterion_main};
use quickv_server::storage::{Change, DurableEngine, Engine, SyncPolicy};

fn commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let engine = DurableEngine::open(dir.path(), SyncPolicy::Always).expect("opens");
    let value = vec![0x5a; 1024];
    let mut round = 0u64;
    let mut keys = move || {
        round += 1;
        (0..32u64).map(move |i| format!("bench:{round}:{i}").into_bytes())
    };
    let mut group = c.benchmark_group("storage/commit_32_writes_1KiB");
    group.sample_size(20);
    group.bench_function("one_sync_each", |b| {
        b.iter(|| {
            for key in keys() {
                engine.put("default", &key, &value).expect("written");
            }
        })
    });
    group.bench_function("one_batch", |b| {
        b.iter(|| {
            let changes: Vec<Change> =
                keys().map(|key| Change::Put { space: "default".into(), key, value: value.clone() }).collect();
            engine.apply(&changes).expect("written");
        })
    });
    group.finish();
}

criterion_group!(benches, commit);
criterion_main!(benches);
