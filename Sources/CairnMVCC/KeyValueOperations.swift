import CairnCore

extension MVCCStore {
    /// etcd's Range: reads at the requested revision, applies the revision
    /// filters, sorts and truncates to `limit`. Reads see `current` (inside a
    /// txn that wrote, its own next revision).
    public func range(_ request: RangeRequest) throws(CairnError) -> RangeResponse {
        try request.validate()
        return try executeRange(request, current: currentRevision)
    }

    func executeRange(_ request: RangeRequest, current: Int64) throws(CairnError) -> RangeResponse {
        let needsAll =
            request.sortOrder != .none || request.minModRevision != 0 || request.maxModRevision != 0
            || request.minCreateRevision != 0 || request.maxCreateRevision != 0
        // Fetch one extra key so `more` can be told; fetch all when sorting or
        // filtering, which must see every key before truncating.
        let fetchLimit: Int64 =
            needsAll || request.limit <= 0 || request.limit == .max ? 0 : request.limit + 1
        var (keyValues, count) = try rangeKeys(
            request.range, revision: request.revision, current: current, limit: fetchLimit,
            countOnly: request.countOnly)
        keyValues.removeAll { !Self.passesFilters($0, request) }
        Self.sort(&keyValues, order: request.sortOrder, target: request.sortTarget)
        var more = false
        if request.limit > 0 && keyValues.count > Int(request.limit) {
            keyValues.removeLast(keyValues.count - Int(request.limit))
            more = true
        }
        if request.keysOnly {
            for position in keyValues.indices { keyValues[position].value = [] }
        }
        return RangeResponse(revision: current, keyValues: keyValues, more: more, count: count)
    }

    static func passesFilters(_ keyValue: KeyValue, _ request: RangeRequest) -> Bool {
        if request.maxModRevision != 0 && keyValue.modRevision > request.maxModRevision { return false }
        if request.minModRevision != 0 && keyValue.modRevision < request.minModRevision { return false }
        if request.maxCreateRevision != 0 && keyValue.createRevision > request.maxCreateRevision {
            return false
        }
        if request.minCreateRevision != 0 && keyValue.createRevision < request.minCreateRevision {
            return false
        }
        return true
    }

    /// etcd's sort rules: a non-key target with order NONE sorts ascending;
    /// key order ascending is the scan order already. Ties keep key order
    /// (etcd's sort is unstable only beyond 12 elements; a stable sort is the
    /// deterministic choice).
    static func sort(_ keyValues: inout [KeyValue], order: SortOrder, target: SortTarget) {
        var order = order
        if target != .key && order == .none { order = .ascend }
        if target == .key && order == .ascend { order = .none }
        guard order != .none else { return }
        let ascending: (KeyValue, KeyValue) -> Bool =
            switch target {
            case .key: { $0.key < $1.key }
            case .version: { $0.version < $1.version }
            case .create: { $0.createRevision < $1.createRevision }
            case .mod: { $0.modRevision < $1.modRevision }
            case .value: { $0.value.lexicographicallyPrecedes($1.value) }
            }
        let ranked = keyValues.enumerated().sorted { lhs, rhs in
            if order == .ascend {
                if ascending(lhs.element, rhs.element) { return true }
                if ascending(rhs.element, lhs.element) { return false }
            } else {
                if ascending(rhs.element, lhs.element) { return true }
                if ascending(lhs.element, rhs.element) { return false }
            }
            return lhs.offset < rhs.offset
        }
        keyValues = ranked.map(\.element)
    }

    /// etcd's Put: one new revision. `isLeaseGranted` tells whether a lease
    /// exists (the lessor lives outside the store).
    public mutating func put(
        _ request: PutRequest, isLeaseGranted: (LeaseID) -> Bool
    ) throws(CairnError) -> WriteOutcome<PutResponse> {
        try request.validate()
        // A lone put checks the lease before the key (etcd's `txn.Put`); a
        // txn checks the key first (etcd's `checkPut`).
        if request.lease != .none && !isLeaseGranted(request.lease) { throw .leaseNotFound }
        try checkPut(request, isLeaseGranted: isLeaseGranted)
        var write = beginWrite()
        let response = executePut(request, in: &write)
        return WriteOutcome(response: response, events: commit(write))
    }

    /// The checks etcd makes against the state before a put (or a txn) runs.
    func checkPut(_ request: PutRequest, isLeaseGranted: (LeaseID) -> Bool) throws(CairnError) {
        if request.ignoreValue || request.ignoreLease {
            if keyValue(request.key, at: currentRevision) == nil { throw .keyNotFound }
        }
        if request.lease != .none && !isLeaseGranted(request.lease) { throw .leaseNotFound }
    }

    mutating func executePut(_ request: PutRequest, in write: inout Write) -> PutResponse {
        let existing = keyValue(request.key, at: write.readRevision)
        if request.ignoreValue || request.ignoreLease {
            precondition(existing != nil, "put with ignore flags on a missing key passed its checks")
        }
        let value = request.ignoreValue ? existing!.value : request.value
        let lease = request.ignoreLease ? existing!.lease : request.lease
        put(request.key, value: value, lease: lease, in: &write)
        return PutResponse(revision: write.revision, previous: request.previousKeyValue ? existing : nil)
    }

    /// etcd's DeleteRange: one new revision if any key was deleted, else none.
    public mutating func deleteRange(
        _ request: DeleteRangeRequest
    ) throws(CairnError) -> WriteOutcome<DeleteRangeResponse> {
        try request.validate()
        var write = beginWrite()
        let response = executeDeleteRange(request, in: &write)
        return WriteOutcome(response: response, events: commit(write))
    }

    mutating func executeDeleteRange(
        _ request: DeleteRangeRequest, in write: inout Write
    ) -> DeleteRangeResponse {
        let deleted = delete(request.range, in: &write)
        return DeleteRangeResponse(
            revision: write.readRevision, deleted: Int64(deleted.count),
            previous: request.previousKeyValues ? deleted : [])
    }
}

extension MVCCStore {
    /// Deletes the given keys in one revision, as etcd's lessor does when a
    /// lease is revoked or expires (no `--max-txn-ops` bound applies). Keys
    /// that are not live are skipped; nothing live means no revision.
    public mutating func deleteKeys(_ keys: [Key]) -> WriteOutcome<DeleteRangeResponse> {
        var write = beginWrite()
        var deleted: Int64 = 0
        for key in keys where !key.isEmpty {
            deleted += Int64(delete(.single(key), in: &write).count)
        }
        let response = DeleteRangeResponse(revision: write.readRevision, deleted: deleted)
        return WriteOutcome(response: response, events: commit(write))
    }
}
