//! Test support for anchorwatch: a simulated Kubernetes API server, simulated Linkerd proxies,
//! certificate material, the rotation scenario, starting the real binaries, and a Service that
//! routes to ready backends.

pub mod cases;
pub mod injected;
pub mod kubesim;
pub mod pki;
pub mod process;
pub mod proxysim;
pub mod scenario;
pub mod service;
