//! Differential test: our verdicts against rustls-webpki 0.103 itself, on seeded random chains
//! shaped like trust-anchor rotations (and their accidents).
//!
//! `ANCHORWATCH_DIFF_CHAINS` sets the number of chains (default 500);
//! `ANCHORWATCH_DIFF_SEED` the seed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rcgen::{CidrSubnet, CustomExtension, GeneralSubtree, NameConstraints, SanType};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::super::der::{self, Reader};
use super::*;

/// splitmix64: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }

    /// True with probability `per_mille`/1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next_u64() % 1000 < per_mille
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + i64::try_from(self.next_u64() % u64::try_from(hi - lo + 1).unwrap()).unwrap()
    }

    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

const YEAR: i64 = 365 * DAY;
const ROOT_NAMES: [&str; 3] = [
    "root.linkerd.cluster.local",
    "identity.linkerd.cluster.local",
    "trust.example.org",
];
const ISSUER_NAME: &str = "identity.linkerd.cluster.local";
const POD_IP: &str = "10.42.0.17";

/// One generated case: a presented chain, a bundle, times and names to check.
struct Scenario {
    id: usize,
    notes: Vec<String>,
    chain: Vec<Vec<u8>>,
    anchors: Vec<Vec<u8>>,
    times: Vec<u64>,
    names: Vec<String>,
    /// Another leaf like the presented one (same parameters, key and signer; another serial),
    /// before any patch: a chain of the same [`ChainShape`] but for the leaf's own bytes.
    sibling: Option<Vec<u8>>,
}

struct Gen {
    rng: Rng,
    notes: Vec<String>,
    next_key: [usize; 6],
    serial: u64,
}

