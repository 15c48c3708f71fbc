/// The leader: heartbeats, CheckQuorum, replication with flow control, commitment,
/// ReadIndex confirmation and leadership transfer.
extension RaftNode {
    func tickLeader() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= config.electionTimeoutTicks {
            electionElapsed = 0
            if config.checkQuorum {
                if !tracker.quorumActive(selfID: id) {
                    // We cannot reach a majority: stop acting as leader (and answering reads).
                    becomeFollower(term: term, leader: noNode)
                    return
                }
                for node in tracker.progress.keys where node != id {
                    tracker.progress[node]?.recentActive = false
                }
            }
            leadTransferee = noNode  // a transfer that did not finish in time is abandoned
        }
        tickSnapshotTimeouts()
        if heartbeatElapsed >= config.heartbeatIntervalTicks {
            heartbeatElapsed = 0
            broadcastHeartbeat(readSequence: pendingReads.latestSequence)
        }
    }

    private func tickSnapshotTimeouts() {
        for node in tracker.progress.keys {
            guard var progress = tracker.progress[node], case .snapshot(let index, let ticks) = progress.state
            else { continue }
            if ticks + 1 >= config.snapshotTimeoutTicks {
                progress.becomeProbe()
            } else {
                progress.state = .snapshot(pendingIndex: index, ticks: ticks + 1)
            }
            tracker.progress[node] = progress
        }
    }

    func stepLeader(_ message: Message) {
        guard var progress = tracker.progress[message.from] else { return }
        progress.recentActive = true
        tracker.progress[message.from] = progress
        switch message.kind {
        case .appendResponse:
            handleAppendResponse(message)
        case .heartbeatResponse:
            handleHeartbeatResponse(message)
        case .propose:
            handleForwardedProposal(message)
        case .readIndex:
            handleForwardedRead(message)
        default:
            break
        }
    }

    // MARK: appending

    func appendAsLeader(_ entries: [Entry]) {
        log.append(entries)
        needsBroadcast = true
        // A single-voter cluster commits as soon as the entry is persisted (see `advance`).
    }

    func broadcastAppend() {
        needsBroadcast = false
        for node in tracker.progress.keys.sorted() where node != id {
            // One append even if empty (it carries the commit index), then stream what the
            // flow-control window allows.
            guard sendAppend(to: node) else { continue }
            while sendAppend(to: node, allowEmpty: false) {}
        }
    }

    /// Sends the next append (or a snapshot) to `node` unless its flow control is paused.
    /// With `allowEmpty` false, nothing is sent when there are no new entries.
    @discardableResult
    func sendAppend(to node: NodeID, allowEmpty: Bool = true) -> Bool {
        guard var progress = tracker.progress[node],
            !progress.isPaused(inflightMessagesMax: config.inflightMessagesMax)
        else { return false }
        let previousIndex = progress.next - 1
        let previousTerm: UInt64
        let entries: [Entry]
        do throws(StorageError) {
            previousTerm = try log.term(at: previousIndex)
            entries = try log.slice(
                from: progress.next, to: log.lastIndex + 1, bytesMax: config.messageBytesMax)
        } catch {
            return sendSnapshot(to: node, progress: &progress)
        }
        if entries.isEmpty && !allowEmpty { return false }
        var message = Message(kind: .append, from: id, to: node, term: term)
        message.index = previousIndex
        message.logTerm = previousTerm
        message.commit = log.committed
        message.entries = entries
        progress.sentAppend(lastIndex: entries.last?.index ?? previousIndex, entryCount: entries.count)
        tracker.progress[node] = progress
        send(message)
        return true
    }

    private func sendSnapshot(to node: NodeID, progress: inout Progress) -> Bool {
        guard progress.recentActive else { return false }  // do not ship a snapshot into a void
        let snapshot: Snapshot
        do throws(StorageError) {
            snapshot = try log.storage.snapshot()
        } catch {
            return false  // temporarily unavailable: retried on the next heartbeat answer
        }
        // A snapshot received just before winning an election may not be persisted yet;
        // until it is, there is nothing to send (retried on the next heartbeat answer).
        guard !snapshot.isEmpty else { return false }
        var message = Message(kind: .snapshot, from: id, to: node, term: term)
        message.snapshot = snapshot
        progress.becomeSnapshot(index: snapshot.index)
        tracker.progress[node] = progress
        send(message)
        return true
    }

    func broadcastHeartbeat(readSequence: UInt64?) {
        let context = readSequence.map(PendingReads.encode) ?? []
        for node in tracker.progress.keys.sorted() where node != id {
            guard let progress = tracker.progress[node] else { continue }
            var message = Message(kind: .heartbeat, from: id, to: node, term: term)
            // Never tell a follower to commit beyond what it is known to hold.
            message.commit = min(progress.match, log.committed)
            message.context = context
            send(message)
        }
    }

    /// Advances the commit index to the quorum match, but only onto an entry of the current
    /// term (paper 5.4.2, Figure 8). Returns whether it moved.
    func maybeCommit() -> Bool {
        let quorumIndex = tracker.committedIndex()
        guard quorumIndex > log.committed else { return false }
        let countsPreviousTerms = config.unsafeTestingFaults.contains(.commitPreviousTermByCounting)
        let isCurrentTerm = log.termOrZero(quorumIndex) == term
        guard countsPreviousTerms || isCurrentTerm else { return false }
        if !isCurrentTerm { unsafeFaultActivations += 1 }
        log.commit(to: quorumIndex)
        if let sequence = pendingReads.releaseWaiting(commit: log.committed, leader: id),
            committedEntryInCurrentTerm
        {
            broadcastHeartbeat(readSequence: sequence)
        }
        return true
    }

    // MARK: responses

    private func handleAppendResponse(_ message: Message) {
        // An acknowledgement beyond our log cannot come from a correct peer (we never
        // truncate our log while leading); ignoring it keeps the commit index within the log.
        guard var progress = tracker.progress[message.from], message.reject || message.index <= log.lastIndex
        else { return }
        if message.reject {
            var hint = message.rejectHint
            if message.logTerm > 0 {
                // Skip all our entries with a term above the follower's term at `hint`.
                hint = log.findConflictByTerm(index: message.rejectHint, term: message.logTerm)
            }
            if progress.maybeDecrease(rejected: message.index, hint: hint) {
                if progress.state == .replicate { progress.becomeProbe() }
                tracker.progress[message.from] = progress
                sendAppend(to: message.from)
            }
            return
        }
        let wasPaused = progress.isPaused(inflightMessagesMax: config.inflightMessagesMax)
        guard progress.maybeUpdate(message.index) else {
            tracker.progress[message.from] = progress
            if wasPaused { sendAppend(to: message.from, allowEmpty: false) }
            return
        }
        switch progress.state {
        case .probe: progress.becomeReplicate()
        case .snapshot(let pending, _) where progress.match >= pending: progress.becomeProbe()
        case .snapshot, .replicate: break
        }
        tracker.progress[message.from] = progress
        if maybeCommit() {
            broadcastAppend()
        } else if wasPaused {
            // It was waiting for this answer: tell it the commit index even with no entries.
            sendAppend(to: message.from)
        }
        while sendAppend(to: message.from, allowEmpty: false) {}
        if message.from == leadTransferee && progress.match == log.lastIndex {
            send(Message(kind: .timeoutNow, from: id, to: message.from, term: term))
        }
    }

    private func handleHeartbeatResponse(_ message: Message) {
        guard var progress = tracker.progress[message.from] else { return }
        progress.probeSent = false
        if progress.state == .replicate && progress.inflight.count >= config.inflightMessagesMax {
            progress.inflight.removeFirst()  // free one slot so a lost append is eventually resent
        }
        tracker.progress[message.from] = progress
        if progress.match < log.lastIndex { sendAppend(to: message.from) }
        guard let sequence = PendingReads.decode(message.context) else { return }
        let released = pendingReads.acknowledge(
            sequence: sequence, from: message.from, voters: tracker.voters, quorum: tracker.quorum)
        for request in released { deliverRead(request.readState, to: request.requester) }
    }
}
