import DequeModule

/// One member's Raft state machine, in the shape of etcd-io/raft's `RawNode`: events in
/// (`tick`, `step`, `propose`, ...), one batch of effects out (`ready`), acknowledged by
/// `advance`. It never reads a clock, draws unseeded randomness, or does I/O.
///
/// Why a final class and not a value type: the node shares its `RaftStorage` (a reference,
/// written by the application) and is driven by exactly one owner; a copy of a value type
/// would silently share that storage while forking the rest of the state, which is a
/// bug waiting to happen. The class is deliberately not `Sendable`: one owner, no locks.
///
/// Driving loop (the whole contract):
/// ```
/// every tick:            node.tick()
/// on a peer message:     node.step(message)
/// whenever node.hasReady:
///     let ready = node.ready()!
///     persist ready.snapshot, ready.hardState, ready.entries   // before sending
///     send ready.messages
///     apply ready.committedEntries (membership ones via node.applyConfChange)
///     node.advance(ready)
/// ```
///
/// Invariants:
/// 1. At most one vote per term (`vote` is persisted before any vote response is sent).
/// 2. `role == .leader` implies `leader == id`.
/// 3. A leader commits only entries of its own term by counting replicas (paper 5.4.2);
///    earlier entries commit indirectly.
public final class RaftNode {
    public let id: NodeID
    let config: RaftConfig
    var random: SplitMix64

    public internal(set) var term: UInt64 = 0
    public internal(set) var vote: NodeID = noNode
    public internal(set) var leader: NodeID = noNode
    public internal(set) var role: Role = .follower
    var log: RaftLog
    var tracker: ProgressTracker

    var electionElapsed = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0
    /// Messages produced since the last `Ready`, bounded by `outboxMessagesMax`.
    var outbox: [Message] = []
    public internal(set) var droppedMessages = 0
    /// Proposals forwarded to this leader and dropped (over the byte bound, during a
    /// leadership transfer, or not plain data): for tests and metrics.
    public internal(set) var droppedProposals = 0
    /// Forwarded reads dropped (over `readIndexPendingMax`, at the leader or on the way back).
    public internal(set) var droppedReads = 0
    /// TEST ONLY: how often an `UnsafeTestingFault` changed a decision (0 without faults).
    public internal(set) var unsafeFaultActivations = 0
    var readStates: [ReadState] = []
    var pendingReads = PendingReads()
    /// Index of the latest membership entry appended; a new change waits until it is applied.
    var pendingConfIndex: UInt64 = 0
    public internal(set) var leadTransferee: NodeID = noNode
    /// Bytes of this leader's proposals not yet committed (proposal back-pressure).
    var uncommittedBytes = 0
    /// Proposals since the last broadcast: sent together when the next `Ready` is built.
    var needsBroadcast = false

    var lastSoftState: SoftState
    var lastHardState: HardState
    var readyOutstanding = false

    /// Creates a node from what `storage` persisted (a fresh or a restarted member).
    public init(config: RaftConfig, storage: any RaftStorage) {
        config.validate()
        self.id = config.id
        self.config = config
        self.random = SplitMix64(seed: config.randomSeed ^ (config.id &* 0x9E37_79B9_7F4A_7C15))
        let (hardState, confState) = storage.initialState()
        log = RaftLog(storage: storage, committed: hardState.commit)
        log.trapsOnCommittedConflict = config.unsafeTestingFaults.isEmpty
        tracker = ProgressTracker(confState: confState, next: log.lastIndex + 1)
        term = hardState.term
        vote = hardState.vote
        lastHardState = hardState
        lastSoftState = SoftState(leader: noNode, role: .follower)
        becomeFollower(term: hardState.term, leader: noNode)
    }

    // MARK: observation

    public var committedIndex: UInt64 { log.committed }
    public var appliedIndex: UInt64 { log.applied }
    public var lastIndex: UInt64 { log.lastIndex }
    /// First index still in the log; earlier entries live only in a snapshot.
    public var firstIndex: UInt64 { log.firstIndex }
    public var confState: ConfState { tracker.confState }
    /// Appends refused because they would overwrite a committed entry. Always 0 unless a
    /// test fault is enabled (otherwise that situation traps); simulators report it.
    public var committedConflicts: Int { log.committedConflicts }
    public var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    var isPromotable: Bool { tracker.voters.contains(id) }

    /// Term of the entry at `index` in this node's log, or nil if unknown.
    public func term(at index: UInt64) -> UInt64? { try? log.term(at: index) }

    /// The leader's view of a follower: match index and flow-control state, for tests/status.
    public func progress(of node: NodeID) -> (match: UInt64, next: UInt64, state: String)? {
        guard role == .leader, let progress = tracker.progress[node] else { return nil }
        let state: String
        switch progress.state {
        case .probe: state = "probe"
        case .replicate: state = "replicate"
        case .snapshot(let index, _): state = "snapshot(\(index))"
        }
        return (progress.match, progress.next, state)
    }

