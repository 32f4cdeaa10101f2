//! Criterion benchmarks of the cryptography a round costs: checking n attestations as one
//! aggregate against n single verifications, and the Merkle tree of a batch (build, proof,
//! proof check) at 1k and 100k leaves. `tests/bench.sh` runs them and puts the numbers into
//! docs/benchmarks.md.

use alloy_primitives::{B256, keccak256};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use settleproof_consensus::merkle;
use settleproof_consensus::{BlsPublicKey, BlsSecretKey, BlsSignature};
use std::hint::black_box;
use std::time::Duration;

fn signers(n: usize, message: &[u8]) -> (Vec<BlsPublicKey>, Vec<BlsSignature>) {
    (0..n)
        .map(|i| {
            // A fixed, valid 32-byte seed per signer: from_ikm only fails on short input.
            #[allow(clippy::unwrap_used)]
            let sk = BlsSecretKey::from_ikm(&[(i % 251) as u8 + 1; 32]).unwrap();
            (sk.public_key(), sk.sign(message))
        })
        .unzip()
}

fn bls(c: &mut Criterion) {
    let message = keccak256(b"settleproof batch message").0;
    let mut group = c.benchmark_group("attestations");
    for n in [4usize, 16, 64] {
        let (keys, sigs) = signers(n, &message);
        group.bench_with_input(BenchmarkId::new("aggregate_then_verify", n), &n, |b, _| {
            b.iter(|| {
                let agg = BlsSignature::aggregate(black_box(&sigs)).ok();
                agg.map(|a| a.verify_aggregate(black_box(&keys), &message).is_ok())
            })
        });
        group.bench_with_input(BenchmarkId::new("verify_each", n), &n, |b, _| {
            b.iter(|| keys.iter().zip(&sigs).all(|(k, s)| s.verify(black_box(k), &message).is_ok()))
        });
    }
    group.finish();
}

fn tree(c: &mut Criterion) {
    let mut group = c.benchmark_group("merkle");
    for n in [1_000usize, 100_000] {
        let leaves: Vec<B256> = (0..n as u64).map(|i| keccak256(i.to_be_bytes())).collect();
        group.bench_with_input(BenchmarkId::new("build", n), &n, |b, _| b.iter(|| merkle::root(black_box(&leaves))));
        group.bench_with_input(BenchmarkId::new("proof", n), &n, |b, _| {
            b.iter(|| merkle::proof(black_box(&leaves), n / 3))
        });
        let root = merkle::root(&leaves).unwrap_or_default();
        let proof = merkle::proof(&leaves, n / 3).unwrap_or_default();
        group.bench_with_input(BenchmarkId::new("verify_proof", n), &n, |b, _| {
            b.iter(|| merkle::verify_proof(root, leaves[n / 3], n / 3, n, black_box(&proof)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(20);
    targets = bls, tree
}
criterion_main!(benches);
