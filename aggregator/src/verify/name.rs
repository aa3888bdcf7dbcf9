//! Subject names as rustls-webpki 0.103 matches them (`src/subject_name/`): the DNS and IP
//! SAN checks behind `NotValidForName`, and name constraints during path building.

use std::fmt::Write as _;

use super::der::{self, Reader};
use super::path::Budget;
use super::{ChainError, DerType};

/// One entry of a subjectAltName or of a name-constraint subtree.
#[derive(Clone, Copy)]
pub(super) enum GeneralName<'a> {
    DnsName(&'a [u8]),
    DirectoryName,
    IpAddress(&'a [u8]),
    UniformResourceIdentifier(&'a [u8]),
    /// The tag without its class and constructed bits.
    Unsupported(u8),
}

fn general_name<'a>(reader: &mut Reader<'a>) -> Result<GeneralName<'a>, ChainError> {
    const CS: u8 = der::CONTEXT_SPECIFIC;
    const CC: u8 = der::CONTEXT_SPECIFIC | der::CONSTRUCTED;
    let (tag, value) = der::read_tag_and_get_value(reader)?;
    Ok(match tag {
        t if t == CS | 2 => GeneralName::DnsName(value),
        t if t == CC | 4 => GeneralName::DirectoryName,
        t if t == CS | 7 => GeneralName::IpAddress(value),
        t if t == CS | 6 => GeneralName::UniformResourceIdentifier(value),
        t if t == CC || t == CS | 1 || t == CC | 3 || t == CC | 5 || t == CS | 8 => {
            GeneralName::Unsupported(tag & !CC)
        }
        _ => return Err(ChainError::BadDer),
    })
}

impl std::fmt::Debug for GeneralName<'_> {
    /// The format rustls shows in `NotValidForNameContext::presented`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DnsName(name) => write!(f, "DnsName(\"{}\")", String::from_utf8_lossy(name)),
            Self::DirectoryName => write!(f, "DirectoryName"),
            Self::IpAddress(ip) => write!(f, "IpAddress({})", ip_debug(ip)),
            Self::UniformResourceIdentifier(uri) => write!(
                f,
                "UniformResourceIdentifier(\"{}\")",
                String::from_utf8_lossy(uri)
            ),
            Self::Unsupported(tag) => write!(f, "Unsupported(0x{tag:02x})"),
        }
    }
}

/// webpki's `IpAddrSlice` debug format.
fn ip_debug(ip: &[u8]) -> String {
    let mut s = String::new();
    match ip.len() {
        4 => {
            let parts: Vec<String> = ip.iter().map(u8::to_string).collect();
            s.push_str(&parts.join("."));
        }
        16 => {
            let (mut first, mut skipping) = (true, false);
            for group in ip.chunks_exact(2) {
                let zero = group == [0, 0];
                match (first, zero, skipping) {
                    (true, _, _) => first = false,
                    (false, false, false) => s.push(':'),
                    (false, true, _) => {
                        skipping = true;
                        continue;
                    }
                    (false, false, true) => {
                        skipping = false;
                        s.push_str("::");
                    }
                }
                if group[0] != 0 {
                    let _ = write!(s, "{:x}", group[0]);
                }
                let _ = match group[0] {
                    0 => write!(s, "{:x}", group[1]),
                    _ => write!(s, "{:02x}", group[1]),
                };
            }
        }
        _ => {
            let parts: Vec<String> = ip.iter().map(|b| format!("{b:02x}")).collect();
            let _ = write!(s, "[invalid: {}]", parts.join(", "));
        }
    }
    s
}

/// The entries of a subjectAltName; stops after the first malformed one (`NameIterator`).
pub(super) struct NameIterator<'a> {
    reader: Option<Reader<'a>>,
}

impl<'a> NameIterator<'a> {
    pub(super) fn new(subject_alt_name: Option<&'a [u8]>) -> Self {
        Self {
            reader: subject_alt_name.map(Reader::new),
        }
    }
}

impl<'a> Iterator for NameIterator<'a> {
    type Item = Result<GeneralName<'a>, ChainError>;

