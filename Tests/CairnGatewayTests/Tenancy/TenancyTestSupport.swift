import CairnAPI
import CairnGateway
import CairnRPC
import Foundation
import Testing

/// Builders and oracles of the tenancy tests (names prefixed: the gateway's
/// test target is shared with other parts' tests).
enum TenancyFixture {
    /// Bytes of a string, for keys.
    static func bytes(_ text: String) -> Data { Data(text.utf8) }

    /// Raw bytes, for keys that are not UTF-8.
    static func bytes(_ values: [UInt8]) -> Data { Data(values) }

    static let alicePrefix = "tenants/alice/"
    static let bobPrefix = "tenants/bob/"

    static func alice(_ permissions: TenantPermissions = .readwrite) -> Namespace {
        Namespace(
            prefix: bytes(alicePrefix), permissions: permissions,
            leaseTag: Namespace.leaseTag(forTenantNamed: "alice"))
    }

    static func bob(_ permissions: TenantPermissions = .readwrite) -> Namespace {
        Namespace(
            prefix: bytes(bobPrefix), permissions: permissions,
            leaseTag: Namespace.leaseTag(forTenantNamed: "bob"))
    }

    static func keyValue(_ key: Data, value: String = "v", lease: Int64 = 0) -> Mvccpb_KeyValue {
        var keyValue = Mvccpb_KeyValue()
        keyValue.key = key
        keyValue.value = bytes(value)
        keyValue.lease = lease
        keyValue.createRevision = 2
        keyValue.modRevision = 3
        keyValue.version = 1
        return keyValue
    }

    static func range(_ key: Data, _ rangeEnd: Data = Data()) -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = key
        request.rangeEnd = rangeEnd
        return request
    }

    static func put(_ key: Data, lease: Int64 = 0) -> Etcdserverpb_PutRequest {
        var request = Etcdserverpb_PutRequest()
        request.key = key
        request.value = bytes("value")
        request.lease = lease
        return request
    }

    static func delete(_ key: Data, _ rangeEnd: Data = Data()) -> Etcdserverpb_DeleteRangeRequest {
        var request = Etcdserverpb_DeleteRangeRequest()
        request.key = key
        request.rangeEnd = rangeEnd
        return request
    }

    static func compare(_ key: Data, _ rangeEnd: Data = Data()) -> Etcdserverpb_Compare {
        var compare = Etcdserverpb_Compare()
        compare.key = key
        compare.rangeEnd = rangeEnd
        compare.target = .version
        compare.result = .greater
        compare.version = 0
        return compare
    }

    static func operation(_ range: Etcdserverpb_RangeRequest) -> Etcdserverpb_RequestOp {
        var operation = Etcdserverpb_RequestOp()
        operation.requestRange = range
        return operation
    }

    static func operation(_ put: Etcdserverpb_PutRequest) -> Etcdserverpb_RequestOp {
        var operation = Etcdserverpb_RequestOp()
        operation.requestPut = put
        return operation
    }

    static func operation(_ delete: Etcdserverpb_DeleteRangeRequest) -> Etcdserverpb_RequestOp {
        var operation = Etcdserverpb_RequestOp()
        operation.requestDeleteRange = delete
        return operation
    }

    static func operation(_ txn: Etcdserverpb_TxnRequest) -> Etcdserverpb_RequestOp {
        var operation = Etcdserverpb_RequestOp()
        operation.requestTxn = txn
        return operation
    }

    static func txn(
        compare: [Etcdserverpb_Compare] = [], success: [Etcdserverpb_RequestOp] = [],
        failure: [Etcdserverpb_RequestOp] = []
    ) -> Etcdserverpb_TxnRequest {
        var txn = Etcdserverpb_TxnRequest()
        txn.compare = compare
        txn.success = success
        txn.failure = failure
        return txn
    }

    /// The error `body` throws, or nil when it returns.
    static func refusal<T>(_ body: () throws -> T) -> RPCStatus? {
        do {
            _ = try body()
            return nil
        } catch let status as RPCStatus {
            return status
        } catch {
            return RPCStatus(.unknown, "test: not an RPCStatus: \(error)")
        }
    }

    /// etcd's reading of a range: empty `rangeEnd` is the single key, `"\0"`
    /// every key from `key` on, anything else `[key, rangeEnd)`. Written
    /// independently of the gateway's code, as the tests' oracle.
    static func rangeSelects(_ candidate: Data, key: Data, rangeEnd: Data) -> Bool {
        if rangeEnd.isEmpty { return candidate == key }
        let atOrAfterKey = !candidate.lexicographicallyPrecedes(key)
        if rangeEnd == Data([0]) { return atOrAfterKey }
        return atOrAfterKey && candidate.lexicographicallyPrecedes(rangeEnd)
    }

    /// The seeds property tests run: a fixed set, plus `CAIRN_SEED` when set
    /// (to replay a failure printed by an earlier run).
    static func propertySeeds(count: Int = 8) -> [UInt64] {
        var seeds = (0..<UInt64(count)).map { 0x5eed_0000 + $0 }
        if let text = ProcessInfo.processInfo.environment["CAIRN_SEED"], let seed = UInt64(text) {
            seeds.append(seed)
        }
        return seeds
    }
}

/// SplitMix64: a small seeded generator, so a failing property replays
/// from the seed its failure message prints.
struct TenancyRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        self.state = seed
    }

    mutating func next() -> UInt64 {
        self.state &+= 0x9e37_79b9_7f4a_7c15
        var mixed = self.state
        mixed = (mixed ^ (mixed >> 30)) &* 0xbf58_476d_1ce4_e5b9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94d0_49bb_1331_11eb
        return mixed ^ (mixed >> 31)
    }

    mutating func below(_ bound: Int) -> Int {
        Int(self.next() % UInt64(bound))
    }

    mutating func chance(_ percent: Int) -> Bool {
        self.below(100) < percent
    }
}
