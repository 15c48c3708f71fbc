import CairnCore
import CairnMVCC
import Testing

func put(_ key: String, _ value: String) -> RequestOperation {
    .put(PutRequest(key: Key(key), value: bytes(value)))
}

func delete(_ key: String, _ rangeEnd: String = "") -> RequestOperation {
    .deleteRange(DeleteRangeRequest(key: Key(key), rangeEnd: Key(rangeEnd)))
}

func get(_ key: String, _ rangeEnd: String = "") -> RequestOperation {
    .range(RangeRequest(key: Key(key), rangeEnd: Key(rangeEnd)))
}

@Suite struct TxnTests {
    func run(_ store: inout MVCCStore, _ request: TxnRequest) throws -> WriteOutcome<TxnResponse> {
        try store.txn(request, isLeaseGranted: anyLease)
    }

    @Test func comparesChooseTheBranch() throws {
        var store = MVCCStore()
        try store.put("k", "v", lease: 7)  // 2
        let cases: [(Compare.Target, Compare.Result, Bool)] = [
            (.value(bytes("v")), .equal, true), (.value(bytes("u")), .greater, true),
            (.value(bytes("w")), .less, true), (.value(bytes("v")), .notEqual, false),
            (.version(1), .equal, true), (.version(0), .greater, true), (.version(1), .less, false),
            (.create(2), .equal, true), (.create(3), .less, true), (.mod(2), .notEqual, false),
            (.mod(1), .greater, true), (.lease(7), .equal, true), (.lease(0), .notEqual, true),
        ]
        for (target, result, expected) in cases {
            let compare = Compare(key: "k", target: target, result: result)
            let outcome = try run(&store, TxnRequest(compare: [compare], success: [get("k")]))
            #expect(outcome.response.succeeded == expected, "\(target) \(result)")
            #expect(outcome.response.responses.count == (expected ? 1 : 0))
        }
    }

    @Test func missingKeysCompareAsZerosButNeverByValue() throws {
        var store = MVCCStore()
        let create = Compare(key: "missing", target: .create(0), result: .equal)
        #expect(try run(&store, TxnRequest(compare: [create])).response.succeeded)
        let value = Compare(key: "missing", target: .value([]), result: .equal)
        #expect(try !run(&store, TxnRequest(compare: [value])).response.succeeded)
    }

    @Test func comparesOverRangesMustHoldForEveryKey() throws {
        var store = MVCCStore()
        try store.put("a1", "x")
        try store.put("a2", "x")
        let all = Compare(key: "a", rangeEnd: "b", target: .value(bytes("x")), result: .equal)
        #expect(try run(&store, TxnRequest(compare: [all])).response.succeeded)
        try store.put("a3", "y")
        #expect(try !run(&store, TxnRequest(compare: [all])).response.succeeded)
    }

    @Test func aTxnIsOneRevisionWithSubRevisionsAndReadsItsWrites() throws {
        var store = MVCCStore()
        try store.put("old", "1")  // 2
        let outcome = try run(
            &store,
            TxnRequest(success: [
                get("new"), put("new", "n"), get("new"), delete("old"), get("old"), put("x", "1"),
            ]))
        #expect(outcome.response.revision == 3)
        #expect(store.currentRevision == 3)
        #expect(outcome.events.map(\.revision) == [3, 3, 3])
        #expect(outcome.events.map(\.kind) == [.put, .delete, .put])
        guard case .range(let before) = outcome.response.responses[0],
            case .range(let after) = outcome.response.responses[2],
            case .put(let putResponse) = outcome.response.responses[1],
            case .range(let deleted) = outcome.response.responses[4]
        else {
            Issue.record("unexpected responses \(outcome.response.responses)")
            return
        }
        #expect(before.keyValues.isEmpty)
        #expect(before.revision == 2)
        #expect(after.keyValues.first?.value == bytes("n"))
        #expect(after.revision == 3)
        #expect(putResponse.revision == 3)
        #expect(deleted.keyValues.isEmpty)
    }

    @Test func readOnlyTxnMakesNoRevision() throws {
        var store = MVCCStore()
        try store.put("a", "1")
        let outcome = try run(&store, TxnRequest(success: [get("a"), delete("zzz")]))
        #expect(outcome.response.revision == 2)
        #expect(outcome.events.isEmpty)
        #expect(store.currentRevision == 2)
    }

    @Test func nestedTxnsCompareAgainstTheStateBeforeTheTxn() throws {
        var store = MVCCStore()
        try store.put("flag", "off")  // 2
        let inner = TxnRequest(
            compare: [Compare(key: "flag", target: .value(bytes("off")), result: .equal)],
            success: [put("seen", "off")], failure: [put("seen", "on")])
        let outer = TxnRequest(success: [put("flag", "on"), .txn(inner)])
        let outcome = try run(&store, outer)
        #expect(try store.value("seen") == "off")
        #expect(try store.value("flag") == "on")
        guard case .txn(let nested) = outcome.response.responses[1] else {
            Issue.record("expected a nested txn response")
            return
        }
        #expect(nested.succeeded)
        #expect(nested.revision == 0, "etcd leaves nested txn headers empty")
        #expect(outcome.response.revision == 3)
    }