impl Gen {
    fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }

    fn kind(&mut self) -> KeyKind {
        match self.rng.below(100) {
            0..=59 => KeyKind::P256,
            60..=71 => KeyKind::P384,
            72..=81 => KeyKind::Ed25519,
            82..=89 => KeyKind::Rsa2048,
            90..=95 => KeyKind::P521,
            _ => KeyKind::MlDsa44,
        }
    }

    /// A key no other entity of this scenario has used yet (pools permitting).
    fn key(&mut self, kind: KeyKind) -> &'static KeyPair {
        let index = KeyKind::ALL.iter().position(|k| *k == kind).unwrap();
        self.next_key[index] += 1;
        mk_key(kind, self.next_key[index])
    }

    fn any_key(&mut self) -> &'static KeyPair {
        let kind = self.kind();
        self.key(kind)
    }

    fn params(&mut self, cn: &str, sans: &[&str], nb: i64, na: i64, ca: bool) -> CertificateParams {
        let mut p = mk_params(cn, sans, nb, na);
        self.serial += 1;
        p.serial_number = Some(SerialNumber::from(self.serial));
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        p
    }

    fn sign(
        &mut self,
        params: CertificateParams,
        key: &'static KeyPair,
        parent: Option<&Ca>,
    ) -> Ca {
        let der = mk_cert(&params, key, parent);
        Ca { params, key, der }
    }

    fn root(&mut self, cn: &str, key: &'static KeyPair) -> Ca {
        let p = self.params(cn, &[], NOW - 2 * YEAR, NOW + 8 * YEAR, true);
        self.sign(p, key, None)
    }

    /// Window mutations shared by leaves and CAs.
    fn window(&mut self, who: &str, nb: i64, na: i64, per_mille: u64) -> (i64, i64) {
        if !self.rng.chance(per_mille) {
            return (nb, na);
        }
        let (nb, na) = match self.rng.below(9) {
            0 => (nb - 2 * YEAR, NOW - self.rng.range(1, 3 * DAY)),
            1 => (NOW + self.rng.range(1, 60), na + YEAR),
            2 => (na, nb),
            3 => (NOW, na),
            4 => (nb, NOW),
            5 => (-self.rng.range(1, 10 * YEAR), na),
            6 => (nb, 2_600_000_000 + self.rng.range(0, 10 * YEAR)),
            7 => (NOW - 21, na),
            _ => (NOW - 1, NOW + 1),
        };
        self.note(format!("{who} window {nb}..{na}"));
        (nb, na)
    }

    fn ca_tweaks(&mut self, who: &str, p: &mut CertificateParams) {
        if self.rng.chance(40) {
            p.is_ca = if self.rng.chance(500) {
                IsCa::ExplicitNoCa
            } else {
                IsCa::NoCa
            };
            self.note(format!("{who} not a CA"));
        }
        if self.rng.chance(80) {
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            self.note(format!("{who} pathlen 0"));
        }
        if self.rng.chance(60) {
            let eku = match self.rng.below(3) {
                0 => ExtendedKeyUsagePurpose::ClientAuth,
                1 => ExtendedKeyUsagePurpose::ServerAuth,
                _ => ExtendedKeyUsagePurpose::CodeSigning,
            };
            self.note(format!("{who} eku {eku:?}"));
            p.extended_key_usages = vec![eku];
        }
        self.name_constraints(who, p, 100);
        self.common_tweaks(who, p);
    }

    fn name_constraints(&mut self, who: &str, p: &mut CertificateParams, per_mille: u64) {
        if !self.rng.chance(per_mille) {
            return;
        }
        let (permitted, excluded, what) = match self.rng.below(10) {
            0 => (
                vec![GeneralSubtree::DnsName("linkerd.cluster.local".into())],
                vec![],
                "permit linkerd",
            ),
            1 => (
                vec![GeneralSubtree::DnsName("example.com".into())],
                vec![],
                "permit example.com",
            ),
            2 => (
                vec![],
                vec![GeneralSubtree::DnsName(
                    "ns1.serviceaccount.identity.linkerd.cluster.local".into(),
                )],
                "exclude ns1",
            ),
            3 => (
                vec![GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix(
                    [10, 0, 0, 0],
                    8,
                ))],
                vec![],
                "permit 10/8",
            ),
            4 => (
                vec![],
                vec![GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix(
                    [10, 42, 0, 0],
                    16,
                ))],
                "exclude 10.42/16",
            ),
            5 => {
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, "x");
                (
                    vec![GeneralSubtree::DirectoryName(dn)],
                    vec![],
                    "permit dirname",
                )
            }
            6 => (
                vec![GeneralSubtree::DnsName(".cluster.local".into())],
                vec![],
                "permit .cluster.local",
            ),
            7 => (
                vec![GeneralSubtree::DnsName("bad..constraint".into())],
                vec![],
                "malformed DNS constraint",
            ),
            8 => (
                vec![GeneralSubtree::IpAddress(CidrSubnet::V4(
                    [10, 0, 0, 0],
                    [255, 0, 255, 0],
                ))],
                vec![],
                "non-prefix IP mask",
            ),
            _ => (
                vec![],
                vec![GeneralSubtree::Rfc822Name("example.com".into())],
                "exclude rfc822",
            ),
        };
        self.note(format!("{who} name constraints: {what}"));
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: excluded,
        });
    }

    fn common_tweaks(&mut self, who: &str, p: &mut CertificateParams) {
        if self.rng.chance(25) {
            let mut ext =
                CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![5, 0]);
            ext.set_criticality(true);
            p.custom_extensions.push(ext);
            self.note(format!("{who} unknown critical extension"));
        }
        if self.rng.chance(10) {
            p.custom_extensions.push(CustomExtension::from_oid_content(
                &[2, 5, 29, 37],
                vec![0x30, 0x00],
            ));
            self.note(format!("{who} empty EKU extension"));
        }
        if self.rng.chance(10) {
            let name = b"dup.example.com";
            let mut content = vec![0x30, u8::try_from(name.len() + 2).unwrap(), 0x82];
            content.push(u8::try_from(name.len()).unwrap());
            content.extend_from_slice(name);
            p.custom_extensions
                .push(CustomExtension::from_oid_content(&[2, 5, 29, 17], content));
            self.note(format!("{who} second SAN extension"));
        }
    }

    /// DER-level accidents no CA makes on purpose (applied after signing).
    fn patch(&mut self, who: &str, der: &mut [u8], per_mille: u64) {
        if !self.rng.chance(per_mille) {
            return;
        }
        match self.rng.below(5) {
            3 | 4 => {
                // A corrupted byte in the TBS (past the outer headers): exercises DER errors.
                let at = 8 + self.rng.below(der.len().saturating_sub(80).max(1));
                let bit = 1u8 << self.rng.below(8);
                der[at] ^= bit;
                self.note(format!("{who} byte {at} ^= {bit:#04x}"));
            }
            0 => {
                patch_signature_algorithm(der, true);
                self.note(format!("{who} unsupported signature algorithm"));
            }
            1 => {
                patch_signature_algorithm(der, false);
                self.note(format!("{who} outer/inner signature algorithm mismatch"));
            }
            _ => {
                if let Some(at) = der
                    .windows(5)
                    .position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02])
                {
                    der[at + 4] = 0x01;
                    self.note(format!("{who} version 2"));
                }
            }
        }
    }

    fn scenario(&mut self, id: usize) -> Scenario {
        self.notes.clear();
        if self.rng.chance(30) {
            return self.deep_scenario(id);
        }
        if self.rng.chance(25) {
            return self.loop_scenario(id);
        }
        if self.rng.chance(20) {
            return self.budget_scenario(id, false);
        }
        if self.rng.chance(3) {
            return self.budget_scenario(id, true);
        }

        let root_name = self.rng.pick(&ROOT_NAMES);
        let root_key = self.any_key();
        let mut root = self.root(root_name, root_key);
        let twin_key = if self.rng.chance(150) {
            root_key
        } else {
            self.any_key()
        };
        let twin = self.root(root_name, twin_key);
        let other_key = self.any_key();
        let other = self.root("other.root.example", other_key);
        let cross_key = self.any_key();
        let cross = self.root("cross.root.example", cross_key);
        if self.rng.chance(40) {
            // The same root re-issued with an unknown critical extension (anchors ignore it).
            let mut p = root.params.clone();
            let mut ext =
                CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 2], vec![5, 0]);
            ext.set_criticality(true);
            p.custom_extensions.push(ext);
            root = self.sign(p, root_key, None);
            self.note("root has an unknown critical extension");
        }
        if self.rng.chance(60) {
            let mut p = root.params.clone();
            self.name_constraints("root", &mut p, 1000);
            root = self.sign(p, root_key, None);
        }

        // The issuer.
        let issuer_parent = match self.rng.below(10) {
            0 => {
                self.note("issuer under the twin root");
                &twin
            }
            1 => {
                self.note("issuer under the other root");
                &other
            }
            _ => &root,
        };
        let (nb, na) = self.window("issuer", NOW - YEAR, NOW + YEAR, 120);
        let mut p = self.params(ISSUER_NAME, &[], nb, na, true);
        self.ca_tweaks("issuer", &mut p);
        let issuer_key = self.any_key();
        let mut issuer = self.sign(p, issuer_key, Some(issuer_parent));
        self.patch("issuer", &mut issuer.der, 40);

        // An optional sub-issuer.
        let sub = if self.rng.chance(120) {
            let (nb, na) = self.window("sub-issuer", NOW - YEAR, NOW + YEAR, 60);
            let mut p = self.params("sub.identity.linkerd.cluster.local", &[], nb, na, true);
            self.ca_tweaks("sub-issuer", &mut p);
            let key = self.any_key();
            self.note("sub-issuer");
            Some(self.sign(p, key, Some(&issuer)))
        } else {
            None
        };

        // The leaf.
        let sa = self.rng.pick(&["web", "foo", "default", "emoji"]);
        let ns = self.rng.pick(&["ns1", "emojivoto", "linkerd"]);
        let identity = linkerd_identity(sa, ns);
        let (leaf_parent, direct) = match self.rng.below(20) {
            0 | 1 => (&root, "leaf directly under the root"),
            2 => (&twin, "leaf directly under the twin root"),
            _ => match &sub {
                Some(sub) => (sub, ""),
                None => (&issuer, ""),
            },
        };
        if !direct.is_empty() {
            self.note(direct);
        }
        let (nb, na) = self.window("leaf", NOW - 20, NOW + DAY, 220);
        let mut sans: Vec<String> = vec![identity.clone()];
        match self.rng.below(40) {
            0 | 1 => {
                sans.push(POD_IP.to_owned());
                self.note("leaf IP SAN");
            }
            2 => {
                sans = vec![format!(
                    "*.{ns}.serviceaccount.identity.linkerd.cluster.local"
                )];
                self.note("leaf wildcard SAN");
            }
            3 => {
                sans.clear();
                self.note("leaf without SAN");
            }
            4 => {
                sans.push("bad..name".to_owned());
                self.note("leaf malformed DNS SAN");
            }
            _ => {}
        }
        let san_refs: Vec<&str> = sans.iter().map(String::as_str).collect();
        let mut p = self.params(&identity, &san_refs, nb, na, false);
        if self.rng.chance(25) {
            p.subject_alt_names.push(SanType::URI(
                format!("spiffe://cluster.local/ns/{ns}/sa/{sa}")
                    .try_into()
                    .unwrap(),
            ));
            self.note("leaf URI SAN");
        }
        if self.rng.chance(10) {
            p.subject_alt_names
                .push(SanType::Rfc822Name("ops@example.com".try_into().unwrap()));
            self.note("leaf email SAN");
        }
        p.extended_key_usages = match self.rng.below(20) {
            0 | 1 => vec![],
            2 => vec![ExtendedKeyUsagePurpose::ClientAuth],
            3 => vec![ExtendedKeyUsagePurpose::ServerAuth],
            4 => vec![ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 4, 1, 311, 10, 3, 4,
            ])],
            _ => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        if self.rng.chance(30) {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            self.note("leaf is a CA");
        }
        self.common_tweaks("leaf", &mut p);
        let leaf_key = self.any_key();
        let mut leaf = self.sign(p, leaf_key, Some(leaf_parent));
        // Drawn from no generator state, so the scenarios stay what they were without it.
        let mut sibling = leaf.params.clone();
        sibling.serial_number = Some(SerialNumber::from(u64::MAX - self.serial));
        let sibling = mk_cert(&sibling, leaf_key, Some(leaf_parent));
        self.patch("leaf", &mut leaf.der, 30);

        // What the proxy presents.
        let mut intermediates = Vec::new();
        if let Some(sub) = &sub {
            intermediates.push(sub.der.clone());
        }
        if self.rng.chance(900) {
            intermediates.push(issuer.der.clone());
        } else {
            self.note("issuer not presented");
        }
        if self.rng.chance(50) {
            intermediates.push(issuer.der.clone());
            self.note("issuer presented twice");
        }
        if self.rng.chance(150) {
            let mut root_der = root.der.clone();
            if self.rng.chance(300) {
                // A presented root is checked like any intermediate: its dates matter.
                let (nb, na) = self.window("presented root", NOW - 2 * YEAR, NOW + 8 * YEAR, 1000);
                let p = self.params(root_name, &[], nb, na, true);
                root_der = self.sign(p, root_key, None).der;
            }
            intermediates.push(root_der);
            self.note("root appended");
        }
        if self.rng.chance(50) {
            intermediates.push(twin.der.clone());
            self.note("twin root appended");
        }
        let cross_signed = self.rng.chance(80);
        if cross_signed {
            let p = issuer.params.clone();
            intermediates.push(mk_cert(&p, issuer_key, Some(&cross)));
            self.note("cross-signed issuer presented");
        }
        if self.rng.chance(80) {
            let p = self.params("unrelated.ca.example", &[], NOW - YEAR, NOW + YEAR, true);
            let key = self.any_key();
            intermediates.push(self.sign(p, key, Some(&other)).der);
            self.note("unrelated CA presented");
        }
        if self.rng.chance(300) {
            self.rng.shuffle(&mut intermediates);
        }
        let mut chain = vec![leaf.der.clone()];
        chain.extend(intermediates);

        // The bundle.
        let mut anchors = Vec::new();
        let mut add = |g: &mut Gen, per_mille: u64, der: &[u8], what: &str| {
            if g.rng.chance(per_mille) {
                anchors.push(der.to_vec());
                g.note(format!("anchor: {what}"));
            }
        };
        add(self, 700, &root.der, "root");
        add(self, 350, &twin.der, "twin root");
        add(self, 400, &other.der, "other root");
        add(
            self,
            if cross_signed { 300 } else { 50 },
            &cross.der,
            "cross root",
        );
        add(self, 80, &issuer.der, "issuer");
        add(self, 20, &leaf.der, "leaf");
        if self.rng.chance(20) {
            let mut v1ish = root.der.clone();
            if let Some(at) = v1ish
                .windows(5)
                .position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02])
            {
                v1ish[at + 4] = 0x00;
            }
            anchors.push(v1ish);
            self.note("anchor: root claiming v1");
        }
        self.rng.shuffle(&mut anchors);

        let leaf_nb = leaf.params.not_before.unix_timestamp();
        let leaf_na = leaf.params.not_after.unix_timestamp();
        let issuer_na = issuer.params.not_after.unix_timestamp();
        let mut times = vec![NOW, NOW + self.rng.range(-3 * YEAR, 3 * YEAR)];
        times.extend([leaf_nb - 1, leaf_nb, leaf_na, leaf_na + 1, issuer_na + 1]);
        let times = times
            .into_iter()
            .filter_map(|t| u64::try_from(t).ok())
            .collect();
        let names = vec![
            identity.clone(),
            identity.to_uppercase(),
            format!("{identity}."),
            linkerd_identity("other", ns),
            POD_IP.to_owned(),
            "10.9.9.9".to_owned(),
        ];
        Scenario {
            id,
            notes: self.notes.clone(),
            chain,
            anchors,
            times,
            names,
            sibling: Some(sibling),
        }
    }

    /// 4 to 8 CAs in a line: webpki stops at 6 intermediates.
    fn deep_scenario(&mut self, id: usize) -> Scenario {
        let depth = 4 + self.rng.below(5);
        self.note(format!("deep chain of {depth} CAs"));
        let key = self.any_key();
        let root = self.root("root.linkerd.cluster.local", key);
        let mut cas: Vec<Ca> = Vec::new();
        for i in 0..depth {
            let mut p = self.params(&format!("ca-{i}"), &[], NOW - YEAR, NOW + YEAR, true);
            if self.rng.chance(100) {
                p.is_ca = IsCa::Ca(BasicConstraints::Constrained(
                    u8::try_from(self.rng.below(4)).unwrap(),
                ));
                self.note(format!("ca-{i} {:?}", p.is_ca));
            }
            let key = self.key(KeyKind::P256);
            let ca = self.sign(p, key, Some(cas.last().unwrap_or(&root)));
            cas.push(ca);
        }
        let key = self.key(KeyKind::P256);
        let leaf = mk_leaf(&linkerd_identity("deep", "ns1"), key, cas.last().unwrap());
        let mut chain = vec![leaf];
        chain.extend(cas.iter().rev().map(|c| c.der.clone()));
        if self.rng.chance(500) {
            self.rng.shuffle(&mut chain[1..]);
        }
        Scenario {
            id,
            notes: self.notes.clone(),
            chain,
            anchors: vec![root.der],
            times: vec![u64::try_from(NOW).unwrap()],
            names: vec![linkerd_identity("deep", "ns1")],
            sibling: None,
        }
    }

    /// Two CAs certifying each other: loop prevention.
    fn loop_scenario(&mut self, id: usize) -> Scenario {
        self.note("cross-certifying pair");
        let (kx, ky) = (self.key(KeyKind::P256), self.key(KeyKind::P256));
        let x_params = self.params("x.example", &[], NOW - YEAR, NOW + YEAR, true);
        let y_params = self.params("y.example", &[], NOW - YEAR, NOW + YEAR, true);
        let x_self = self.sign(x_params.clone(), kx, None);
        let y_self = self.sign(y_params.clone(), ky, None);
        let x_by_y = mk_cert(&x_params, kx, Some(&y_self));
        let y_by_x = mk_cert(&y_params, ky, Some(&x_self));
        let leaf_key = self.key(KeyKind::P256);
        let leaf = mk_leaf(&linkerd_identity("loop", "ns1"), leaf_key, &x_self);
        let mut anchors = vec![];
        match self.rng.below(3) {
            0 => {
                let key = self.key(KeyKind::P256);
                anchors.push(self.root("unrelated.example", key).der);
            }
            1 => {
                let other_key = self.key(KeyKind::P256);
                anchors.push(self.root("y.example", other_key).der);
            }
            _ => anchors.push(y_self.der.clone()),
        }
        Scenario {
            id,
            notes: self.notes.clone(),
            chain: vec![leaf, x_by_y, y_by_x],
            anchors,
            times: vec![u64::try_from(NOW).unwrap()],
            names: vec![],
            sibling: None,
        }
    }

    /// Many same-name, self-issued CAs: webpki's work limits.
    fn budget_scenario(&mut self, id: usize, build_calls: bool) -> Scenario {
        let n = if build_calls {
            11
        } else {
            3 + self.rng.below(6)
        };
        let k = if build_calls {
            0
        } else {
            1 + self.rng.below(3)
        };
        self.note(format!("{n} same-name CAs, {k} same-name anchors"));
        let name = ISSUER_NAME;
        let cas: Vec<Ca> = (0..n)
            .map(|_| {
                let key = self.key(KeyKind::P256);
                let p = self.params(name, &[], NOW - YEAR, NOW + YEAR, true);
                self.sign(p, key, None)
            })
            .collect();
        let leaf_key = self.key(KeyKind::P384);
        let leaf = mk_leaf(&linkerd_identity("budget", "ns1"), leaf_key, &cas[0]);
        let anchors = (0..k)
            .map(|_| {
                let key = self.key(KeyKind::Ed25519);
                self.root(name, key).der
            })
            .collect();
        let mut chain = vec![leaf];
        chain.extend(cas.iter().skip(1).map(|c| c.der.clone()));
        Scenario {
            id,
            notes: self.notes.clone(),
            chain,
            anchors,
            times: vec![u64::try_from(NOW).unwrap()],
            names: vec![],
            sibling: None,
        }
    }
}

