import CairnCore
import CairnMVCC
import CairnRaft
import CairnStateMachine

/// The one place where the ordering rules live.
extension Replica {
    /// The next batch of work for the shell, or nil when there is none.
    ///
    /// Ordering contract (each step only after the previous one):
    /// 1. `persist`: a leader's snapshot, then hard state and entries. Messages, applies
    ///    and answers of that Raft batch are held back until `persisted()`, except a
    ///    leader's messages, which come with the persist (`sendsBeforePersist`).
    /// 2. `messages` of a batch whose persistence was confirmed.
    /// 3. `applied`: committed entries of that batch, in order, after a snapshot install.
    /// 4. `responses` for this member's requests and `reads` whose index is applied.
    /// A batch may carry the effects of a confirmed Raft batch together with the
    /// persistence of the next one: they are independent.
    public func nextEffects() -> ReplicaEffects? {
        var effects = ReplicaEffects()
        effects.responses = earlyResponses
        effects.reads = earlyReads
        earlyResponses = []
        earlyReads = []
        var batches = 0
        while case .running = state, batches < config.readyBatchesPerCallMax {
            if case .persisted(let ready) = persistState {
                persistState = .idle
                perform(ready, into: &effects)
                batches += 1
                continue
            }
            guard case .idle = persistState, var ready = raft.ready() else { break }
            if ready.snapshot == nil && ready.hardState == nil && ready.entries.isEmpty {
                persistState = .persisted(ready)  // nothing to make durable
                continue
            }
            if sendsBeforePersist(ready) {
                effects.messages += ready.messages
                ready.messages = []
            }
            persistState = .awaiting(ready)
            effects.persist = PersistRequest(
                snapshot: ready.snapshot, hardState: ready.hardState, entries: ready.entries,
                mustSync: ready.mustSync)
            applyDurableCommittedEntries(of: ready, into: &effects)
            break
        }
        answerReads(into: &effects)
        offerSnapshot(into: &effects)
        return effects.isEmpty ? nil : effects
    }

    /// The shell made the last `persist` durable (in the order given). Mirrors it into the
    /// in-memory log; its effects come with the next `nextEffects()`.
    public func persisted() {
        guard case .awaiting(let ready) = persistState else {
            preconditionFailure("persisted() without an outstanding persist request (state \(persistState))")
        }
        if let snapshot = ready.snapshot { storage.applySnapshot(config.retained(snapshot)) }
        if let hardState = ready.hardState { storage.setHardState(hardState) }
        storage.append(ready.entries)
        persistState = .persisted(ready)
    }

    /// The shell saved the snapshot from `ReplicaEffects.snapshotToSave` (its bytes in
    /// `snapshot.data`): the log before it (less `catchUpEntries`) is released.
    public func snapshotSaved(_ snapshot: Snapshot) {
        snapshotOutstanding = false
        guard snapshot.index > storage.latestSnapshot.index else { return }
        do throws(StorageError) {
            try storage.createSnapshot(
                index: snapshot.index, confState: snapshot.confState,
                data: config.retained(snapshot).data)
            lastSnapshotIndex = max(lastSnapshotIndex, snapshot.index)
            if snapshot.index > config.catchUpEntries {
                let compactIndex = snapshot.index - config.catchUpEntries
                if compactIndex >= storage.firstIndex() { try storage.compact(upTo: compactIndex) }
            }
        } catch {
            // A newer leader snapshot already covers this index: nothing to release.
        }
    }

    /// Whether a batch's messages may go out while its persist runs: a
    /// leader's appends may (Raft thesis 10.2.1, as etcd does), because the
    /// leader counts its own log toward a commit only after `persisted()`
    /// (`RaftNode.advance`), so the followers' fsyncs overlap the leader's
    /// instead of following it. Anything else (a vote, an acknowledgement,
    /// a batch that changes term or vote) still waits for the disk.
    private func sendsBeforePersist(_ ready: Ready) -> Bool {
        guard raft.role == .leader, ready.snapshot == nil, !ready.messages.isEmpty else { return false }
        guard let hardState = ready.hardState else { return true }
        let durable = storage.hardState
        return hardState.term == durable.term && hardState.vote == durable.vote
    }

    /// Committed entries of a batch that are already in the durable log
    /// (persisted with an earlier batch) need not wait for this batch's
    /// persistence: applying them now lets a request answer one fsync
    /// sooner while the next batch is written (group commit keeps
    /// flowing). Entries of this batch itself still wait (rule 3), and a
    /// batch that installs a snapshot or changes leadership applies
    /// everything in order after persistence. `perform` skips what was
    /// applied here (`apply` ignores indexes at or below the applied one).
    private func applyDurableCommittedEntries(of ready: Ready, into effects: inout ReplicaEffects) {
        guard ready.snapshot == nil, ready.softState == nil else { return }
        let durable = storage.lastIndex()
        for entry in ready.committedEntries {
            // In the durable log at the same term, hence the same entry (log
            // matching); this batch may be overwriting a durable suffix.
            guard entry.index <= durable, (try? storage.term(at: entry.index)) == entry.term else { return }
            apply(entry, effects: &effects)
            if case .stopped = state { return }
        }
    }

