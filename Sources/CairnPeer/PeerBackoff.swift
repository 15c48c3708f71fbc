import NIOCore

/// Reconnect delays for one peer: exponential from `initial` to `maximum`,
/// each drawn uniformly from the upper half of the current step ("equal
/// jitter"), so members that lost each other at the same moment do not
/// redial in lockstep, and a member that is down is not hammered.
///
/// The randomness is a seeded SplitMix64 stream: tests replay the same delays
/// from the same seed, and two peers with different seeds spread out.
///
/// Invariants:
/// 1. Every delay lies in `[step / 2, step]` where `step` is
///    `min(initial * 2^failures, maximum)`.
/// 2. `reset()` returns the next delay to the `initial` step.
struct PeerBackoff {
    let initial: TimeAmount
    let maximum: TimeAmount
    private var step: TimeAmount
    private var random: SplitMix64

    init(initial: TimeAmount, maximum: TimeAmount, seed: UInt64) {
        precondition(
            initial.nanoseconds > 0 && maximum >= initial, "backoff bounds must be positive and ordered")
        self.initial = initial
        self.maximum = maximum
        self.step = initial
        self.random = SplitMix64(seed: seed)
    }

    /// The delay before the next dial; grows the step for the one after.
    mutating func nextDelay() -> TimeAmount {
        let upper = self.step.nanoseconds
        let lower = upper / 2
        let span = UInt64(upper - lower)
        let offset = span == 0 ? 0 : Int64(self.random.next() % (span + 1))
        let doubled = self.step.nanoseconds > self.maximum.nanoseconds / 2 ? self.maximum : self.step * 2
        self.step = min(doubled, self.maximum)
        return .nanoseconds(lower + offset)
    }

    /// Called once a connection is established and accepted.
    mutating func reset() {
        self.step = self.initial
    }
}

/// A small, fast, seedable pseudo-random generator (SplitMix64). Not for
/// secrets; only for spreading reconnect times.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = self.state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
