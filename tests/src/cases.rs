//! Incident cases (`shared/cases/*.yaml`, format in `shared/cases/FORMAT.md`): loading them
//! strictly and materialising them into certificates and cluster texts. No analysis happens here;
//! a later step turns a [`Materialised`] into the aggregator's analysis input.
//!
//! ```text
//!  *.yaml ──load_file──▶ Vec<Case>  (one per YAML document = step; unknown fields are errors,
//!                          │          references between labels, nodes and pods checked)
//!                          └─materialise──▶ Materialised  (rcgen certificates, PEM texts, chains)
//! ```

pub mod dump;
mod load;
mod materialise;
mod pem;
pub mod run;
mod spec;

pub use load::{
    EXTRA_CASES_ENV, dirs_from_env, load_dir, load_dirs, load_file, load_str, parse_extra_dirs,
    shared_dir, validate,
};
pub use materialise::{
    CertMaterial, IdentityMaterial, IssuerSecretMaterial, KeyMaterial, Materialised, PodMaterial,
    Presented, SpecAnchors, materialise,
};
pub use pem::{PemBlock, certificate_ders, pem_blocks};
pub use spec::{
    Alg, AnchorsSpec, Bundle, Case, CertSpec, Cluster, DEFAULT_NOT_AFTER_IN,
    DEFAULT_NOT_BEFORE_AGO, EventSpec, Expect, GeneratedCert, IdentitySpec, IssuedLeaf,
    IssuerSecretSpec, LeafSpec, Linkerd, NodeSpec, OwnerRef, PodSpec, RESOURCE_SUBJECTS,
    SecretScheme, SyncState, VERDICT_NAMES, VerdictExpr, WorkloadGlob, WorkloadRef,
};

#[cfg(test)]
mod tests;
