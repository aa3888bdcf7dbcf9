//! rustls-webpki 0.103's path building (`src/verify_cert.rs`: `build_chain_inner`,
//! `loop_while_non_fatal_error`, `check_signed_chain`, `check_signed_chain_name_constraints`,
//! `check_issuer_independent_properties`, `Budget`), over parsed certificates and with the
//! signature check (`src/signed_data.rs`) replaced by a cached fact.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls_pki_types::SignatureVerificationAlgorithm;

use super::cert::{self, WebCert};
use super::der::{self, Reader};
use super::name;
use super::{ChainError, DerType, Fingerprint, ParsedCert};

/// webpki's `MAX_SUB_CA_COUNT`: intermediates a path may hold.
const MAX_SUB_CA_COUNT: usize = 6;

/// webpki's per-verification work limits (`Budget::default`). They are consumed by the logical
/// check, whether or not its result comes from the cache, so limits trip exactly where they do
/// in the proxy.
pub(super) struct Budget {
    signatures: usize,
    build_chain_calls: usize,
    name_constraint_comparisons: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            signatures: 100,
            build_chain_calls: 200_000,
            name_constraint_comparisons: 250_000,
        }
    }
}

impl Budget {
    fn consume_signature(&mut self) -> Result<(), ChainError> {
        self.signatures = self
            .signatures
            .checked_sub(1)
            .ok_or(ChainError::MaximumSignatureChecksExceeded)?;
        Ok(())
    }

    fn consume_build_chain_call(&mut self) -> Result<(), ChainError> {
        self.build_chain_calls = self
            .build_chain_calls
            .checked_sub(1)
            .ok_or(ChainError::MaximumPathBuildCallsExceeded)?;
        Ok(())
    }

    pub(super) fn consume_name_constraint_comparison(&mut self) -> Result<(), ChainError> {
        self.name_constraint_comparisons = self
            .name_constraint_comparisons
            .checked_sub(1)
            .ok_or(ChainError::MaximumNameConstraintComparisonsExceeded)?;
        Ok(())
    }
}

/// webpki's `From<Error> for ControlFlow<Error, Error>`: budget errors stop the search.
fn flow(e: ChainError) -> ControlFlow<ChainError, ChainError> {
    if e.is_fatal() {
        ControlFlow::Break(e)
    } else {
        ControlFlow::Continue(e)
    }
}

/// Hashes fingerprint keys by folding their bytes: they are SHA-256 output already, and a
/// bundle change looks facts up for every pod of the mesh.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(23) ^ u64::from_le_bytes(word);
        }
    }
}

/// A cached "child is signed by parent's key": `Ok`, or why not.
type Fact = Result<(), Box<ChainError>>;

/// "Child's signature verifies under parent's key", keyed by both fingerprints. Failures are
/// boxed: nearly every fact is a success, and there is one per leaf of the mesh.
pub(super) struct SignatureFacts {
    algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    facts: HashMap<(Fingerprint, Fingerprint), Fact, BuildHasherDefault<FingerprintHasher>>,
    computed: u64,
}

impl SignatureFacts {
    pub(super) fn new(algorithms: &'static [&'static dyn SignatureVerificationAlgorithm]) -> Self {
        Self {
            algorithms,
            facts: HashMap::default(),
            computed: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.facts.len()
    }

    pub(super) fn computed(&self) -> u64 {
        self.computed
    }

    /// `parent_spki` is the parent's SubjectPublicKeyInfo contents, which are the same bytes
    /// whether the parent is used as an anchor or as an intermediate.
    pub(super) fn signed_by(
        &mut self,
        child: &ParsedCert,
        child_view: &WebCert,
        parent: &ParsedCert,
        parent_spki: &[u8],
    ) -> Result<(), ChainError> {
        let key = (child.fingerprint, parent.fingerprint);
        if let Some(fact) = self.facts.get(&key) {
            return fact.clone().map_err(|e| *e);
        }
        let fact = check(self.algorithms, child, child_view, parent_spki);
        self.computed += 1;
        self.facts.insert(key, fact.clone().map_err(Box::new));
        fact
    }

    pub(super) fn algorithms(&self) -> &'static [&'static dyn SignatureVerificationAlgorithm] {
        self.algorithms
    }

    /// A fact computed elsewhere with the same algorithms ([`super::Prover`]); counted as a
    /// check, as it was one.
    pub(super) fn learn(&mut self, key: (Fingerprint, Fingerprint), fact: Result<(), ChainError>) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.facts.entry(key) {
            self.computed += 1;
            e.insert(fact.map_err(Box::new));
        }
    }
}

/// The signature check behind a fact.
pub(super) fn check(
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    child: &ParsedCert,
    child_view: &WebCert,
    parent_spki: &[u8],
) -> Result<(), ChainError> {
    let der = &*child.der;
    verify_signed_data(
        algorithms,
        parent_spki,
        &der[child_view.tbs.clone()],
        &der[child_view.signature_algorithm.clone()],
        &der[child_view.signature.clone()],
    )
}

