/// Identifier of a Raft member. Zero means "nobody" (no leader, no vote).
public typealias NodeID = UInt64

/// The value of `NodeID` that means "nobody".
public let noNode: NodeID = 0

/// The kind of a log entry: application data, or a membership change the application must
/// hand back through `RaftNode.applyConfChange(_:)` when it applies the entry.
public enum EntryKind: UInt8, Sendable, Hashable {
    case normal = 0
    case confChange = 1
}

/// One entry of the replicated log.
///
/// Invariants:
/// 1. `index >= 1` and `term >= 1` for every entry in a log.
/// 2. Within one log, indexes are contiguous and terms never decrease.
public struct Entry: Sendable, Hashable {
    public var term: UInt64
    public var index: UInt64
    public var kind: EntryKind
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, kind: EntryKind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }

    /// Size used for byte limits: payload plus a fixed per-entry overhead, so that empty
    /// entries still count against limits and a limit can never admit unbounded entries.
    public var sizeBytes: Int { data.count + 24 }
}

/// The state that must be persisted before any message of the same `Ready` is sent:
/// a member that forgets its vote or term after a crash could vote twice in one term.
public struct HardState: Sendable, Hashable {
    public var term: UInt64
    public var vote: NodeID
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID = noNode, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// The membership: who votes and who only receives the log.
///
/// Invariants:
/// 1. `voters` and `learners` are disjoint.
public struct ConfState: Sendable, Hashable {
    public var voters: Set<NodeID>
    public var learners: Set<NodeID>

    public init(voters: Set<NodeID> = [], learners: Set<NodeID> = []) {
        self.voters = voters
        self.learners = learners
    }
}

/// A single-server membership change (Raft dissertation, section 4.1). At most one may be
/// pending (appended but not yet applied) at a time, which keeps any two majorities of the
/// old and new configurations overlapping.
public struct ConfChange: Sendable, Hashable {
    /// What the change does.
    public enum Kind: UInt8, Sendable, Hashable {
        /// Add a voter, or promote a learner to voter.
        case addVoter = 1
        /// Add a learner (receives the log, never votes or campaigns).
        case addLearner = 2
        /// Remove a voter or learner.
        case remove = 3
    }

    public var kind: Kind
    public var node: NodeID

    public init(_ kind: Kind, node: NodeID) {
        self.kind = kind
        self.node = node
    }

    /// Nine bytes: kind, then the node id little-endian. Kept tiny and explicit so the entry
    /// data is stable across versions.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = [kind.rawValue]
        bytes.reserveCapacity(9)
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: node >> shift)) }
        return bytes
    }

    /// Decodes entry data written by `encoded()`; nil for malformed data (an error value,
    /// never a crash: the data came off a disk or a network).
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count == 9, let kind = Kind(rawValue: bytes[0]) else { return nil }
        var node: UInt64 = 0
        for offset in 0..<8 { node |= UInt64(bytes[1 + offset]) << (8 * UInt64(offset)) }
        self.init(kind, node: node)
    }
}

/// A point-in-time image of the applied state machine plus the log position and
/// membership it reflects. It replaces every entry up to `index`.
public struct Snapshot: Sendable, Hashable {
    public var index: UInt64
    public var term: UInt64
    public var confState: ConfState
    public var data: [UInt8]

    public init(index: UInt64 = 0, term: UInt64 = 0, confState: ConfState = ConfState(), data: [UInt8] = []) {
        self.index = index
        self.term = term
        self.confState = confState
        self.data = data
    }

    /// True for the "no snapshot" value a fresh storage returns.
    public var isEmpty: Bool { index == 0 }
}

