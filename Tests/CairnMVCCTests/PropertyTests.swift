import CairnCore
import CairnMVCC
import Testing

/// Random operation sequences against `MVCCStore` and `ReferenceStore`; every
/// answer, error and event list must be identical.
@Suite struct PropertyTests {
    static let keyPool: [Key] = [
        "a", "ab", "abc", "b", "ba", "c", "cd", "d", "e", Key([0xff]), Key([0x61, 0xff]),
    ]
    static let leases: Set<LeaseID> = [LeaseID(1), LeaseID(2)]

    struct Generator {
        var random: SplitMix64
        var current: Int64 = 1
        var compacted: Int64 = -1

        mutating func key() -> Key { random.pick(PropertyTests.keyPool) }

        mutating func value() -> [UInt8] { random.chance(10) ? [] : Array("v\(random.below(6))".utf8) }

        mutating func revision() -> Int64 {
            if random.chance(50) { return 0 }
            if random.chance(20) { return Int64(random.below(Int(current) + 3)) - 1 }
            let oldest = max(compacted, 1)
            return oldest + Int64(random.below(Int(current - oldest) + 1))
        }

        mutating func rangeEnd(for key: Key) -> Key {
            switch random.below(7) {
            case 0, 1, 2: Key([])
            case 3: Key([0])
            case 4: KeyRange.prefixEnd(of: key)
            default: self.key()
            }
        }

        mutating func rangeRequest() -> RangeRequest {
            let start = random.chance(8) ? Key([0]) : key()
            var request = RangeRequest(key: start, rangeEnd: rangeEnd(for: start))
            request.limit = random.chance(50) ? 0 : Int64(random.below(5))
            request.revision = revision()
            request.sortOrder = SortOrder(rawValue: random.below(3))!
            request.sortTarget = SortTarget(rawValue: random.below(5))!
            request.keysOnly = random.chance(20)
            request.countOnly = random.chance(10)
            if random.chance(25) { request.minModRevision = Int64(random.below(Int(current) + 1)) }
            if random.chance(25) { request.maxModRevision = Int64(random.below(Int(current) + 1)) }
            if random.chance(25) { request.minCreateRevision = Int64(random.below(Int(current) + 1)) }
            if random.chance(25) { request.maxCreateRevision = Int64(random.below(Int(current) + 1)) }
            return request
        }

        mutating func putRequest(key: Key) -> PutRequest {
            let lease = random.chance(10) ? LeaseID(3) : LeaseID(Int64(random.below(3)))
            var request = PutRequest(key: key, value: value(), lease: lease)
            request.previousKeyValue = random.chance(50)
            if random.chance(10) {
                request.ignoreValue = true
                if !random.chance(10) { request.value = [] }
            }
            if random.chance(10) {
                request.ignoreLease = true
                if !random.chance(10) { request.lease = .none }
            }
            return request
        }

        mutating func deleteRequest() -> DeleteRangeRequest {
            let start = key()
            return DeleteRangeRequest(
                key: start, rangeEnd: rangeEnd(for: start), previousKeyValues: random.chance(50))
        }

        mutating func compare() -> Compare {
            let target: Compare.Target =
                switch random.below(5) {
                case 0: .value(value())
                case 1: .version(Int64(random.below(4)))
                case 2: .create(Int64(random.below(Int(current) + 2)))
                case 3: .mod(Int64(random.below(Int(current) + 2)))
                default: .lease(Int64(random.below(3)))
                }
            let start = key()
            let end = random.chance(20) ? rangeEnd(for: start) : Key([])
            return Compare(
                key: start, rangeEnd: end, target: target, result: Compare.Result(rawValue: random.below(4))!)
        }

