import CairnCore
import CairnMVCC

extension ReferenceStore {
    /// A txn by brute force. The duplicate-key rule is not modelled: the
    /// property test generates txns whose writes touch distinct keys.
    mutating func txn(_ request: TxnRequest, leases: Set<LeaseID>) throws(CairnError) -> WriteOutcome<
        TxnResponse
    > {
        try checkShape(request, budget: txnOperationsMax)
        let before = snapshot(current)
        try checkChosen(request, before, leases, puts: true)
        try checkChosen(request, before, leases, puts: false)
        var draft = newDraft()
        var response = execute(request, before, &draft)
        response.revision = draft.events.isEmpty ? current : current + 1
        return WriteOutcome(response: response, events: commit(draft))
    }

    func checkShape(_ request: TxnRequest, budget: Int) throws(CairnError) {
        let count = max(request.compare.count, request.success.count, request.failure.count)
        if count > budget { throw .tooManyOperations }
        if request.compare.contains(where: { $0.key.isEmpty }) { throw .emptyKey }
        for operation in request.success + request.failure {
            switch operation {
            case .range(let range): if range.key.isEmpty { throw .emptyKey }
            case .put(let put): try checkPutShape(put)
            case .deleteRange(let delete): if delete.key.isEmpty { throw .emptyKey }
            case .txn(let inner): try checkShape(inner, budget: budget - count)
            }
        }
    }

    static func holds(_ compare: Compare, _ keySpace: [Key: KeyValue]) -> Bool {
        let range = KeyRange(key: compare.key, rangeEnd: compare.rangeEnd)
        let matching = keySpace.values.filter { range.contains($0.key) }
        if matching.isEmpty {
            if case .value = compare.target { return false }
            return relation(
                compare, KeyValue(key: compare.key, createRevision: 0, modRevision: 0, version: 0, value: []))
        }
        return matching.allSatisfy { relation(compare, $0) }
    }

    static func relation(_ compare: Compare, _ kv: KeyValue) -> Bool {
        let sign: Int
        switch compare.target {
        case .value(let operand):
            sign = kv.value == operand ? 0 : (kv.value.lexicographicallyPrecedes(operand) ? -1 : 1)
        case .version(let operand): sign = Int((kv.version - operand).signum())
        case .create(let operand): sign = Int((kv.createRevision - operand).signum())
        case .mod(let operand): sign = Int((kv.modRevision - operand).signum())
        case .lease(let operand): sign = Int((kv.lease.rawValue - operand).signum())
        }
        switch compare.result {
        case .equal: return sign == 0
        case .notEqual: return sign != 0
        case .greater: return sign == 1
        case .less: return sign == -1
        }
    }

    func chosen(_ request: TxnRequest, _ before: [Key: KeyValue]) -> (Bool, [RequestOperation]) {
        let succeeded = request.compare.allSatisfy { Self.holds($0, before) }
        return (succeeded, succeeded ? request.success : request.failure)
    }

    /// etcd 3.5 checks all puts of the chosen path first, then all ranges.
    func checkChosen(
        _ request: TxnRequest, _ before: [Key: KeyValue], _ leases: Set<LeaseID>, puts: Bool
    ) throws(CairnError) {
        for operation in chosen(request, before).1 {
            switch operation {
            case .range(let range) where !puts:
                if range.revision != 0 && range.revision > current { throw .futureRevision }
                if range.revision != 0 && range.revision < compacted { throw .compacted }
            case .put(let put) where puts:
                if (put.ignoreValue || put.ignoreLease) && before[put.key] == nil { throw .keyNotFound }
                if put.lease != .none && !leases.contains(put.lease) { throw .leaseNotFound }
            case .range, .put, .deleteRange:
                break
            case .txn(let inner):
                try checkChosen(inner, before, leases, puts: puts)
            }
        }
    }

    func execute(_ request: TxnRequest, _ before: [Key: KeyValue], _ draft: inout Draft) -> TxnResponse {
        let (succeeded, operations) = chosen(request, before)
        var responses: [ResponseOperation] = []
        for operation in operations {
            switch operation {
            case .range(let range):
                let header = draft.events.isEmpty ? current : current + 1
                let keySpace = range.revision > 0 ? snapshot(range.revision) : draft.keySpace
                responses.append(.range(answer(range, over: keySpace, header: header)))
            case .put(let put):
                responses.append(.put(Self.put(put, in: &draft)))
            case .deleteRange(let delete):
                responses.append(.deleteRange(Self.delete(delete, in: &draft)))
            case .txn(let inner):
                responses.append(.txn(execute(inner, before, &draft)))
            }
        }
        return TxnResponse(revision: 0, succeeded: succeeded, responses: responses)
    }
}
