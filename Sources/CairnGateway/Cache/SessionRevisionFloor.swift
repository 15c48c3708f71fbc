/// The highest revision one client session has been shown, so that the
/// gateway never answers that client from an older revision: a cached answer
/// stamped with P below the floor would let the client see its own write (or
/// a newer read) disappear. Kept per client connection by the lead.
///
/// Invariants:
/// 1. `highestSeen` never decreases.
/// 2. `admits(revision)` holds exactly when `revision >= highestSeen`.
public struct SessionRevisionFloor: Sendable {
    public private(set) var highestSeen: Int64 = 0

    public init() {}

    /// Records the header revision of any response sent to the client
    /// (reads, writes, txns, watch responses).
    public mutating func observe(_ revision: Int64) {
        highestSeen = max(highestSeen, revision)
    }

    /// Whether an answer stamped with `revision` may be shown to the client.
    /// A forwarded serializable read answered by a lagging member can fail
    /// this too; the lead then retries it linearizably or on the leader.
    public func admits(_ revision: Int64) -> Bool {
        revision >= highestSeen
    }
}