/// `signed_data::verify_signed_data` without the budget (the caller consumes it).
fn verify_signed_data(
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    spki: &[u8],
    tbs: &[u8],
    signature_algorithm: &[u8],
    signature: &[u8],
) -> Result<(), ChainError> {
    let mut invalid_for_public_key = None;
    for alg in algorithms
        .iter()
        .filter(|alg| alg.signature_alg_id().as_ref() == signature_algorithm)
    {
        match verify_signature(*alg, spki, tbs, signature) {
            Err(e @ ChainError::UnsupportedSignatureAlgorithmForPublicKey { .. }) => {
                invalid_for_public_key = Some(e);
            }
            result => return result,
        }
    }
    if let Some(e) = invalid_for_public_key {
        return Err(e);
    }
    Err(ChainError::UnsupportedSignatureAlgorithm {
        signature_algorithm_id: signature_algorithm.to_vec(),
        supported_algorithms: algorithms
            .iter()
            .map(|alg| alg.signature_alg_id())
            .collect(),
    })
}

fn verify_signature(
    alg: &dyn SignatureVerificationAlgorithm,
    spki: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), ChainError> {
    let (algorithm_id, key) = der::read_all(
        spki,
        ChainError::TrailingData(DerType::SubjectPublicKeyInfo),
        |r: &mut Reader<'_>| {
            let algorithm_id = der::expect_tag(r, der::SEQUENCE)?;
            let key = der::bit_string_with_no_unused_bits(r)?;
            Ok((algorithm_id, key))
        },
    )?;
    if alg.public_key_alg_id().as_ref() != algorithm_id {
        return Err(ChainError::UnsupportedSignatureAlgorithmForPublicKey {
            signature_algorithm_id: alg.signature_alg_id().as_ref().to_vec(),
            public_key_algorithm_id: algorithm_id.to_vec(),
        });
    }
    alg.verify_signature(key, message, signature)
        .map_err(|_| ChainError::BadSignature)
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Role {
    Issuer,
    EndEntity,
}

/// A certificate on the path under construction, with its webpki view.
pub(super) type Node<'a> = (&'a ParsedCert, &'a WebCert);

/// One run of path building for one presented chain.
pub(super) struct PathBuilder<'a> {
    pub(super) facts: &'a mut SignatureFacts,
    /// Anchors whose anchor view is an error are skipped (rustls never loads them).
    pub(super) anchors: &'a [Arc<ParsedCert>],
    pub(super) intermediates: &'a [Arc<ParsedCert>],
    /// Unix seconds, or `None` to skip the validity-window comparison.
    pub(super) time: Option<u64>,
    /// The path starts at a CA, checked as the first intermediate above a leaf would be.
    pub(super) starts_at_ca: bool,
}

impl<'a> PathBuilder<'a> {
    /// `ChainOptions::build_chain`: the index of the anchor reached and the path (end entity
    /// first).
    pub(super) fn build(&mut self, leaf: Node<'a>) -> Result<(usize, Vec<Node<'a>>), ChainError> {
        let mut path = Vec::with_capacity(1 + MAX_SUB_CA_COUNT);
        path.push(leaf);
        match self.build_inner(&mut path, 0, &mut Budget::default()) {
            Ok(anchor) => Ok((anchor, path)),
            Err(ControlFlow::Break(e) | ControlFlow::Continue(e)) => Err(e),
        }
    }

    fn build_inner(
        &mut self,
        path: &mut Vec<Node<'a>>,
        sub_ca_count: usize,
        budget: &mut Budget,
    ) -> Result<usize, ControlFlow<ChainError, ChainError>> {
        let Some(&(head, head_view)) = path.last() else {
            return Err(ControlFlow::Break(ChainError::EmptyChain));
        };
        let role = if path.len() == 1 && !self.starts_at_ca {
            Role::EndEntity
        } else {
            Role::Issuer
        };
        check_head(head_view, self.time, role, sub_ca_count).map_err(flow)?;
        let head_issuer = &head.der[head_view.issuer.clone()];

        // `loop_while_non_fatal_error` over the anchors, then over the intermediates, the
        // second loop starting from the first one's most specific error.
        let mut error = ChainError::UnknownIssuer;
        for index in 0..self.anchors.len() {
            match self.try_anchor(path, index, head_issuer, budget) {
                Ok(()) => return Ok(index),
                Err(ControlFlow::Break(e)) => return Err(ControlFlow::Break(e)),
                Err(ControlFlow::Continue(e)) => error = error.most_specific(e),
            }
        }
        let intermediates = self.intermediates;
        for candidate in intermediates {
            match self.try_intermediate(path, candidate, head_issuer, role, sub_ca_count, budget) {
                Ok(anchor) => return Ok(anchor),
                Err(ControlFlow::Break(e)) => return Err(ControlFlow::Break(e)),
                Err(ControlFlow::Continue(e)) => error = error.most_specific(e),
            }
        }
        Err(flow(error))
    }

