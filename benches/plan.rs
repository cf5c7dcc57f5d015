//! Planning time for generated topologies of 3, 100, 1,000 and 10,000 nodes: cascades (every
//! tenth standby), slots, per-node settings; the observed cluster differs in a cluster-wide
//! postmaster setting (a rolling restart of every node) and in the upstream of the cascades (a
//! re-point with slot moves), so every transform has work to do.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pgtopo::config::DesiredRole;
use pgtopo::observe::fixtures::{generated, healthy};
use pgtopo::plan::{build, PlanOptions};

fn scenario(n: usize) -> (pgtopo::config::Desired, pgtopo::observe::ObservedCluster) {
    let d = generated(n);
    let mut before = d.clone();
    for nd in before.nodes.values_mut() {
        nd.settings.remove("max_wal_senders");
        if matches!(&nd.role, DesiredRole::Standby { upstream } if upstream != "n1") {
            nd.role = DesiredRole::Standby {
                upstream: "n1".into(),
            };
        }
    }
    (d, healthy(&before))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    for n in [3usize, 100, 1_000, 10_000] {
        // The scenario is built only when this size is selected (`cargo bench -- 1000`).
        g.bench_function(BenchmarkId::new("nodes", n), |b| {
            let (d, o) = scenario(n);
            b.iter(|| build(&d, &o, &PlanOptions::default()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
