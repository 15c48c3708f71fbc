import CairnCore
import CairnMVCC
import CairnPeer
import CairnRaft
import CairnReplica
import CairnStateMachine
import CairnStorage
import NIOCore

/// The shell's half of the replica contract: requests in, effects out.
extension Member {
    /// Registers a request, runs `submit` with its ID and drives the
    /// replica; the future completes with the replica's answer, or
    /// "request timed out" after `requestTimeout`. Executor only.
    func request(
        _ submit: @escaping (UInt64) throws -> Void
    ) -> EventLoopFuture<ReplicaResponse.Outcome> {
        switch self.phase {
        case .failed(let cause): return self.eventLoop.makeFailedFuture(MemberError.storageFailed(cause))
        case .stopped: return self.eventLoop.makeFailedFuture(CairnError.stopped)
        case .running: break
        }
        guard
            self.pendingRequests.count + self.pendingReads.count + self.parkedRequests.count
                < Self.pendingRequestsMax
        else {
            return self.eventLoop.makeFailedFuture(CairnError.tooManyRequests)
        }
        let promise = self.eventLoop.makePromise(of: ReplicaResponse.Outcome.self)
        let deadline = NIODeadline.now() + self.configuration.requestTimeout
        self.submit(ParkedRequest(submit: submit, promise: promise, deadline: deadline))
        self.drive()
        return promise.futureResult
    }

    /// Hands a request to the replica; while there is no leader it is
    /// parked and retried when one is known (etcd's proposals wait for a
    /// leader too, until the request timeout).
    private func submit(_ parked: ParkedRequest) {
        let requestID = self.nextRequestID
        self.nextRequestID += 1
        do {
            try parked.submit(requestID)
            self.pendingRequests[requestID] = PendingRequest(
                promise: parked.promise, deadline: parked.deadline)
        } catch ReplicaError.notLeader(leader: nil), ReplicaError.raft(.notLeader(leader: noNode)) {
            self.parkedRequests.append(parked)
        } catch {
            self.configuration.metrics.proposalsFailed.increment()
            parked.promise.fail(Self.cairnError(error))
        }
    }

    /// Retries parked requests once a leader is known.
    func retryParkedRequests() {
        guard self.replica.leader != nil else { return }
        let reads = self.parkedReads
        self.parkedReads.removeAll()
        for readID in reads where self.pendingReads[readID] != nil {
            do {
                try self.replica.read(readID: readID)
            } catch {
                self.pendingReads.removeValue(forKey: readID)?.fail(Self.cairnError(error))
            }
        }
        guard !self.parkedRequests.isEmpty else { return }
        let parked = self.parkedRequests
        self.parkedRequests.removeAll()
        for request in parked { self.submit(request) }
    }

    /// etcd's error for what the replica refused.
    static func cairnError(_ error: any Error) -> any Error {
        guard let error = error as? ReplicaError else { return error }
        switch error {
        case .notLeader(let leader): return leader == nil ? CairnError.noLeader : CairnError.notLeader
        case .tooManyRequests: return CairnError.tooManyRequests
        case .raft(let raft):
            switch raft {
            case .notLeader(let leader): return leader == noNode ? CairnError.noLeader : CairnError.notLeader
            case .leadershipTransferInProgress: return CairnError.leaderChanged
            case .uncommittedBytesMax, .readIndexPendingMax: return CairnError.tooManyRequests
            case .invalidTransferTarget: return CairnError.badLeaderTransferee
            default: return CairnError.unhealthy
            }
        case .rejected(let cairn): return cairn
        case .memberNotFound: return CairnError.memberNotFound
        case .memberExists: return CairnError.memberExists
        case .memberRemoved: return CairnError.memberNotFound
        case .peerURLExists: return CairnError.peerURLExists
        case .memberNotLearner: return CairnError.memberNotLearner
        case .learnerNotReady: return CairnError.learnerNotReady
        case .stopped: return CairnError.stopped
        case .corruptSnapshot: return CairnError.corrupt
        }
    }

    // MARK: the effects loop

