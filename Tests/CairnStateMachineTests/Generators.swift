import CairnCore
import CairnMVCC

@testable import CairnStateMachine

/// A seeded SplitMix64 generator, so every random test replays from its seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = (state ^ (state >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

/// Random commands over a small key and lease space, so keys collide,
/// leases get attached, revoked and reused, and compactions hit history.
struct CommandGenerator {
    var random: SeededGenerator
    var nextRequestID: UInt64 = 1

    init(seed: UInt64) { random = SeededGenerator(seed: seed) }

    mutating func key() -> Key { Key("k\(Int.random(in: 0..<8, using: &random))") }

    mutating func bytes(maxCount: Int = 6) -> [UInt8] {
        (0..<Int.random(in: 0...maxCount, using: &random)).map { _ in
            UInt8.random(in: 0...255, using: &random)
        }
    }

    mutating func lease() -> LeaseID {
        Bool.random(using: &random) ? .none : LeaseID(Int64.random(in: 1...4, using: &random))
    }

    mutating func put() -> PutRequest {
        PutRequest(
            key: key(), value: bytes(), lease: lease(), previousKeyValue: Bool.random(using: &random))
    }

    mutating func deleteRange() -> DeleteRangeRequest {
        let start = key()
        let end: Key =
            Bool.random(using: &random) ? Key([]) : Key("k\(Int.random(in: 0..<9, using: &random))")
        return DeleteRangeRequest(key: start, rangeEnd: end, previousKeyValues: Bool.random(using: &random))
    }

    mutating func range() -> RangeRequest {
        RangeRequest(
            key: key(), rangeEnd: Key([0]), limit: Int64.random(in: 0...3, using: &random),
            sortOrder: SortOrder(rawValue: Int.random(in: 0...2, using: &random))!,
            sortTarget: SortTarget(rawValue: Int.random(in: 0...4, using: &random))!,
            keysOnly: Bool.random(using: &random))
    }

    mutating func compare() -> Compare {
        let targets: [Compare.Target] = [
            .value(bytes(maxCount: 2)), .version(Int64.random(in: 0...3, using: &random)),
            .create(Int64.random(in: 0...20, using: &random)),
            .mod(Int64.random(in: -1...20, using: &random)),
            .lease(Int64.random(in: 0...4, using: &random)),
        ]
        return Compare(
            key: key(), rangeEnd: Bool.random(using: &random) ? Key([]) : Key([0]),
            target: targets.randomElement(using: &random)!,
            result: Compare.Result(rawValue: Int.random(in: 0...3, using: &random))!)
    }

    mutating func txn(depth: Int = 0) -> TxnRequest {
        var request = TxnRequest()
        for _ in 0..<Int.random(in: 0...2, using: &random) { request.compare.append(compare()) }
        for _ in 0..<Int.random(in: 0...3, using: &random) { request.success.append(operation(depth: depth)) }
        for _ in 0..<Int.random(in: 0...2, using: &random) { request.failure.append(operation(depth: depth)) }
        return request
    }

    mutating func operation(depth: Int) -> RequestOperation {
        switch Int.random(in: 0..<(depth < 2 ? 4 : 3), using: &random) {
        case 0: .range(range())
        case 1: .put(put())
        case 2: .deleteRange(deleteRange())
        default: .txn(txn(depth: depth + 1))
        }
    }

    mutating func operation(revisionHint: Int64) -> Command.Operation {
        switch Int.random(in: 0..<20, using: &random) {
        case 0..<7: return .put(put())
        case 7..<9: return .deleteRange(deleteRange())
        case 9..<12: return .txn(txn())
        case 12: return .compact(revision: Int64.random(in: -1...(revisionHint + 1), using: &random))
        case 13, 14, 15:
            let id =
                Int.random(in: 0..<4, using: &random) == 0
                ? LeaseID.none : LeaseID(Int64.random(in: 1...4, using: &random))
            return .leaseGrant(id: id, ttlSeconds: Int64.random(in: -1...100, using: &random))
        case 16: return .leaseRevoke(LeaseID(Int64.random(in: 0...4, using: &random)))
        case 17:
            return .leaseCheckpoint([
                LeaseCheckpoint(
                    id: LeaseID(Int64.random(in: 1...4, using: &random)),
                    remainingTTLSeconds: Int64.random(in: 0...50, using: &random))
            ])
        default: return .noOp
        }
    }

    mutating func command(revisionHint: Int64 = 10) -> Command {
        defer { nextRequestID += 1 }
        return Command(
            requester: RequestIdentity(
                member: MemberID(UInt64.random(in: 1...3, using: &random)), id: nextRequestID),
            operation: operation(revisionHint: revisionHint))
    }
}

/// A command from member 1 with the next request ID, for hand-written tests.
func command(_ operation: Command.Operation, id: UInt64 = 1) -> Command {
    Command(requester: RequestIdentity(member: MemberID(1), id: id), operation: operation)
}

let epoch = MonotonicInstant(milliseconds: 0)

extension MonotonicInstant {
    static func seconds(_ seconds: Int64) -> MonotonicInstant {
        MonotonicInstant(milliseconds: seconds * 1000)
    }
}