    fn next(&mut self) -> Option<Self::Item> {
        let reader = self.reader.as_mut()?;
        if reader.at_end() {
            self.reader = None;
            return None;
        }
        match general_name(reader) {
            Ok(name) => Some(Ok(name)),
            Err(e) => {
                self.reader = None;
                Some(Err(e))
            }
        }
    }
}

/// `verify_dns_names`: `reference` is a DNS name already validated by `ServerName`.
pub(super) fn verify_dns_names(
    reference: &str,
    subject_alt_name: Option<&[u8]>,
) -> Result<(), ChainError> {
    let found = NameIterator::new(subject_alt_name).find_map(|name| {
        let presented = match name {
            Ok(GeneralName::DnsName(presented)) => presented,
            Ok(_) => return None,
            Err(e) => return Some(Err(e)),
        };
        match presented_id_matches_reference_id(presented, IdRole::Reference, reference.as_bytes())
        {
            Ok(true) => Some(Ok(())),
            Ok(false) | Err(ChainError::MalformedDnsIdentifier) => None,
            Err(e) => Some(Err(e)),
        }
    });
    match found {
        Some(result) => result,
        None => Err(not_valid_for(reference, subject_alt_name)),
    }
}

/// `verify_ip_address_names`: `reference` is 4 or 16 octets.
pub(super) fn verify_ip_address_names(
    reference: &[u8],
    expected: &str,
    subject_alt_name: Option<&[u8]>,
) -> Result<(), ChainError> {
    let found = NameIterator::new(subject_alt_name).find_map(|name| match name {
        Ok(GeneralName::IpAddress(presented)) => {
            (presented.len() == reference.len() && presented == reference).then_some(Ok(()))
        }
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    });
    match found {
        Some(result) => result,
        None => Err(not_valid_for(expected, subject_alt_name)),
    }
}