    /// Takes every batch of effects the replica has and performs it. A
    /// persist runs on the I/O pool; the loop goes on with the effects
    /// that do not depend on it and resumes when it is durable.
    func drive() {
        guard case .running = self.phase, !self.markerFlushInFlight else { return }
        while let effects = self.replica.nextEffects() {
            if let persist = effects.persist { self.startPersist(persist) }
            self.perform(effects)
            guard case .running = self.phase else { return }
        }
    }

    /// Writes a persist request (snapshot install first, then hard state
    /// and entries, plus markers of snapshots saved since) and syncs it.
    private func startPersist(_ persist: PersistRequest) {
        precondition(!self.persistInFlight, "the replica asked for a second persist before persisted()")
        if !persist.mustSync && persist.snapshot == nil && self.snapshotMarkers.isEmpty {
            // Only the commit index moved (recoverable, no fsync): a page-cache
            // write on the executor, which owns the WAL while no job runs.
            do {
                if let hardState = persist.hardState {
                    _ = try self.storage.log.append([.hardState(MemberRecovery.walHardState(hardState))])
                }
                if !persist.entries.isEmpty {
                    let records = persist.entries.map { WALRecord.entry(MemberRecovery.walEntry($0)) }
                    _ = try self.storage.log.append(records)
                }
            } catch {
                self.fail(cause: "\(error)")
                return
            }
            self.replica.persisted()
            return
        }
        self.persistInFlight = true
        let storage = self.storage
        let markers = self.snapshotMarkers
        self.snapshotMarkers.removeAll()
        let entryCount = persist.entries.count
        let metrics = self.configuration.metrics
        self.ioPool.runIfActive(eventLoop: self.eventLoop) { () throws -> [String] in
            var records: [WALRecord] = []
            if let snapshot = persist.snapshot {
                try storage.snapshots.save(
                    index: snapshot.index, term: snapshot.term, bytes: snapshot.encoded())
                records.append(.snapshotMarker(SnapshotMarker(index: snapshot.index, term: snapshot.term)))
            }
            records += markers.map { .snapshotMarker($0) }
            if let hardState = persist.hardState {
                records.append(.hardState(MemberRecovery.walHardState(hardState)))
            }
            records += persist.entries.map { .entry(MemberRecovery.walEntry($0)) }
            if !records.isEmpty { _ = try storage.log.append(records) }
            if persist.mustSync || persist.snapshot != nil || !markers.isEmpty {
                let started = NIODeadline.now()
                _ = try storage.log.sync()
                metrics.walFsyncSeconds.record(Self.seconds(NIODeadline.now() - started))
            }
            guard persist.snapshot != nil || !markers.isEmpty,
                let oldest = try storage.snapshots.oldestRetainedIndex()
            else { return [] }
            return try storage.log.releaseSegments(upTo: oldest)
        }.whenComplete { result in
            self.persistInFlight = false
            switch result {
            case .success(let released):
                if !released.isEmpty { self.logLine("released WAL segments \(released)") }
                if let marked = markers.last?.index { self.snapshotMarked(upTo: marked) }
                if let snapshot = persist.snapshot {
                    self.logLine("installed snapshot at index \(snapshot.index) from the leader")
                }
                if persist.mustSync {
                    self.syncsCompleted += 1
                    self.entriesSynced += entryCount
                }
                self.replica.persisted()
                self.drive()
            case .failure(let error):
                self.fail(cause: "\(error)")
            }
        }
    }