    fn try_anchor(
        &mut self,
        path: &[Node<'a>],
        index: usize,
        head_issuer: &[u8],
        budget: &mut Budget,
    ) -> Result<(), ControlFlow<ChainError, ChainError>> {
        let anchor: &'a ParsedCert = &self.anchors[index];
        let Ok(view) = anchor.anchor_view() else {
            return Err(flow(ChainError::UnknownIssuer));
        };
        if anchor.der[view.subject.clone()] != *head_issuer {
            return Err(flow(ChainError::UnknownIssuer));
        }
        let anchor_spki = &anchor.der[view.spki.clone()];
        if cert::is_distrusted(anchor_spki) {
            return Err(flow(ChainError::CertDistrusted));
        }

        // check_signed_chain: from the anchor down to the end entity.
        let (mut parent, mut parent_spki) = (anchor, anchor_spki);
        for &(cert, cert_view) in path.iter().rev() {
            budget.consume_signature().map_err(flow)?;
            self.facts
                .signed_by(cert, cert_view, parent, parent_spki)
                .map_err(flow)?;
            parent = cert;
            parent_spki = &cert.der[cert_view.spki.clone()];
        }

        // check_signed_chain_name_constraints: each CA's constraints (the anchor's first)
        // apply to every certificate below it.
        let mut constraints = view.name_constraints.clone().map(|r| &anchor.der[r]);
        for (i, &(cert, cert_view)) in path.iter().enumerate().rev() {
            if let Some(constraints) = constraints {
                let below = path[..=i]
                    .iter()
                    .rev()
                    .map(|&(c, v)| v.subject_alt_name.clone().map(|r| &c.der[r]));
                name::check_name_constraints(constraints, below, budget).map_err(flow)?;
            }
            constraints = cert_view.name_constraints.clone().map(|r| &cert.der[r]);
        }
        Ok(())
    }

    fn try_intermediate(
        &mut self,
        path: &mut Vec<Node<'a>>,
        candidate: &'a ParsedCert,
        head_issuer: &[u8],
        role: Role,
        sub_ca_count: usize,
        budget: &mut Budget,
    ) -> Result<usize, ControlFlow<ChainError, ChainError>> {
        let view = candidate.web.as_ref().map_err(|e| flow(e.clone()))?;
        let subject = &candidate.der[view.subject.clone()];
        if subject != head_issuer {
            return Err(flow(ChainError::UnknownIssuer));
        }
        // Loop prevention (RFC 4158 section 5.2): same key and same name already on the path.
        let spki = &candidate.der[view.spki.clone()];
        if path
            .iter()
            .any(|&(c, v)| c.der[v.spki.clone()] == *spki && c.der[v.subject.clone()] == *subject)
        {
            return Err(flow(ChainError::UnknownIssuer));
        }
        let next_sub_ca_count = match role {
            Role::EndEntity => sub_ca_count,
            Role::Issuer => sub_ca_count + 1,
        };
        budget.consume_build_chain_call().map_err(flow)?;
        if path.len() > MAX_SUB_CA_COUNT {
            return Err(flow(ChainError::MaximumPathDepthExceeded));
        }
        path.push((candidate, view));
        let result = self.build_inner(path, next_sub_ca_count, budget);
        if result.is_err() {
            path.pop();
        }
        result
    }
}

/// What `build_chain_inner` checks of the head of the path before looking for its issuer: the
/// distrust list, then [`check_issuer_independent_properties`].
pub(super) fn check_head(
    cert: &WebCert,
    time: Option<u64>,
    role: Role,
    sub_ca_count: usize,
) -> Result<(), ChainError> {
    if cert.distrusted {
        return Err(ChainError::CertDistrusted);
    }
    check_issuer_independent_properties(cert, time, role, sub_ca_count)
}

/// `check_issuer_independent_properties`: validity, basicConstraints, then EKU serverAuth.
fn check_issuer_independent_properties(
    cert: &WebCert,
    time: Option<u64>,
    role: Role,
    sub_ca_count: usize,
) -> Result<(), ChainError> {
    let validity = cert.validity.clone().map_err(|e| *e)?;
    if validity.not_before > validity.not_after {
        return Err(ChainError::InvalidCertValidity);
    }
    if let Some(time) = time {
        if time < validity.not_before {
            return Err(ChainError::NotValidYet {
                time: unix(time),
                not_before: unix(validity.not_before),
            });
        }
        if time > validity.not_after {
            return Err(ChainError::Expired {
                time: unix(time),
                not_after: unix(validity.not_after),
            });
        }
    }
    if validity.trailing {
        return Err(ChainError::BadDer);
    }

    let bc = cert.basic_constraints.clone().map_err(|e| *e)?;
    match (role, bc.is_ca, bc.path_len) {
        (Role::EndEntity, true, _) => return Err(ChainError::CaUsedAsEndEntity),
        (Role::Issuer, false, _) => return Err(ChainError::EndEntityUsedAsCa),
        (Role::Issuer, true, Some(len)) if sub_ca_count > len => {
            return Err(ChainError::PathLenConstraintViolated);
        }
        _ => {}
    }
    if bc.trailing {
        return Err(ChainError::BadDer);
    }

    cert.eku_server_auth.clone().map_err(|e| *e)
}

/// Unix seconds as a chrono time (certificate times end in year 9999, so this never clamps).
pub(super) fn unix(secs: u64) -> DateTime<Utc> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
