/// Role transitions, elections and the per-role step functions.
extension RaftNode {
    // MARK: transitions

    func reset(term newTerm: UInt64) {
        if term != newTerm {
            term = newTerm
            vote = noNode
        }
        leader = noNode
        electionElapsed = 0
        heartbeatElapsed = 0
        randomizedElectionTimeout =
            config.electionTimeoutTicks + Int(random.next() % UInt64(config.electionTimeoutTicks))
        leadTransferee = noNode
        tracker.votes = [:]
        let next = log.lastIndex + 1
        for id in tracker.progress.keys {
            let isLearner = tracker.progress[id]?.isLearner ?? false
            var progress = Progress(next: next, isLearner: isLearner)
            if id == self.id { progress.match = log.stableIndex }
            tracker.progress[id] = progress
        }
        pendingReads.reset()
        uncommittedBytes = 0
        needsBroadcast = false
        pendingConfIndex = 0
    }

    func becomeFollower(term newTerm: UInt64, leader newLeader: NodeID) {
        reset(term: newTerm)
        role = .follower
        leader = newLeader
    }

    private func becomePreCandidate() {
        precondition(role != .leader, "leader cannot become pre-candidate")
        // Term and vote stay: a pre-candidate changes nothing persistent.
        tracker.votes = [:]
        electionElapsed = 0
        randomizedElectionTimeout =
            config.electionTimeoutTicks + Int(random.next() % UInt64(config.electionTimeoutTicks))
        leader = noNode
        role = .preCandidate
    }

    private func becomeCandidate() {
        precondition(role != .leader, "leader cannot become candidate")
        reset(term: term + 1)
        vote = id
        role = .candidate
    }

    private func becomeLeader() {
        precondition(role == .candidate, "only a candidate becomes leader, was \(role)")
        reset(term: term)
        role = .leader
        leader = id
        tracker.progress[id]?.becomeReplicate()
        tracker.progress[id]?.recentActive = true
        // Membership entries between commit and the end of our log may still be pending.
        pendingConfIndex = log.lastIndex
        // Paper 5.4.2 / 8: a new leader commits an empty entry of its term, which also
        // commits everything before it.
        appendAsLeader([Entry(term: term, index: log.lastIndex + 1)])
    }

    // MARK: elections

    func tickElection() {
        electionElapsed += 1
        if isPromotable && electionElapsed >= randomizedElectionTimeout {
            electionElapsed = 0
            startElection(force: false)
        }
    }

    /// Starts a (pre-)campaign. `force` (leadership transfer) skips PreVote.
    func startElection(force: Bool) {
        guard isPromotable else { return }
        if hasUnappliedConfChange() { return }
        if config.preVote && !force {
            becomePreCandidate()
            requestVotes(kind: .preVote, term: term + 1, transfer: false)
        } else {
            becomeCandidate()
            requestVotes(kind: .vote, term: term, transfer: force)
        }
    }

    /// A node must not campaign while a committed membership change is unapplied: it would
    /// count votes with a configuration the cluster has already left.
    private func hasUnappliedConfChange() -> Bool {
        guard log.committed > log.applied else { return false }
        let entries = (try? log.slice(from: log.applied + 1, to: log.committed + 1, bytesMax: .max)) ?? []
        return entries.contains { $0.kind == .confChange }
    }

    private func requestVotes(kind: MessageKind, term campaignTerm: UInt64, transfer: Bool) {
        tracker.votes[id] = true
        if finishIfDecided() { return }
        for voter in tracker.voters.sorted() where voter != id {
            var message = Message(kind: kind, from: id, to: voter, term: campaignTerm)
            message.index = log.lastIndex
            message.logTerm = log.lastTerm
            message.isLeadershipTransfer = transfer
            send(message)
        }
    }

    /// Returns true when the (pre-)campaign ended.
    private func finishIfDecided() -> Bool {
        switch tracker.tallyVotes() {
        case .pending:
            return false
        case .won:
            if role == .preCandidate {
                becomeCandidate()
                requestVotes(kind: .vote, term: term, transfer: false)
            } else {
                becomeLeader()
            }
            return true
        case .lost:
            becomeFollower(term: term, leader: noNode)
            return true
        }
    }

    // MARK: per-role step functions

    func stepFollower(_ message: Message) {
        switch message.kind {
        case .append:
            electionElapsed = 0
            leader = message.from
            handleAppend(message)
        case .heartbeat:
            electionElapsed = 0
            leader = message.from
            handleHeartbeat(message)
        case .snapshot:
            electionElapsed = 0
            leader = message.from
            handleSnapshot(message)
        case .timeoutNow:
            // Leadership transfer: campaign at once, skipping PreVote and the lease.
            startElection(force: true)
        case .readIndexResponse:
            handleReadIndexResponse(message)
        default:
            // Includes proposals and reads forwarded to us while we no longer lead: dropped,
            // never forwarded again (no loops; the caller retries).
            break
        }
    }

    func stepCandidate(_ message: Message) {
        switch message.kind {
        case .append, .heartbeat, .snapshot:
            // A leader exists for our term: follow it.
            becomeFollower(term: message.term, leader: message.from)
            stepFollower(message)
        case .voteResponse where role == .candidate, .preVoteResponse where role == .preCandidate:
            tracker.votes[message.from] = !message.reject
            _ = finishIfDecided()
        default:
            break
        }
    }

    // MARK: follower handlers

    private func handleAppend(_ message: Message) {
        var response = Message(kind: .appendResponse, from: id, to: message.from, term: term)
        if message.index < log.committed {
            response.index = log.committed
            send(response)
            return
        }
        if let lastNew = log.maybeAppend(
            index: message.index, logTerm: message.logTerm, commit: message.commit, entries: message.entries)
        {
            response.index = lastNew
        } else {
            // Fast backtracking: point the leader at the last entry that can possibly match,
            // skipping every entry of a term newer than the leader's at that index.
            let hint = log.findConflictByTerm(index: min(message.index, log.lastIndex), term: message.logTerm)
            response.reject = true
            response.index = message.index
            response.rejectHint = hint
            response.logTerm = log.termOrZero(hint)
        }
        send(response)
    }

    private func handleHeartbeat(_ message: Message) {
        log.commit(to: min(message.commit, log.lastIndex))
        var response = Message(kind: .heartbeatResponse, from: id, to: message.from, term: term)
        response.context = message.context
        send(response)
    }

    private func handleSnapshot(_ message: Message) {
        guard let snapshot = message.snapshot else { return }
        var response = Message(kind: .appendResponse, from: id, to: message.from, term: term)
        if snapshot.index <= log.committed {
            response.index = log.committed
        } else if log.matchTerm(index: snapshot.index, term: snapshot.term) {
            // We already have the entries: just move the commit forward.
            log.commit(to: snapshot.index)
            response.index = snapshot.index
        } else {
            log.restore(snapshot)
            tracker = ProgressTracker(confState: snapshot.confState, next: log.lastIndex + 1)
            response.index = log.lastIndex
        }
        send(response)
    }
}
