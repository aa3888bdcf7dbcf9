//! What verifying a chain with dates ignored reads of its end entity, so that chains whose leaves
//! differ only in what is never read share one verdict.
//!
//! Every pod presents its own leaf, but the leaves of one identity under one issuer are alike in
//! all that path building looks at: the leaf's own checks, its issuer and subject names, its SAN
//! (name constraints), whether a presented CA has its key and name (loop prevention), and whether
//! each presented CA that may have issued it did sign it. [`ChainShape`] is exactly that. Against
//! anchors none of which may have issued the leaf or be the leaf ([`ChainShape::involves`]),
//! path building reads nothing else of the leaf, so chains of equal shape get the same
//! [`Verified`](super::Verified) (but for the leaf's own fingerprint heading the path) or the same
//! error, the same budget spent, and the same signers.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::path::{Role, check_head};
use super::{ChainError, Fingerprint, ParsedCert, Verifier};

/// A presented chain with its end entity reduced to what verification reads of it (see the
/// module header). Computed by [`Verifier::chain_shape`]; equal shapes verify alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainShape {
    /// webpki's checks of the end entity before it looks for an issuer, dates ignored.
    end_entity: Result<(), ChainError>,
    /// webpki's view of the issuer name (contents).
    issuer: Box<[u8]>,
    /// The issuer Name as x509-parser reads it (compared by `issued_by`).
    issuer_der: Box<[u8]>,
    /// The subject Name as x509-parser reads it (an anchor with this name may be the leaf).
    subject_der: Box<[u8]>,
    /// The subjectAltName contents, checked against name constraints.
    san: Option<Box<[u8]>>,
    /// The presented CA certificates, in order.
    cas: Box<[CaLink]>,
}

/// A presented CA certificate and its relation to the end entity.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CaLink {
    fingerprint: Fingerprint,
    /// Same key and name as the end entity: webpki's loop prevention skips it.
    loops_to_leaf: bool,
    /// The fact "the end entity is signed by this CA's key", for CAs named as its issuer.
    signs_leaf: Option<Result<(), ChainError>>,
}

impl Hash for ChainShape {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Errors hash by variant only: equal values hash alike, which is all `Hash` needs.
        std::mem::discriminant(&self.end_entity).hash(state);
        self.issuer.hash(state);
        self.issuer_der.hash(state);
        self.subject_der.hash(state);
        self.san.hash(state);
        for ca in &self.cas {
            ca.fingerprint.hash(state);
            ca.loops_to_leaf.hash(state);
            ca.signs_leaf.as_ref().map(|f| f.is_ok()).hash(state);
        }
    }
}

impl ChainShape {
    /// Whether verifying a chain of this shape against `candidate` as an anchor, or naming the
    /// leaf's signer among candidates, may read more of the leaf than its shape: `candidate`
    /// bears the leaf's issuer name (either reading of it) or its subject name (it may be the
    /// leaf itself). Decided from `leaf`'s names alone, so any leaf of the shape answers alike.
    pub fn involves(leaf: &ParsedCert, candidate: &ParsedCert) -> bool {
        let as_anchor = match (&leaf.web, candidate.anchor_view()) {
            (Ok(view), Ok(anchor)) => {
                candidate.der[anchor.subject.clone()] == leaf.der[view.issuer.clone()]
            }
            _ => false,
        };
        as_anchor
            || candidate.subject_der() == leaf.issuer_der()
            || candidate.subject_der() == leaf.subject_der()
    }
}

impl Verifier {
    /// The shape of a presented chain (end entity first), computing the end entity's signature
    /// facts against the presented CAs that bear its issuer name. `None` when the shape would
    /// not capture the chain: no end entity, one webpki cannot read, or the end entity presented
    /// again among the CAs.
    pub fn chain_shape(&mut self, chain: &[Arc<ParsedCert>]) -> Option<ChainShape> {
        let (leaf, cas) = chain.split_first()?;
        let view = leaf.web.as_ref().ok()?;
        if cas.iter().any(|c| c.fingerprint == leaf.fingerprint) {
            return None;
        }
        let issuer = &leaf.der[view.issuer.clone()];
        let subject = &leaf.der[view.subject.clone()];
        let spki = &leaf.der[view.spki.clone()];
        let cas = cas
            .iter()
            .map(|ca| {
                let ca_view = ca.web.as_ref().ok();
                let ca_subject = ca_view.map(|v| &ca.der[v.subject.clone()]);
                let names_issuer =
                    ca_subject == Some(issuer) || ca.subject_der() == leaf.issuer_der();
                CaLink {
                    fingerprint: ca.fingerprint,
                    loops_to_leaf: ca_view.is_some_and(|v| {
                        ca.der[v.spki.clone()] == *spki && ca.der[v.subject.clone()] == *subject
                    }),
                    signs_leaf: names_issuer.then(|| self.signed_by(leaf, ca)),
                }
            })
            .collect();
        Some(ChainShape {
            end_entity: check_head(view, None, Role::EndEntity, 0),
            issuer: issuer.into(),
            issuer_der: leaf.issuer_der().into(),
            subject_der: leaf.subject_der().into(),
            san: view.subject_alt_name.clone().map(|r| leaf.der[r].into()),
            cas,
        })
    }
}
