import CairnAPI
import CairnRPC
import Foundation
import Testing

@testable import CairnClient

@Suite struct KeyRangeTests {
    @Test func prefixEndIncrementsTheLastByteBelow0xFF() {
        #expect(KeyRangeEnd.prefixEnd(of: Data("abc".utf8)) == Data("abd".utf8))
        #expect(KeyRangeEnd.prefixEnd(of: Data([0x61, 0xFF, 0xFF])) == Data([0x62]))
        #expect(KeyRangeEnd.prefixEnd(of: Data([0xFF, 0xFF])) == Data([0]))
        #expect(KeyRangeEnd.prefixEnd(of: Data()) == Data([0]))
        #expect(KeyRangeEnd.fromKey.rangeEnd(for: Data("a".utf8)) == Data([0]))
        #expect(KeyRangeEnd.single.rangeEnd(for: Data("a".utf8)).isEmpty)
    }

    @Test func keysAcceptStringsBytesAndData() {
        #expect("é".etcdData == Data([0xC3, 0xA9]))
        #expect([UInt8]([1, 2]).etcdData == Data([1, 2]))
        #expect(Data([3]).etcdData == Data([3]))
    }

    @Test func knownStatusesMapToTypedErrorsAndBack() {
        for error in EtcdServerError.allCases {
            #expect(error.status.etcdError == error)
        }
        #expect(
            RPCStatus(.outOfRange, "etcdserver: mvcc: required revision has been compacted").etcdError
                == .compacted)
        #expect(
            RPCStatus(.unknown, "etcdserver: mvcc: required revision has been compacted").etcdError == nil)
        #expect(RPCStatus(.notFound, "something else").etcdError == nil)
    }

    @Test func malformedEndpointsAreRejected() {
        #expect(throws: RPCStatus.self) { _ = try EtcdClient(endpoints: ["no-port"]) }
        #expect(throws: RPCStatus.self) { _ = try EtcdClient(endpoints: []) }
    }
}

@Suite struct KVTests {
    /// etcd (grpc-go) sends a BDP PING with most responses; the client must
    /// not count those against a flood limit and drop its own connection.
    @Test func manyCallsShareOneConnectionToEtcd() async throws {
        try await EtcdFixture.with { client, _ in
            for index in 0..<600 {
                try await client.put(key: "k\(index % 10)", value: "v\(index)")
            }
            #expect(try await client.get("k9").kvs.first?.valueString == "v599")
        }
    }

    @Test func putAndGetWithOptionsAndExactRevisions() async throws {
        try await EtcdFixture.with { client, _ in
            let first = try await client.put(key: "fruit/apple", value: "red")
            #expect(first.header.revision == 2, "the first put on an empty etcd is revision 2")
            try await client.put(key: Data("fruit/banana".utf8), value: [UInt8]("yellow".utf8))
            let third = try await client.put(key: "fruit/cherry", value: "dark", prevKV: true)
            #expect(third.header.revision == 4)
            #expect(!third.hasPrevKv)
            let overwrite = try await client.put(key: "fruit/apple", value: "green", prevKV: true)
            #expect(overwrite.prevKv.valueString == "red")
            #expect(overwrite.header.revision == 5)
            try await client.put(key: "vegetable", value: "leek")

            let one = try await client.get("fruit/apple")
            #expect(one.kvs.count == 1)
            #expect(one.kvs[0].valueString == "green")
            #expect(one.kvs[0].createRevision == 2)
            #expect(one.kvs[0].modRevision == 5)
            #expect(one.kvs[0].version == 2)

            let all = try await client.get("fruit/", end: .prefix)
            #expect(all.kvs.map(\.keyString) == ["fruit/apple", "fruit/banana", "fruit/cherry"])
            #expect(all.count == 3)

            let limited = try await client.get("fruit/", end: .prefix, limit: 2)
            #expect(limited.kvs.count == 2)
            #expect(limited.more)
            #expect(limited.count == 3)

            let sorted = try await client.get("fruit/", end: .prefix, sort: RangeSort(.key, .descend))
            #expect(sorted.kvs.map(\.keyString) == ["fruit/cherry", "fruit/banana", "fruit/apple"])
            let byModification = try await client.get("fruit/", end: .prefix, sort: RangeSort(.mod, .descend))
            #expect(byModification.kvs.first?.keyString == "fruit/apple")

            let keysOnly = try await client.get("fruit/", end: .prefix, keysOnly: true)
            #expect(keysOnly.kvs.count == 3)
            #expect(keysOnly.kvs.allSatisfy { $0.value.isEmpty })

            let countOnly = try await client.get("fruit/", end: .prefix, countOnly: true)
            #expect(countOnly.kvs.isEmpty)
            #expect(countOnly.count == 3)

            let past = try await client.get("fruit/", end: .prefix, revision: 3)
            #expect(past.kvs.map(\.keyString) == ["fruit/apple", "fruit/banana"])
            #expect(past.kvs[0].valueString == "red")

            let fromKey = try await client.get("fruit/banana", end: .fromKey, serializable: true)
            #expect(fromKey.kvs.map(\.keyString) == ["fruit/banana", "fruit/cherry", "vegetable"])
            #expect(fromKey.header.revision == 6)

            let missing = try await client.get("nothing")
            #expect(missing.kvs.isEmpty)
            #expect(missing.count == 0)
        }
    }

