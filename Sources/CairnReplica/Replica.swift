import CairnCore
import CairnMVCC
import CairnRaft
import CairnStateMachine

/// The deterministic heart of a member: it owns the Raft node, the in-memory mirror of the
/// durable log (`MemoryStorage`, like etcd's MemoryStorage beside its WAL) and the state
/// machine, and turns inputs into effects. It reads no clock, touches no disk or socket.
///
/// The shell's loop (one serial executor):
/// ```
/// on a timer (heartbeat interval): replica.tick(now: monotonicClock())
/// on a peer message:               replica.receive(message)
/// on a client request:             replica.propose(operation, requestID:) / read(readID:) / ...
/// after any of these:
///     while let effects = replica.nextEffects() {
///         if let p = effects.persist { WAL: p.snapshot, p.hardState, p.entries; fsync if p.mustSync
///                                      (may complete later); then replica.persisted() }
///         send effects.messages; feed effects.applied to the watch hub
///         answer effects.responses and effects.reads (reads from replica.stateMachine)
///         if let s = effects.snapshotToSave { off-loop: save s.raftSnapshot();
///                                              back on the loop: replica.snapshotSaved(...) }
///     }
/// ```
///
/// Properties:
/// 1. No message leaves before the persistence of the Raft batch it came with was
///    confirmed (`persisted()`): votes and acknowledgements are promises about the disk.
/// 2. A leader's snapshot is installed (storage and state machine) before any entry after
///    it is applied; only committed entries are applied, in index order, each once.
/// 3. A response is produced only after its entry was applied; a read only once the
///    applied index reaches its confirmed read index.
/// 4. Concurrent reads share one ReadIndex round; a read never joins a round that started
///    before it arrived (its read index would predate it).
/// 5. Leases expire only on the leader: promoted when this member becomes leader,
///    demoted when it stops.
public final class Replica {
    enum PersistState {
        case idle
        /// A Raft batch handed to the shell, not yet durable.
        case awaiting(Ready)
        /// The shell made it durable; its effects are due.
        case persisted(Ready)
    }

    /// The member's lifecycle; `stopped` is final.
    public enum State: Sendable, Hashable {
        case running
        /// Removed from the cluster, or a snapshot could not be restored.
        case stopped(ReplicaError)
    }

    /// Request IDs at or above this are the replica's own (lease revokes, checkpoints).
    public static let internalRequestIDBase: UInt64 = 1 << 63

    public let config: ReplicaConfig
    public let memberID: MemberID
    let storage: MemoryStorage
    let raft: RaftNode
    /// The applied state: serve serializable reads, Status and HashKV from it.
    public internal(set) var stateMachine: StateMachine
    public internal(set) var state: State = .running
    var persistState: PersistState = .idle
    /// The latest time the shell passed in (never read from a clock here).
    var time: MonotonicInstant
    var tickCount = 0
    var nextInternalRequestID = Replica.internalRequestIDBase
    var reads: ReadBatcher
    var pendingMembership: (requestID: UInt64, change: ConfChange)?
    var snapshotOutstanding = false
    /// An operator asked for a snapshot now (Defragment), not at the interval.
    var snapshotRequested = false
    var lastSnapshotIndex: UInt64
    /// Responses and read answers produced outside `nextEffects` (failures at once).
    var earlyResponses: [ReplicaResponse] = []
    var earlyReads: [ReadAnswer] = []

    /// Starts from what the shell recovered (or `Bootstrap.newCluster` produced, already
    /// written to the fresh WAL). Throws when the snapshot is corrupt.
    public init(config: ReplicaConfig, recovered: RecoveredState, now: MonotonicInstant) throws(ReplicaError)
    {
        self.config = config
        self.memberID = config.memberID
        self.time = now
        let storage = MemoryStorage()
        self.storage = storage
        var machine = StateMachine(config: config.stateMachine)
        if let snapshot = recovered.snapshot, !snapshot.isEmpty {
            do throws(DecodeError) {
                try machine.restore(snapshot.data, now: now)
            } catch {
                throw .corruptSnapshot(error)
            }
            storage.applySnapshot(config.retained(snapshot))
        }
        storage.setHardState(recovered.hardState)
        storage.append(recovered.entries.filter { $0.index > storage.firstIndex() - 1 })
        stateMachine = machine
        lastSnapshotIndex = machine.appliedIndex
        var nonceSource = SplitMix64(seed: config.raft.randomSeed ^ ~config.raft.id)
        reads = ReadBatcher(nonce: nonceSource.next())
        raft = RaftNode(config: config.raft, storage: storage)
    }

    // MARK: observation

    public var role: Role { raft.role }
    public var term: UInt64 { raft.term }
    /// The known leader, nil when there is none.
    public var leader: MemberID? { raft.leader == noNode ? nil : MemberID(raft.leader) }
    public var committedIndex: UInt64 { raft.committedIndex }
    public var appliedIndex: UInt64 { stateMachine.appliedIndex }
    public var lastIndex: UInt64 { raft.lastIndex }
    /// Who votes and who learns, as applied.
    public var confState: ConfState { raft.confState }
    /// MemberList: the applied member records, sorted by ID.
    public var members: [MemberRecord] { stateMachine.members.sorted }
    /// Term of the log entry at `index`, nil when compacted or absent.
    public func logTerm(at index: UInt64) -> UInt64? { raft.term(at: index) }
    public var logFirstIndex: UInt64 { raft.firstIndex }
    /// Appends refused because they would overwrite committed entries: always 0 in a
    /// correct cluster (the simulator checks it).
    public var committedConflicts: Int { raft.committedConflicts }
    /// The durable log as mirrored (what survives a crash of the shell).
    public var durableStorage: MemoryStorage { storage }

