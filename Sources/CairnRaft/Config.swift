/// Everything that tunes one `RaftNode`. Limits carry their unit last (STYLE.md).
public struct RaftConfig: Sendable {
    /// This node's id; never `noNode`.
    public var id: NodeID
    /// Followers campaign after a random `electionTimeoutTicks ..< 2 * electionTimeoutTicks`
    /// ticks without hearing from a leader; leaders check their quorum every this many ticks.
    public var electionTimeoutTicks: Int = 10
    /// A leader sends heartbeats every this many ticks. Must be below the election timeout.
    public var heartbeatIntervalTicks: Int = 1
    /// Campaign first without raising the term (dissertation 9.6), so a node returning from
    /// a partition cannot disrupt a working leader.
    public var preVote: Bool = true
    /// A leader steps down when a majority has not answered within an election timeout,
    /// and followers ignore vote requests while they hear from a leader (leader lease).
    public var checkQuorum: Bool = true
    /// Unacknowledged appends per follower in `replicate` state; at the bound, sending to
    /// that follower pauses until an acknowledgement frees a slot.
    public var inflightMessagesMax: Int = 256
    /// An append message carries entries up to about this many bytes (at least one entry).
    public var messageBytesMax: Int = 1 << 20
    /// A leader refuses proposals (`RaftError.uncommittedBytesMax`) while this many bytes of
    /// its proposals are uncommitted, unless none are (so one large proposal always fits).
    public var uncommittedBytesMax: Int = 64 << 20
    /// Committed entries handed out per `Ready`, in bytes (at least one entry).
    public var committedEntriesBytesMax: Int = 64 << 20
    /// ReadIndex requests waiting for a heartbeat quorum or for the leader's first commit;
    /// beyond it `readIndex(context:)` answers `RaftError.readIndexPendingMax`.
    public var readIndexPendingMax: Int = 4096
    /// Messages buffered between two `Ready`s; beyond it new messages are dropped (Raft
    /// tolerates message loss; retries come from heartbeats and probes).
    public var outboxMessagesMax: Int = 1 << 16
    /// A follower in snapshot state with no acknowledgement after this many ticks goes back
    /// to probing, so a lost snapshot message is resent.
    public var snapshotTimeoutTicks: Int = 30
    /// Followers (and learners) that know the leader forward proposals to it instead of
    /// refusing them (etcd's default); the leader may still drop them (over
    /// `uncommittedBytesMax`, during a leadership transfer, or when it has lost leadership),
    /// so the caller must watch for the entry to commit and retry after a timeout.
    public var proposalForwarding: Bool = true
    /// Seed of the generator for randomized election timeouts (deterministic by design).
    public var randomSeed: UInt64 = 0
    /// TEST ONLY. Deliberate safety bugs for proving the simulator's checkers. Must stay
    /// empty outside tests.
    public var unsafeTestingFaults: Set<UnsafeTestingFault> = []

    public init(id: NodeID, randomSeed: UInt64 = 0) {
        self.id = id
        self.randomSeed = randomSeed
    }

    /// Programmer errors in a configuration (not operating conditions), checked once.
    func validate() {
        precondition(id != noNode, "RaftConfig.id must not be 0")
        precondition(heartbeatIntervalTicks > 0, "heartbeatIntervalTicks must be positive")
        precondition(electionTimeoutTicks > heartbeatIntervalTicks, "election timeout must exceed heartbeat")
        precondition(inflightMessagesMax > 0, "inflightMessagesMax must be positive")
        precondition(messageBytesMax > 0 && committedEntriesBytesMax > 0, "byte limits must be positive")
        precondition(readIndexPendingMax > 0 && outboxMessagesMax > 0, "queue limits must be positive")
    }
}

/// SplitMix64: a tiny, fast, well-distributed deterministic generator. Raft only needs it
/// for election timeout jitter; determinism lets a simulator replay every run from a seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// One batch of work for the application, produced by `RaftNode.ready()`.
///
/// Ordering contract (violating it breaks safety):
/// 1. If `snapshot` is set, persist it (and restore the state machine from it) before the
///    entries: the entries follow it.
/// 2. Persist `hardState` and `entries` (durably, when `mustSync`) **before** sending any of
///    `messages`: a vote or an acknowledgement promises that the state is on disk. A leader
///    whose term and vote are already durable may send while it persists (Raft thesis
///    10.2.1): it counts its own log toward a commit only from `advance(_:)` on.
/// 3. Apply `committedEntries` in order (they may include entries of this same batch, which
///    by rule 2 are persisted first); hand membership entries to `applyConfChange`.
/// 4. Serve reads in `readStates` once the applied index reaches their index.
/// 5. Call `advance(_:)` with this `Ready` once it is persisted. Persistence may finish
///    later than the call to `ready()` (asynchronously): until `advance`, `ready()` returns
///    nil, while `tick` and `step` keep working.
public struct Ready: Sendable {
    /// Set when the leader or role changed since the last `Ready`.
    public var softState: SoftState?
    /// Set when term, vote or commit changed since the last `Ready`.
    public var hardState: HardState?
    public var snapshot: Snapshot?
    public var entries: [Entry]
    public var committedEntries: [Entry]
    public var messages: [Message]
    public var readStates: [ReadState]
    /// Whether `hardState`/`entries` must reach stable storage before `messages` are sent
    /// (false when only the commit index changed, which can be recovered).
    public var mustSync: Bool
}
