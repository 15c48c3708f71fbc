import CairnCore
import CairnMVCC

/// Who is waiting for a command's answer: the member that proposed it and an
/// ID that member chose, unique among its in-flight proposals. Every member
/// applies the command; only the proposer finds a waiter under this identity.
public struct RequestIdentity: Hashable, Sendable, CustomStringConvertible {
    public var member: MemberID
    public var id: UInt64

    public init(member: MemberID, id: UInt64) {
        self.member = member
        self.id = id
    }

    public var description: String { "\(member)/\(id)" }
}

/// One remaining-TTL checkpoint: the leader's view of a lease's remaining
/// life, replicated so a new leader neither extends nor cuts the lease.
public struct LeaseCheckpoint: Hashable, Sendable {
    public var id: LeaseID
    public var remainingTTLSeconds: Int64

    public init(id: LeaseID, remainingTTLSeconds: Int64) {
        self.id = id
        self.remainingTTLSeconds = remainingTTLSeconds
    }
}

/// A replicated request: what a Raft log entry carries. Every member decodes
/// the same bytes and applies the same command in the same order, so the
/// vocabulary holds only deterministic writes; reads and keep-alives are
/// served outside the log.
public struct Command: Hashable, Sendable {
    /// The write itself.
    public enum Operation: Hashable, Sendable {
        case put(PutRequest)
        case deleteRange(DeleteRangeRequest)
        case txn(TxnRequest)
        case compact(revision: Int64)
        /// Grant a lease; `id` 0 asks the state machine to choose one.
        case leaseGrant(id: LeaseID, ttlSeconds: Int64)
        case leaseRevoke(LeaseID)
        case leaseCheckpoint([LeaseCheckpoint])
        /// An entry a new leader appends to commit its term; changes nothing
        /// but the applied index.
        case noOp
        /// Raise or clear an alarm (etcd's Alarm ACTIVATE/DEACTIVATE).
        case alarm(AlarmChange)
        /// A member's record (name, peer and client URLs): staged before its
        /// Raft membership change, or an update of an existing member.
        case memberAttributes(MemberRecord)
        /// A change to users, roles, permissions or the enabled flag.
        case auth(AuthOperation)
    }

    /// The encoding's first byte. Decoders refuse versions they do not know,
    /// so a newer member's entries are never misread by an older one.
    public static let formatVersion: UInt8 = 1

    public var requester: RequestIdentity
    public var operation: Operation

    public init(requester: RequestIdentity, operation: Operation) {
        self.requester = requester
        self.operation = operation
    }

    /// The compact binary form: version, requester, operation tag, fields.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.byte(Self.formatVersion)
        writer.unsigned(requester.member.rawValue)
        writer.unsigned(requester.id)
        writer.operation(operation)
        return writer.bytes
    }

    /// Decodes `encoded()`'s output; any other input yields an error.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        let version = try reader.byte()
        guard version == Self.formatVersion else { throw .unsupportedVersion(version) }
        requester = RequestIdentity(member: MemberID(try reader.unsigned()), id: try reader.unsigned())
        operation = try reader.commandOperation()
        try reader.expectEnd()
    }
}

extension ByteWriter {
    mutating func operation(_ operation: Command.Operation) {
        switch operation {
        case .put(let request):
            byte(1)
            put(request)
        case .deleteRange(let request):
            byte(2)
            deleteRange(request)
        case .txn(let request):
            byte(3)
            txn(request)
        case .compact(let revision):
            byte(4)
            signed(revision)
        case .leaseGrant(let id, let ttlSeconds):
            byte(5)
            signed(id.rawValue)
            signed(ttlSeconds)
        case .leaseRevoke(let id):
            byte(6)
            signed(id.rawValue)
        case .leaseCheckpoint(let checkpoints):
            byte(7)
            count(checkpoints.count)
            for checkpoint in checkpoints {
                signed(checkpoint.id.rawValue)
                signed(checkpoint.remainingTTLSeconds)
            }
        case .noOp:
            byte(8)
        case .alarm(let change):
            byte(40)
            alarmChange(change)
        case .memberAttributes(let record):
            byte(20)
            memberRecord(record)
        case .auth(let operation):
            byte(30)
            authOperation(operation)
        }
    }
}

extension ByteReader {
    mutating func commandOperation() throws(DecodeError) -> Command.Operation {
        switch try byte() {
        case 1: return .put(try put())
        case 2: return .deleteRange(try deleteRange())
        case 3: return .txn(try txn())
        case 4: return .compact(revision: try signed())
        case 5: return .leaseGrant(id: LeaseID(try signed()), ttlSeconds: try signed())
        case 6: return .leaseRevoke(LeaseID(try signed()))
        case 7:
            var checkpoints: [LeaseCheckpoint] = []
            for _ in 0..<(try count()) {
                checkpoints.append(
                    LeaseCheckpoint(id: LeaseID(try signed()), remainingTTLSeconds: try signed()))
            }
            return .leaseCheckpoint(checkpoints)
        case 8: return .noOp
        case 40: return .alarm(try alarmChange())
        case 20: return .memberAttributes(try memberRecord())
        case 30: return .auth(try authOperation())
        case let other: throw .unknownTag(other)
        }
    }
}
