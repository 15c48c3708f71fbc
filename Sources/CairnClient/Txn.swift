import CairnAPI
import Foundation

/// One condition of a transaction: a key's attribute compared with a value.
///
/// Built with the static functions (`.value("k", .equal, "v")`,
/// `.version("k", .equal, 0)` for "does not exist"), which keep the target
/// and the type of the compared value in step; a raw `Etcdserverpb_Compare`
/// lets them disagree.
public struct TxnCompare: Sendable {
    /// How the key's attribute relates to the given value.
    public enum Relation: Sendable {
        case equal, notEqual, greater, less

        var wire: Etcdserverpb_Compare.CompareResult {
            switch self {
            case .equal: .equal
            case .notEqual: .notEqual
            case .greater: .greater
            case .less: .less
            }
        }
    }

    public var message: Etcdserverpb_Compare

    public init(_ message: Etcdserverpb_Compare) {
        self.message = message
    }

    private init(
        _ key: some EtcdBytes, _ end: KeyRangeEnd, _ relation: Relation,
        _ target: Etcdserverpb_Compare.CompareTarget, _ union: Etcdserverpb_Compare.OneOf_TargetUnion
    ) {
        var message = Etcdserverpb_Compare()
        message.key = key.etcdData
        message.rangeEnd = end.rangeEnd(for: message.key)
        message.result = relation.wire
        message.target = target
        message.targetUnion = union
        self.message = message
    }

    /// Compares the value stored under the key.
    public static func value(
        _ key: some EtcdBytes, _ relation: Relation, _ value: some EtcdBytes, end: KeyRangeEnd = .single
    ) -> TxnCompare {
        TxnCompare(key, end, relation, .value, .value(value.etcdData))
    }

    /// Compares the key's version (number of puts since creation; 0 when absent).
    public static func version(
        _ key: some EtcdBytes, _ relation: Relation, _ version: Int64, end: KeyRangeEnd = .single
    ) -> TxnCompare {
        TxnCompare(key, end, relation, .version, .version(version))
    }

    /// Compares the revision at which the key was created (0 when absent).
    public static func createRevision(
        _ key: some EtcdBytes, _ relation: Relation, _ revision: Int64, end: KeyRangeEnd = .single
    ) -> TxnCompare {
        TxnCompare(key, end, relation, .create, .createRevision(revision))
    }

    /// Compares the revision of the key's last modification.
    public static func modRevision(
        _ key: some EtcdBytes, _ relation: Relation, _ revision: Int64, end: KeyRangeEnd = .single
    ) -> TxnCompare {
        TxnCompare(key, end, relation, .mod, .modRevision(revision))
    }

    /// Compares the lease the key is attached to (0 for none).
    public static func lease(
        _ key: some EtcdBytes, _ relation: Relation, _ lease: Int64, end: KeyRangeEnd = .single
    ) -> TxnCompare {
        TxnCompare(key, end, relation, .lease, .lease(lease))
    }
}

/// One operation of a transaction branch: put, get, delete or a nested txn.
public struct TxnOperation: Sendable {
    public var message: Etcdserverpb_RequestOp

    public init(_ message: Etcdserverpb_RequestOp) {
        self.message = message
    }

    public static func put(
        _ key: some EtcdBytes, _ value: some EtcdBytes, lease: Int64 = 0, prevKV: Bool = false
    ) -> TxnOperation {
        var message = Etcdserverpb_RequestOp()
        message.requestPut = EtcdClient.putRequest(key: key, value: value, lease: lease, prevKV: prevKV)
        return TxnOperation(message)
    }

    public static func get(
        _ key: some EtcdBytes, end: KeyRangeEnd = .single, limit: Int64 = 0, keysOnly: Bool = false,
        countOnly: Bool = false
    ) -> TxnOperation {
        var message = Etcdserverpb_RequestOp()
        message.requestRange = EtcdClient.rangeRequest(
            key, end: end, limit: limit, keysOnly: keysOnly, countOnly: countOnly)
        return TxnOperation(message)
    }

    public static func delete(_ key: some EtcdBytes, end: KeyRangeEnd = .single, prevKV: Bool = false)
        -> TxnOperation
    {
        var message = Etcdserverpb_RequestOp()
        message.requestDeleteRange = EtcdClient.deleteRequest(key, end: end, prevKV: prevKV)
        return TxnOperation(message)
    }

    /// A nested transaction (etcd 3.3 and later).
    public static func txn(
        if compares: [TxnCompare], then success: [TxnOperation], else failure: [TxnOperation] = []
    ) -> TxnOperation {
        var request = Etcdserverpb_TxnRequest()
        request.compare = compares.map(\.message)
        request.success = success.map(\.message)
        request.failure = failure.map(\.message)
        var message = Etcdserverpb_RequestOp()
        message.requestTxn = request
        return TxnOperation(message)
    }
}