/// Changes the signature algorithm: in both places (an algorithm nobody supports) or only in
/// the outer one (a mismatch).
fn patch_signature_algorithm(der: &mut [u8], both: bool) {
    let tlv = {
        let mut outer = Reader::new(der);
        let contents = der::expect_tag(&mut outer, der::SEQUENCE).unwrap();
        let mut r = Reader::new(contents);
        der::expect_tag(&mut r, der::SEQUENCE).unwrap();
        let (tlv, _) = r
            .read_partial(|r| der::expect_tag(r, der::SEQUENCE))
            .unwrap();
        tlv.to_vec()
    };
    // 30 len 06 n <oid>: flip the OID's last byte (keeping its high bit clear).
    let last = 3 + usize::from(tlv[3]);
    let positions: Vec<usize> = der
        .windows(tlv.len())
        .enumerate()
        .filter_map(|(i, w)| (w == tlv.as_slice()).then_some(i))
        .collect();
    let targets = if both {
        &positions[..]
    } else {
        &positions[positions.len() - 1..]
    };
    for &at in targets {
        der[at + last] ^= 0x7f;
    }
}

/// What webpki decided, in comparable form.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Anchor subject and SPKI (what a `TrustAnchor` keeps), and the intermediates used.
    Verified {
        anchor_subject: Vec<u8>,
        anchor_spki: Vec<u8>,
        intermediates: Vec<Fingerprint>,
    },
    Failed(ChainError),
}

