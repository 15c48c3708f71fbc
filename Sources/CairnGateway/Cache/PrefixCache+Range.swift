import CairnAPI
import Foundation

/// The shape of a Range the cache can answer exactly, or nil: the decision
/// that a request must go upstream is taken here, in one place.
///
/// Refused (answered by forwarding): a historical revision (the cache keeps
/// no history, and etcd's answer for an old revision also depends on the
/// compaction point, which the cache does not know), an empty key (etcd's
/// "key is not provided" error), unknown sort enums (etcd's invalid sort
/// option error), and any range that reaches outside the prefix.
struct CacheableRange {
    enum Ordering: Equatable {
        /// Ascending key order: the storage's scan order.
        case keyAscending
        case keyDescending
        case field(Etcdserverpb_RangeRequest.SortTarget, descending: Bool)
    }

    /// One key, or every key from `lower` up to an exclusive end (nil: none).
    enum Extent: Equatable {
        case singleKey
        case until(Data?)
    }

    let lower: Data
    let extent: Extent
    let ordering: Ordering
    let hasRevisionFilters: Bool

    init?(_ request: Etcdserverpb_RangeRequest, in cache: PrefixCache) {
        guard request.revision == 0, !request.key.isEmpty, cache.contains(request.key) else { return nil }
        guard let ordering = Self.ordering(request.sortOrder, request.sortTarget) else { return nil }
        lower = request.key
        if request.rangeEnd.isEmpty {
            extent = .singleKey
        } else if CacheKeyBytes.isFromKeyMarker(request.rangeEnd) {
            // "Every key from `key` on" stays inside only an unbounded prefix.
            guard cache.prefixEnd == nil else { return nil }
            extent = .until(nil)
        } else {
            if let prefixEnd = cache.prefixEnd, CacheKeyBytes.less(prefixEnd, request.rangeEnd) { return nil }
            extent = .until(request.rangeEnd)
        }
        self.ordering = ordering
        hasRevisionFilters = Self.hasRevisionFilters(request)
    }

    static func hasRevisionFilters(_ request: Etcdserverpb_RangeRequest) -> Bool {
        request.minModRevision != 0 || request.maxModRevision != 0
            || request.minCreateRevision != 0 || request.maxCreateRevision != 0
    }

    /// etcd's effective ordering: a non-key target with order NONE sorts
    /// ascending; KEY with NONE or ASCEND is the scan order.
    private static func ordering(
        _ order: Etcdserverpb_RangeRequest.SortOrder, _ target: Etcdserverpb_RangeRequest.SortTarget
    ) -> Ordering? {
        let descending: Bool
        switch order {
        case .none, .ascend: descending = false
        case .descend: descending = true
        case .UNRECOGNIZED: return nil
        }
        switch target {
        case .key: return descending ? .keyDescending : .keyAscending
        case .version, .create, .mod, .value: return .field(target, descending: descending)
        case .UNRECOGNIZED: return nil
        }
    }
}

extension PrefixCache {
    /// Answers `request` exactly as etcd would at revision P = `knownRevision`
    /// (the header carries P; the lead fills cluster and member IDs), or nil
    /// when the cache cannot: not live, or a request `CacheableRange` refuses.
    ///
    /// etcd's rules reproduced here (server/etcdserver apply Range and mvcc
    /// rangeKeys): `count` is the number of keys in the range before the
    /// revision filters and the limit; `count_only` returns only that count
    /// (`more` false); otherwise revision filters prune, then the sort, then
    /// the limit truncates and sets `more`; `keys_only` clears values. Sort
    /// ties (equal versions, revisions or values) are in ascending key order,
    /// as Cairn's own store orders them (etcd's Go sort leaves ties unspecified).
    public func answer(_ request: Etcdserverpb_RangeRequest) -> Etcdserverpb_RangeResponse? {
        guard case .live(let revision) = state else { return nil }
        guard let range = CacheableRange(request, in: self) else { return nil }
        var response = Etcdserverpb_RangeResponse()
        response.header.revision = revision
        if request.countOnly {
            response.count = Int64(count(range))
            return response
        }
        var keyValues: [Mvccpb_KeyValue]
        if case .field(let target, let descending) = range.ordering, case .until(let upper) = range.extent {
            response.count = Int64(storage.count(from: range.lower, to: upper))
            keyValues = fieldOrdered(
                from: range.lower, to: upper, request, by: target, descending: descending)
        } else {
            let total: Int
            (keyValues, total) = collect(range, limit: request.limit)
            response.count = Int64(total)
            if range.hasRevisionFilters {
                keyValues.removeAll { !Self.passesRevisionFilters($0, request) }
            }
        }
        if request.limit > 0 && keyValues.count > request.limit {
            keyValues.removeSubrange(Int(request.limit)...)
            response.more = true
        }
        if request.keysOnly {
            for index in keyValues.indices { keyValues[index].value = Data() }
        }
        response.kvs = keyValues
        return response
    }

