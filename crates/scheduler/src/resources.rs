//! The two reservable dimensions of a node: CPU and memory.

use std::fmt;

/// An amount of CPU and memory: a node's capacity, what it has reserved, or what one instance
/// asks for.
///
/// Both fields are `u64` so that any real machine fits without thought, and every operation that
/// could overflow is checked: the scheduler must never panic on input it did not choose, and
/// a wrapped reservation would be an overcommit in disguise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// Thousandths of a core (`500` is half a core), as Kubernetes and the deploy file count.
    pub cpu_millis: u64,
    /// Bytes of memory.
    pub memory_bytes: u64,
}

impl Resources {
    /// Nothing: the request of an instance that reserves nothing fits on any ready node.
    pub const ZERO: Resources = Resources {
        cpu_millis: 0,
        memory_bytes: 0,
    };

    /// `cpu_millis` thousandths of a core and `memory_bytes` bytes.
    pub const fn new(cpu_millis: u64, memory_bytes: u64) -> Self {
        Resources {
            cpu_millis,
            memory_bytes,
        }
    }

    /// The sum, or `None` if either dimension would overflow.
    pub fn checked_add(self, other: Resources) -> Option<Resources> {
        Some(Resources {
            cpu_millis: self.cpu_millis.checked_add(other.cpu_millis)?,
            memory_bytes: self.memory_bytes.checked_add(other.memory_bytes)?,
        })
    }

    /// The difference, or `None` if either dimension would go below zero.
    pub fn checked_sub(self, other: Resources) -> Option<Resources> {
        Some(Resources {
            cpu_millis: self.cpu_millis.checked_sub(other.cpu_millis)?,
            memory_bytes: self.memory_bytes.checked_sub(other.memory_bytes)?,
        })
    }

    /// The difference, each dimension floored at zero.
    pub fn saturating_sub(self, other: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
        }
    }

    /// Whether `self` fits inside `room` in both dimensions.
    pub fn fits_in(self, room: Resources) -> bool {
        self.cpu_millis <= room.cpu_millis && self.memory_bytes <= room.memory_bytes
    }

    /// Whether both dimensions are zero.
    pub fn is_zero(self) -> bool {
        self == Resources::ZERO
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}m cpu, {} B memory",
            self.cpu_millis, self.memory_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_add_refuses_to_overflow_either_dimension() {
        let big = Resources::new(u64::MAX, 1);
        assert_eq!(big.checked_add(Resources::new(1, 0)), None);
        assert_eq!(
            Resources::new(1, u64::MAX).checked_add(Resources::new(0, 1)),
            None
        );
        assert_eq!(
            Resources::new(1, 2).checked_add(Resources::new(3, 4)),
            Some(Resources::new(4, 6))
        );
    }

    #[test]
    fn checked_sub_refuses_to_go_below_zero() {
        assert_eq!(Resources::new(1, 5).checked_sub(Resources::new(2, 0)), None);
        assert_eq!(Resources::new(5, 1).checked_sub(Resources::new(0, 2)), None);
        assert_eq!(
            Resources::new(5, 5).checked_sub(Resources::new(2, 3)),
            Some(Resources::new(3, 2))
        );
        assert_eq!(
            Resources::new(1, 5).saturating_sub(Resources::new(2, 1)),
            Resources::new(0, 4)
        );
    }

    #[test]
    fn fits_in_needs_both_dimensions() {
        let room = Resources::new(1000, 1 << 30);
        assert!(Resources::ZERO.fits_in(room));
        assert!(Resources::ZERO.fits_in(Resources::ZERO));
        assert!(room.fits_in(room));
        assert!(!Resources::new(1001, 0).fits_in(room));
        assert!(!Resources::new(0, (1 << 30) + 1).fits_in(room));
    }
}