    /// Everything of one batch except its persist.
    private func perform(_ effects: ReplicaEffects) {
        self.send(effects.messages)
        if effects.restoredSnapshotIndex != nil { self.watchHub.restored(store: self.stateMachine.store) }
        for result in effects.applied where !result.events.isEmpty {
            self.watchHub.applied(events: result.events, revision: result.revision)
        }
        if effects.restoredSnapshotIndex != nil || !effects.applied.isEmpty { self.updatePeers() }
        let applied = effects.applied.flatMap(\.effects)
        if !applied.isEmpty {
            for observer in self.appliedEffectObservers.withLockedValue({ $0 }) { observer(applied) }
        }
        for response in effects.responses {
            guard let pending = self.pendingRequests.removeValue(forKey: response.requestID) else { continue }
            if case .failed(let error) = response.outcome {
                if Self.isProposalFailure(error) { self.configuration.metrics.proposalsFailed.increment() }
                pending.promise.fail(Self.cairnError(error))
            } else {
                pending.promise.succeed(response.outcome)
            }
        }
        for answer in effects.reads {
            guard let pending = self.pendingReads.removeValue(forKey: answer.readID) else { continue }
            switch answer.result {
            case .success: pending.run(self.stateMachine)
            case .failure(.notLeader(leader: nil)), .failure(.raft(.notLeader(leader: noNode))):
                // No leader yet: asked again once one is known, until the deadline.
                self.pendingReads[answer.readID] = pending
                self.parkedReads.append(answer.readID)
            case .failure(let error): pending.fail(Self.cairnError(error))
            }
        }
        if !effects.applied.isEmpty { self.stepWatchers() }
        if let snapshot = effects.snapshotToSave { self.saveSnapshot(snapshot) }
        let term = self.replica.term
        if self.termBox.withLockedValue({ $0 }) != term { self.termBox.withLockedValue { $0 = term } }
        if !self.attributesPublished { self.publishAttributesIfNeeded() }
        self.updateMetrics(softState: effects.softState)
        if let soft = effects.softState {
            let leader = self.replica.leader.map { "\($0)" } ?? "none"
            self.logLine(
                "raft: \(soft.role) in term \(self.replica.term), leader \(leader)",
                metadata: ["term": "\(self.replica.term)", "leader": "\(leader)", "role": "\(soft.role)"])
        }
        if effects.removed { self.removed() }
    }

    /// Serializes and saves a state snapshot on the I/O pool; the WAL
    /// marker goes with the next persist.
    private func saveSnapshot(_ state: StateSnapshot) {
        let storage = self.storage
        self.ioPool.runIfActive(eventLoop: self.eventLoop) { () throws -> Snapshot in
            let snapshot = state.raftSnapshot()
            try storage.snapshots.save(index: snapshot.index, term: snapshot.term, bytes: snapshot.encoded())
            return snapshot
        }.whenComplete { result in
            switch result {
            case .success(let snapshot):
                self.replica.snapshotSaved(snapshot)
                self.snapshotMarkers.append(SnapshotMarker(index: snapshot.index, term: snapshot.term))
                self.logLine("saved snapshot at index \(snapshot.index)")
                self.trimHeap()  // the serialized copy was just freed
                // Someone waits for the segments to go: do not wait for a write.
                if !self.defragmentWaiters.isEmpty && !self.persistInFlight { self.flushSnapshotMarkers() }
                self.drive()
            case .failure(let error):
                self.fail(cause: "snapshot at \(state.index): \(error)")
            }
        }
    }

    /// Writes the markers of saved snapshots and releases the WAL segments
    /// they cover, without a Raft persist (Defragment on an idle member).
    /// The replica's effects wait meanwhile (the WAL is single-owner).
    func flushSnapshotMarkers() {
        precondition(!self.persistInFlight && !self.markerFlushInFlight, "the WAL has one writer at a time")
        self.markerFlushInFlight = true
        let storage = self.storage
        let markers = self.snapshotMarkers
        self.snapshotMarkers.removeAll()
        self.ioPool.runIfActive(eventLoop: self.eventLoop) { () throws -> [String] in
            if !markers.isEmpty {
                _ = try storage.log.append(markers.map { .snapshotMarker($0) })
                _ = try storage.log.sync()
            }
            guard let oldest = try storage.snapshots.oldestRetainedIndex() else { return [] }
            return try storage.log.releaseSegments(upTo: oldest)
        }.whenComplete { result in
            self.markerFlushInFlight = false
            switch result {
            case .success(let released):
                if !released.isEmpty { self.logLine("released WAL segments \(released)") }
                self.snapshotMarked(upTo: markers.last?.index ?? self.replica.appliedIndex)
                self.drive()
            case .failure(let error):
                self.fail(cause: "\(error)")
            }
        }
    }

    /// Snapshots up to `index` are marked in the WAL and their segments gone.
    private func snapshotMarked(upTo index: UInt64) {
        let done = self.defragmentWaiters.filter { $0.index <= index }
        self.defragmentWaiters.removeAll { $0.index <= index }
        for waiter in done { waiter.promise.succeed(()) }
    }

