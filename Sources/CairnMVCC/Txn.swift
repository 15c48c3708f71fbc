import CairnCore

/// One condition of a txn, with etcd's `Compare` fields. With a `rangeEnd`
/// the condition must hold for every key of the range (etcd 3.3+).
public struct Compare: Hashable, Sendable {
    /// What is compared, and the operand.
    public enum Target: Hashable, Sendable {
        case value([UInt8])
        case version(Int64)
        case create(Int64)
        case mod(Int64)
        case lease(Int64)
    }

    /// The relation that must hold between the key's field and the operand.
    public enum Result: Int, Hashable, Sendable {
        case equal = 0
        case greater = 1
        case less = 2
        case notEqual = 3
    }

    public var key: Key
    public var rangeEnd: Key
    public var target: Target
    public var result: Result

    public init(key: Key, rangeEnd: Key = Key([]), target: Target, result: Result) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.target = target
        self.result = result
    }

    /// Whether `keyValue` satisfies the condition (etcd's `compareKV`); a
    /// missing key compares as a KeyValue of zeros.
    func holds(for keyValue: KeyValue) -> Bool {
        let order: Int
        switch target {
        case .value(let operand): order = Self.order(keyValue.value, operand)
        case .version(let operand): order = Self.order(keyValue.version, operand)
        case .create(let operand): order = Self.order(keyValue.createRevision, operand)
        case .mod(let operand): order = Self.order(keyValue.modRevision, operand)
        case .lease(let operand): order = Self.order(keyValue.lease.rawValue, operand)
        }
        switch result {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .greater: return order > 0
        case .less: return order < 0
        }
    }

    private static func order(_ lhs: Int64, _ rhs: Int64) -> Int { lhs < rhs ? -1 : (lhs > rhs ? 1 : 0) }

    private static func order(_ lhs: [UInt8], _ rhs: [UInt8]) -> Int {
        lhs.lexicographicallyPrecedes(rhs) ? -1 : (rhs.lexicographicallyPrecedes(lhs) ? 1 : 0)
    }
}

/// One operation of a txn branch.
public indirect enum RequestOperation: Hashable, Sendable {
    case range(RangeRequest)
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
}

/// The answer to one operation of a txn branch.
public indirect enum ResponseOperation: Hashable, Sendable {
    case range(RangeResponse)
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
}

/// A transaction, with etcd's `TxnRequest` fields: if every compare holds, the
/// success branch runs, else the failure branch; the whole txn is one revision.
public struct TxnRequest: Hashable, Sendable {
    public var compare: [Compare]
    public var success: [RequestOperation]
    public var failure: [RequestOperation]

    public init(compare: [Compare] = [], success: [RequestOperation] = [], failure: [RequestOperation] = []) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }
}

extension TxnRequest {
    /// Every operation of both branches, nested txns included, is a range
    /// (etcd's `isTxnReadonly`): the txn can be answered as a read.
    public var isReadOnly: Bool {
        (success + failure).allSatisfy { operation in
            switch operation {
            case .range: return true
            case .put, .deleteRange: return false
            case .txn(let inner): return inner.isReadOnly
            }
        }
    }
}

/// The answer to a txn.
public struct TxnResponse: Hashable, Sendable {
    /// The store's revision after the txn; 0 in nested txns, as etcd leaves it.
    public var revision: Int64
    public var succeeded: Bool
    public var responses: [ResponseOperation]

    public init(revision: Int64, succeeded: Bool, responses: [ResponseOperation]) {
        self.revision = revision
        self.succeeded = succeeded
        self.responses = responses
    }
}

extension MVCCStore {
    /// etcd's Txn: request checks (`--max-txn-ops`, empty keys, the
    /// duplicate-key rule), then every compare (nested ones included) against
    /// the state before the txn, then the chosen operations' checks, then the
    /// operations, which read each other's writes. At most one new revision.
    public mutating func txn(
        _ request: TxnRequest, isLeaseGranted: (LeaseID) -> Bool
    ) throws(CairnError) -> WriteOutcome<TxnResponse> {
        try TxnValidation.check(request, operationsMax: limits.txnOperationsMax)
        let decision = decide(request)
        // etcd 3.5 checks every put of the chosen path, then every range.
        try checkChosen(request, decision, puts: true, isLeaseGranted: isLeaseGranted)
        try checkChosen(request, decision, puts: false, isLeaseGranted: isLeaseGranted)
        var write = beginWrite()
        var response = executeTxn(request, decision, in: &write)
        response.revision = write.readRevision
        return WriteOutcome(response: response, events: commit(write))
    }

    /// A txn whose branches hold only ranges (`TxnRequest.isReadOnly`),
    /// answered without a write: etcd serves these as reads (after a
    /// ReadIndex) instead of proposing them. Same checks and answer as
    /// `txn`, which would make no revision for it either.
    public func readOnlyTxn(_ request: TxnRequest) throws(CairnError) -> TxnResponse {
        precondition(request.isReadOnly, "readOnlyTxn of a txn that writes")
        try TxnValidation.check(request, operationsMax: limits.txnOperationsMax)
        let decision = decide(request)
        try checkChosen(request, decision, puts: false, isLeaseGranted: { _ in false })
        // Ranges only: executing on a copy writes nothing, so the copy shares
        // every buffer with this store (nothing is copied).
        var reader = self
        var write = reader.beginWrite()
        var response = reader.executeTxn(request, decision, in: &write)
        response.revision = write.readRevision
        return response
    }

    /// Which branch each txn (outer, then nested in the chosen branches)
    /// takes; all compares read the state before the txn, as in etcd.
    struct Decision {
        var succeeded: Bool
        var nested: [Decision]
    }

