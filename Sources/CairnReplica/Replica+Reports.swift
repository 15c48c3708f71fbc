import CairnCore
import CairnRaft

/// What the peer transport observed, fed back into Raft's flow control.
extension Replica {
    /// `member` could not be reached: the leader probes it again instead of
    /// streaming entries into the void.
    public func reportUnreachable(_ member: MemberID) {
        guard case .running = state else { return }
        raft.reportUnreachable(member.rawValue)
    }

    /// A snapshot send to `member` ended; on failure the leader retries it.
    public func reportSnapshot(to member: MemberID, failed: Bool) {
        guard case .running = state else { return }
        raft.reportSnapshot(to: member.rawValue, failed: failed)
    }

    /// Offers a snapshot of the applied state with the next effects even
    /// before `snapshotEntriesInterval` (Defragment). False when the
    /// applied state is already the latest snapshot's: nothing to save.
    @discardableResult
    public func requestSnapshot() -> Bool {
        guard case .running = state, stateMachine.appliedIndex > lastSnapshotIndex else { return false }
        snapshotRequested = true
        return true
    }
}
