import CairnCore
import CairnMVCC
import CairnRaft
import CairnStateMachine

/// Everything that tunes one `Replica`. Limits carry their unit last (STYLE.md).
public struct ReplicaConfig: Sendable {
    /// Raft's settings; `raft.id` is this member's ID (`MemberID.rawValue`).
    public var raft: RaftConfig
    public var stateMachine: StateMachine.Config
    /// Wall time of one `tick(now:)` (etcd's `--heartbeat-interval`), used to give a new
    /// leader's leases an election timeout of grace (etcd's lessor extension).
    public var tickMilliseconds: Int64 = 100
    /// Applied entries between two state-machine snapshots handed to the shell.
    public var snapshotEntriesInterval: UInt64 = 10_000
    /// Entries kept in the log behind a saved snapshot, so a slightly lagging follower
    /// catches up from the log rather than by snapshot (etcd's SnapshotCatchUpEntries).
    public var catchUpEntries: UInt64 = 5_000
    /// Linearizable reads waiting (queued, in a round or for apply); beyond it
    /// `read(readID:)` answers `ReplicaError.tooManyRequests`.
    public var readsPendingMax: Int = 16_384
    /// A ReadIndex round unanswered after this many ticks is asked again (its answer was lost
    /// with a leader change or a dropped message); its reads move to the new round.
    public var readRoundTimeoutTicks: Int = 20
    /// Raft `Ready`s processed per `nextEffects()` when they need no persistence, so one
    /// call's work stays bounded.
    public var readyBatchesPerCallMax: Int = 64
    /// Whether the in-memory log keeps a snapshot's bytes, or only its index, term and
    /// membership. A shell that keeps snapshot files (the member) says false and reads
    /// the bytes back when Raft sends a snapshot (a message with empty `data`): they are
    /// a serialized copy of the whole key space, as large as the state itself. The
    /// simulator, whose disk is this log, keeps them.
    public var retainsSnapshotData = true

    /// What the in-memory log keeps of `snapshot` (`retainsSnapshotData`).
    func retained(_ snapshot: Snapshot) -> Snapshot {
        guard !retainsSnapshotData else { return snapshot }
        var metadata = snapshot
        metadata.data = []
        return metadata
    }

    public init(memberID: MemberID, randomSeed: UInt64 = 0) {
        raft = RaftConfig(id: memberID.rawValue, randomSeed: randomSeed)
        stateMachine = StateMachine.Config()
    }

    public var memberID: MemberID { MemberID(raft.id) }
}

/// What the shell recovered from its disk (or what `Bootstrap.newCluster` produced for a
/// fresh member): the latest snapshot, the hard state, and the log entries after the
/// snapshot. The `Replica` mirrors it in memory as the durable part of the Raft log.
public struct RecoveredState: Sendable {
    public var snapshot: Snapshot?
    public var hardState: HardState
    public var entries: [Entry]

    public init(snapshot: Snapshot? = nil, hardState: HardState = HardState(), entries: [Entry] = []) {
        self.snapshot = snapshot
        self.hardState = hardState
        self.entries = entries
    }
}

/// Why the replica refused or failed a request. Operating conditions, never crashes; the
/// shell maps them to etcd's gRPC codes and messages in its one error table.
public enum ReplicaError: Error, Sendable, Hashable {
    /// Only the leader does this (etcd: "etcdserver: not leader"); `leader` is the
    /// known leader, if any.
    case notLeader(leader: MemberID?)
    /// A bound was reached (etcd: "etcdserver: too many requests").
    case tooManyRequests
    /// Raft refused the proposal (back-pressure, leadership transfer, pending change...).
    case raft(RaftError)
    /// A lease operation failed with etcd's error.
    case rejected(CairnError)
    /// etcd: "etcdserver: member not found".
    case memberNotFound
    /// etcd: "etcdserver: member ID already exist".
    case memberExists
    /// etcd: "etcdserver: member was removed" (IDs are never reused).
    case memberRemoved
    /// etcd: "etcdserver: Peer URLs already exists".
    case peerURLExists
    /// etcd: "etcdserver: can only promote a learner member".
    case memberNotLearner
    /// etcd: "etcdserver: can only promote a learner member which is in sync with leader".
    case learnerNotReady
    /// This member was removed from the cluster or hit a corrupted snapshot: it serves
    /// nothing more and the shell should stop it.
    case stopped
    /// A snapshot's bytes could not be restored (disk or network corruption).
    case corruptSnapshot(DecodeError)
}

/// What `Replica.nextEffects()` asks the shell to make durable, in this order: snapshot,
/// then hard state and entries (fsync'd when `mustSync`). Then `Replica.persisted()`.
public struct PersistRequest: Sendable {
    /// A leader's snapshot to install: save it (file, then a WAL snapshot record) first.
    public var snapshot: Snapshot?
    public var hardState: HardState?
    public var entries: [Entry]
    /// False when only the commit index moved (recoverable): write without fsync.
    public var mustSync: Bool
}

/// A copy of the applied state machine to serialize and save off the apply loop
/// (`stateMachine.snapshot()` is pure and the copy is a value), then report with
/// `Replica.snapshotSaved(_:)` so the in-memory log can be compacted.
public struct StateSnapshot: Sendable {
    public var index: UInt64
    public var term: UInt64
    public var confState: ConfState
    public var stateMachine: StateMachine

    /// The Raft snapshot of this state: what the shell saves and passes back.
    public func raftSnapshot() -> Snapshot {
        Snapshot(index: index, term: term, confState: confState, data: stateMachine.snapshot())
    }
}

/// The answer to one of this member's requests (matched by `RequestIdentity`).
public struct ReplicaResponse: Sendable {
    /// What happened to the request.
    public enum Outcome: Sendable {
        /// The command was applied; the result is the state machine's.
        case applied(ApplyResult)
        /// The membership change was applied; the member list after it.
        case membership([MemberRecord])
        case failed(ReplicaError)
    }

    public var requestID: UInt64
    public var outcome: Outcome
}

/// A linearizable read that may now be served from `Replica.stateMachine` (its read index
/// is applied), or that failed.
public struct ReadAnswer: Sendable, Hashable {
    public var readID: UInt64
    /// The confirmed read index, or the reason the read failed.
    public var result: Result<UInt64, ReplicaError>
}

/// One batch of work for the shell. See `Replica.nextEffects()` for the ordering contract.
public struct ReplicaEffects: Sendable {
    /// Make this durable, then call `Replica.persisted()`. Nothing else in this batch
    /// depends on it: everything else may be performed at once.
    public var persist: PersistRequest?
    /// Messages to peers; every one of them follows the persistence it promises.
    public var messages: [Message] = []
    /// Set when a leader's snapshot replaced the state machine (the watch hub resyncs).
    public var restoredSnapshotIndex: UInt64?
    /// Every applied entry's result in log order (watch hub events, shell effects).
    public var applied: [ApplyResult] = []
    /// Answers to this member's requests, after their entries were applied.
    public var responses: [ReplicaResponse] = []
    /// Reads that may be served now, or failed.
    public var reads: [ReadAnswer] = []
    /// A state-machine snapshot to save (at most one outstanding).
    public var snapshotToSave: StateSnapshot?
    /// Set when the leader or this member's role changed.
    public var softState: SoftState?
    /// This member was removed from the cluster: stop it (etcd exits too).
    public var removed = false

    var isEmpty: Bool {
        persist == nil && messages.isEmpty && restoredSnapshotIndex == nil && applied.isEmpty
            && responses.isEmpty && reads.isEmpty && snapshotToSave == nil && softState == nil && !removed
    }
}
