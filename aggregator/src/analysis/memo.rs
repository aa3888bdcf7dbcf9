//! Pod judgements at mesh scale (DESIGN section 5, "verification is decomposed and cached"): a
//! bundle change or the passing of time re-judges every pod, and must not repeat per pod what
//! is the same for thousands of them.
//!
//! ```text
//!  report ──► Judge::basis ──► PodBasis (per pod, kept with it until its next report)
//!               own verdicts (spec, probe, name) · leaf dates · chain class · anchors class
//!                                    │
//!  bundle/issuer/time ──► Judge::judge(pod, basis) ──► PodAnalysis
//!               memo[(chain class, anchors class, bundle version)] ──► dates-ignored part,
//!                   built once per trust generation from the first pod of its classes
//!               + leaf and CA dates at `now` + node staleness
//! ```
//! A *chain class* is an interned [`ChainShape`]: all that verification reads of the leaf, so every
//! pod of a class gets the same path, error, signers and evidence. An *anchors class* is what the
//! pod holds (its env PEM's fingerprints, or the ConfigMap it reads), with, for ConfigMap pods,
//! the bundle version it started with. The memo is dropped whenever the trust configuration's
//! generation changes. Chains whose leaf a bundle or spec anchor may have issued (or be) are
//! judged per pod, as [`pod_verdicts`](super::pod_verdicts) does.

use super::{
    ChainPart, PodAnalysis, Verdict, assemble, chain_part, judged_chain, next_change, own_verdicts,
    stale_trust_bundle,
};
use crate::model::{PodRecord, SpecAnchorsEvidence};
use crate::trust::Trust;
use crate::verify::{ChainShape, Fingerprint, ParsedCert, Verifier};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Weak};

/// Judges pods from their [`PodBasis`] and a memo of what pods of the same classes share.
/// Always used with the same [`Verifier`] (the memo holds its verdicts).
#[derive(Default)]
pub struct Judge {
    /// Chain classes by shape; written by `basis`, pruned when it doubles.
    chains: Interner<ChainShape>,
    /// Anchors classes; same.
    anchors: Interner<AnchorsKey>,
    /// The dates-ignored parts of judgements, for `generation`.
    memo: HashMap<MemoKey, Shared>,
    /// The trust generation `memo` was built under.
    generation: u64,
    /// The last class id handed out (0 = none).
    last_id: u64,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("chain_classes", &self.chains.map.len())
            .field("anchors_classes", &self.anchors.map.len())
            .field("memo", &self.memo.len())
            .finish()
    }
}

/// What a pod's own evidence fixes of its judgement, computed once per report.
#[derive(Clone, Debug)]
pub struct PodBasis {
    /// Verdicts about its spec anchors, probe and leaf name.
    own: Box<[Verdict]>,
    /// Its leaf, when the chain is judged against the bundle.
    leaf: Option<LeafBasis>,
    /// What anchors it holds.
    anchors: Arc<ClassId>,
}

#[derive(Clone, Debug)]
struct LeafBasis {
    /// `None`: the chain is judged per pod.
    class: Option<Arc<ClassId>>,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

/// An interned class; ids are never reused, so the memo cannot mistake a new class for a
/// dropped one.
#[derive(Debug)]
struct ClassId(u64);

/// What a pod holds as anchors, as far as its judgement reads it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum AnchorsKey {
    /// Env PEM: its certificates.
    Pem(Box<[Fingerprint]>),
    /// `configMapKeyRef`: the ConfigMap named.
    ConfigMap { name: String, key: String },
    /// Unknown.
    Missing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct MemoKey {
    /// Chain class, 0 when the chain is judged per pod or not at all.
    chain: u64,
    anchors: u64,
    /// For ConfigMap pods, the bundle version they started with.
    version: Option<usize>,
}

/// What every pod of one memo key shares.
struct Shared {
    /// `None`: judged per pod.
    chain: Option<ChainPart>,
    stale_trust_bundle: Option<Verdict>,
}

/// Weakly held classes: what no pod holds any more is dropped at the next prune.
struct Interner<K> {
    map: HashMap<K, Weak<ClassId>>,
    pruned_at: usize,
}

impl<K> Default for Interner<K> {
    fn default() -> Self {
        Interner {
            map: HashMap::new(),
            pruned_at: 0,
        }
    }
}

impl<K: Hash + Eq> Interner<K> {
    fn intern(&mut self, key: K, last_id: &mut u64) -> Arc<ClassId> {
        if let Some(id) = self.map.get(&key).and_then(Weak::upgrade) {
            return id;
        }
        *last_id += 1;
        let id = Arc::new(ClassId(*last_id));
        self.map.insert(key, Arc::downgrade(&id));
        if self.map.len() > 2 * self.pruned_at.max(256) {
            self.map.retain(|_, w| w.strong_count() > 0);
            self.pruned_at = self.map.len();
        }
        id
    }
}

impl Judge {
    /// An empty memo.
    pub fn new() -> Self {
        Judge::default()
    }