    @Test func prefixDeleteReturnsPreviousValues() async throws {
        try await EtcdFixture.with { client, _ in
            try await client.put(key: "job/1", value: "a")
            try await client.put(key: "job/2", value: "b")
            try await client.put(key: "jobs", value: "kept")
            let deleted = try await client.delete("job/", end: .prefix, prevKV: true)
            #expect(deleted.deleted == 2)
            #expect(deleted.prevKvs.map(\.keyString) == ["job/1", "job/2"])
            #expect(deleted.prevKvs.map(\.valueString) == ["a", "b"])
            #expect(deleted.header.revision == 5, "one delete of two keys is one revision")
            let left = try await client.get("job", end: .prefix)
            #expect(left.kvs.map(\.keyString) == ["jobs"])

            let none = try await client.delete("job/1")
            #expect(none.deleted == 0)
            #expect(none.header.revision == 5, "deleting nothing does not advance the revision")
        }
    }

    @Test func txnRunsTheBranchItsComparisonsChoose() async throws {
        try await EtcdFixture.with { client, _ in
            let create = try await client.txn(
                if: [.version("lock", .equal, 0)],
                then: [.put("lock", "owner-1"), .get("lock")],
                else: [.get("lock")])
            #expect(create.succeeded)
            #expect(create.header.revision == 2)
            #expect(create.responses.count == 2)
            #expect(create.responses[1].responseRange.kvs.first?.valueString == "owner-1")

            let again = try await client.txn(
                if: [.version("lock", .equal, 0)],
                then: [.put("lock", "owner-2")],
                else: [.get("lock")])
            #expect(!again.succeeded)
            #expect(again.header.revision == 2)
            #expect(again.responses.first?.responseRange.kvs.first?.valueString == "owner-1")

            let swap = try await client.txn(
                if: [.value("lock", .equal, "owner-1"), .modRevision("lock", .less, 3)],
                then: [.delete("lock", prevKV: true), .put("other", "x")])
            #expect(swap.succeeded)
            #expect(swap.responses[0].responseDeleteRange.prevKvs.first?.valueString == "owner-1")
            #expect(swap.header.revision == 3, "a transaction's writes share one revision")
        }
    }

    @Test func compactedAndFutureRevisionsGiveEtcdsErrors() async throws {
        try await EtcdFixture.with { client, _ in
            for index in 0..<4 { try await client.put(key: "k", value: "v\(index)") }
            try await client.compact(revision: 4, physical: true)
            let error = await #expect(throws: RPCStatus.self) { _ = try await client.get("k", revision: 3) }
            #expect(error?.code == .outOfRange)
            #expect(error?.message == "etcdserver: mvcc: required revision has been compacted")
            #expect(error?.etcdError == .compacted)
            let atCompaction = try await client.get("k", revision: 4)
            #expect(atCompaction.kvs.first?.valueString == "v2")

            let future = await #expect(throws: RPCStatus.self) { _ = try await client.get("k", revision: 99) }
            #expect(future?.etcdError == .futureRevision)

            let empty = await #expect(throws: RPCStatus.self) { try await client.put(key: "", value: "x") }
            #expect(empty == EtcdServerError.keyNotProvided.status)
        }
    }

    @Test func maintenanceAndClusterCalls() async throws {
        try await EtcdFixture.with { client, _ in
            try await client.put(key: "a", value: "1")
            let status = try await client.status()
            #expect(status.version.hasPrefix("3."))
            #expect(status.leader != 0)
            #expect(status.header.memberID == status.leader, "a single member leads itself")
            #expect(status.dbSize > 0)

            let members = try await client.memberList()
            #expect(members.count == 1)
            #expect(members.first?.name == "test")
            #expect(members.first?.id == status.leader)

            #expect(try await client.alarms().isEmpty)

            let hash = try await client.hashKV()
            #expect(hash.header.revision == 2)
            let again = try await client.hashKV()
            #expect(hash.hash == again.hash, "an unchanged store hashes the same")
        }
    }
}