fn webpki_outcome(chain: &[Vec<u8>], anchors: &[Vec<u8>], time: u64) -> (Outcome, Option<String>) {
    let algs = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    let ee_der = CertificateDer::from(chain[0].as_slice());
    let ee = match webpki::EndEntityCert::try_from(&ee_der) {
        Ok(ee) => ee,
        Err(e) => return fail(e),
    };
    let anchor_ders: Vec<CertificateDer<'_>> = anchors
        .iter()
        .map(|a| CertificateDer::from(a.as_slice()))
        .collect();
    // rustls's `RootCertStore::add_parsable_certificates`: unparsable roots are skipped.
    let trust_anchors: Vec<_> = anchor_ders
        .iter()
        .filter_map(|a| webpki::anchor_from_trusted_cert(a).ok())
        .collect();
    let intermediates: Vec<CertificateDer<'_>> = chain[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let time = UnixTime::since_unix_epoch(Duration::from_secs(time));
    match ee.verify_for_usage(
        algs,
        &trust_anchors,
        &intermediates,
        time,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    ) {
        Ok(path) => (
            Outcome::Verified {
                anchor_subject: path.anchor().subject.to_vec(),
                anchor_spki: path.anchor().subject_public_key_info.to_vec(),
                intermediates: path
                    .intermediate_certificates()
                    .map(|c| Fingerprint::of(c.der().as_ref()))
                    .collect(),
            },
            None,
        ),
        Err(e) => fail(e),
    }
}

