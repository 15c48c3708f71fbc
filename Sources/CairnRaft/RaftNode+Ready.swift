/// Producing and acknowledging `Ready` batches (the node's only output).
extension RaftNode {
    /// Whether `ready()` would return a batch.
    public var hasReady: Bool {
        if readyOutstanding { return false }
        if needsBroadcast || !outbox.isEmpty || !readStates.isEmpty { return true }
        if currentSoftState != lastSoftState || hardState != lastHardState { return true }
        if log.unstableSnapshot != nil && !log.snapshotHandedOut { return true }
        return !log.entriesToHandOut.isEmpty || log.hasNextCommittedEntries
    }

    var currentSoftState: SoftState { SoftState(leader: leader, role: role) }

    /// The next batch of work, or nil when there is none or the previous batch has not been
    /// acknowledged with `advance(_:)` yet. See `Ready` for the ordering contract.
    public func ready() -> Ready? {
        guard hasReady else { return nil }
        if needsBroadcast && role == .leader { broadcastAppend() }
        needsBroadcast = false
        let soft = currentSoftState
        let hard = hardState
        var snapshot: Snapshot?
        if let unstable = log.unstableSnapshot, !log.snapshotHandedOut { snapshot = unstable }
        let entries = Array(log.entriesToHandOut)
        log.markHandedOut(through: entries.last?.index ?? 0, snapshot: snapshot != nil)
        let committed = log.nextCommittedEntries(bytesMax: config.committedEntriesBytesMax)
        if role == .leader && uncommittedBytes > 0 {
            for entry in committed where entry.term == term {
                uncommittedBytes = max(0, uncommittedBytes - entry.sizeBytes)
            }
        }
        let ready = Ready(
            softState: soft == lastSoftState ? nil : soft,
            hardState: hard == lastHardState ? nil : hard,
            snapshot: snapshot,
            entries: entries,
            committedEntries: committed,
            messages: outbox,
            readStates: readStates,
            mustSync: !entries.isEmpty || hard.term != lastHardState.term || hard.vote != lastHardState.vote
        )
        outbox.removeAll(keepingCapacity: true)
        readStates.removeAll()
        lastSoftState = soft
        lastHardState = hard
        readyOutstanding = true
        return ready
    }

    /// Acknowledges that `ready` was persisted (and its committed entries applied). The
    /// leader counts its own log towards the commit quorum only from here, so an entry is
    /// never committed on the strength of an unpersisted leader copy.
    public func advance(_ ready: Ready) {
        precondition(readyOutstanding, "advance without an outstanding Ready")
        readyOutstanding = false
        if let snapshot = ready.snapshot {
            log.snapshotPersisted(index: snapshot.index)
            log.applied(to: snapshot.index)
        }
        if let last = ready.entries.last { log.entriesPersisted(through: last.index, term: last.term) }
        if let last = ready.committedEntries.last { log.applied(to: last.index) }
        guard role == .leader, var progress = tracker.progress[id] else { return }
        let stable = min(log.stableIndex, log.lastIndex)
        if progress.maybeUpdate(stable) {
            tracker.progress[id] = progress
            if maybeCommit() { broadcastAppend() }
        }
    }
}