    @Test func duplicateKeysAreRejected() throws {
        var store = MVCCStore()
        try store.put("a", "1")
        let duplicates: [TxnRequest] = [
            TxnRequest(success: [put("a", "1"), put("a", "2")]),
            TxnRequest(failure: [delete("a", "c"), put("b", "2")]),
            TxnRequest(success: [put("b", "2"), .txn(TxnRequest(success: [put("b", "3")]))]),
            TxnRequest(success: [delete("b"), .txn(TxnRequest(failure: [put("b", "3")]))]),
            TxnRequest(success: [
                .txn(TxnRequest(success: [delete("a", "z")])), .txn(TxnRequest(success: [put("m", "1")])),
            ]),
            TxnRequest(success: [delete("a", "\0"), put("x", "1")]),
        ]
        for request in duplicates {
            expectError(.duplicateKey) { try run(&store, request) }
        }
        #expect(store.currentRevision == 2)
        // Then and else of one nested txn may put the same key: only one runs.
        let exclusive = TxnRequest(success: [
            .txn(TxnRequest(success: [put("b", "1")], failure: [put("b", "2")]))
        ])
        #expect(try run(&store, exclusive).response.revision == 3)
        // Success and failure branches are checked separately.
        let branches = TxnRequest(success: [put("c", "1")], failure: [put("c", "2")])
        #expect(try run(&store, branches).response.revision == 4)
    }

    @Test func tooManyOperationsIsCheckedPerBranchAndLevel() throws {
        var store = MVCCStore(limits: .init(txnOperationsMax: 3))
        let three = (0..<3).map { put("k\($0)", "v") }
        #expect(try run(&store, TxnRequest(success: three, failure: three)).response.revision == 2)
        expectError(.tooManyOperations) { try run(&store, TxnRequest(success: three + [get("a")])) }
        let compares = (0..<4).map { _ in Compare(key: "k", target: .version(0), result: .equal) }
        expectError(.tooManyOperations) { try run(&store, TxnRequest(compare: compares)) }
        // A nested txn gets what its level left: 3 - 2 = 1 operation.
        let nested = TxnRequest(success: [get("a"), .txn(TxnRequest(success: [get("b"), get("c")]))])
        expectError(.tooManyOperations) { try run(&store, nested) }
        #expect(MVCCStore().limits.txnOperationsMax == 128)
    }

    @Test func badOperationsInsideATxnGetEtcdsErrors() throws {
        var store = MVCCStore()
        try store.put("a", "1")  // 2
        expectError(.emptyKey) { try run(&store, TxnRequest(success: [put("", "v")])) }
        expectError(.emptyKey) {
            try run(&store, TxnRequest(compare: [Compare(key: "", target: .version(0), result: .equal)]))
        }
        expectError(.keyNotFound) {
            try run(&store, TxnRequest(success: [.put(PutRequest(key: "zz", value: [], ignoreValue: true))]))
        }
        expectError(.leaseNotFound) {
            try store.txn(
                TxnRequest(success: [.put(PutRequest(key: "a", value: [], lease: LeaseID(3)))]),
                isLeaseGranted: { _ in false })
        }
        expectError(.futureRevision) {
            try run(&store, TxnRequest(success: [.range(RangeRequest(key: "a", revision: 3))]))
        }
        try store.put("a", "2")  // 3
        try store.compact(3)
        expectError(.compacted) {
            try run(&store, TxnRequest(success: [.range(RangeRequest(key: "a", revision: 2))]))
        }
        // Only the branch taken is checked.
        let untaken = TxnRequest(
            compare: [Compare(key: "a", target: .version(99), result: .equal)],
            success: [.range(RangeRequest(key: "a", revision: 2))], failure: [get("a")])
        #expect(try !run(&store, untaken).response.succeeded)
        #expect(store.currentRevision == 3)
    }
}

@Suite struct TxnEventTests {
    @Test func deleteAfterNestedPutReportsTheVersionBeforeTheTxn() throws {
        var store = MVCCStore()
        try store.put("k", "old")  // 2
        let request = TxnRequest(success: [
            .txn(TxnRequest(success: [put("k", "new")])),
            .txn(TxnRequest(success: [.deleteRange(DeleteRangeRequest(key: "k", previousKeyValues: true))])),
        ])
        let outcome = try store.txn(request, isLeaseGranted: anyLease)
        #expect(outcome.events.map(\.kind) == [.put, .delete])
        #expect(outcome.events[1].previous?.value == bytes("old"), "watchers see the version at revision - 1")
        guard case .txn(let nested) = outcome.response.responses[1],
            case .deleteRange(let deleted) = nested.responses[0]
        else {
            Issue.record("unexpected responses")
            return
        }
        #expect(deleted.previous.first?.value == bytes("new"), "the response reads the txn's own write")
        #expect(try store.value("k") == nil)
    }
}

@Suite struct TxnCheckOrderTests {
    @Test func putChecksComeBeforeRangeChecksAsInEtcd35() throws {
        var store = MVCCStore()
        try store.put("a", "1")  // 2
        let request = TxnRequest(success: [
            .range(RangeRequest(key: "a", revision: 9)),
            .put(PutRequest(key: "a", value: [], lease: LeaseID(4))),
        ])
        expectError(.leaseNotFound) { try store.txn(request, isLeaseGranted: { _ in false }) }
        expectError(.futureRevision) { try store.txn(request, isLeaseGranted: anyLease) }
    }
}