fn fail(e: webpki::Error) -> (Outcome, Option<String>) {
    let message = rustls_error(&e).to_string();
    (Outcome::Failed(expected_error(e)), Some(message))
}

fn ours(result: Result<Verified, ChainError>, anchors: &[Arc<ParsedCert>]) -> Outcome {
    match result {
        Ok(v) => {
            let anchor = anchors.iter().find(|a| a.fingerprint == v.anchor).unwrap();
            let view = anchor.anchor_view().unwrap();
            Outcome::Verified {
                anchor_subject: anchor.der[view.subject.clone()].to_vec(),
                anchor_spki: anchor.der[view.spki.clone()].to_vec(),
                intermediates: v.path[1..].to_vec(),
            }
        }
        Err(e) => Outcome::Failed(e),
    }
}

/// webpki's error as our `ChainError` (one to one; rustls's coarser mapping is checked through
/// the messages).
fn expected_error(e: webpki::Error) -> ChainError {
    use webpki::Error as W;
    let secs = |t: UnixTime| mk_utc(i64::try_from(t.as_secs()).unwrap());
    match e {
        W::BadDer => ChainError::BadDer,
        W::BadDerTime => ChainError::BadDerTime,
        W::TrailingData(t) => {
            let all = [
                DerType::BitString,
                DerType::Bool,
                DerType::Certificate,
                DerType::CertificateExtensions,
                DerType::CertificateTbsCertificate,
                DerType::Extension,
                DerType::GeneralName,
                DerType::SignedData,
                DerType::SubjectPublicKeyInfo,
                DerType::Time,
                DerType::TrustAnchorV1,
                DerType::TrustAnchorV1TbsCertificate,
            ];
            let ours = all
                .into_iter()
                .find(|d| format!("{d:?}") == format!("{t:?}"));
            ChainError::TrailingData(ours.unwrap_or_else(|| panic!("unmapped {t:?}")))
        }
        W::CertExpired { time, not_after } => ChainError::Expired {
            not_after: secs(not_after),
            time: secs(time),
        },
        W::CertNotValidYet { time, not_before } => ChainError::NotValidYet {
            not_before: secs(not_before),
            time: secs(time),
        },
        W::InvalidCertValidity => ChainError::InvalidCertValidity,
        W::UnknownIssuer => ChainError::UnknownIssuer,
        W::InvalidSignatureForPublicKey => ChainError::BadSignature,
        W::UnsupportedSignatureAlgorithmContext(cx) => ChainError::UnsupportedSignatureAlgorithm {
            signature_algorithm_id: cx.signature_algorithm_id,
            supported_algorithms: cx.supported_algorithms,
        },
        W::UnsupportedSignatureAlgorithmForPublicKeyContext(cx) => {
            ChainError::UnsupportedSignatureAlgorithmForPublicKey {
                signature_algorithm_id: cx.signature_algorithm_id,
                public_key_algorithm_id: cx.public_key_algorithm_id,
            }
        }
        W::RequiredEkuNotFoundContext(cx) => ChainError::InvalidPurpose {
            presented: cx.present,
        },
        W::CertNotValidForName(cx) => ChainError::NotValidForName {
            expected: cx.expected.to_str().into_owned(),
            presented: cx.presented,
        },
        W::CaUsedAsEndEntity => ChainError::CaUsedAsEndEntity,
        W::EndEntityUsedAsCa => ChainError::EndEntityUsedAsCa,
        W::PathLenConstraintViolated => ChainError::PathLenConstraintViolated,
        W::EmptyEkuExtension => ChainError::EmptyEkuExtension,
        W::SignatureAlgorithmMismatch => ChainError::SignatureAlgorithmMismatch,
        W::UnsupportedCertVersion => ChainError::UnsupportedCertVersion,
        W::UnsupportedCriticalExtension => ChainError::UnsupportedCriticalExtension,
        W::ExtensionValueInvalid => ChainError::ExtensionValueInvalid,
        W::NameConstraintViolation => ChainError::NameConstraintViolation,
        W::MalformedNameConstraint => ChainError::MalformedNameConstraint,
        W::InvalidNetworkMaskConstraint => ChainError::InvalidNetworkMaskConstraint,
        W::MalformedDnsIdentifier => ChainError::MalformedDnsIdentifier,
        W::UnsupportedNameType => ChainError::UnsupportedNameType,
        W::CertDistrusted => ChainError::CertDistrusted,
        W::MaximumPathDepthExceeded => ChainError::MaximumPathDepthExceeded,
        W::MaximumSignatureChecksExceeded => ChainError::MaximumSignatureChecksExceeded,
        W::MaximumPathBuildCallsExceeded => ChainError::MaximumPathBuildCallsExceeded,
        W::MaximumNameConstraintComparisonsExceeded => {
            ChainError::MaximumNameConstraintComparisonsExceeded
        }
        other => panic!("webpki error not mapped: {other:?}"),
    }
}

