//! The `anchorwatch.v1` gRPC contract, generated from `proto/anchorwatch/v1/*.proto`.

/// Generated messages and services of package `anchorwatch.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("anchorwatch.v1");
}

/// The encoded `FileDescriptorSet` of every anchorwatch .proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/anchorwatch_descriptor.bin"));

/// Splitting a node's report into messages of bounded size.
pub mod parts {
    use crate::v1::{NodeDelta, NodeSnapshot, PodEvidence};
    use prost::Message;

    /// Target size of one message: a part closes once its pods reach it (so a part exceeds it
    /// by at most one pod). Small, because the receiver's decode buffer keeps the capacity of
    /// the largest message for the stream's life: 8 KiB parts cost the aggregator about 16 KiB
    /// per agent where 32 KiB parts cost 80 KiB (400 MiB at 5,000 agents).
    pub const PART_BYTES: usize = 8 * 1024;

    /// Groups `pods` into runs of about `max_bytes` encoded bytes each; at least one (empty)
    /// run, so an empty node still sends a snapshot.
    fn runs(pods: Vec<PodEvidence>, max_bytes: usize) -> Vec<Vec<PodEvidence>> {
        let mut out = vec![Vec::new()];
        let mut size = 0;
        for p in pods {
            let len = p.encoded_len();
            let current = out.last_mut().expect("never empty");
            if !current.is_empty() && size + len > max_bytes {
                out.push(Vec::new());
                size = 0;
            }
            size += len;
            out.last_mut().expect("never empty").push(p);
        }
        out
    }

    /// `snapshot` as parts of about `max_bytes` each, numbered from `first_seq`; the clock goes
    /// with the last part, every other part has `continues` set.
    pub fn snapshot(snapshot: NodeSnapshot, first_seq: u64, max_bytes: usize) -> Vec<NodeSnapshot> {
        let NodeSnapshot {
            node,
            sent_at,
            agent_version,
            pods,
            mut clock,
            ..
        } = snapshot;
        let runs = runs(pods, max_bytes);
        let last = runs.len() - 1;
        runs.into_iter()
            .enumerate()
            .map(|(i, pods)| NodeSnapshot {
                node: node.clone(),
                seq: first_seq + i as u64,
                sent_at,
                agent_version: agent_version.clone(),
                pods,
                clock: if i == last { clock.take() } else { None },
                continues: i != last,
            })
            .collect()
    }

    /// `delta` as several deltas of about `max_bytes` each, numbered from `first_seq`; the
    /// removals go with the first. Each is a delta of its own (deltas replace pods by uid), so
    /// applying them in order is applying `delta`.
    pub fn delta(delta: NodeDelta, first_seq: u64, max_bytes: usize) -> Vec<NodeDelta> {
        let NodeDelta {
            node,
            sent_at,
            upserted,
            mut removed_uids,
            ..
        } = delta;
        runs(upserted, max_bytes)
            .into_iter()
            .enumerate()
            .map(|(i, upserted)| NodeDelta {
                node: node.clone(),
                seq: first_seq + i as u64,
                sent_at,
                upserted,
                removed_uids: std::mem::take(&mut removed_uids),
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::v1::PodRef;

        fn pod(i: usize, pad: usize) -> PodEvidence {
            PodEvidence {
                pod: Some(PodRef {
                    namespace: "ns".into(),
                    name: format!("p{i}"),
                    uid: format!("u{i}"),
                }),
                pod_ip: "x".repeat(pad),
                ..Default::default()
            }
        }

        #[test]
        fn a_snapshot_in_parts_keeps_every_pod_in_order_and_marks_all_but_the_last() {
            let pods: Vec<_> = (0..100).map(|i| pod(i, 1000)).collect();
            let whole = NodeSnapshot {
                node: "n".into(),
                pods: pods.clone(),
                clock: Some(Default::default()),
                ..Default::default()
            };
            let parts = snapshot(whole, 7, 8 * 1024);
            assert!(parts.len() >= 12, "{}", parts.len());
            for (i, p) in parts.iter().enumerate() {
                assert_eq!(p.seq, 7 + i as u64);
                assert_eq!(p.continues, i + 1 != parts.len());
                assert_eq!(p.clock.is_some(), i + 1 == parts.len());
                assert!(p.encoded_len() < 8 * 1024 + 1100, "{}", p.encoded_len());
            }
            let again: Vec<_> = parts.into_iter().flat_map(|p| p.pods).collect();
            assert_eq!(again, pods);
        }

        #[test]
        fn an_empty_node_is_one_part_and_a_huge_pod_is_a_part_of_its_own() {
            let parts = snapshot(NodeSnapshot::default(), 1, 1024);
            assert_eq!(parts.len(), 1);
            assert!(!parts[0].continues);
            let whole = NodeSnapshot {
                pods: vec![pod(0, 10), pod(1, 5000), pod(2, 10)],
                ..Default::default()
            };
            let sizes: Vec<usize> = snapshot(whole, 1, 1024)
                .iter()
                .map(|p| p.pods.len())
                .collect();
            assert_eq!(sizes, [1, 1, 1]);
        }

        #[test]
        fn a_delta_in_parts_sends_the_removals_once() {
            let d = NodeDelta {
                upserted: (0..20).map(|i| pod(i, 500)).collect(),
                removed_uids: vec!["gone".into()],
                ..Default::default()
            };
            let parts = delta(d, 3, 2048);
            assert!(parts.len() > 1);
            let removed: Vec<_> = parts.iter().flat_map(|p| p.removed_uids.clone()).collect();
            assert_eq!(removed, ["gone"]);
            assert_eq!(parts.iter().map(|p| p.upserted.len()).sum::<usize>(), 20);
            assert_eq!(parts.last().unwrap().seq, 3 + parts.len() as u64 - 1);
        }
    }
}