    func decide(_ request: TxnRequest) -> Decision {
        let succeeded = request.compare.allSatisfy(holds)
        var nested: [Decision] = []
        for operation in succeeded ? request.success : request.failure {
            if case .txn(let inner) = operation { nested.append(decide(inner)) }
        }
        return Decision(succeeded: succeeded, nested: nested)
    }

    /// etcd's `applyCompare`: a missing key fails a value compare and
    /// compares as zeros otherwise; a range holds if every key holds.
    func holds(_ compare: Compare) -> Bool {
        let range = KeyRange(key: compare.key, rangeEnd: compare.rangeEnd)
        var found = false
        var allHold = true
        scan(range, at: currentRevision) { keyValue in
            found = true
            allHold = compare.holds(for: keyValue)
            return allHold
        }
        if found { return allHold }
        if case .value = compare.target { return false }
        return compare.holds(
            for: KeyValue(key: compare.key, createRevision: 0, modRevision: 0, version: 0, value: []))
    }

    /// etcd's `checkRequests`: put preconditions (`puts`) or range revisions
    /// on the chosen path, against the state before the txn.
    func checkChosen(
        _ request: TxnRequest, _ decision: Decision, puts: Bool, isLeaseGranted: (LeaseID) -> Bool
    ) throws(CairnError) {
        var nested = decision.nested.makeIterator()
        for operation in decision.succeeded ? request.success : request.failure {
            switch operation {
            case .range(let range):
                if puts || range.revision == 0 { continue }
                if range.revision > currentRevision { throw .futureRevision }
                if range.revision < compactedRevision { throw .compacted }
            case .put(let put):
                if puts { try checkPut(put, isLeaseGranted: isLeaseGranted) }
            case .deleteRange:
                continue
            case .txn(let inner):
                try checkChosen(inner, nested.next()!, puts: puts, isLeaseGranted: isLeaseGranted)
            }
        }
    }

    mutating func executeTxn(_ request: TxnRequest, _ decision: Decision, in write: inout Write)
        -> TxnResponse
    {
        var nested = decision.nested.makeIterator()
        var responses: [ResponseOperation] = []
        for operation in decision.succeeded ? request.success : request.failure {
            switch operation {
            case .range(let range):
                do {
                    responses.append(.range(try executeRange(range, current: write.readRevision)))
                } catch {
                    preconditionFailure("txn range failed after its checks: \(error)")
                }
            case .put(let put):
                responses.append(.put(executePut(put, in: &write)))
            case .deleteRange(let delete):
                responses.append(.deleteRange(executeDeleteRange(delete, in: &write)))
            case .txn(let inner):
                responses.append(.txn(executeTxn(inner, nested.next()!, in: &write)))
            }
        }
        return TxnResponse(revision: 0, succeeded: decision.succeeded, responses: responses)
    }
}

/// etcd's request-level txn checks (v3rpc `checkTxnRequest` and
/// `checkIntervals`), made before anything is read.
enum TxnValidation {
    static func check(_ request: TxnRequest, operationsMax: Int) throws(CairnError) {
        try checkShape(request, operationsMax: operationsMax)
        _ = try checkOverlaps(request.success)
        _ = try checkOverlaps(request.failure)
    }

    /// Sizes and keys: the compares and each branch hold at most
    /// `operationsMax` entries; nested txns get what the outer level left.
    static func checkShape(_ request: TxnRequest, operationsMax: Int) throws(CairnError) {
        let count = max(request.compare.count, request.success.count, request.failure.count)
        if count > operationsMax { throw .tooManyOperations }
        if request.compare.contains(where: { $0.key.isEmpty }) { throw .emptyKey }
        for operation in request.success + request.failure {
            switch operation {
            case .range(let range): try range.validate()
            case .put(let put): try put.validate()
            case .deleteRange(let delete): try delete.validate()
            case .txn(let inner): try checkShape(inner, operationsMax: operationsMax - count)
            }
        }
    }

    /// The deletes of one branch, as ranges of keys.
    struct Deletes {
        var ranges: [KeyRange] = []

        func cover(_ key: Key) -> Bool { ranges.contains { $0.contains(key) } }
    }

    /// The duplicate-key rule: within a branch, counting nested txns, no key
    /// may be put twice (then and else of one nested txn excepted, as only
    /// one runs) and no put may fall in a delete of this level or of a nested
    /// txn seen before it. Returns the branch's puts and deletes.
    ///
    /// One deliberate difference: etcd treats a delete with range_end "\0" as
    /// covering nothing here, then panics applying a txn that deletes a key
    /// and puts it with ignore_value; Cairn treats "\0" as "to the end".
    static func checkOverlaps(_ operations: [RequestOperation]) throws(CairnError) -> (Set<Key>, Deletes) {
        var deletes = Deletes()
        for case .deleteRange(let delete) in operations { deletes.ranges.append(delete.range) }
        var puts = Set<Key>()
        for case .txn(let inner) in operations {
            let (thenPuts, thenDeletes) = try checkOverlaps(inner.success)
            let (elsePuts, elseDeletes) = try checkOverlaps(inner.failure)
            for key in thenPuts {
                if puts.contains(key) || deletes.cover(key) { throw .duplicateKey }
                puts.insert(key)
            }
            for key in elsePuts {
                if puts.contains(key) && !thenPuts.contains(key) { throw .duplicateKey }
                if deletes.cover(key) { throw .duplicateKey }
                puts.insert(key)
            }
            deletes.ranges += thenDeletes.ranges + elseDeletes.ranges
        }
        for case .put(let put) in operations {
            if puts.contains(put.key) || deletes.cover(put.key) { throw .duplicateKey }
            puts.insert(put.key)
        }
        return (puts, deletes)
    }
}
