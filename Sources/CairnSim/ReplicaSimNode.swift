import CairnCore
import CairnMVCC
import CairnRaft
import CairnReplica
import CairnStateMachine

/// The whole member core (`Replica`: Raft, the real state machine, leases, membership) as
/// a simulated member. Its disk is the replica's durable mirror, which holds exactly what
/// the simulator confirmed with `persisted()`; a crash drops the replica and any batch in
/// flight, and a restart recovers from that disk as a real shell recovers from its WAL.
///
/// Clients speak real commands: `submit` (puts, txns), `read(key:readID:)` (linearizable
/// gets). Their answers are collected in `takeAnswers()`.
public final class ReplicaSimNode: SimulatedNode {
    /// An answer to a client of this member.
    public enum Answer: Sendable {
        case applied(requestID: UInt64, ApplyResult)
        case failed(requestID: UInt64, ReplicaError)
        /// A linearizable read served at `index`: the key's value then (nil: absent).
        case read(readID: UInt64, index: UInt64, value: [UInt8]?)
        case readFailed(readID: UInt64, ReplicaError)
    }

    /// The key the register workload of `SimulatedNode` (`proposeWrite`, `requestRead`) uses.
    public static let registerKey = Key("register")

    public let id: NodeID
    let config: ReplicaConfig
    public private(set) var replica: Replica?
    /// The durable state: the live replica's mirror, or the crashed one's.
    private var disk: MemoryStorage
    private var held: PersistRequest?
    private var inFlight = false
    /// Effects gathered since the last `finishPersist`, one segment per snapshot install
    /// (a checker must see the install between the applies around it).
    private var segments: [NodeEffects] = [NodeEffects()]
    private var segmentSnapshots: [UInt64?] = [nil]
    private var answers: [Answer] = []
    /// Keys of reads in flight (register reads use `registerKey`).
    private var readKeys: [UInt64: Key] = [:]
    private var registerReads: Set<UInt64> = []
    private var now = MonotonicInstant(milliseconds: 0)
    private var nextRequestID: UInt64 = 1 << 40
    private var restarts: UInt64 = 0
    /// The hard state as of the last synced write. A write with `mustSync == false` (only
    /// the commit index moved) reaches the page cache only: a crash loses it.
    private var syncedHardState: HardState
    /// Crashes that lost an unsynced (commit-only) hard state write.
    public private(set) var unsyncedLosses = 0

    public init(config: ReplicaConfig, recovered: RecoveredState) throws(ReplicaError) {
        id = config.raft.id
        self.config = config
        let replica = try Replica(config: config, recovered: recovered, now: now)
        self.replica = replica
        disk = replica.durableStorage
        syncedHardState = replica.durableStorage.hardState
    }

    // MARK: observation (SimulatedNode)

    public var status: NodeStatus {
        guard let replica else {
            return NodeStatus(
                role: .follower, term: 0, leader: noNode, committedIndex: 0, appliedIndex: 0, lastIndex: 0,
                committedConflicts: 0)
        }
        return NodeStatus(
            role: replica.role, term: replica.term, leader: replica.leader?.rawValue ?? noNode,
            committedIndex: replica.committedIndex, appliedIndex: replica.appliedIndex,
            lastIndex: replica.lastIndex, committedConflicts: replica.committedConflicts)
    }

    public func logTerm(at index: UInt64) -> UInt64? { replica?.logTerm(at: index) }

    public var logFirstIndex: UInt64 { replica?.logFirstIndex ?? disk.firstIndex() }

    public func durableTerm(at index: UInt64) -> UInt64? {
        if index < disk.firstIndex() - 1 { return .max }
        return try? disk.term(at: index)
    }

    public var durableLastPosition: (term: UInt64, index: UInt64) {
        let last = disk.lastIndex()
        return ((try? disk.term(at: last)) ?? 0, last)
    }

    public var membership: ConfState? { replica?.confState }

    // MARK: inputs

    public func tick() {
        now = now.adding(milliseconds: config.tickMilliseconds)
        replica?.tick(now: now)
    }

    public func receive(_ message: Message) { replica?.receive(message) }

    /// A client command; false when refused at once (the command was not proposed).
    public func submit(_ operation: Command.Operation, requestID: UInt64) -> Bool {
        guard let replica else { return false }
        do throws(ReplicaError) {
            try replica.propose(operation, requestID: requestID)
            return true
        } catch {
            return false
        }
    }

