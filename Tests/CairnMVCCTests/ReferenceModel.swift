import CairnCore
import CairnMVCC

/// A deterministic pseudo-random generator (SplitMix64), so every property
/// test run replays from its seed.
struct SplitMix64 {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }

    /// A number in 0..<bound.
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }

    mutating func pick<T>(_ choices: [T]) -> T { choices[below(choices.count)] }
}

/// The obviously-correct store: a full copy of the key space at every
/// revision, and answers computed from it by brute force.
struct ReferenceStore {
    /// `snapshots[r - 1]` is the key space at revision r.
    var snapshots: [[Key: KeyValue]] = [[:]]
    var compacted: Int64 = -1
    var txnOperationsMax = 128

    var current: Int64 { Int64(snapshots.count) }

    func snapshot(_ revision: Int64) -> [Key: KeyValue] { snapshots[Int(revision) - 1] }

    // MARK: range

    func range(_ request: RangeRequest) throws(CairnError) -> RangeResponse {
        if request.key.isEmpty { throw .emptyKey }
        if request.revision > current { throw .futureRevision }
        let revision = request.revision <= 0 ? current : request.revision
        if revision < compacted { throw .compacted }
        return answer(request, over: snapshot(revision), header: current)
    }

    /// The answer to `request` over the key space `keySpace`, by brute force.
    func answer(_ request: RangeRequest, over keySpace: [Key: KeyValue], header: Int64) -> RangeResponse {
        let range = request.range
        let inRange = keySpace.values.filter { range.contains($0.key) }.sorted { $0.key < $1.key }
        if request.countOnly {
            return RangeResponse(revision: header, keyValues: [], more: false, count: Int64(inRange.count))
        }
        let filtered =
            request.minModRevision != 0 || request.maxModRevision != 0 || request.minCreateRevision != 0
            || request.maxCreateRevision != 0
        // etcd's quirk: with order NONE and no filters it reads only the
        // first limit + 1 keys (key order) before sorting by another target.
        var candidates = inRange
        if request.sortOrder == .none && !filtered && request.limit > 0 {
            candidates = Array(inRange.prefix(Int(request.limit) + 1))
        }
        var selected = candidates.filter { kv in
            (request.maxModRevision == 0 || kv.modRevision <= request.maxModRevision)
                && (request.minModRevision == 0 || kv.modRevision >= request.minModRevision)
                && (request.maxCreateRevision == 0 || kv.createRevision <= request.maxCreateRevision)
                && (request.minCreateRevision == 0 || kv.createRevision >= request.minCreateRevision)
        }
        selected = Self.sorted(selected, request.sortOrder, request.sortTarget)
        var more = false
        if request.limit > 0 && selected.count > Int(request.limit) {
            selected = Array(selected.prefix(Int(request.limit)))
            more = true
        }
        if request.keysOnly {
            selected = selected.map {
                var kv = $0
                kv.value = []
                return kv
            }
        }
        return RangeResponse(revision: header, keyValues: selected, more: more, count: Int64(inRange.count))
    }

    /// Sorts key-ordered `keyValues`: by key unless a target or order says
    /// otherwise; non-key targets default to ascending; ties stay in key order.
    static func sorted(_ keyValues: [KeyValue], _ order: SortOrder, _ target: SortTarget) -> [KeyValue] {
        if target == .key { return order == .descend ? keyValues.reversed() : keyValues }
        func field(_ kv: KeyValue) -> [UInt8] {
            func big(_ number: Int64) -> [UInt8] {
                let bits = UInt64(bitPattern: number) ^ (1 << 63)
                return (0..<8).reversed().map { UInt8((bits >> (UInt64($0) * 8)) & 0xff) }
            }
            switch target {
            case .key: return kv.key.bytes
            case .version: return big(kv.version)
            case .create: return big(kv.createRevision)
            case .mod: return big(kv.modRevision)
            case .value: return kv.value
            }
        }
        let descending = order == .descend
        return keyValues.enumerated().sorted { lhs, rhs in
            let (l, r) = (field(lhs.element), field(rhs.element))
            if l != r { return descending ? r.lexicographicallyPrecedes(l) : l.lexicographicallyPrecedes(r) }
            return lhs.offset < rhs.offset
        }.map(\.element)
    }

