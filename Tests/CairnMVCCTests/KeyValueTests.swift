import CairnCore
import CairnMVCC
import Testing

@Suite struct PutTests {
    @Test func firstPutOfAnEmptyStoreIsRevisionTwo() throws {
        var store = MVCCStore()
        #expect(store.currentRevision == 1)
        #expect(try store.put("foo", "bar") == 2)
        let keyValue = try #require(try store.get("foo").keyValues.first)
        #expect(keyValue.createRevision == 2)
        #expect(keyValue.modRevision == 2)
        #expect(keyValue.version == 1)
        #expect(try store.get("foo").revision == 2)
    }

    @Test func versionsCountPutsWithinAGeneration() throws {
        var store = MVCCStore()
        try store.put("foo", "a")
        try store.put("foo", "b")
        try store.put("foo", "c")
        let kv = try #require(try store.get("foo").keyValues.first)
        #expect((kv.createRevision, kv.modRevision, kv.version) == (2, 4, 3))
        try store.delete("foo")
        try store.put("foo", "d")
        let again = try #require(try store.get("foo").keyValues.first)
        #expect((again.createRevision, again.modRevision, again.version) == (6, 6, 1))
    }

    @Test func previousKeyValueIsReturnedWhenAsked() throws {
        var store = MVCCStore()
        let first = try store.put(
            PutRequest(key: "k", value: bytes("1"), previousKeyValue: true), isLeaseGranted: anyLease)
        #expect(first.response.previous == nil)
        let second = try store.put(
            PutRequest(key: "k", value: bytes("2"), previousKeyValue: true), isLeaseGranted: anyLease)
        #expect(second.response.previous?.value == bytes("1"))
        #expect(second.events.count == 1)
        #expect(second.events[0].kind == .put)
        #expect(second.events[0].previous?.value == bytes("1"))
        let third = try store.put(PutRequest(key: "k", value: bytes("3")), isLeaseGranted: anyLease)
        #expect(third.response.previous == nil)
    }

    @Test func ignoreValueAndIgnoreLeaseKeepTheCurrentOnes() throws {
        var store = MVCCStore()
        try store.put("k", "v", lease: 7)
        _ = try store.put(
            PutRequest(key: "k", value: [], lease: LeaseID(9), ignoreValue: true), isLeaseGranted: anyLease)
        var kv = try #require(try store.get("k").keyValues.first)
        #expect(kv.value == bytes("v"))
        #expect(kv.lease == LeaseID(9))
        _ = try store.put(
            PutRequest(key: "k", value: bytes("w"), ignoreLease: true), isLeaseGranted: anyLease)
        kv = try #require(try store.get("k").keyValues.first)
        #expect(kv.value == bytes("w"))
        #expect(kv.lease == LeaseID(9))
        #expect(kv.version == 3)
    }

    @Test func badPutsGetEtcdsErrors() {
        var store = MVCCStore()
        expectError(.emptyKey) { try store.put("", "v") }
        expectError(.valueProvided) {
            try store.put(
                PutRequest(key: "k", value: bytes("v"), ignoreValue: true), isLeaseGranted: anyLease)
        }
        expectError(.leaseProvided) {
            try store.put(
                PutRequest(key: "k", value: [], lease: LeaseID(5), ignoreLease: true),
                isLeaseGranted: anyLease)
        }
        expectError(.keyNotFound) {
            try store.put(PutRequest(key: "missing", value: [], ignoreValue: true), isLeaseGranted: anyLease)
        }
        expectError(.leaseNotFound) {
            try store.put(PutRequest(key: "k", value: [], lease: LeaseID(5)), isLeaseGranted: { _ in false })
        }
        #expect(store.currentRevision == 1, "failed puts make no revision")
    }
}

@Suite struct DeleteRangeTests {
    @Test func deleteReportsCountAndPreviousValues() throws {
        var store = MVCCStore()
        try store.put("a", "1")
        try store.put("b", "2")
        try store.put("c", "3")
        let outcome = try store.deleteRange(
            DeleteRangeRequest(key: "a", rangeEnd: "c", previousKeyValues: true))
        #expect(outcome.response.deleted == 2)
        #expect(outcome.response.revision == 5)
        #expect(outcome.response.previous.map(\.value) == [bytes("1"), bytes("2")])
        #expect(outcome.events.map(\.kind) == [.delete, .delete])
        #expect(
            outcome.events[0].keyValue
                == KeyValue(key: "a", createRevision: 0, modRevision: 5, version: 0, value: []))
        #expect(keys(try store.get("a", rangeEnd: "\u{7f}")) == ["c"])
    }

    @Test func deletingNothingMakesNoRevision() throws {
        var store = MVCCStore()
        try store.put("a", "1")
        let response = try store.delete("zzz")
        #expect(response.deleted == 0)
        #expect(response.revision == 2)
        #expect(store.currentRevision == 2)
        expectError(.emptyKey) { try store.delete("") }
    }

    @Test func deleteFromKeyAndAll() throws {
        var store = MVCCStore()
        for key in ["a", "b", "c"] { try store.put(key, key) }
        #expect(try store.delete("b", rangeEnd: "\0").deleted == 2)
        #expect(keys(try store.get("\0", rangeEnd: "\0")) == ["a"])
        #expect(try store.delete("\0", rangeEnd: "\0").deleted == 1)
        #expect(try store.get("\0", rangeEnd: "\0").count == 0)
    }
}

@Suite struct DeleteKeysTests {
    @Test func revokedKeysGoInOneRevision() throws {
        var store = MVCCStore()
        for key in ["a", "b", "c"] { try store.put(key, "v", lease: 5) }  // 2...4
        let outcome = store.deleteKeys(["a", "c", "c", "missing"])
        #expect(outcome.response.deleted == 2)
        #expect(outcome.response.revision == 5)
        #expect(outcome.events.map(\.revision) == [5, 5])
        #expect(outcome.events.compactMap(\.previous?.lease) == [LeaseID(5), LeaseID(5)])
        #expect(keys(try store.get("\0", rangeEnd: "\0")) == ["b"])
        #expect(store.deleteKeys(["zz"]).events.isEmpty)
        #expect(store.currentRevision == 5)
    }
}