/// The kinds of message exchanged between members. Raw values are the wire format (see
/// `RaftCoding`): never renumber a kind, only append new ones.
public enum MessageKind: UInt8, Sendable, Hashable, CaseIterable {
    case append = 0
    case appendResponse = 1
    case vote = 2
    case voteResponse = 3
    case preVote = 4
    case preVoteResponse = 5
    case heartbeat = 6
    case heartbeatResponse = 7
    case snapshot = 8
    case timeoutNow = 9
    /// A follower forwards proposals (`entries`, data and kind only) to its leader.
    case propose = 10
    /// A follower forwards a ReadIndex request (`context`) to its leader.
    case readIndex = 11
    /// The leader's answer to a forwarded read: `index` is the confirmed read index.
    case readIndexResponse = 12
}

/// A message between two members. Fields not used by a kind stay zero or empty.
public struct Message: Sendable, Hashable {
    public var kind: MessageKind
    public var from: NodeID
    public var to: NodeID
    /// Sender's term; for a pre-vote request, the term it would campaign in.
    public var term: UInt64
    /// Append: term of the entry at `index`. Vote: the candidate's last log term.
    /// Rejected append response: the term of the follower's entry at `rejectHint`.
    public var logTerm: UInt64 = 0
    /// Append: index of the entry preceding `entries`. Vote: the candidate's last index.
    /// Append response: the last index the follower now matches (or the rejected index).
    public var index: UInt64 = 0
    public var entries: [Entry] = []
    public var commit: UInt64 = 0
    public var reject: Bool = false
    /// Rejected append response: the follower's guess of the last index that may match.
    public var rejectHint: UInt64 = 0
    public var snapshot: Snapshot? = nil
    /// Heartbeats carry the ReadIndex context they confirm; responses echo it.
    public var context: [UInt8] = []
    /// Vote requests caused by a leadership transfer bypass the leader lease.
    public var isLeadershipTransfer: Bool = false

    public init(kind: MessageKind, from: NodeID, to: NodeID, term: UInt64) {
        self.kind = kind
        self.from = from
        self.to = to
        self.term = term
    }
}

/// A member's role. Each role has its own step function in `RaftNode`.
public enum Role: UInt8, Sendable, Hashable {
    case follower
    case preCandidate
    case candidate
    case leader
}

/// Volatile state the application may want to observe (who leads, our role).
public struct SoftState: Sendable, Hashable {
    public var leader: NodeID
    public var role: Role

    public init(leader: NodeID, role: Role) {
        self.leader = leader
        self.role = role
    }
}

/// A confirmed linearizable read point: once the application has applied `index`, a read
/// tagged with `context` may be served from its state.
public struct ReadState: Sendable, Hashable {
    public var index: UInt64
    public var context: [UInt8]

    public init(index: UInt64, context: [UInt8]) {
        self.index = index
        self.context = context
    }
}

/// Why a request to the local node was refused. These are operating conditions, never
/// programmer errors: the caller retries elsewhere or later.
public enum RaftError: Error, Sendable, Hashable {
    /// Only a leader accepts this; `leader` is the known leader or `noNode`.
    case notLeader(leader: NodeID)
    /// Proposals are refused while leadership is being handed over.
    case leadershipTransferInProgress
    /// Admitting the proposal would exceed `RaftConfig.uncommittedBytesMax`.
    case uncommittedBytesMax
    /// A membership change is already appended but not yet applied.
    case confChangePending
    /// The membership change is invalid (e.g. removing the last voter).
    case invalidConfChange
    /// `RaftConfig.readIndexPendingMax` read requests are already waiting.
    case readIndexPendingMax
    /// The transfer target is unknown, a learner, or this node.
    case invalidTransferTarget
    /// The storage could not provide what was needed.
    case storage(StorageError)
}

/// A bug switch for simulator tests only. Production configurations must leave
/// `RaftConfig.unsafeTestingFaults` empty; each fault breaks a safety property on purpose so
/// tests can prove the simulator's checkers notice.
public enum UnsafeTestingFault: Sendable, Hashable {
    /// Count replicas to commit an entry from a previous term (Raft paper, Figure 8).
    case commitPreviousTermByCounting
    /// Grant (pre-)votes without checking the candidate's log is at least as up-to-date.
    case voteWithoutLogCheck
}