    // MARK: inputs

    /// One Raft tick at time `now` (monotonic); the leader also expires and checkpoints
    /// leases here, as proposals.
    public func tick(now: MonotonicInstant) {
        guard case .running = state else { return }
        self.time = max(self.time, now)
        tickCount += 1
        raft.tick()
        if reads.roundExpired(now: tickCount, timeoutTicks: config.readRoundTimeoutTicks) {
            reads.abandonRound()
            startReadRound()
        }
        if raft.role == .leader && stateMachine.lessor.state != .secondary { proposeLeaseMaintenance() }
    }

    /// A message from a peer.
    public func receive(_ message: Message) {
        guard case .running = state else { return }
        raft.step(message)
    }

    /// Proposes a write for a client of this member. The answer comes in a later
    /// `ReplicaEffects.responses` with the same `requestID` (below `internalRequestIDBase`,
    /// unique among this member's requests in flight), once applied. No answer comes if the
    /// entry is lost with a leader change: the shell times the request out.
    public func propose(_ operation: Command.Operation, requestID: UInt64) throws(ReplicaError) {
        precondition(requestID < Self.internalRequestIDBase, "request IDs above 2^63 are the replica's own")
        try checkRunning()
        let command = Command(
            requester: RequestIdentity(member: memberID, id: requestID), operation: operation)
        try proposeRaft(command.encoded())
    }

    /// Several writes with one admission check (the shell's group of waiting requests):
    /// all are proposed (or forwarded) together, or none is.
    public func propose(batch: [(operation: Command.Operation, requestID: UInt64)]) throws(ReplicaError) {
        try checkRunning()
        let payloads = batch.map { request in
            precondition(
                request.requestID < Self.internalRequestIDBase, "request IDs above 2^63 are the replica's own"
            )
            return Command(
                requester: RequestIdentity(member: memberID, id: request.requestID),
                operation: request.operation
            ).encoded()
        }
        do throws(RaftError) {
            try raft.propose(batch: payloads)
        } catch {
            throw Self.mapped(error)
        }
    }

    func proposeRaft(_ data: [UInt8]) throws(ReplicaError) {
        do throws(RaftError) {
            try raft.propose(data)
        } catch {
            throw Self.mapped(error)
        }
    }

    static func mapped(_ error: RaftError) -> ReplicaError {
        if case .notLeader(let leader) = error {
            return .notLeader(leader: leader == noNode ? nil : MemberID(leader))
        }
        if case .readIndexPendingMax = error { return .tooManyRequests }
        return .raft(error)
    }

    func checkRunning() throws(ReplicaError) {
        if case .stopped = state { throw .stopped }
    }

    /// A linearizable read: answered in `ReplicaEffects.reads` once a ReadIndex round that
    /// started after this call confirmed a read index and the state machine applied it.
    public func read(readID: UInt64) throws(ReplicaError) {
        try checkRunning()
        if reads.count >= config.readsPendingMax { throw .tooManyRequests }
        reads.queued.append(readID)
        if !reads.roundInFlight { startReadRound() }
    }

    /// Sends the queued reads' ReadIndex request (one round for all of them).
    func startReadRound() {
        guard !reads.roundInFlight, !reads.queued.isEmpty else { return }
        let context = reads.beginRound(now: tickCount)
        do throws(RaftError) {
            try raft.readIndex(context: context)
        } catch {
            for readID in reads.failRound() {
                earlyReads.append(ReadAnswer(readID: readID, result: .failure(Self.mapped(error))))
            }
        }
    }

    /// A keep-alive on the leader: the lease's TTL, restarted from now. Followers refuse
    /// (`notLeader`); the shell forwards keep-alives to the leader.
    public func renewLease(_ id: LeaseID) throws(ReplicaError) -> Int64 {
        try checkRunning()
        guard raft.role == .leader else { throw .notLeader(leader: leader) }
        let renewal: Lessor.Renewal
        do throws(CairnError) {
            renewal = try stateMachine.renew(id, now: time)
        } catch {
            throw .rejected(error)
        }
        if let checkpoint = renewal.checkpointToPropose { proposeInternal(.leaseCheckpoint([checkpoint])) }
        return renewal.ttlSeconds
    }

    /// LeaseTimeToLive as this member sees it (exact on the leader).
    public func leaseTimeToLive(_ id: LeaseID, keys: Bool) throws(ReplicaError) -> Lessor.LeaseStatus {
        do throws(CairnError) {
            return try stateMachine.lessor.timeToLive(id, keys: keys, now: time)
        } catch {
            throw .rejected(error)
        }
    }

    /// Hands leadership to `target` (MoveLeader; a leader shutting down).
    public func transferLeadership(to target: MemberID) throws(ReplicaError) {
        try checkRunning()
        do throws(RaftError) {
            try raft.transferLeadership(to: target.rawValue)
        } catch {
            throw Self.mapped(error)
        }
    }

    /// Starts an election now (tests; a lone member that wants to lead at once).
    public func campaign() { raft.campaign() }

    /// The leader's own proposals (lease revokes and checkpoints): nobody waits for them;
    /// a refused one is retried by the lessor's own schedule.
    func proposeInternal(_ operation: Command.Operation) {
        let command = Command(
            requester: RequestIdentity(member: memberID, id: nextInternalID()), operation: operation)
        try? proposeRaft(command.encoded())
    }

    private func proposeLeaseMaintenance() {
        for id in stateMachine.expiredLeases(now: time) { proposeInternal(.leaseRevoke(id)) }
        let checkpoints = stateMachine.leaseCheckpointsDue(now: time)
        if !checkpoints.isEmpty { proposeInternal(.leaseCheckpoint(checkpoints)) }
    }
}
