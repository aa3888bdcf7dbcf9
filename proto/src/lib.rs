//! The `anchorwatch.v1` gRPC contract, generated from `proto/anchorwatch/v1/*.proto`.

/// Generated messages and services of package `anchorwatch.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("anchorwatch.v1");
}

/// The encoded `FileDescriptorSet` of every anchorwatch .proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/anchorwatch_descriptor.bin"));