    private func count(_ range: CacheableRange) -> Int {
        guard case .until(let upper) = range.extent else {
            return storage.keyValue(for: range.lower) == nil ? 0 : 1
        }
        return storage.count(from: range.lower, to: upper)
    }

    /// The range's entries (in key order, descending for `.keyDescending`)
    /// and the range's total. With a key ordering, a limit and no filters
    /// only `limit + 1` entries are copied (enough to tell `more`);
    /// otherwise all, since etcd filters and sorts before truncating.
    private func collect(_ range: CacheableRange, limit: Int64) -> ([Mvccpb_KeyValue], Int) {
        guard case .until(let upper) = range.extent else {
            guard let keyValue = storage.keyValue(for: range.lower) else { return ([], 0) }
            return ([keyValue], 1)
        }
        let total = storage.count(from: range.lower, to: upper)
        let isKeyOrder = range.ordering == .keyAscending || range.ordering == .keyDescending
        let copiesMax =
            isKeyOrder && !range.hasRevisionFilters && limit > 0 && limit < total ? Int(limit) + 1 : total
        var keyValues: [Mvccpb_KeyValue] = []
        keyValues.reserveCapacity(copiesMax)
        let append = { (keyValue: Mvccpb_KeyValue) -> Bool in
            keyValues.append(keyValue)
            return keyValues.count < copiesMax
        }
        guard copiesMax > 0 else { return ([], total) }
        if range.ordering == .keyDescending {
            storage.forEachDescending(from: range.lower, to: upper, append)
        } else {
            storage.forEach(from: range.lower, to: upper, append)
        }
        return (keyValues, total)
    }

    static func passesRevisionFilters(_ keyValue: Mvccpb_KeyValue, _ request: Etcdserverpb_RangeRequest)
        -> Bool
    {
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

    /// The entries of [`lower`, `upper`) passing the revision filters,
    /// sorted by a field (ties in ascending key order for both directions),
    /// at most `limit + 1` of them (enough to tell `more`). Entries are
    /// ranked by position and only the kept ones are copied.
    private func fieldOrdered(
        from lower: Data, to upper: Data?, _ request: Etcdserverpb_RangeRequest,
        by target: Etcdserverpb_RangeRequest.SortTarget, descending: Bool
    ) -> [Mvccpb_KeyValue] {
        var positions = storage.positions(from: lower, to: upper)
        if CacheableRange.hasRevisionFilters(request) {
            positions.removeAll { !Self.passesRevisionFilters(storage[$0], request) }
        }
        let kept =
            request.limit > 0 && request.limit < positions.count ? Int(request.limit) + 1 : positions.count
        if target == .value {
            // Key order is position order, so the tie-break is the original order.
            var ranked = Array(positions.enumerated())
            ranked.sort { lhs, rhs in
                var order = CacheKeyBytes.compare(storage[lhs.element].value, storage[rhs.element].value)
                    .signum()
                if descending { order = -order }
                return order != 0 ? order < 0 : lhs.offset < rhs.offset
            }
            return ranked.prefix(kept).map { storage[$0.element] }
        }
        let chunks = storage.chunks
        var ranks: [(field: Int64, offset: Int)] = positions.indices.map { offset in
            let position = positions[offset]
            let field: Int64 =
                switch target {
                case .version: chunks[position.chunk][position.entry].version
                case .create: chunks[position.chunk][position.entry].createRevision
                default: chunks[position.chunk][position.entry].modRevision
                }
            return (field, offset)
        }
        ranks.sort { lhs, rhs in
            if lhs.field != rhs.field { return descending ? lhs.field > rhs.field : lhs.field < rhs.field }
            return lhs.offset < rhs.offset
        }
        return ranks.prefix(kept).map { storage[positions[$0.offset]] }
    }
}