    /// A storage failure: nothing more can be promised durable.
    func fail(cause: String) {
        self.logLine("storage failed, refusing writes: \(cause)", level: .error)
        self.phase = .failed(cause)
        self.failPending(MemberError.storageFailed(cause))
    }

    func failPending(_ error: any Error) {
        let requests = self.pendingRequests
        let reads = self.pendingReads
        let defragments = self.defragmentWaiters
        self.defragmentWaiters.removeAll()
        for waiter in defragments { waiter.promise.fail(error) }
        let parked = self.parkedRequests
        self.parkedRequests.removeAll()
        self.configuration.metrics.proposalsFailed.increment(by: Int64(parked.count + requests.count))
        for request in parked { request.promise.fail(error) }
        self.pendingRequests.removeAll()
        self.pendingReads.removeAll()
        for pending in requests.values { pending.promise.fail(error) }
        for pending in reads.values { pending.fail(error) }
    }

    private func removed() {
        guard !self.removedFromCluster else { return }
        self.removedFromCluster = true
        self.logLine("the member has been permanently removed from the cluster", level: .warning)
        self.failPending(CairnError.stopped)
    }

    // MARK: timers

    /// The Raft tick (etcd's heartbeat interval) and the request timeouts.
    func startReplicaTimers() {
        self.eventLoop.execute {
            // Entries the WAL says are committed are applied before any
            // client request is served (requests hop to this loop later).
            self.drive()
            if self.replica.confState.voters == [self.memberID.rawValue] {
                // Alone in its cluster: no reason to wait an election timeout.
                self.replica.campaign()
                self.drive()
            }
            let tick = TimeAmount.milliseconds(Int64(self.configuration.cluster.heartbeatMilliseconds))
            let ticker = self.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in
                self.replica.tick(now: Self.now())
                self.retryParkedRequests()
                self.drive()
                self.publishAttributesIfNeeded()
            }
            let sweeper = self.eventLoop.scheduleRepeatedTask(
                initialDelay: .milliseconds(200), delay: .milliseconds(200)
            ) { _ in
                self.expireRequests()
            }
            self.appendTimers([ticker, sweeper])
        }
    }

    /// Like etcd, a member publishes its name and client URLs through Raft
    /// once there is a leader, so MemberList shows it "started".
    func publishAttributesIfNeeded() {
        guard !self.attributesPublished, self.replica.leader != nil, !self.publishingAttributes else {
            return
        }
        guard var record = self.replica.members.first(where: { $0.id == self.memberID }) else { return }
        if record.name == self.configuration.name && record.clientURLs == self.configuration.clientURLs {
            self.attributesPublished = true
            return
        }
        record.name = self.configuration.name
        record.clientURLs = self.configuration.clientURLs
        self.publishingAttributes = true
        self.request { requestID in try self.replica.updateMember(record, requestID: requestID) }.whenComplete
        { result in
            self.publishingAttributes = false
            switch result {
            case .success:
                self.attributesPublished = true
                self.logLine("published local member to cluster through raft")
            case .failure(let error):
                self.logLine("publishing member attributes failed: \(error); retrying", level: .warning)
            }
        }
    }

    /// Fails requests whose answer did not come in time (a proposal lost
    /// with a leader change never gets one): etcd's "request timed out".
    private func expireRequests() {
        let now = NIODeadline.now()
        for (id, pending) in self.pendingRequests where pending.deadline <= now {
            self.pendingRequests.removeValue(forKey: id)
            self.configuration.metrics.proposalsFailed.increment()
            pending.promise.fail(
                self.replica.leader == nil ? CairnError.timeoutDueToLeaderFail : CairnError.timeout)
        }
        let parked = self.parkedRequests
        self.parkedRequests = parked.filter { $0.deadline > now }
        for request in parked where request.deadline <= now {
            self.configuration.metrics.proposalsFailed.increment()
            request.promise.fail(CairnError.timeoutDueToLeaderFail)
        }
        for (id, pending) in self.pendingReads where pending.deadline <= now {
            self.pendingReads.removeValue(forKey: id)
            pending.fail(CairnError.timeout)
        }
    }
}
