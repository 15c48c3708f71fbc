import CairnAPI
import CairnRPC
import Foundation

/// KV: Range, Put, DeleteRange, Txn and Compact.
///
/// Checks run in etcd's order, so a request with several faults gets the
/// answer etcd would give: first the request's shape (etcd's v3rpc
/// `checkRangeRequest`, `checkPutRequest`, `checkDeleteRequest`,
/// `checkTxnRequest`: empty keys, empty txn operations, ignore flags), then
/// permission (etcd's auth applier), then leases (etcd's apply). The one
/// check left to the cluster is the txn operation count, whose limit
/// (`--max-txn-ops`) only the cluster knows.
extension Namespace {
    public func inbound(_ request: Etcdserverpb_RangeRequest) throws(RPCStatus) -> Etcdserverpb_RangeRequest {
        if request.key.isEmpty { throw Refusal.keyNotProvided }
        var result = request
        (result.key, result.rangeEnd) = self.upstreamRange(key: request.key, rangeEnd: request.rangeEnd)
        return result
    }

    public func outbound(_ response: Etcdserverpb_RangeResponse) throws(RPCStatus)
        -> Etcdserverpb_RangeResponse
    {
        var result = response
        let (kept, dropped) = self.tenantKeyValues(response.kvs)
        result.kvs = kept
        if dropped > 0 { result.count = max(Int64(kept.count), response.count - Int64(dropped)) }
        return result
    }

    public func inbound(_ request: Etcdserverpb_PutRequest) throws(RPCStatus) -> Etcdserverpb_PutRequest {
        try Self.checkShape(request)
        try self.requireWrite()
        try self.requireOwnLease(request.lease, refusal: Refusal.leaseNotFound)
        var result = request
        result.key = self.upstreamKey(request.key)
        return result
    }

    public func outbound(_ response: Etcdserverpb_PutResponse) throws(RPCStatus) -> Etcdserverpb_PutResponse {
        guard response.hasPrevKv else { return response }
        var result = response
        result.prevKv.key = try self.requiredTenantKey(response.prevKv.key)
        return result
    }

    public func inbound(_ request: Etcdserverpb_DeleteRangeRequest) throws(RPCStatus)
        -> Etcdserverpb_DeleteRangeRequest
    {
        if request.key.isEmpty { throw Refusal.keyNotProvided }
        try self.requireWrite()
        var result = request
        (result.key, result.rangeEnd) = self.upstreamRange(key: request.key, rangeEnd: request.rangeEnd)
        return result
    }

    public func outbound(_ response: Etcdserverpb_DeleteRangeResponse) throws(RPCStatus)
        -> Etcdserverpb_DeleteRangeResponse
    {
        var result = response
        result.prevKvs = self.tenantKeyValues(response.prevKvs).kept
        return result
    }

    /// Every compare, and every operation of both branches, nested txns
    /// included, is checked and rewritten.
    public func inbound(_ request: Etcdserverpb_TxnRequest) throws(RPCStatus) -> Etcdserverpb_TxnRequest {
        try Self.checkShape(request)
        if Self.writes(request) { try self.requireWrite() }
        try self.requireOwnLeases(request)
        return self.rewritten(request)
    }

    public func outbound(_ response: Etcdserverpb_TxnResponse) throws(RPCStatus) -> Etcdserverpb_TxnResponse {
        var result = response
        for index in result.responses.indices {
            switch result.responses[index].response {
            case .responseRange(let range): result.responses[index].responseRange = try self.outbound(range)
            case .responsePut(let put): result.responses[index].responsePut = try self.outbound(put)
            case .responseDeleteRange(let delete):
                result.responses[index].responseDeleteRange = try self.outbound(delete)
            case .responseTxn(let txn): result.responses[index].responseTxn = try self.outbound(txn)
            case nil: break
            }
        }
        return result
    }

    /// Compaction acts on the whole cluster's history: never a tenant's call.
    public func inbound(_ request: Etcdserverpb_CompactionRequest) throws(RPCStatus)
        -> Etcdserverpb_CompactionRequest
    {
        throw Refusal.permissionDenied
    }

    // MARK: etcd's request checks

