import CairnAPI
import CairnRPC
import Foundation

/// How a range answer is ordered (etcd's `sort_order` and `sort_target`).
public struct RangeSort: Sendable, Equatable {
    public var target: Etcdserverpb_RangeRequest.SortTarget
    public var order: Etcdserverpb_RangeRequest.SortOrder

    public init(_ target: Etcdserverpb_RangeRequest.SortTarget, _ order: Etcdserverpb_RangeRequest.SortOrder)
    {
        self.target = target
        self.order = order
    }
}

extension EtcdClient {
    // MARK: KV

    /// Stores `value` under `key`, attached to `lease` if non-zero.
    ///
    /// - Parameter prevKV: also return the key's previous version, if any.
    /// - Returns: the answer; `header.revision` is the revision of this write.
    @discardableResult
    public func put(
        key: some EtcdBytes, value: some EtcdBytes, lease: Int64 = 0, prevKV: Bool = false
    ) async throws -> Etcdserverpb_PutResponse {
        try await self.unary(
            EtcdKV.put, Self.putRequest(key: key, value: value, lease: lease, prevKV: prevKV))
    }

    /// Reads the keys `end` selects from `key` (one key by default).
    ///
    /// - Parameters:
    ///   - limit: most keys returned, 0 for no limit (`more` says if others exist).
    ///   - sort: ordering; by default ascending by key.
    ///   - keysOnly: omit values.
    ///   - countOnly: return only `count`.
    ///   - revision: read the store as of this revision, 0 for the latest.
    ///   - serializable: read from the contacted member without a quorum round
    ///     (faster, possibly stale).
    public func get(
        _ key: some EtcdBytes, end: KeyRangeEnd = .single, limit: Int64 = 0, sort: RangeSort? = nil,
        keysOnly: Bool = false, countOnly: Bool = false, revision: Int64 = 0, serializable: Bool = false
    ) async throws -> Etcdserverpb_RangeResponse {
        let request = Self.rangeRequest(
            key, end: end, limit: limit, sort: sort, keysOnly: keysOnly, countOnly: countOnly,
            revision: revision, serializable: serializable)
        return try await self.range(request)
    }

    /// Sends a range request built by the caller, for options `get` does not
    /// spell out (minimum/maximum create and mod revisions).
    public func range(_ request: Etcdserverpb_RangeRequest) async throws -> Etcdserverpb_RangeResponse {
        try await self.unary(EtcdKV.range, request)
    }

    /// Deletes the keys `end` selects from `key`.
    ///
    /// - Parameter prevKV: return the deleted key-values.
    @discardableResult
    public func delete(
        _ key: some EtcdBytes, end: KeyRangeEnd = .single, prevKV: Bool = false
    ) async throws -> Etcdserverpb_DeleteRangeResponse {
        try await self.unary(EtcdKV.deleteRange, Self.deleteRequest(key, end: end, prevKV: prevKV))
    }

    /// Runs a transaction: if every comparison in `compares` holds, the
    /// `success` operations run, otherwise the `failure` ones; atomically, at
    /// one revision.
    public func txn(
        if compares: [TxnCompare], then success: [TxnOperation], else failure: [TxnOperation] = []
    ) async throws -> Etcdserverpb_TxnResponse {
        var request = Etcdserverpb_TxnRequest()
        request.compare = compares.map(\.message)
        request.success = success.map(\.message)
        request.failure = failure.map(\.message)
        return try await self.unary(EtcdKV.txn, request)
    }

    /// Discards history before `revision`: older revisions can no longer be
    /// read or watched from.
    ///
    /// - Parameter physical: wait until the space is reclaimed before answering.
    @discardableResult
    public func compact(revision: Int64, physical: Bool = false) async throws
        -> Etcdserverpb_CompactionResponse
    {
        var request = Etcdserverpb_CompactionRequest()
        request.revision = revision
        request.physical = physical
        return try await self.unary(EtcdKV.compact, request)
    }

    // MARK: Request builders (shared with transactions)

    static func putRequest(
        key: some EtcdBytes, value: some EtcdBytes, lease: Int64, prevKV: Bool
    ) -> Etcdserverpb_PutRequest {
        var request = Etcdserverpb_PutRequest()
        request.key = key.etcdData
        request.value = value.etcdData
        request.lease = lease
        request.prevKv = prevKV
        return request
    }

    static func rangeRequest(
        _ key: some EtcdBytes, end: KeyRangeEnd, limit: Int64 = 0, sort: RangeSort? = nil,
        keysOnly: Bool = false, countOnly: Bool = false, revision: Int64 = 0, serializable: Bool = false
    ) -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = key.etcdData
        request.rangeEnd = end.rangeEnd(for: request.key)
        request.limit = limit
        if let sort {
            request.sortTarget = sort.target
            request.sortOrder = sort.order
        }
        request.keysOnly = keysOnly
        request.countOnly = countOnly
        request.revision = revision
        request.serializable = serializable
        return request
    }

    static func deleteRequest(
        _ key: some EtcdBytes, end: KeyRangeEnd, prevKV: Bool
    ) -> Etcdserverpb_DeleteRangeRequest {
        var request = Etcdserverpb_DeleteRangeRequest()
        request.key = key.etcdData
        request.rangeEnd = end.rangeEnd(for: request.key)
        request.prevKv = prevKV
        return request
    }
}