    // MARK: events

    /// Advances logical time by one tick: elections for followers, heartbeats and quorum
    /// checks for leaders.
    public func tick() {
        switch role {
        case .leader: tickLeader()
        case .follower, .preCandidate, .candidate: tickElection()
        }
    }

    /// Starts an election now (as if the election timeout had elapsed).
    public func campaign() {
        guard role != .leader else { return }
        startElection(force: false)
    }

    /// Feeds a message from a peer. Common term handling lives here, once; role-specific
    /// handling is in `stepLeader`, `stepCandidate` and `stepFollower`.
    public func step(_ message: Message) {
        guard message.to == id, message.from != noNode else { return }
        if message.term > term {
            guard handleHigherTerm(message) else { return }
        } else if message.term < term {
            handleLowerTerm(message)
            return
        }
        switch message.kind {
        case .vote, .preVote:
            handleVoteRequest(message)
        default:
            switch role {
            case .leader: stepLeader(message)
            case .preCandidate, .candidate: stepCandidate(message)
            case .follower: stepFollower(message)
            }
        }
    }

    /// Returns false when the message must be ignored.
    private func handleHigherTerm(_ message: Message) -> Bool {
        let isVoteRequest = message.kind == .vote || message.kind == .preVote
        if isVoteRequest && !message.isLeadershipTransfer && config.checkQuorum && leader != noNode
            && electionElapsed < config.electionTimeoutTicks
        {
            // Leader lease: we heard from a leader recently; a disruptive candidate is ignored.
            return false
        }
        switch message.kind {
        case .preVote:
            return true  // a pre-vote never changes our term
        case .preVoteResponse where !message.reject:
            return true  // granted: the term is the one the pre-candidate would use
        case .append, .heartbeat, .snapshot:
            becomeFollower(term: message.term, leader: message.from)
        default:
            becomeFollower(term: message.term, leader: noNode)
        }
        return true
    }

    private func handleLowerTerm(_ message: Message) {
        if (config.checkQuorum || config.preVote) && (message.kind == .heartbeat || message.kind == .append) {
            // A stale leader (e.g. healed from a partition) learns our term and steps down;
            // without this, PreVote could leave it stuck forever.
            send(Message(kind: .appendResponse, from: id, to: message.from, term: term))
        } else if message.kind == .preVote {
            var response = Message(kind: .preVoteResponse, from: id, to: message.from, term: term)
            response.reject = true
            send(response)
        }
    }

    private func handleVoteRequest(_ message: Message) {
        let isPreVote = message.kind == .preVote
        let canVote =
            vote == message.from || (vote == noNode && leader == noNode) || (isPreVote && message.term > term)
        let upToDate = log.isUpToDate(lastIndex: message.index, lastTerm: message.logTerm)
        let logOK = upToDate || config.unsafeTestingFaults.contains(.voteWithoutLogCheck)
        if logOK && !upToDate { unsafeFaultActivations += 1 }
        var response = Message(
            kind: isPreVote ? .preVoteResponse : .voteResponse, from: id, to: message.from, term: term)
        // Votes go even to candidates outside our (possibly stale) view of the membership.
        if canVote && logOK && message.from != id {
            // A pre-vote response carries the requested term so the pre-candidate counts it.
            response.term = message.term
            if !isPreVote {
                electionElapsed = 0
                vote = message.from
            }
        } else {
            response.reject = true
        }
        send(response)
    }

    /// Proposes application data. A leader appends it; the entry is sent with the next
    /// `Ready` together with other proposals (batching). A follower that knows the leader
    /// forwards it (`RaftConfig.proposalForwarding`); with no known leader this throws
    /// `notLeader(leader: noNode)`. A forwarded proposal may be dropped on the way or by the
    /// leader: success here means "accepted for delivery", not "will commit".
    public func propose(_ data: [UInt8]) throws(RaftError) {
        if role != .leader {
            try forwardProposal(CollectionOfOne(data))
            return
        }
        try appendProposal(kind: .normal, data: data)
    }

    /// Proposes several entries at once (one admission check against the byte bound;
    /// forwarded in one message by a follower).
    public func propose(batch: [[UInt8]]) throws(RaftError) {
        if role != .leader {
            try forwardProposal(batch)
            return
        }
        try checkCanPropose()
        guard appendNormalEntries(batch) else { throw .uncommittedBytesMax }
    }