        /// A txn whose writes touch distinct keys (taken from `writable`),
        /// so the duplicate-key rule never applies.
        mutating func txnRequest(writable: inout [Key], depth: Int = 0) -> TxnRequest {
            var request = TxnRequest(compare: (0..<random.below(3)).map { _ in compare() })
            for branch in 0..<2 {
                var operations: [RequestOperation] = []
                for _ in 0..<random.below(depth == 0 ? 5 : 3) {
                    switch random.below(10) {
                    case 0, 1, 2: operations.append(.range(rangeRequest()))
                    case 3, 4, 5, 6:
                        if let key = writable.popLast() { operations.append(.put(putRequest(key: key))) }
                    case 7, 8:
                        if let key = writable.popLast() {
                            operations.append(
                                .deleteRange(
                                    DeleteRangeRequest(key: key, previousKeyValues: random.chance(50))))
                        }
                    default:
                        if depth < 2 {
                            operations.append(.txn(txnRequest(writable: &writable, depth: depth + 1)))
                        }
                    }
                }
                if branch == 0 { request.success = operations } else { request.failure = operations }
            }
            return request
        }
    }

    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func storeMatchesReference(seed: UInt64) throws {
        var generator = Generator(random: SplitMix64(state: seed))
        var store = MVCCStore(limits: .init(txnOperationsMax: 5))
        var reference = ReferenceStore()
        reference.txnOperationsMax = 5
        var tally: [String: Int] = [:]
        for step in 0..<3000 {
            generator.current = reference.current
            generator.compacted = reference.compacted
            let context = "seed \(seed) step \(step)"
            switch generator.random.below(20) {
            case 0..<6:
                let request = generator.putRequest(key: generator.key())
                tally[
                    "put "
                        + same(
                            try store.put(request, isLeaseGranted: { Self.leases.contains($0) }),
                            try reference.put(request, leases: Self.leases), context), default: 0] += 1
            case 6..<8:
                let request = generator.deleteRequest()
                tally[
                    "delete "
                        + same(try store.deleteRange(request), try reference.deleteRange(request), context),
                    default: 0] += 1
            case 8..<13:
                let request = generator.rangeRequest()
                tally[
                    "range " + same(try store.range(request), try reference.range(request), context),
                    default: 0] += 1
            case 13..<17:
                var writable = Self.keyPool.shuffledDeterministically(&generator.random)
                let request = generator.txnRequest(writable: &writable)
                if request.isReadOnly {
                    // Answered as a read: the same answer, and nothing written.
                    var copy = reference
                    tally[
                        "read-only txn "
                            + same(
                                try store.readOnlyTxn(request),
                                try copy.txn(request, leases: Self.leases).response, context), default: 0] +=
                        1
                }
                tally[
                    "txn "
                        + same(
                            try store.txn(request, isLeaseGranted: { Self.leases.contains($0) }),
                            try reference.txn(request, leases: Self.leases), context), default: 0] += 1
            case 17:
                let revision =
                    generator.random.chance(80)
                    ? reference.compacted + 1
                        + Int64(
                            generator.random.below(max(1, Int(reference.current - reference.compacted) / 3)))
                    : generator.revision()
                tally[
                    "compact "
                        + same(
                            try {
                                try store.compact(revision)
                                return Done()
                            }(),
                            try {
                                try reference.compact(revision)
                                return Done()
                            }(), context), default: 0] += 1
            default:
                let revision =
                    max(reference.compacted, 1)
                    + Int64(generator.random.below(Int(reference.current - max(reference.compacted, 1)) + 1))
                let everything = RangeRequest(key: Key([0]), rangeEnd: Key([0]), revision: revision)
                tally[
                    "history " + same(try store.range(everything), try reference.range(everything), context),
                    default: 0] += 1
            }
            #expect(store.currentRevision == reference.current, "\(context)")
            #expect(store.liveKeyCount == reference.snapshot(reference.current).count, "\(context)")
            // Every key now, limited: counted from the kept count, not by a walk.
            let firstTwo = RangeRequest(key: Key([0]), rangeEnd: Key([0]), limit: 2)
            same(try store.range(firstTwo), try reference.range(firstTwo), context)
        }
        #expect(reference.current > 600, "the sequence must write a lot")
        // The mix must exercise both outcomes of every kind of operation.
        for kind in ["put", "range", "txn", "compact"] {
            #expect(tally["\(kind) ok", default: 0] >= 10, "\(kind): \(tally)")
            #expect(tally["\(kind) error", default: 0] >= 3, "\(kind): \(tally)")
        }
        #expect(tally["read-only txn ok", default: 0] >= 5, "\(tally)")
        #expect(tally["delete ok", default: 0] >= 50 && tally["history ok", default: 0] >= 30, "\(tally)")
    }

    /// Both results must be the same value or the same error; says which.
    @discardableResult
    func same<T: Equatable>(
        _ actual: @autoclosure () throws -> T, _ expected: @autoclosure () throws -> T, _ context: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> String {
        let lhs = Result { try actual() }
        let rhs = Result { try expected() }
        switch (lhs, rhs) {
        case (.success(let a), .success(let b)):
            #expect(a == b, "\(context)", sourceLocation: sourceLocation)
            return "ok"
        case (.failure(let a), .failure(let b)):
            #expect(a as? CairnError == b as? CairnError, "\(context)", sourceLocation: sourceLocation)
            return "error"
        default:
            Issue.record("\(context): store \(lhs) but reference \(rhs)", sourceLocation: sourceLocation)
            return "mismatch"
        }
    }
}

/// Stands in for Void results so compactions compare like other answers.
struct Done: Equatable {}

extension Array {
    func shuffledDeterministically(_ random: inout SplitMix64) -> [Element] {
        var copy = self
        for index in copy.indices.reversed() where index > 0 {
            copy.swapAt(index, random.below(index + 1))
        }
        return copy
    }
}
