import CairnRaft

/// A bare `RaftNode` as a simulated member: its "disk" is a `MemoryStorage` (which survives
/// crashes), its application is a `RegisterState` (which does not; it is rebuilt from the
/// latest snapshot and the log).
public final class RaftSimNode: SimulatedNode {
    public let id: NodeID
    let config: RaftConfig
    let storage: MemoryStorage
    /// Take a snapshot and compact the log every this many applied entries (0: never).
    let compactEveryEntries: Int
    /// ReadIndex requests confirmed but waiting for the state machine to catch up; bounded
    /// by `RaftConfig.readIndexPendingMax` through the node.
    private var confirmedReads: [(readID: UInt64, index: UInt64)] = []
    private var node: RaftNode?
    private var inFlight: Ready?
    private var state = RegisterState()
    private var appliedIndex: UInt64 = 0
    private var appliedSinceSnapshot = 0
    private var restarts: UInt64 = 0
    private var faultActivationsBeforeCrashes = 0

    public init(config: RaftConfig, voters: Set<NodeID>, compactEveryEntries: Int) {
        id = config.id
        self.config = config
        self.compactEveryEntries = compactEveryEntries
        storage = MemoryStorage(voters: voters)
        node = RaftNode(config: config, storage: storage)
    }

    public var status: NodeStatus {
        guard let node else {
            return NodeStatus(
                role: .follower, term: 0, leader: noNode, committedIndex: 0, appliedIndex: 0, lastIndex: 0,
                committedConflicts: 0)
        }
        var status = NodeStatus(
            role: node.role, term: node.term, leader: node.leader, committedIndex: node.committedIndex,
            appliedIndex: appliedIndex, lastIndex: node.lastIndex, committedConflicts: node.committedConflicts
        )
        status.unsafeFaultActivations = node.unsafeFaultActivations + faultActivationsBeforeCrashes
        return status
    }

    /// Leader-side replication state, for failure reports.
    public var progressDescription: String {
        guard let node, node.role == .leader else { return "" }
        return node.confState.voters.union(node.confState.learners).sorted().compactMap { peer in
            node.progress(of: peer).map { "\(peer)=\($0.state)(match \($0.match) next \($0.next))" }
        }.joined(separator: " ") + " inFlight=\(inFlight != nil)"
    }

    public func tick() { node?.tick() }

    public func logTerm(at index: UInt64) -> UInt64? { node?.term(at: index) }

    public func durableTerm(at index: UInt64) -> UInt64? {
        if index < storage.firstIndex() - 1 { return .max }
        return try? storage.term(at: index)
    }

    public var durableLastPosition: (term: UInt64, index: UInt64) {
        let last = storage.lastIndex()
        return ((try? storage.term(at: last)) ?? 0, last)
    }

    public var logFirstIndex: UInt64 { (node?.firstIndex) ?? storage.firstIndex() }

    public func receive(_ message: Message) { node?.step(message) }

    public func proposeWrite(_ value: UInt64) -> Bool {
        guard let node else { return false }
        do throws(RaftError) {
            try node.propose(encodeWord(value))
            return true
        } catch {
            return false
        }
    }

    public func proposeMembershipChange(_ change: ConfChange) -> Bool {
        guard let node else { return false }
        do throws(RaftError) {
            try node.proposeConfChange(change)
            return true
        } catch {
            return false
        }
    }

    public var membership: ConfState? { node?.confState }

    public func requestRead(_ readID: UInt64) -> Bool {
        guard let node else { return false }
        do throws(RaftError) {
            try node.readIndex(context: encodeWord(readID))
            return true
        } catch {
            return false
        }
    }

    public func startPersist() -> Bool {
        guard let node, inFlight == nil, let ready = node.ready() else { return false }
        inFlight = ready
        return true
    }

    public func finishPersist() -> NodeEffects {
        var effects = NodeEffects()
        guard let node, let ready = inFlight else { return effects }
        inFlight = nil
        if let snapshot = ready.snapshot {
            storage.applySnapshot(snapshot)
            state = RegisterState(decoding: snapshot.data) ?? RegisterState()
            appliedIndex = snapshot.index
            appliedSinceSnapshot = 0
            effects.restoredSnapshot = (snapshot.index, state.digest)
        }
        if let hardState = ready.hardState { storage.setHardState(hardState) }
        storage.append(ready.entries)
        for (position, entry) in ready.entries.enumerated() {
            let previous =
                position > 0 ? ready.entries[position - 1].term : try? storage.term(at: entry.index - 1)
            effects.persisted.append(
                .init(
                    index: entry.index, term: entry.term, previousTerm: previous,
                    value: decodeWord(entry.data)))
        }
        effects.messages = ready.messages
        for entry in ready.committedEntries { apply(entry, node: node, effects: &effects) }
        confirmedReads += ready.readStates.map { (decodeWord($0.context), $0.index) }
        serveReads(&effects)
        node.advance(ready)
        compactIfDue()
        return effects
    }

    private func apply(_ entry: Entry, node: RaftNode, effects: inout NodeEffects) {
        guard entry.index == appliedIndex + 1 else { return }
        var value: UInt64 = 0
        switch entry.kind {
        case .normal:
            value = decodeWord(entry.data)
        case .confChange:
            if let change = ConfChange(decoding: entry.data) { node.applyConfChange(change) }
        }
        state.apply(index: entry.index, term: entry.term, value: value)
        appliedIndex = entry.index
        appliedSinceSnapshot += 1
        effects.applied.append(.init(index: entry.index, term: entry.term, value: value))
    }

    private func serveReads(_ effects: inout NodeEffects) {
        var waiting: [(readID: UInt64, index: UInt64)] = []
        for read in confirmedReads {
            if read.index <= appliedIndex {
                effects.reads.append(
                    .init(
                        readID: read.readID, readIndex: read.index, appliedIndex: appliedIndex,
                        value: state.value))
            } else {
                waiting.append(read)
            }
        }
        confirmedReads = waiting
    }

    private func compactIfDue() {
        guard compactEveryEntries > 0, appliedSinceSnapshot >= compactEveryEntries, let node else { return }
        do throws(StorageError) {
            try storage.createSnapshot(index: appliedIndex, confState: node.confState, data: state.encoded)
            try storage.compact(upTo: appliedIndex)
            appliedSinceSnapshot = 0
        } catch {
            // The index is already covered by a snapshot: nothing to do.
        }
    }

    public func crash() {
        faultActivationsBeforeCrashes += node?.unsafeFaultActivations ?? 0
        node = nil
        inFlight = nil
        confirmedReads = []
    }

    public func restart() {
        restarts += 1
        var config = self.config
        config.randomSeed = config.randomSeed &+ restarts &* 0x9E37_79B9
        node = RaftNode(config: config, storage: storage)
        let snapshot = storage.latestSnapshot
        state = RegisterState(decoding: snapshot.data) ?? RegisterState()
        appliedIndex = snapshot.index
        appliedSinceSnapshot = 0
    }
}
