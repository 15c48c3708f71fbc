import CairnCore
import CairnMVCC

/// What Maintenance Status and the quota check need from the state.
public struct StateStatus: Hashable, Sendable {
    public var revision: Int64
    /// -1 when never compacted.
    public var compactRevision: Int64
    public var appliedIndex: UInt64
    /// Keys live at `revision`.
    public var keyCount: Int
    public var leaseCount: Int
    /// Every retained version's key and value plus a fixed overhead each
    /// (`versionOverheadBytes`): what `--quota-backend-bytes` is checked
    /// against, standing in for etcd's database file size. Compaction
    /// lowers it at once (etcd needs a defragment for that).
    public var approximateSizeBytes: Int
}

extension StateMachine {
    /// The current figures; `keyCount` walks the key index.
    public var status: StateStatus {
        StateStatus(
            revision: store.currentRevision, compactRevision: store.compactedRevision,
            appliedIndex: appliedIndex,
            keyCount: store.liveKeyCount, leaseCount: lessor.count, approximateSizeBytes: approximateSizeBytes
        )
    }

    /// HashKV: a digest of every retained version up to `revision` (0 =
    /// current), equal on members that applied the same entries.
    public func hash(revision: Int64 = 0) throws(CairnError) -> KeySpaceHash {
        try store.hashKeySpace(revision: revision)
    }

    // MARK: leader-local lease operations (not replicated)

    /// This member became leader: lease clocks start (see `Lessor.promote`).
    public mutating func promote(now: MonotonicInstant, extensionMilliseconds: Int64 = 0) {
        lessor.promote(now: now, extensionMilliseconds: extensionMilliseconds)
    }

    /// This member stopped being leader: no lease expires here.
    public mutating func demote() { lessor.demote() }

    /// A keep-alive (see `Lessor.renew`).
    public mutating func renew(_ id: LeaseID, now: MonotonicInstant) throws(CairnError) -> Lessor.Renewal {
        try lessor.renew(id, now: now)
    }

    /// Lease IDs whose revoke to propose now (see `Lessor.expired`).
    public mutating func expiredLeases(now: MonotonicInstant) -> [LeaseID] { lessor.expired(now: now) }

    /// Checkpoints to propose now (see `Lessor.checkpointsDue`).
    public mutating func leaseCheckpointsDue(now: MonotonicInstant) -> [LeaseCheckpoint] {
        lessor.checkpointsDue(now: now)
    }
}
