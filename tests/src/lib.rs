//! Test support for anchorwatch: a simulated Kubernetes API server, simulated Linkerd proxies,
//! certificate material, the rotation scenario, and starting the real binaries.

pub mod cases;
pub mod injected;
pub mod kubesim;
pub mod pki;
pub mod process;
pub mod proxysim;
pub mod scenario;