    /// Appends normal entries with `payloads` unless that would exceed
    /// `uncommittedBytesMax` (a lone batch always fits). Returns whether it appended.
    func appendNormalEntries(_ payloads: some Collection<[UInt8]>) -> Bool {
        var bytes = 0
        for data in payloads { bytes += data.count + 24 }
        if uncommittedBytes > 0 && uncommittedBytes + bytes > config.uncommittedBytesMax { return false }
        var next = log.lastIndex + 1
        var entries: [Entry] = []
        entries.reserveCapacity(payloads.count)
        for data in payloads {
            entries.append(Entry(term: term, index: next, data: data))
            next += 1
        }
        uncommittedBytes += bytes
        appendAsLeader(entries)
        return true
    }

    /// Proposes a single-server membership change. Refused while another is pending.
    public func proposeConfChange(_ change: ConfChange) throws(RaftError) {
        try checkCanPropose()
        if pendingConfIndex > log.applied { throw .confChangePending }
        switch change.kind {
        case .remove, .addLearner:
            if tracker.voters == [change.node] { throw .invalidConfChange }
        case .addVoter:
            break
        }
        if change.node == noNode { throw .invalidConfChange }
        try appendProposal(kind: .confChange, data: change.encoded())
        pendingConfIndex = log.lastIndex
    }

    private func checkCanPropose() throws(RaftError) {
        guard role == .leader else { throw .notLeader(leader: leader) }
        if leadTransferee != noNode { throw .leadershipTransferInProgress }
    }

    private func appendProposal(kind: EntryKind, data: [UInt8]) throws(RaftError) {
        try checkCanPropose()
        let entry = Entry(term: term, index: log.lastIndex + 1, kind: kind, data: data)
        if uncommittedBytes > 0 && uncommittedBytes + entry.sizeBytes > config.uncommittedBytesMax {
            throw .uncommittedBytesMax
        }
        uncommittedBytes += entry.sizeBytes
        appendAsLeader([entry])
    }

    /// Applies a committed membership change; the application calls this when it applies a
    /// `.confChange` entry, and persists the returned membership with its state.
    @discardableResult
    public func applyConfChange(_ change: ConfChange) -> ConfState {
        tracker.apply(change, next: log.lastIndex + 1)
        if role == .leader {
            if !tracker.voters.contains(id) && !tracker.learners.contains(id) {
                becomeFollower(term: term, leader: noNode)
                return tracker.confState
            }
            if leadTransferee != noNode && !tracker.voters.contains(leadTransferee) {
                leadTransferee = noNode
            }
            if maybeCommit() { broadcastAppend() }
        }
        return tracker.confState
    }

    /// Requests a linearizable read point: a `ReadState` with this `context` in a later
    /// `Ready`. The leader answers once a heartbeat round confirms it still leads (and once it
    /// has committed an entry of its term, so its commit index is current). A follower or
    /// learner forwards the request to the leader it knows and emits the `ReadState` when the
    /// leader answers; if that leader is lost, the read is silently dropped (the caller
    /// times out and retries). With no known leader this throws `notLeader(leader: noNode)`.
    public func readIndex(context: [UInt8]) throws(RaftError) {
        guard role == .leader else {
            try forwardRead(context: context)
            return
        }
        try admitRead(context: context, requester: id)
    }

    var committedEntryInCurrentTerm: Bool { log.termOrZero(log.committed) == term }

    /// Asks the leader to hand leadership to `target` (dissertation 3.10): it brings the
    /// target up to date, then tells it to campaign at once (`timeoutNow`).
    public func transferLeadership(to target: NodeID) throws(RaftError) {
        guard role == .leader else { throw .notLeader(leader: leader) }
        guard target != id, tracker.voters.contains(target), let progress = tracker.progress[target] else {
            throw .invalidTransferTarget
        }
        if leadTransferee == target { return }
        leadTransferee = target
        electionElapsed = 0  // the transfer is abandoned after one election timeout
        if progress.match == log.lastIndex {
            send(Message(kind: .timeoutNow, from: id, to: target, term: term))
        } else {
            sendAppend(to: target)
        }
    }

    /// The transport could not deliver to `node`: probe it gently instead of streaming.
    public func reportUnreachable(_ node: NodeID) {
        guard role == .leader, var progress = tracker.progress[node] else { return }
        if progress.state == .replicate { progress.becomeProbe() }
        tracker.progress[node] = progress
    }

    /// The transport finished (or failed) sending a snapshot to `node`.
    public func reportSnapshot(to node: NodeID, failed: Bool) {
        guard role == .leader, var progress = tracker.progress[node] else { return }
        guard case .snapshot = progress.state else { return }
        if failed { progress.becomeSnapshot(index: 0) }
        progress.becomeProbe()
        progress.probeSent = !failed  // on success wait for the follower's answer
        tracker.progress[node] = progress
    }

    // MARK: sending

    func send(_ message: Message) {
        if outbox.count >= config.outboxMessagesMax {
            droppedMessages += 1
            return
        }
        outbox.append(message)
    }
}
