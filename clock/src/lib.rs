//! Clock maths shared by the agent and the aggregator (DESIGN section 4), pure: no sockets, no
//! system clock reads ([`wall`] only converts what the caller read). The IO modules of each
//! binary read the clock and move the bytes.
//!
//! - [`packet`]: the 48-byte NTP packet (RFC 5905 / RFC 4330) and its timestamps.
//! - [`exchange`]: one client/server exchange (t1..t4): the checks a reply must pass, offset θ,
//!   delay δ, and the error bound of θ.
//! - [`filter`]: a burst of exchanges reduced to its lowest-delay sample.
//! - [`drift`]: a bounded history of offsets per node, a drift rate with its uncertainty, and
//!   forecasts of threshold crossings.
//! - [`wall`]: a `SystemTime` as a chrono time, saturated instead of panicking.

pub mod drift;
pub mod exchange;
pub mod filter;
pub mod packet;
pub mod wall;