    /// etcd's `checkPutRequest`.
    static func checkShape(_ put: Etcdserverpb_PutRequest) throws(RPCStatus) {
        if put.key.isEmpty { throw Refusal.keyNotProvided }
        if put.ignoreValue && !put.value.isEmpty { throw Refusal.valueProvided }
        if put.ignoreLease && put.lease != 0 { throw Refusal.leaseProvided }
    }

    /// etcd's `checkTxnRequest` without the operation count: compares
    /// first, then the success branch, then the failure branch, depth first.
    static func checkShape(_ txn: Etcdserverpb_TxnRequest) throws(RPCStatus) {
        for compare in txn.compare where compare.key.isEmpty { throw Refusal.keyNotProvided }
        for operation in txn.success { try Self.checkShape(operation) }
        for operation in txn.failure { try Self.checkShape(operation) }
    }

    /// etcd's `checkRequestOp`: an operation with no request is refused.
    static func checkShape(_ operation: Etcdserverpb_RequestOp) throws(RPCStatus) {
        switch operation.request {
        case .requestRange(let range): if range.key.isEmpty { throw Refusal.keyNotProvided }
        case .requestPut(let put): try Self.checkShape(put)
        case .requestDeleteRange(let delete): if delete.key.isEmpty { throw Refusal.keyNotProvided }
        case .requestTxn(let txn): try Self.checkShape(txn)
        case nil: throw Refusal.emptyOperation
        }
    }

    /// Whether a txn may write: a put or delete in either branch at any
    /// depth (etcd's auth checks both branches whichever one runs).
    static func writes(_ txn: Etcdserverpb_TxnRequest) -> Bool {
        for operation in txn.success + txn.failure {
            switch operation.request {
            case .requestPut, .requestDeleteRange: return true
            case .requestTxn(let inner): if Self.writes(inner) { return true }
            case .requestRange, nil: continue
            }
        }
        return false
    }

    /// Every put of a txn, at any depth, attaches only the tenant's leases.
    func requireOwnLeases(_ txn: Etcdserverpb_TxnRequest) throws(RPCStatus) {
        for operation in txn.success + txn.failure {
            switch operation.request {
            case .requestPut(let put): try self.requireOwnLease(put.lease, refusal: Refusal.leaseNotFound)
            case .requestTxn(let inner): try self.requireOwnLeases(inner)
            case .requestRange, .requestDeleteRange, nil: continue
            }
        }
    }

    // MARK: rewriting

    func rewritten(_ txn: Etcdserverpb_TxnRequest) -> Etcdserverpb_TxnRequest {
        var result = txn
        for index in result.compare.indices {
            let compare = txn.compare[index]
            (result.compare[index].key, result.compare[index].rangeEnd) = self.upstreamRange(
                key: compare.key, rangeEnd: compare.rangeEnd)
        }
        result.success = txn.success.map(self.rewritten)
        result.failure = txn.failure.map(self.rewritten)
        return result
    }

    /// One checked operation, rewritten (no checks: `inbound` made them).
    func rewritten(_ operation: Etcdserverpb_RequestOp) -> Etcdserverpb_RequestOp {
        var result = operation
        switch operation.request {
        case .requestRange(var range):
            (range.key, range.rangeEnd) = self.upstreamRange(key: range.key, rangeEnd: range.rangeEnd)
            result.requestRange = range
        case .requestPut(var put):
            put.key = self.upstreamKey(put.key)
            result.requestPut = put
        case .requestDeleteRange(var delete):
            (delete.key, delete.rangeEnd) = self.upstreamRange(key: delete.key, rangeEnd: delete.rangeEnd)
            result.requestDeleteRange = delete
        case .requestTxn(let txn):
            result.requestTxn = self.rewritten(txn)
        case nil:
            break
        }
        return result
    }
}

extension Namespace.Refusal {
    /// A put with `ignore_value` and a value (etcd's `ErrGRPCValueProvided`).
    public static let valueProvided = RPCStatus(.invalidArgument, "etcdserver: value is provided")
    /// A put with `ignore_lease` and a lease (etcd's `ErrGRPCLeaseProvided`).
    public static let leaseProvided = RPCStatus(.invalidArgument, "etcdserver: lease is provided")
    /// A txn operation with no request: etcd's `checkRequestOp` answers
    /// `ErrGRPCKeyNotFound`.
    public static let emptyOperation = RPCStatus(.invalidArgument, "etcdserver: key not found")
}