    /// The part of `pod`'s judgement its evidence fixes: keep it with the record. Computes the
    /// leaf's signature facts against the presented CAs that name its issuer.
    pub fn basis(&mut self, pod: &PodRecord, verifier: &mut Verifier) -> PodBasis {
        let leaf = judged_chain(pod).map(|certs| LeafBasis {
            class: verifier
                .chain_shape(certs)
                .map(|shape| self.chains.intern(shape, &mut self.last_id)),
            not_before: certs[0].not_before,
            not_after: certs[0].not_after,
        });
        let key = match &pod.spec_anchors {
            SpecAnchorsEvidence::Pem(b) => {
                AnchorsKey::Pem(b.certs.iter().map(|c| c.fingerprint).collect())
            }
            SpecAnchorsEvidence::ConfigMap { name, key } => AnchorsKey::ConfigMap {
                name: name.clone(),
                key: key.clone(),
            },
            SpecAnchorsEvidence::Missing(_) => AnchorsKey::Missing,
        };
        PodBasis {
            own: own_verdicts(pod).into(),
            leaf,
            anchors: self.anchors.intern(key, &mut self.last_id),
        }
    }

    /// Judges `pod`, whose basis is `basis`, exactly as [`pod_verdicts`](super::pod_verdicts)
    /// does. The model uses [`judge_until`](Self::judge_until); the tests compare judgements.
    #[cfg(test)]
    pub fn judge(
        &mut self,
        pod: &PodRecord,
        basis: &PodBasis,
        trust: &Trust,
        verifier: &mut Verifier,
        node_stale: Option<&Arc<str>>,
        now: DateTime<Utc>,
    ) -> PodAnalysis {
        self.judge_until(pod, basis, trust, verifier, node_stale, now)
            .0
    }

    /// Judges `pod`, whose basis is `basis`, exactly as [`pod_verdicts`](super::pod_verdicts)
    /// does, and gives the first instant at which the passing of time alone may
    /// change the judgement (`None`: it never does). Until then, with the same evidence, trust
    /// and node state, judging again gives the same result.
    pub fn judge_until(
        &mut self,
        pod: &PodRecord,
        basis: &PodBasis,
        trust: &Trust,
        verifier: &mut Verifier,
        node_stale: Option<&Arc<str>>,
        now: DateTime<Utc>,
    ) -> (PodAnalysis, Option<DateTime<Utc>>) {
        if self.generation != trust.generation() {
            self.memo.clear();
            self.generation = trust.generation();
        }
        let class = basis.leaf.as_ref().and_then(|l| l.class.as_ref());
        let key = MemoKey {
            chain: class.map_or(0, |c| c.0),
            anchors: basis.anchors.0,
            version: match pod.spec_anchors {
                SpecAnchorsEvidence::ConfigMap { .. } => trust.version_at(pod.proxy_started_at),
                _ => None,
            },
        };
        let shared = self.memo.entry(key).or_insert_with(|| Shared {
            chain: class
                .and_then(|_| judged_chain(pod))
                .filter(|certs| !leaf_involved(pod, &certs[0], trust))
                .map(|certs| chain_part(pod, certs, trust, verifier)),
            stale_trust_bundle: stale_trust_bundle(pod, trust, verifier),
        });
        let per_pod;
        let chain = match (&basis.leaf, &shared.chain, judged_chain(pod)) {
            (Some(leaf), Some(part), _) => Some((part, leaf)),
            (Some(leaf), None, Some(certs)) => {
                per_pod = chain_part(pod, certs, trust, verifier);
                Some((&per_pod, leaf))
            }
            _ => None,
        };
        let chain = chain.map(|(part, leaf)| (part, (leaf.not_before, leaf.not_after)));
        let analysis = assemble(
            pod,
            &basis.own,
            chain,
            shared.stale_trust_bundle.as_ref(),
            node_stale,
            now,
        );
        (analysis, next_change(chain, now))
    }
}

/// Whether a bundle anchor or one of the pod's spec anchors may have issued the leaf or be it:
/// then judging the chain reads more of the leaf than its shape.
fn leaf_involved(pod: &PodRecord, leaf: &ParsedCert, trust: &Trust) -> bool {
    let bundle = trust
        .bundle()
        .map(|b| b.certs.as_slice())
        .unwrap_or_default();
    let spec = match &pod.spec_anchors {
        SpecAnchorsEvidence::Pem(b) => b.certs.as_slice(),
        _ => &[],
    };
    bundle
        .iter()
        .chain(spec)
        .any(|c| ChainShape::involves(leaf, c))
}

#[cfg(test)]
mod tests;