/// rustls 0.23.46's `pki_error` (`rustls/src/webpki/mod.rs`), reproduced to obtain the real
/// `rustls::Error` whose message our `rustls_message` must equal.
fn rustls_error(e: &webpki::Error) -> rustls::Error {
    use rustls::{CertificateError as C, ExtendedKeyPurpose as P};
    use webpki::Error as W;
    let purpose = |oid: Vec<usize>| match oid.as_slice() {
        [1, 3, 6, 1, 5, 5, 7, 3, 1] => P::ServerAuth,
        [1, 3, 6, 1, 5, 5, 7, 3, 2] => P::ClientAuth,
        _ => P::Other(oid),
    };
    match e.clone() {
        W::BadDer | W::BadDerTime | W::TrailingData(_) => C::BadEncoding.into(),
        W::CertNotValidYet { time, not_before } => {
            C::NotValidYetContext { time, not_before }.into()
        }
        W::CertExpired { time, not_after } => C::ExpiredContext { time, not_after }.into(),
        W::InvalidCertValidity => C::Expired.into(),
        W::UnknownIssuer => C::UnknownIssuer.into(),
        W::CertNotValidForName(cx) => C::NotValidForNameContext {
            expected: cx.expected,
            presented: cx.presented,
        }
        .into(),
        W::InvalidSignatureForPublicKey => C::BadSignature.into(),
        W::UnsupportedSignatureAlgorithmContext(cx) => C::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id: cx.signature_algorithm_id,
            supported_algorithms: cx.supported_algorithms,
        }
        .into(),
        W::UnsupportedSignatureAlgorithmForPublicKeyContext(cx) => {
            C::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: cx.signature_algorithm_id,
                public_key_algorithm_id: cx.public_key_algorithm_id,
            }
            .into()
        }
        W::RequiredEkuNotFoundContext(cx) => C::InvalidPurposeContext {
            required: purpose(cx.required.oid_values().collect()),
            presented: cx.present.into_iter().map(purpose).collect(),
        }
        .into(),
        other => C::Other(rustls::OtherError(Arc::new(other))).into(),
    }
}

