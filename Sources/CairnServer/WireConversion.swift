import CairnAPI
import CairnCore
import CairnMVCC
import Foundation

/// Conversions between etcd's generated wire messages and the core's
/// request and response values. The core never sees protobuf types, and the
/// services never see core internals: this file is the only translation.
enum WireConversion {
    // MARK: requests

    static func range(_ wire: Etcdserverpb_RangeRequest) throws(CairnError) -> RangeRequest {
        let order: CairnMVCC.SortOrder
        switch wire.sortOrder {
        case .none: order = .none
        case .ascend: order = .ascend
        case .descend: order = .descend
        case .UNRECOGNIZED: throw .invalidSortOption
        }
        let target: SortTarget
        switch wire.sortTarget {
        case .key: target = .key
        case .version: target = .version
        case .create: target = .create
        case .mod: target = .mod
        case .value: target = .value
        case .UNRECOGNIZED: throw .invalidSortOption
        }
        return RangeRequest(
            key: Key(Array(wire.key)), rangeEnd: Key(Array(wire.rangeEnd)), limit: wire.limit,
            revision: wire.revision, sortOrder: order, sortTarget: target, keysOnly: wire.keysOnly,
            countOnly: wire.countOnly, minModRevision: wire.minModRevision,
            maxModRevision: wire.maxModRevision, minCreateRevision: wire.minCreateRevision,
            maxCreateRevision: wire.maxCreateRevision)
    }

    static func put(_ wire: Etcdserverpb_PutRequest) -> PutRequest {
        PutRequest(
            key: Key(Array(wire.key)), value: Array(wire.value), lease: LeaseID(wire.lease),
            previousKeyValue: wire.prevKv, ignoreValue: wire.ignoreValue, ignoreLease: wire.ignoreLease)
    }

    static func deleteRange(_ wire: Etcdserverpb_DeleteRangeRequest) -> DeleteRangeRequest {
        DeleteRangeRequest(
            key: Key(Array(wire.key)), rangeEnd: Key(Array(wire.rangeEnd)), previousKeyValues: wire.prevKv)
    }

    static func txn(_ wire: Etcdserverpb_TxnRequest) throws(CairnError) -> TxnRequest {
        var compares: [Compare] = []
        compares.reserveCapacity(wire.compare.count)
        for compare in wire.compare { compares.append(try self.compare(compare)) }
        return TxnRequest(
            compare: compares, success: try operations(wire.success), failure: try operations(wire.failure))
    }

    private static func operations(_ wire: [Etcdserverpb_RequestOp]) throws(CairnError) -> [RequestOperation]
    {
        var result: [RequestOperation] = []
        result.reserveCapacity(wire.count)
        for operation in wire {
            switch operation.request {
            case .requestRange(let range): result.append(.range(try self.range(range)))
            case .requestPut(let put): result.append(.put(self.put(put)))
            case .requestDeleteRange(let delete): result.append(.deleteRange(deleteRange(delete)))
            case .requestTxn(let txn): result.append(.txn(try self.txn(txn)))
            // etcd rejects an operation with no request as a bad key.
            case nil: throw .emptyKey
            }
        }
        return result
    }

    private static func compare(_ wire: Etcdserverpb_Compare) throws(CairnError) -> Compare {
        let result: Compare.Result
        switch wire.result {
        case .equal: result = .equal
        case .greater: result = .greater
        case .less: result = .less
        case .notEqual: result = .notEqual
        case .UNRECOGNIZED: throw .invalidSortOption
        }
        let target: Compare.Target
        switch wire.target {
        case .version: target = .version(wire.version)
        case .create: target = .create(wire.createRevision)
        case .mod: target = .mod(wire.modRevision)
        case .value: target = .value(Array(wire.value))
        case .lease: target = .lease(wire.lease)
        case .UNRECOGNIZED: throw .invalidSortOption
        }
        return Compare(
            key: Key(Array(wire.key)), rangeEnd: Key(Array(wire.rangeEnd)), target: target, result: result)
    }

    // MARK: responses

    static func keyValue(_ keyValue: KeyValue) -> Mvccpb_KeyValue {
        var wire = Mvccpb_KeyValue()
        wire.key = Data(keyValue.key.bytes)
        wire.createRevision = keyValue.createRevision
        wire.modRevision = keyValue.modRevision
        wire.version = keyValue.version
        wire.value = Data(keyValue.value)
        wire.lease = keyValue.lease.rawValue
        return wire
    }

    static func range(_ response: RangeResponse, header: Etcdserverpb_ResponseHeader)
        -> Etcdserverpb_RangeResponse
    {
        var wire = Etcdserverpb_RangeResponse()
        wire.header = header
        wire.kvs = response.keyValues.map(keyValue)
        wire.more = response.more
        wire.count = response.count
        return wire
    }

    static func put(_ response: PutResponse, header: Etcdserverpb_ResponseHeader) -> Etcdserverpb_PutResponse
    {
        var wire = Etcdserverpb_PutResponse()
        wire.header = header
        if let previous = response.previous { wire.prevKv = keyValue(previous) }
        return wire
    }

    static func deleteRange(
        _ response: DeleteRangeResponse, header: Etcdserverpb_ResponseHeader
    ) -> Etcdserverpb_DeleteRangeResponse {
        var wire = Etcdserverpb_DeleteRangeResponse()
        wire.header = header
        wire.deleted = response.deleted
        wire.prevKvs = response.previous.map(keyValue)
        return wire
    }

    /// A txn's answer; nested responses carry a header with only the
    /// outer fields etcd fills (it leaves the revision of nested ones 0).
    static func txn(_ response: TxnResponse, header: Etcdserverpb_ResponseHeader) -> Etcdserverpb_TxnResponse
    {
        var wire = Etcdserverpb_TxnResponse()
        wire.header = header
        wire.succeeded = response.succeeded
        wire.responses = response.responses.map { operation in
            var nestedHeader = header
            var result = Etcdserverpb_ResponseOp()
            switch operation {
            case .range(let range):
                nestedHeader.revision = range.revision
                result.responseRange = self.range(range, header: nestedHeader)
            case .put(let put):
                nestedHeader.revision = put.revision
                result.responsePut = self.put(put, header: nestedHeader)
            case .deleteRange(let delete):
                nestedHeader.revision = delete.revision
                result.responseDeleteRange = deleteRange(delete, header: nestedHeader)
            case .txn(let txn):
                nestedHeader.revision = txn.revision
                result.responseTxn = self.txn(txn, header: nestedHeader)
            }
            return result
        }
        return wire
    }
}