    // MARK: writes

    /// A write in progress over a copy of the current key space.
    struct Draft {
        let before: [Key: KeyValue]
        var keySpace: [Key: KeyValue]
        var events: [Event] = []
        let revision: Int64
    }

    static func put(_ request: PutRequest, in draft: inout Draft) -> PutResponse {
        let previous = draft.keySpace[request.key]
        let keyValue = KeyValue(
            key: request.key, createRevision: previous?.createRevision ?? draft.revision,
            modRevision: draft.revision, version: (previous?.version ?? 0) + 1,
            value: request.ignoreValue ? previous!.value : request.value,
            lease: request.ignoreLease ? previous!.lease : request.lease)
        draft.keySpace[request.key] = keyValue
        draft.events.append(Event(kind: .put, keyValue: keyValue, previous: previous))
        return PutResponse(revision: draft.revision, previous: request.previousKeyValue ? previous : nil)
    }

    static func delete(_ request: DeleteRangeRequest, in draft: inout Draft) -> DeleteRangeResponse {
        let doomed = draft.keySpace.values.filter { request.range.contains($0.key) }.sorted {
            $0.key < $1.key
        }
        for previous in doomed {
            draft.keySpace[previous.key] = nil
            let tombstone = KeyValue(
                key: previous.key, createRevision: 0, modRevision: draft.revision, version: 0, value: [])
            // Events carry the version before the whole write (etcd's watch
            // reads revision - 1), even if the write put the key first.
            let before = previous.modRevision == draft.revision ? draft.before[previous.key] : previous
            draft.events.append(Event(kind: .delete, keyValue: tombstone, previous: before))
        }
        let revision = draft.events.isEmpty ? draft.revision - 1 : draft.revision
        return DeleteRangeResponse(
            revision: revision, deleted: Int64(doomed.count),
            previous: request.previousKeyValues ? doomed : [])
    }

    mutating func commit(_ draft: Draft) -> [Event] {
        if !draft.events.isEmpty { snapshots.append(draft.keySpace) }
        return draft.events
    }

    func newDraft() -> Draft {
        Draft(before: snapshot(current), keySpace: snapshot(current), revision: current + 1)
    }

    func checkPutShape(_ request: PutRequest) throws(CairnError) {
        if request.key.isEmpty { throw .emptyKey }
        if request.ignoreValue && !request.value.isEmpty { throw .valueProvided }
        if request.ignoreLease && request.lease != .none { throw .leaseProvided }
    }

    mutating func put(_ request: PutRequest, leases: Set<LeaseID>) throws(CairnError) -> WriteOutcome<
        PutResponse
    > {
        try checkPutShape(request)
        if request.lease != .none && !leases.contains(request.lease) { throw .leaseNotFound }
        if (request.ignoreValue || request.ignoreLease) && snapshot(current)[request.key] == nil {
            throw .keyNotFound
        }
        var draft = newDraft()
        let response = Self.put(request, in: &draft)
        return WriteOutcome(response: response, events: commit(draft))
    }

    mutating func deleteRange(_ request: DeleteRangeRequest) throws(CairnError) -> WriteOutcome<
        DeleteRangeResponse
    > {
        if request.key.isEmpty { throw .emptyKey }
        var draft = newDraft()
        let response = Self.delete(request, in: &draft)
        return WriteOutcome(response: response, events: commit(draft))
    }

    mutating func compact(_ revision: Int64) throws(CairnError) {
        if revision <= compacted { throw .compacted }
        if revision > current { throw .futureRevision }
        compacted = revision
    }
}