    /// Step 2-4 for one durable Raft batch, then `advance`.
    private func perform(_ ready: Ready, into effects: inout ReplicaEffects) {
        effects.messages += ready.messages
        if let soft = ready.softState { leadershipChanged(soft, effects: &effects) }
        if let snapshot = ready.snapshot {
            do throws(DecodeError) {
                try stateMachine.restore(snapshot.data, now: time)
                effects.restoredSnapshotIndex = snapshot.index
                lastSnapshotIndex = snapshot.index
            } catch {
                stop(.corruptSnapshot(error), effects: &effects)
                return
            }
        }
        for entry in ready.committedEntries {
            apply(entry, effects: &effects)
            if case .stopped = state { return }
        }
        for readState in ready.readStates where reads.confirm(readState) {
            startReadRound()
        }
        raft.advance(ready)
    }

    private func leadershipChanged(_ soft: SoftState, effects: inout ReplicaEffects) {
        effects.softState = soft
        let primary = stateMachine.lessor.state == .primary
        if soft.role == .leader && !primary {
            let graceMilliseconds = config.tickMilliseconds * Int64(config.raft.electionTimeoutTicks)
            stateMachine.promote(now: time, extensionMilliseconds: graceMilliseconds)
        } else if soft.role != .leader && primary {
            stateMachine.demote()
        }
        if soft.role != .leader, let pending = pendingMembership {
            // The change may still commit, but this member will not see it as leader.
            pendingMembership = nil
            effects.responses.append(
                ReplicaResponse(
                    requestID: pending.requestID, outcome: .failed(.notLeader(leader: leader))))
        }
    }

    private func apply(_ entry: Entry, effects: inout ReplicaEffects) {
        guard entry.index > stateMachine.appliedIndex else { return }
        switch entry.kind {
        case .normal:
            let result = stateMachine.apply(index: entry.index, entry: entry.data, now: time)
            effects.applied.append(result)
            if let requester = result.requester, requester.member == memberID,
                requester.id < Self.internalRequestIDBase
            {
                effects.responses.append(ReplicaResponse(requestID: requester.id, outcome: .applied(result)))
            }
        case .confChange:
            applyMembership(entry, effects: &effects)
        }
    }

    private func applyMembership(_ entry: Entry, effects: inout ReplicaEffects) {
        guard let decoded = MembershipEntry(decoding: entry.data) else {
            // Every member sees the same bytes and skips them alike.
            effects.applied.append(stateMachine.apply(index: entry.index, entry: [], now: time))
            return
        }
        raft.applyConfChange(decoded.change)
        let result = stateMachine.applyMembership(
            index: entry.index, change: decoded.membershipChange, record: decoded.record)
        effects.applied.append(result)
        if let pending = pendingMembership, pending.change == decoded.change {
            pendingMembership = nil
            effects.responses.append(
                ReplicaResponse(requestID: pending.requestID, outcome: .membership(members)))
        }
        if decoded.change.kind == .remove && decoded.change.node == memberID.rawValue {
            effects.removed = true
            stop(.stopped, effects: &effects)
        }
    }

    /// Final: answers everything still waiting with the reason.
    func stop(_ reason: ReplicaError, effects: inout ReplicaEffects) {
        state = .stopped(reason)
        for readID in reads.drainAll() {
            effects.reads.append(ReadAnswer(readID: readID, result: .failure(reason)))
        }
        if let pending = pendingMembership {
            pendingMembership = nil
            effects.responses.append(ReplicaResponse(requestID: pending.requestID, outcome: .failed(reason)))
        }
    }

    private func answerReads(into effects: inout ReplicaEffects) {
        for read in reads.ready(appliedIndex: stateMachine.appliedIndex) {
            effects.reads.append(ReadAnswer(readID: read.readID, result: .success(read.index)))
        }
    }

    private func offerSnapshot(into effects: inout ReplicaEffects) {
        guard case .running = state, !snapshotOutstanding, config.snapshotEntriesInterval > 0 else { return }
        let applied = stateMachine.appliedIndex
        let due = applied >= lastSnapshotIndex + config.snapshotEntriesInterval
        let requested = snapshotRequested && applied > lastSnapshotIndex
        guard due || requested, let term = raft.term(at: applied) else { return }
        snapshotRequested = false
        snapshotOutstanding = true
        lastSnapshotIndex = applied
        effects.snapshotToSave = StateSnapshot(
            index: applied, term: term, confState: raft.confState, stateMachine: stateMachine)
    }
}