fn describe(scenario: &Scenario, chain: &[Arc<ParsedCert>], anchors: &[Arc<ParsedCert>]) -> String {
    let mut s = format!("scenario {} [{}]\n", scenario.id, scenario.notes.join("; "));
    for (i, c) in chain.iter().enumerate() {
        s += &format!(
            "  presented[{i}] {} <- {} ({}, {}..{}, ca={}) {}\n",
            c.subject, c.issuer, c.key_algorithm, c.not_before, c.not_after, c.is_ca, c.fingerprint
        );
    }
    for (i, a) in anchors.iter().enumerate() {
        s += &format!(
            "  anchor[{i}] {} ({}) {}\n",
            a.subject, a.key_algorithm, a.fingerprint
        );
    }
    s
}

#[test]
fn verdicts_equal_rustls_webpki_on_generated_chains() {
    let count: usize = std::env::var("ANCHORWATCH_DIFF_CHAINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let seed: u64 = std::env::var("ANCHORWATCH_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x616e_6368_6f72);
    let started = Instant::now();
    let mut generator = Gen {
        rng: Rng(seed),
        notes: Vec::new(),
        next_key: [0; 6],
        serial: 0,
    };
    let mut verifier = Verifier::new();
    let mut disagreements: Vec<String> = Vec::new();
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    let mut comparisons = 0;
    let mut unreadable = 0;
    let mut unreadable_leaf_webpki_accepts = 0;
    let mut shape_comparisons = 0;

    for id in 0..count {
        let scenario = generator.scenario(id);
        // Certificates x509-parser cannot read never reach the verifier (CERT_UNREADABLE).
        let parsed: Result<Vec<_>, _> = scenario.chain.iter().map(|d| parse_der(d)).collect();
        let parsed_anchors: Result<Vec<_>, _> =
            scenario.anchors.iter().map(|d| parse_der(d)).collect();
        let (Ok(chain), Ok(anchors)) = (parsed, parsed_anchors) else {
            unreadable += 1;
            if webpki::EndEntityCert::try_from(&CertificateDer::from(scenario.chain[0].as_slice()))
                .is_ok()
                && parse_der(&scenario.chain[0]).is_err()
            {
                unreadable_leaf_webpki_accepts += 1;
            }
            continue;
        };
        let chain: Vec<Arc<ParsedCert>> = chain.into_iter().map(Arc::new).collect();
        let anchors: Vec<Arc<ParsedCert>> = anchors.into_iter().map(Arc::new).collect();
        let mut any_ok = false;

        for &t in &scenario.times {
            let (theirs, their_message) = webpki_outcome(&scenario.chain, &scenario.anchors, t);
            let mine = verifier.verify(&chain, &anchors, Some(mk_utc(i64::try_from(t).unwrap())));
            any_ok |= mine.is_ok();
            let key = match &mine {
                Ok(_) => "Ok".to_owned(),
                Err(e) => {
                    let debug = format!("{e:?}");
                    debug[..debug.find([' ', '(', '{']).unwrap_or(debug.len())].to_owned()
                }
            };
            *verdicts.entry(key).or_default() += 1;
            let my_message = mine.as_ref().err().map(ChainError::rustls_message);
            let mine = ours(mine, &anchors);
            comparisons += 1;
            if mine != theirs || my_message != their_message {
                disagreements.push(format!(
                    "{}  time {t}\n  ours:   {mine:?}\n  webpki: {theirs:?}\n  our message:    {my_message:?}\n  rustls message: {their_message:?}",
                    describe(&scenario, &chain, &anchors)
                ));
            }
        }

        // Dates ignored: equal to webpki at NOW whenever every presented certificate is
        // inside its window at NOW, and never worse than a verdict at some time.
        let timeless = verifier.verify(&chain, &anchors, None);
        if any_ok && timeless.is_err() {
            disagreements.push(format!(
                "{}  dates ignored: {timeless:?}, but Ok at some time",
                describe(&scenario, &chain, &anchors)
            ));
        }
        let now = mk_utc(NOW);
        if chain
            .iter()
            .all(|c| c.not_before <= now && now <= c.not_after)
        {
            let (theirs, _) = webpki_outcome(
                &scenario.chain,
                &scenario.anchors,
                u64::try_from(NOW).unwrap(),
            );
            let mine = ours(timeless, &anchors);
            comparisons += 1;
            if mine != theirs {
                disagreements.push(format!(
                    "{}  dates ignored vs webpki at NOW\n  ours:   {mine:?}\n  webpki: {theirs:?}",
                    describe(&scenario, &chain, &anchors)
                ));
            }
        }

        // A sibling leaf of the same shape verifies alike, unless an anchor involves the leaf.
        if let Some(sibling) = scenario.sibling.as_deref().and_then(|d| parse_der(d).ok()) {
            let mut siblings = chain.clone();
            siblings[0] = Arc::new(sibling);
            let shape = verifier.chain_shape(&chain);
            if shape.is_some()
                && shape == verifier.chain_shape(&siblings)
                && !anchors.iter().any(|a| ChainShape::involves(&chain[0], a))
            {
                let above_leaf = |r: Result<Verified, ChainError>| {
                    r.map(|v| (v.anchor, v.path.get(1..).unwrap_or_default().to_vec()))
                };
                let mine = above_leaf(verifier.verify(&chain, &anchors, None));
                let theirs = above_leaf(verifier.verify(&siblings, &anchors, None));
                shape_comparisons += 1;
                if mine != theirs {
                    disagreements.push(format!(
                        "{}  same shape, another leaf\n  leaf:    {mine:?}\n  sibling: {theirs:?}",
                        describe(&scenario, &chain, &anchors)
                    ));
                }
            }
        }

        // Names, as rustls's verify_server_name.
        let ee_der = CertificateDer::from(scenario.chain[0].as_slice());
        if let Ok(ee) = webpki::EndEntityCert::try_from(&ee_der) {
            for name in &scenario.names {
                let server_name = rustls_pki_types::ServerName::try_from(name.as_str()).unwrap();
                let theirs = ee
                    .verify_is_valid_for_subject_name(&server_name)
                    .map_err(expected_error);
                let mine = check_name(&chain[0], name);
                comparisons += 1;
                if mine != theirs {
                    disagreements.push(format!(
                        "{}  name {name}\n  ours:   {mine:?}\n  webpki: {theirs:?}",
                        describe(&scenario, &chain, &anchors)
                    ));
                }
            }
        }
    }

    let elapsed = started.elapsed();
    println!(
        "differential: {count} chains ({unreadable} skipped as unreadable, of which \
         {unreadable_leaf_webpki_accepts} with a leaf webpki would parse), {comparisons} \
         comparisons ({shape_comparisons} of same-shape chains), {} disagreements, {} signature \
         checks, {:.1?}\nverdicts: {verdicts:?}",
        disagreements.len(),
        verifier.signature_checks(),
        elapsed
    );
    if let Some(first) = disagreements.first() {
        panic!(
            "{} disagreement(s) with rustls-webpki; first:\n{first}",
            disagreements.len()
        );
    }
    // The generator must keep exercising the interesting verdicts.
    if count >= 500 {
        assert!(
            shape_comparisons >= count / 4,
            "only {shape_comparisons} same-shape comparisons"
        );
        for reason in [
            "Ok",
            "BadSignature",
            "UnknownIssuer",
            "Expired",
            "NotValidYet",
        ] {
            assert!(
                verdicts.get(reason).copied().unwrap_or(0) >= 5,
                "too few {reason}: {verdicts:?}"
            );
        }
    }
}

#[test]
fn rng_is_deterministic() {
    let (mut a, mut b) = (Rng(7), Rng(7));
    for _ in 0..10 {
        assert_eq!(a.next_u64(), b.next_u64());
    }
}
