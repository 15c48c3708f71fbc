import NIOCore

/// Heartbeat round trips of a leader to each peer, sampled one at a time.
///
/// Answers come back in the order heartbeats went out (one connection per
/// direction, one executor at the peer), so the first answer after a
/// sampled heartbeat answers that heartbeat when no other was
/// outstanding before it. A lost heartbeat or answer leaves a probe
/// outstanding; after `staleAfter` it is abandoned and a new one starts.
///
/// Properties:
/// 1. A sample is taken only from a probe started while nothing was
///    outstanding towards that peer, and ends with the first answer.
/// 2. At most one probe per peer, so the state is bounded by the peers.
public struct PeerRoundTrips: Sendable {
    struct Probe: Sendable {
        /// When the sampled heartbeat left; nil once it was answered and
        /// older heartbeats are still outstanding.
        var sentAt: NIODeadline?
        var startedAt: NIODeadline
        var outstanding: Int
    }

    private var probes: [UInt64: Probe] = [:]
    /// How long an unanswered probe is kept before it is abandoned.
    public let staleAfter: TimeAmount

    public init(staleAfter: TimeAmount = .seconds(2)) {
        self.staleAfter = staleAfter
    }

    /// Probes outstanding (bounded by the peers: property 2).
    public var outstandingPeers: Int { self.probes.count }

    /// A heartbeat to `peer` left at `now`.
    public mutating func sent(to peer: UInt64, at now: NIODeadline) {
        if var probe = self.probes[peer], now - probe.startedAt < self.staleAfter {
            probe.outstanding += 1
            self.probes[peer] = probe
        } else {
            self.probes[peer] = Probe(sentAt: now, startedAt: now, outstanding: 1)
        }
    }

    /// An answer from `peer` arrived at `now`: the sampled round trip, if
    /// this answer ended one.
    public mutating func answered(by peer: UInt64, at now: NIODeadline) -> TimeAmount? {
        guard var probe = self.probes[peer] else { return nil }
        let sample = probe.sentAt.map { now - $0 }
        probe.sentAt = nil
        probe.outstanding -= 1
        self.probes[peer] = probe.outstanding > 0 ? probe : nil
        return sample
    }

    /// Leadership moved: outstanding heartbeats no longer matter.
    public mutating func reset() { self.probes.removeAll() }
}