    /// A client's linearizable get of `key`; false when refused at once.
    public func read(key: Key, readID: UInt64) -> Bool {
        guard let replica else { return false }
        do throws(ReplicaError) {
            try replica.read(readID: readID)
            readKeys[readID] = key
            return true
        } catch {
            return false
        }
    }

    /// A serializable get: this member's applied state, no ReadIndex round (may be stale).
    public func readLocally(key: Key) -> [UInt8]? {
        try? replica?.stateMachine.store.range(RangeRequest(key: key)).keyValues.first?.value
    }

    public func proposeWrite(_ value: UInt64) -> Bool {
        nextRequestID += 1
        let put = PutRequest(key: Self.registerKey, value: encodeWord(value))
        return submit(.put(put), requestID: nextRequestID)
    }

    public func requestRead(_ readID: UInt64) -> Bool {
        guard read(key: Self.registerKey, readID: readID) else { return false }
        registerReads.insert(readID)
        return true
    }

    public func proposeMembershipChange(_ change: ConfChange) -> Bool {
        guard let replica else { return false }
        nextRequestID += 1
        let id = MemberID(change.node)
        do throws(ReplicaError) {
            let isLearner = replica.confState.learners.contains(change.node)
            switch change.kind {
            case .addVoter where isLearner:
                try replica.promoteMember(id, requestID: nextRequestID)
            case .addLearner, .addVoter:
                let record = MemberRecord(
                    id: id, name: "m\(change.node)", peerURLs: ["sim://\(change.node)"],
                    isLearner: change.kind == .addLearner)
                try replica.addMember(record, requestID: nextRequestID)
            case .remove:
                try replica.removeMember(id, requestID: nextRequestID)
            }
            return true
        } catch {
            return false
        }
    }

    /// Answers for this member's clients since the last call.
    public func takeAnswers() -> [Answer] {
        defer { answers = [] }
        return answers
    }

    // MARK: persistence

    public func startPersist() -> Bool {
        guard let replica, !inFlight else { return false }
        if held == nil { pull(replica) }
        if held != nil {
            inFlight = true
            return true
        }
        return hasGathered
    }

    /// Messages gathered so far, which may leave now: `Replica.nextEffects` hands
    /// out only messages of durable batches and a leader's appends that go with
    /// their own persist, so they go out while that persist is in flight (and a
    /// crash may lose the persist after they left).
    public func takeMessagesToSend() -> [Message] {
        var messages: [Message] = []
        for position in segments.indices {
            messages += segments[position].messages
            segments[position].messages = []
        }
        return messages
    }

    public func finishPersist() -> NodeEffects {
        finishPersistSegments().reduce(into: NodeEffects()) { merged, segment in
            merged.messages += segment.effects.messages
            merged.persisted += segment.effects.persisted
            merged.applied += segment.effects.applied
            merged.reads += segment.effects.reads
        }
    }

    /// Like `finishPersist`, split where a leader's snapshot was installed (its index
    /// starts the segment), so checkers see the install in order.
    public func finishPersistSegments() -> [(installedSnapshot: UInt64?, effects: NodeEffects)] {
        guard let replica else { return [] }
        if inFlight, let request = held {
            recordPersisted(request, replica: replica)
            replica.persisted()
            if request.mustSync || request.snapshot != nil { syncedHardState = disk.hardState }
            held = nil
        }
        inFlight = false
        pull(replica)
        let result = Array(zip(segmentSnapshots, segments))
        segments = [NodeEffects()]
        segmentSnapshots = [nil]
        return result.filter { $0.0 != nil || !$0.1.isEmptyForChecks }.map { ($0.0, $0.1) }
    }

    private var hasGathered: Bool { segments.count > 1 || !segments[0].isEmptyForChecks || !answers.isEmpty }

    /// Takes effects until the replica asks for persistence (held) or has nothing more.
    private func pull(_ replica: Replica) {
        while held == nil, let effects = replica.nextEffects() {
            absorb(effects, replica: replica)
            held = effects.persist
        }
    }

