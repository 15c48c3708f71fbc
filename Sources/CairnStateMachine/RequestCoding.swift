import CairnCore
import CairnMVCC

/// The binary forms of CairnMVCC's request and key-space types, shared by
/// commands and snapshots. Field order is the format: changing it needs a new
/// format version.
extension ByteWriter {
    mutating func range(_ request: RangeRequest) {
        key(request.key)
        key(request.rangeEnd)
        signed(request.limit)
        signed(request.revision)
        byte(UInt8(request.sortOrder.rawValue))
        byte(UInt8(request.sortTarget.rawValue))
        bool(request.keysOnly)
        bool(request.countOnly)
        signed(request.minModRevision)
        signed(request.maxModRevision)
        signed(request.minCreateRevision)
        signed(request.maxCreateRevision)
    }

    mutating func put(_ request: PutRequest) {
        key(request.key)
        data(request.value)
        signed(request.lease.rawValue)
        bool(request.previousKeyValue)
        bool(request.ignoreValue)
        bool(request.ignoreLease)
    }

    mutating func deleteRange(_ request: DeleteRangeRequest) {
        key(request.key)
        key(request.rangeEnd)
        bool(request.previousKeyValues)
    }

    mutating func txn(_ request: TxnRequest) {
        count(request.compare.count)
        for compare in request.compare { self.compare(compare) }
        for branch in [request.success, request.failure] {
            count(branch.count)
            for operation in branch { self.operation(operation) }
        }
    }

    mutating func compare(_ compare: Compare) {
        key(compare.key)
        key(compare.rangeEnd)
        byte(UInt8(compare.result.rawValue))
        switch compare.target {
        case .value(let operand):
            byte(0)
            data(operand)
        case .version(let operand):
            byte(1)
            signed(operand)
        case .create(let operand):
            byte(2)
            signed(operand)
        case .mod(let operand):
            byte(3)
            signed(operand)
        case .lease(let operand):
            byte(4)
            signed(operand)
        }
    }

    mutating func operation(_ operation: RequestOperation) {
        switch operation {
        case .range(let request):
            byte(0)
            range(request)
        case .put(let request):
            byte(1)
            put(request)
        case .deleteRange(let request):
            byte(2)
            deleteRange(request)
        case .txn(let request):
            byte(3)
            txn(request)
        }
    }

    mutating func revision(_ revision: Revision) {
        signed(revision.main)
        signed(revision.sub)
    }

    mutating func keyValue(_ keyValue: KeyValue) {
        key(keyValue.key)
        signed(keyValue.createRevision)
        signed(keyValue.modRevision)
        signed(keyValue.version)
        data(keyValue.value)
        signed(keyValue.lease.rawValue)
    }

    mutating func event(_ event: Event) {
        byte(UInt8(event.kind.rawValue))
        keyValue(event.keyValue)
        bool(event.previous != nil)
        if let previous = event.previous { keyValue(previous) }
    }
}

extension ByteReader {
    /// How deeply txns may nest in decoded input. etcd's `--max-txn-ops`
    /// already bounds real requests far below this; the bound keeps hostile
    /// input from exhausting the stack.
    static let txnNestingDepthMax = 64

    mutating func range() throws(DecodeError) -> RangeRequest {
        var request = RangeRequest(key: try key(), rangeEnd: try key())
        request.limit = try signed()
        request.revision = try signed()
        guard let order = SortOrder(rawValue: Int(try byte())) else { throw .malformed("sort order") }
        guard let target = SortTarget(rawValue: Int(try byte())) else { throw .malformed("sort target") }
        request.sortOrder = order
        request.sortTarget = target
        request.keysOnly = try bool()
        request.countOnly = try bool()
        request.minModRevision = try signed()
        request.maxModRevision = try signed()
        request.minCreateRevision = try signed()
        request.maxCreateRevision = try signed()
        return request
    }

    mutating func put() throws(DecodeError) -> PutRequest {
        let key = try key()
        let value = try data()
        let lease = LeaseID(try signed())
        return PutRequest(
            key: key, value: value, lease: lease, previousKeyValue: try bool(), ignoreValue: try bool(),
            ignoreLease: try bool())
    }

    mutating func deleteRange() throws(DecodeError) -> DeleteRangeRequest {
        DeleteRangeRequest(key: try key(), rangeEnd: try key(), previousKeyValues: try bool())
    }

    mutating func txn(depth: Int = 0) throws(DecodeError) -> TxnRequest {
        guard depth < Self.txnNestingDepthMax else { throw .malformed("txn nesting too deep") }
        var request = TxnRequest()
        for _ in 0..<(try count()) { request.compare.append(try compare()) }
        for _ in 0..<(try count()) { request.success.append(try operation(depth: depth)) }
        for _ in 0..<(try count()) { request.failure.append(try operation(depth: depth)) }
        return request
    }

    mutating func compare() throws(DecodeError) -> Compare {
        let key = try key()
        let rangeEnd = try self.key()
        let resultByte = try byte()
        guard let result = Compare.Result(rawValue: Int(resultByte)) else { throw .unknownTag(resultByte) }
        let target: Compare.Target
        switch try byte() {
        case 0: target = .value(try data())
        case 1: target = .version(try signed())
        case 2: target = .create(try signed())
        case 3: target = .mod(try signed())
        case 4: target = .lease(try signed())
        case let other: throw .unknownTag(other)
        }
        return Compare(key: key, rangeEnd: rangeEnd, target: target, result: result)
    }

    mutating func operation(depth: Int) throws(DecodeError) -> RequestOperation {
        switch try byte() {
        case 0: .range(try range())
        case 1: .put(try put())
        case 2: .deleteRange(try deleteRange())
        case 3: .txn(try txn(depth: depth + 1))
        case let other: throw .unknownTag(other)
        }
    }

    mutating func revision() throws(DecodeError) -> Revision {
        Revision(main: try signed(), sub: try signed())
    }

    mutating func keyValue() throws(DecodeError) -> KeyValue {
        KeyValue(
            key: try key(), createRevision: try signed(), modRevision: try signed(), version: try signed(),
            value: try data(), lease: LeaseID(try signed()))
    }

    mutating func event() throws(DecodeError) -> Event {
        let kindByte = try byte()
        guard let kind = Event.Kind(rawValue: Int(kindByte)) else { throw .unknownTag(kindByte) }
        let keyValue = try keyValue()
        let previous = try bool() ? try self.keyValue() : nil
        return Event(kind: kind, keyValue: keyValue, previous: previous)
    }
}
