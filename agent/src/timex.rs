//! The kernel's clock discipline, read with `adjtimex(2)` with `modes = 0` (read-only: nothing is
//! ever set). The workspace's only `unsafe` code: one FFI call on a zeroed, owned struct.

use chrono::{DateTime, Utc};

/// What the kernel says of its clock (the fields node_exporter's timex collector reads).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelTime {
    /// STA_UNSYNC clear and the state not TIME_ERROR.
    pub synchronised: bool,
    /// PLL offset, seconds.
    pub offset_s: f64,
    /// Frequency adjustment, ppm.
    pub frequency_ppm: f64,
    /// Maximum error, seconds.
    pub max_error_s: f64,
    /// Estimated error, seconds.
    pub est_error_s: f64,
    /// TAI − UTC, seconds.
    pub tai_offset_s: i32,
    /// adjtimex's return value: TIME_OK 0, TIME_INS 1, TIME_DEL 2, TIME_OOP 3, TIME_WAIT 4,
    /// TIME_ERROR 5.
    pub state: i32,
    /// Status bits (STA_*).
    pub status: u32,
    /// The kernel's clock when read.
    pub at: DateTime<Utc>,
}

const STA_UNSYNC: i32 = 0x0040;
const STA_NANO: i32 = 0x2000;
const TIME_ERROR: i32 = 5;

/// Reads the kernel's time status without changing anything.
#[allow(unsafe_code)]
pub fn read() -> std::io::Result<KernelTime> {
    // SAFETY: `tx` is a zero-initialised, properly aligned `libc::timex` owned by this frame;
    // with `modes = 0` the kernel only writes the current values into it (adjtimex(2)).
    let (state, tx) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        tx.modes = 0;
        (libc::adjtimex(&mut tx), tx)
    };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(from_raw(state, &tx, crate::time::now()))
}

/// The raw fields in units: `offset` is in ns with STA_NANO, else µs; `freq` is ppm scaled by
/// 2^16; errors are µs.
fn from_raw(state: i32, tx: &libc::timex, at: DateTime<Utc>) -> KernelTime {
    let offset_unit = if tx.status & STA_NANO != 0 {
        1e-9
    } else {
        1e-6
    };
    KernelTime {
        synchronised: tx.status & STA_UNSYNC == 0 && state != TIME_ERROR,
        offset_s: tx.offset as f64 * offset_unit,
        frequency_ppm: tx.freq as f64 / 65_536.0,
        max_error_s: tx.maxerror as f64 * 1e-6,
        est_error_s: tx.esterror as f64 * 1e-6,
        tai_offset_s: tx.tai,
        state,
        status: tx.status as u32,
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_works_here_and_changes_nothing() {
        let a = read().expect("adjtimex(modes = 0) is allowed unprivileged");
        let b = read().unwrap();
        // Read-only: the frequency is whatever it was (this VM reads unsynchronised, maxerror
        // 16 s; a synced host reads otherwise: assert nothing about the sync state).
        assert_eq!(a.frequency_ppm, b.frequency_ppm);
        assert!((0..=5).contains(&a.state), "{a:?}");
        assert!(a.max_error_s >= 0.0);
    }

    #[test]
    fn units_follow_the_status_bits() {
        // SAFETY: zeroed plain-old-data, as in `read`.
        #[allow(unsafe_code)]
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.offset = 1500;
        tx.freq = 65_536 * 12;
        tx.maxerror = 16_000_000;
        tx.esterror = 250;
        tx.tai = 37;
        tx.status = STA_UNSYNC;
        let k = from_raw(5, &tx, crate::time::now());
        assert!(!k.synchronised);
        assert!((k.offset_s - 0.0015).abs() < 1e-12);
        assert_eq!(k.frequency_ppm, 12.0);
        assert_eq!((k.max_error_s, k.tai_offset_s), (16.0, 37));
        tx.status = STA_NANO;
        let k = from_raw(0, &tx, crate::time::now());
        assert!(k.synchronised);
        assert!((k.offset_s - 1.5e-6).abs() < 1e-15);
    }
}