    private func absorb(_ effects: ReplicaEffects, replica: Replica) {
        if let index = effects.restoredSnapshotIndex {
            segments.append(NodeEffects())
            segmentSnapshots.append(index)
        }
        var segment = segments.removeLast()
        segment.messages += effects.messages
        for result in effects.applied {
            // The durable log holds every applied entry (persisted before applied); Raft's
            // view may already have moved to a leader's snapshot received meanwhile.
            let term = (try? disk.term(at: result.index)) ?? replica.logTerm(at: result.index) ?? 0
            segment.applied.append(.init(index: result.index, term: term, value: registerValue(result)))
        }
        for response in effects.responses { answers.append(Self.answer(response)) }
        for read in effects.reads { serve(read, replica: replica, into: &segment) }
        segments.append(segment)
        if let snapshot = effects.snapshotToSave { replica.snapshotSaved(snapshot.raftSnapshot()) }
    }

    private static func answer(_ response: ReplicaResponse) -> Answer {
        switch response.outcome {
        case .applied(let result): return .applied(requestID: response.requestID, result)
        case .membership:
            return .applied(requestID: response.requestID, ApplyResult(index: 0, response: .noOp))
        case .failed(let error): return .failed(requestID: response.requestID, error)
        }
    }

    private func serve(_ read: ReadAnswer, replica: Replica, into segment: inout NodeEffects) {
        guard let key = readKeys.removeValue(forKey: read.readID) else { return }
        let isRegister = registerReads.remove(read.readID) != nil
        switch read.result {
        case .success(let index):
            let value = try? replica.stateMachine.store.range(RangeRequest(key: key)).keyValues.first?.value
            if isRegister {
                segment.reads.append(
                    .init(
                        readID: read.readID, readIndex: index, appliedIndex: replica.appliedIndex,
                        value: value.map { decodeWord($0) } ?? 0))
            } else {
                answers.append(.read(readID: read.readID, index: index, value: value))
            }
        case .failure(let error):
            if !isRegister { answers.append(.readFailed(readID: read.readID, error)) }
        }
    }

    /// The register workload's value of an applied entry: the 8-byte value of a put to
    /// `registerKey`, else 0 (the checker's register keeps its value on 0).
    private func registerValue(_ result: ApplyResult) -> UInt64 {
        for event in result.events.reversed()
        where event.keyValue.key == Self.registerKey && event.keyValue.value.count == 8 {
            return decodeWord(event.keyValue.value)
        }
        return 0
    }

    private func recordPersisted(_ request: PersistRequest, replica: Replica) {
        var segment = segments.removeLast()
        for (position, entry) in request.entries.enumerated() {
            let previous =
                position > 0 ? request.entries[position - 1].term : try? disk.term(at: entry.index - 1)
            segment.persisted.append(
                .init(
                    index: entry.index, term: entry.term, previousTerm: previous,
                    value: Self.fingerprint(entry)))
        }
        segments.append(segment)
    }

    /// FNV-1a of an entry's kind and data: equal entries, equal fingerprints.
    static func fingerprint(_ entry: Entry) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in [entry.kind.rawValue] + entry.data {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01B3
        }
        return hash
    }

    // MARK: crash and restart

    public func crash() {
        // Unsynced writes are lost: only the commit index can be among them (entries and
        // votes always sync), and Raft re-learns it.
        if disk.hardState != syncedHardState {
            disk.setHardState(syncedHardState)
            unsyncedLosses += 1
        }
        replica = nil
        held = nil
        inFlight = false
        segments = [NodeEffects()]
        segmentSnapshots = [nil]
        answers = []
        readKeys = [:]
        registerReads = []
    }

    public func restart() {
        restarts += 1
        var config = self.config
        config.raft.randomSeed = config.raft.randomSeed &+ restarts &* 0x9E37_79B9
        let entries =
            (try? disk.entries(from: disk.firstIndex(), to: disk.lastIndex() + 1, bytesMax: .max)) ?? []
        let recovered = RecoveredState(
            snapshot: disk.latestSnapshot.isEmpty ? nil : disk.latestSnapshot, hardState: disk.hardState,
            entries: entries)
        // The disk holds only what this replica's state machine wrote: it restores.
        guard let replica = try? Replica(config: config, recovered: recovered, now: now) else {
            preconditionFailure("node \(id) could not restart from its own durable state")
        }
        self.replica = replica
        disk = replica.durableStorage
    }
}

extension NodeEffects {
    var isEmptyForChecks: Bool { messages.isEmpty && persisted.isEmpty && applied.isEmpty && reads.isEmpty }
}