fn not_valid_for(expected: &str, subject_alt_name: Option<&[u8]>) -> ChainError {
    ChainError::NotValidForName {
        expected: expected.to_owned(),
        presented: NameIterator::new(subject_alt_name)
            .filter_map(|name| Some(format!("{:?}", name.ok()?)))
            .collect(),
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Subtrees {
    Permitted,
    Excluded,
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum IdRole {
    Reference,
    Presented,
    NameConstraint(Subtrees),
}

#[derive(Clone, Copy, PartialEq)]
enum Wildcards {
    Deny,
    Allow,
}

/// webpki's `presented_id_matches_reference_id` (`subject_name/dns_name.rs`).
pub(super) fn presented_id_matches_reference_id(
    presented_dns_id: &[u8],
    reference_dns_id_role: IdRole,
    reference_dns_id: &[u8],
) -> Result<bool, ChainError> {
    if !is_valid_dns_id(presented_dns_id, IdRole::Presented, Wildcards::Allow) {
        return Err(ChainError::MalformedDnsIdentifier);
    }
    if !is_valid_dns_id(reference_dns_id, reference_dns_id_role, Wildcards::Deny) {
        return Err(match reference_dns_id_role {
            IdRole::NameConstraint(_) => ChainError::MalformedNameConstraint,
            _ => ChainError::MalformedDnsIdentifier,
        });
    }

    let mut presented = Reader::new(presented_dns_id);
    let mut reference = Reader::new(reference_dns_id);

    // A constraint matches whole labels at the end of a longer presented name.
    if let IdRole::NameConstraint(_) = reference_dns_id_role
        && presented_dns_id.len() > reference_dns_id.len()
    {
        if reference_dns_id.is_empty() {
            return Ok(true);
        }
        let prefix = presented_dns_id.len() - reference_dns_id.len();
        if reference.peek(b'.') {
            let _ = presented.read_bytes(prefix);
        } else {
            let _ = presented.read_bytes(prefix - 1);
            if presented.read_byte() != Some(b'.') {
                return Ok(false);
            }
        }
    }

    // A wildcard is ignored for permitted subtrees and expanded for excluded ones
    // (CVE-2025-61727).
    if presented.peek(b'*') && reference_dns_id_role != IdRole::NameConstraint(Subtrees::Permitted)
    {
        let _ = presented.read_byte();
        loop {
            if reference.read_byte().is_none() {
                return Ok(false);
            }
            if reference.peek(b'.') {
                break;
            }
        }
    }

    loop {
        let presented_byte = match (presented.read_byte(), reference.read_byte()) {
            (Some(p), Some(r)) if p.eq_ignore_ascii_case(&r) => p,
            _ => return Ok(false),
        };
        if presented.at_end() {
            if presented_byte == b'.' {
                return Err(ChainError::MalformedDnsIdentifier);
            }
            break;
        }
    }

    if !reference.at_end() {
        if !matches!(reference_dns_id_role, IdRole::NameConstraint(_))
            && reference.read_byte() != Some(b'.')
        {
            return Ok(false);
        }
        if !reference.at_end() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// webpki's `is_valid_dns_id`.
fn is_valid_dns_id(hostname: &[u8], id_role: IdRole, allow_wildcards: Wildcards) -> bool {
    const MAX_LABEL_LENGTH: usize = 63;
    if hostname.len() > 253 {
        return false;
    }
    let mut input = Reader::new(hostname);
    let name_constrained = matches!(id_role, IdRole::NameConstraint(_));
    if name_constrained && input.at_end() {
        return true;
    }

    let mut dot_count = 0;
    let mut label_length = 0;
    let mut label_is_all_numeric = false;
    let mut label_ends_with_hyphen = false;

    let is_wildcard = allow_wildcards == Wildcards::Allow && input.peek(b'*');
    let mut is_first_byte = !is_wildcard;
    if is_wildcard {
        if input.read_byte() != Some(b'*') || input.read_byte() != Some(b'.') {
            return false;
        }
        dot_count += 1;
    }

    loop {
        match input.read_byte() {
            Some(b'-') => {
                if label_length == 0 {
                    return false;
                }
                label_is_all_numeric = false;
                label_ends_with_hyphen = true;
                label_length += 1;
                if label_length > MAX_LABEL_LENGTH {
                    return false;
                }
            }
            Some(b'0'..=b'9') => {
                if label_length == 0 {
                    label_is_all_numeric = true;
                }
                label_ends_with_hyphen = false;
                label_length += 1;
                if label_length > MAX_LABEL_LENGTH {
                    return false;
                }
            }
            Some(b'a'..=b'z' | b'A'..=b'Z' | b'_') => {
                label_is_all_numeric = false;
                label_ends_with_hyphen = false;
                label_length += 1;
                if label_length > MAX_LABEL_LENGTH {
                    return false;
                }
            }
            Some(b'.') => {
                dot_count += 1;
                if label_length == 0 && (!name_constrained || !is_first_byte) {
                    return false;
                }
                if label_ends_with_hyphen {
                    return false;
                }
                label_length = 0;
            }
            _ => return false,
        }
        is_first_byte = false;
        if input.at_end() {
            break;
        }
    }

    if label_length == 0 && id_role != IdRole::Reference {
        return false;
    }
    if label_ends_with_hyphen || label_is_all_numeric {
        return false;
    }
    if is_wildcard {
        let label_count = if label_length == 0 {
            dot_count
        } else {
            dot_count + 1
        };
        if label_count < 3 {
            return false;
        }
    }
    true
}

/// webpki's `ip_address::presented_id_matches_constraint`.
fn ip_matches_constraint(name: &[u8], constraint: &[u8]) -> Result<bool, ChainError> {
    match (name.len(), constraint.len()) {
        (4, 8) | (16, 32) => {}
        (4, 32) | (16, 8) => return Ok(false),
        (4, _) | (16, _) => return Err(ChainError::InvalidNetworkMaskConstraint),
        _ => return Err(ChainError::BadDer),
    }
    let (address, mask) = constraint.split_at(constraint.len() / 2);
    let mut seen_zero_bit = false;
    for ((&n, &a), &m) in name.iter().zip(address).zip(mask) {
        if m.leading_ones() + m.trailing_zeros() != 8 {
            return Err(ChainError::InvalidNetworkMaskConstraint);
        }
        if seen_zero_bit && m != 0x00 {
            return Err(ChainError::InvalidNetworkMaskConstraint);
        }
        if m != 0xff {
            seen_zero_bit = true;
        }
        if (n ^ a) & m != 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `check_name_constraints`: `constraints` is the nameConstraints SEQUENCE contents of a CA or
/// anchor; `subject_alt_names` yields the SAN of every certificate below it, nearest first.
pub(super) fn check_name_constraints<'a>(
    constraints: &[u8],
    subject_alt_names: impl Iterator<Item = Option<&'a [u8]>>,
    budget: &mut Budget,
) -> Result<(), ChainError> {
    fn subtrees<'b>(reader: &mut Reader<'b>, tag: u8) -> Result<Option<&'b [u8]>, ChainError> {
        if !reader.peek(tag) {
            return Ok(None);
        }
        der::expect_tag(reader, tag).map(Some)
    }

    der::read_all(constraints, ChainError::BadDer, |reader| {
        let permitted = subtrees(reader, der::CONTEXT_CONSTRUCTED_0)?;
        let excluded = subtrees(reader, der::CONTEXT_CONSTRUCTED_1)?;

        for san in subject_alt_names {
            let result = NameIterator::new(san).find_map(|name| match name {
                Ok(name) => conforms(name, permitted, excluded, budget),
                Err(e) => Some(Err(e)),
            });
            if let Some(Err(e)) = result {
                return Err(e);
            }
            let result = conforms(GeneralName::DirectoryName, permitted, excluded, budget);
            if let Some(Err(e)) = result {
                return Err(e);
            }
        }
        Ok(())
    })
}

/// `check_presented_id_conforms_to_constraints`: `None` = conforms.
fn conforms(
    name: GeneralName<'_>,
    permitted: Option<&[u8]>,
    excluded: Option<&[u8]>,
    budget: &mut Budget,
) -> Option<Result<(), ChainError>> {
    for (subtrees, constraints) in [
        (Subtrees::Permitted, permitted),
        (Subtrees::Excluded, excluded),
    ] {
        let Some(constraints) = constraints else {
            continue;
        };
        let mut constraints = Reader::new(constraints);
        let mut has_permitted_match = false;
        let mut has_permitted_mismatch = false;
        while !constraints.at_end() {
            if let Err(e) = budget.consume_name_constraint_comparison() {
                return Some(Err(e));
            }
            let base = match der::expect_tag(&mut constraints, der::SEQUENCE).and_then(|v| {
                der::read_all(
                    v,
                    ChainError::TrailingData(DerType::GeneralName),
                    general_name,
                )
            }) {
                Ok(base) => base,
                Err(e) => return Some(Err(e)),
            };
            let reject_all = Ok(subtrees == Subtrees::Excluded);
            let matches = match (name, base) {
                (GeneralName::DnsName(name), GeneralName::DnsName(base)) => {
                    presented_id_matches_reference_id(name, IdRole::NameConstraint(subtrees), base)
                }
                (GeneralName::DnsName(_), _) => continue,
                (GeneralName::DirectoryName, GeneralName::DirectoryName) => reject_all,
                (GeneralName::DirectoryName, _) => continue,
                (GeneralName::IpAddress(name), GeneralName::IpAddress(base)) => {
                    ip_matches_constraint(name, base)
                }
                (GeneralName::IpAddress(_), _) => continue,
                (
                    GeneralName::UniformResourceIdentifier(_),
                    GeneralName::UniformResourceIdentifier(_),
                ) => reject_all,
                (GeneralName::UniformResourceIdentifier(_), _) => continue,
                (GeneralName::Unsupported(name_tag), GeneralName::Unsupported(base_tag))
                    if name_tag == base_tag =>
                {
                    Err(ChainError::NameConstraintViolation)
                }
                (GeneralName::Unsupported(_), _) => continue,
            };
            match (subtrees, matches) {
                (Subtrees::Permitted, Ok(true)) => has_permitted_match = true,
                (Subtrees::Permitted, Ok(false)) => has_permitted_mismatch = true,
                (Subtrees::Excluded, Ok(true)) => {
                    return Some(Err(ChainError::NameConstraintViolation));
                }
                (Subtrees::Excluded, Ok(false)) => {}
                (_, Err(e)) => return Some(Err(e)),
            }
        }
        if has_permitted_mismatch && !has_permitted_match {
            return Some(Err(ChainError::NameConstraintViolation));
        }
    }
    None
}
