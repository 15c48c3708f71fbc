import CairnRaft

/// What the simulator needs from one cluster member. `RaftSimNode` wraps a bare `RaftNode`;
/// the member core (`CairnReplica`) can implement the same protocol to run in the same
/// simulator with the same checkers.
///
/// Every method is synchronous, deterministic and single-threaded. Persistence is split in
/// two so the simulator decides when a write reaches the disk (and can crash in between):
/// `startPersist` takes the next batch, `finishPersist` makes it durable and performs its
/// effects (send, apply, serve reads).
public protocol SimulatedNode: AnyObject {
    var id: NodeID { get }
    var status: NodeStatus { get }
    func tick()
    func receive(_ message: Message)
    /// Term of the entry at `index` in the member's log; nil when compacted or absent.
    func logTerm(at index: UInt64) -> UInt64?
    /// First index still in the log (entries before it are in a snapshot).
    var logFirstIndex: UInt64 { get }
    /// Term of the entry at `index` in the durable log (what survives a crash); nil when
    /// absent, `.max` when covered by the durable snapshot.
    func durableTerm(at index: UInt64) -> UInt64?
    /// (last term, last index) of the durable log: what the member votes with after a restart.
    var durableLastPosition: (term: UInt64, index: UInt64) { get }
    /// A client write of `value`; false when this node cannot accept it (not leader, full).
    func proposeWrite(_ value: UInt64) -> Bool
    /// An operator's membership change; false when this node cannot accept it.
    func proposeMembershipChange(_ change: ConfChange) -> Bool
    /// The membership this member currently applies (nil while it is down).
    var membership: ConfState? { get }
    /// A client linearizable read tagged `readID`; false when refused.
    func requestRead(_ readID: UInt64) -> Bool
    /// Takes the next batch of durable work if there is one and none is in flight.
    func startPersist() -> Bool
    /// The batch taken by `startPersist` is durable: performs its effects.
    func finishPersist() -> NodeEffects
    /// Loses everything not yet durable (including an in-flight batch) and stops.
    func crash()
    /// Starts again from the durable state.
    func restart()
}

/// A member's observable state, for the checkers.
public struct NodeStatus: Sendable, Hashable {
    public var role: Role
    public var term: UInt64
    public var leader: NodeID
    public var committedIndex: UInt64
    public var appliedIndex: UInt64
    public var lastIndex: UInt64
    /// Appends refused because they would overwrite committed entries (a safety breach).
    public var committedConflicts: Int
    /// TEST ONLY: decisions changed by a planted fault so far.
    public var unsafeFaultActivations: Int = 0

    public init(
        role: Role, term: UInt64, leader: NodeID, committedIndex: UInt64, appliedIndex: UInt64,
        lastIndex: UInt64, committedConflicts: Int
    ) {
        self.role = role
        self.term = term
        self.leader = leader
        self.committedIndex = committedIndex
        self.appliedIndex = appliedIndex
        self.lastIndex = lastIndex
        self.committedConflicts = committedConflicts
    }
}

/// What became durable and what happened as a consequence, reported by `finishPersist`.
public struct NodeEffects: Sendable {
    /// An entry written to the durable log, with the term of the entry before it (0 when
    /// unknown), for the log-matching checker.
    public struct Persisted: Sendable {
        public var index: UInt64
        public var term: UInt64
        public var previousTerm: UInt64?
        public var value: UInt64
    }

    /// An entry applied to the state machine; `value` is 0 for entries without a write.
    public struct Applied: Sendable {
        public var index: UInt64
        public var term: UInt64
        public var value: UInt64
    }

    /// A read served from the state machine at `appliedIndex` (>= the read index).
    public struct Read: Sendable {
        public var readID: UInt64
        public var readIndex: UInt64
        public var appliedIndex: UInt64
        public var value: UInt64
    }

    public var messages: [Message] = []
    public var persisted: [Persisted] = []
    /// A snapshot installed into the state machine: its index and state digest.
    public var restoredSnapshot: (index: UInt64, digest: UInt64)?
    public var applied: [Applied] = []
    public var reads: [Read] = []

    public init() {}
}

/// The simulated application state: one register and a digest of everything applied, so
/// two members' states compare in O(1) and a snapshot carries a checkable fingerprint.
public struct RegisterState: Sendable, Hashable {
    public var value: UInt64 = 0
    public var digest: UInt64 = 0xCBF2_9CE4_8422_2325

    public init() {}

    public mutating func apply(index: UInt64, term: UInt64, value written: UInt64) {
        if written != 0 { value = written }
        digest = Self.mix(digest, index)
        digest = Self.mix(digest, term)
        digest = Self.mix(digest, written)
    }

    static func mix(_ hash: UInt64, _ word: UInt64) -> UInt64 {
        var result = hash ^ word
        result = (result ^ (result >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        return result ^ (result >> 29)
    }

    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        for word in [value, digest] {
            for shift in stride(from: 0, to: 64, by: 8) {
                bytes.append(UInt8(truncatingIfNeeded: word >> shift))
            }
        }
        return bytes
    }

    init?(decoding bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        func word(_ start: Int) -> UInt64 {
            var result: UInt64 = 0
            for offset in 0..<8 { result |= UInt64(bytes[start + offset]) << (8 * UInt64(offset)) }
            return result
        }
        value = word(0)
        digest = word(8)
    }
}

/// Eight little-endian bytes, for write values and read ids on the wire.
func encodeWord(_ word: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: word >> (8 * UInt64($0))) }
}

func decodeWord(_ bytes: [UInt8]) -> UInt64 {
    guard bytes.count == 8 else { return 0 }
    var result: UInt64 = 0
    for (offset, byte) in bytes.enumerated() { result |= UInt64(byte) << (8 * UInt64(offset)) }
    return result
}
