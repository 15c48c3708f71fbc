import CairnAPI
import CairnGateway
import CairnRPC
import Foundation
import Testing

private typealias F = TenancyFixture

@Suite("Namespace: KV rewriting")
struct NamespaceKVTests {
    let alice = F.alice()
    let prefix = F.bytes(F.alicePrefix)
    /// prefixEnd("tenants/alice/") = "tenants/alice0" ('/' + 1 = '0').
    let end = F.bytes("tenants/alice0")

    @Test func prefixEndFollowsEtcd() {
        #expect(Namespace.prefixEnd(F.bytes("abc")) == F.bytes("abd"))
        #expect(Namespace.prefixEnd(F.bytes([0x61, 0xff])) == F.bytes("b"))
        #expect(Namespace.prefixEnd(F.bytes([0xff, 0xff])) == F.bytes([0]))
        #expect(self.alice.end == self.end)
    }

    @Test func rangeOfOneKey() throws {
        let rewritten = try self.alice.inbound(F.range(F.bytes("a")))
        #expect(rewritten.key == F.bytes("tenants/alice/a"))
        #expect(rewritten.rangeEnd.isEmpty)
    }

    @Test func rangeFromKeyEndsAtTheNamespace() throws {
        let rewritten = try self.alice.inbound(F.range(F.bytes("a"), F.bytes([0])))
        #expect(rewritten.key == F.bytes("tenants/alice/a"))
        #expect(rewritten.rangeEnd == self.end)
    }

    @Test func allKeysIsTheWholeNamespace() throws {
        let rewritten = try self.alice.inbound(F.range(F.bytes([0]), F.bytes([0])))
        #expect(rewritten.key == self.prefix + F.bytes([0]))
        #expect(rewritten.rangeEnd == self.end)
    }

    @Test func boundedRangeIsPrefixed() throws {
        let rewritten = try self.alice.inbound(F.range(F.bytes("a"), F.bytes("c")))
        #expect(rewritten.key == F.bytes("tenants/alice/a"))
        #expect(rewritten.rangeEnd == F.bytes("tenants/alice/c"))
    }

    @Test func rangeEndPastThePrefixStaysInside() throws {
        let rewritten = try self.alice.inbound(F.range(F.bytes("a"), F.bytes([0xff, 0xff, 0xff])))
        #expect(rewritten.rangeEnd == self.prefix + F.bytes([0xff, 0xff, 0xff]))
        #expect(rewritten.rangeEnd.lexicographicallyPrecedes(self.end))
    }

    @Test func otherFieldsPassUnchanged() throws {
        var request = F.range(F.bytes("a"), F.bytes("b"))
        request.limit = 7
        request.revision = 42
        request.serializable = true
        request.keysOnly = true
        request.sortOrder = .descend
        request.minModRevision = 3
        let rewritten = try self.alice.inbound(request)
        #expect(
            rewritten.limit == 7 && rewritten.revision == 42 && rewritten.serializable && rewritten.keysOnly)
        #expect(rewritten.sortOrder == .descend && rewritten.minModRevision == 3)
    }

    @Test func emptyKeysAreRefusedAsEtcdDoes() {
        let notProvided = Namespace.Refusal.keyNotProvided
        #expect(notProvided == RPCStatus(.invalidArgument, "etcdserver: key is not provided"))
        #expect(F.refusal { try self.alice.inbound(F.range(Data())) } == notProvided)
        #expect(F.refusal { try self.alice.inbound(F.range(Data(), F.bytes([0]))) } == notProvided)
        #expect(F.refusal { try self.alice.inbound(F.put(Data())) } == notProvided)
        #expect(F.refusal { try self.alice.inbound(F.delete(Data(), F.bytes([0]))) } == notProvided)
        let txn = F.txn(compare: [F.compare(Data())])
        #expect(F.refusal { try self.alice.inbound(txn) } == notProvided)
    }

    @Test func putIsPrefixedAndKeepsItsValue() throws {
        var request = F.put(F.bytes("k"))
        request.prevKv = true
        let rewritten = try self.alice.inbound(request)
        #expect(rewritten.key == F.bytes("tenants/alice/k"))
        #expect(rewritten.value == F.bytes("value") && rewritten.prevKv)
    }

    @Test func putChecksFollowEtcdsOrder() {
        var ignoreValue = F.put(F.bytes("k"))
        ignoreValue.ignoreValue = true
        #expect(F.refusal { try self.alice.inbound(ignoreValue) } == Namespace.Refusal.valueProvided)
        var ignoreLease = F.put(F.bytes("k"), lease: 5)
        ignoreLease.ignoreLease = true
        ignoreLease.value = Data()
        #expect(F.refusal { try self.alice.inbound(ignoreLease) } == Namespace.Refusal.leaseProvided)
        // A read-only tenant with a foreign lease: permission comes first.
        #expect(
            F.refusal { try F.alice(.read).inbound(F.put(F.bytes("k"), lease: 5)) }
                == Namespace.Refusal.permissionDenied)
    }

    @Test func responsesAreStripped() throws {
        var range = Etcdserverpb_RangeResponse()
        range.kvs = [F.keyValue(F.bytes("tenants/alice/a")), F.keyValue(F.bytes("tenants/alice/b"))]
        range.count = 2
        let stripped = try self.alice.outbound(range)
        #expect(stripped.kvs.map(\.key) == [F.bytes("a"), F.bytes("b")])
        #expect(stripped.kvs[0].value == F.bytes("v") && stripped.count == 2)

        var put = Etcdserverpb_PutResponse()
        put.prevKv = F.keyValue(F.bytes("tenants/alice/a"))
        #expect(try self.alice.outbound(put).prevKv.key == F.bytes("a"))
        #expect(try self.alice.outbound(Etcdserverpb_PutResponse()).hasPrevKv == false)

        var delete = Etcdserverpb_DeleteRangeResponse()
        delete.deleted = 1
        delete.prevKvs = [F.keyValue(F.bytes("tenants/alice/x"))]
        #expect(try self.alice.outbound(delete).prevKvs.map(\.key) == [F.bytes("x")])
    }

    @Test func foreignKeysInAnswersNeverSurface() throws {
        var range = Etcdserverpb_RangeResponse()
        range.kvs = [
            F.keyValue(F.bytes("tenants/alice/a")), F.keyValue(F.bytes("tenants/bob/secret")),
            F.keyValue(F.bytes("tenants/alice")),
        ]
        range.count = 3
        let stripped = try self.alice.outbound(range)
        #expect(stripped.kvs.map(\.key) == [F.bytes("a")])
        #expect(stripped.count == 1)

        var put = Etcdserverpb_PutResponse()
        put.prevKv = F.keyValue(F.bytes("tenants/bob/secret"))
        #expect(F.refusal { try self.alice.outbound(put) } == Namespace.Refusal.foreignKeyInAnswer)
    }

    @Test func txnRewritesEveryCompareAndNestedOperation() throws {
        let inner = F.txn(
            compare: [F.compare(F.bytes("i"), F.bytes([0]))],
            success: [F.operation(F.put(F.bytes("ip")))],
            failure: [F.operation(F.delete(F.bytes("id"), F.bytes("iz")))])
        let txn = F.txn(
            compare: [F.compare(F.bytes("c")), F.compare(F.bytes("d"), F.bytes("e"))],
            success: [F.operation(F.range(F.bytes("r"), F.bytes([0]))), F.operation(inner)],
            failure: [F.operation(F.put(F.bytes("p")))])
        let rewritten = try self.alice.inbound(txn)
        #expect(rewritten.compare.map(\.key) == [F.bytes("tenants/alice/c"), F.bytes("tenants/alice/d")])
        #expect(rewritten.compare.map(\.rangeEnd) == [Data(), F.bytes("tenants/alice/e")])
        #expect(rewritten.success[0].requestRange.key == F.bytes("tenants/alice/r"))
        #expect(rewritten.success[0].requestRange.rangeEnd == self.end)
        let nested = rewritten.success[1].requestTxn
        #expect(nested.compare[0].key == F.bytes("tenants/alice/i") && nested.compare[0].rangeEnd == self.end)
        #expect(nested.success[0].requestPut.key == F.bytes("tenants/alice/ip"))
        #expect(nested.failure[0].requestDeleteRange.key == F.bytes("tenants/alice/id"))
        #expect(nested.failure[0].requestDeleteRange.rangeEnd == F.bytes("tenants/alice/iz"))
        #expect(rewritten.failure[0].requestPut.key == F.bytes("tenants/alice/p"))
    }

    @Test func txnResponsesAreStrippedRecursively() throws {
        var range = Etcdserverpb_RangeResponse()
        range.kvs = [F.keyValue(F.bytes("tenants/alice/a")), F.keyValue(F.bytes("tenants/bob/b"))]
        var innerRange = Etcdserverpb_ResponseOp()
        innerRange.responseRange = range
        var inner = Etcdserverpb_TxnResponse()
        inner.responses = [innerRange]
        var outerRange = Etcdserverpb_ResponseOp()
        outerRange.responseRange = range
        var outerTxn = Etcdserverpb_ResponseOp()
        outerTxn.responseTxn = inner
        var response = Etcdserverpb_TxnResponse()
        response.succeeded = true
        response.responses = [outerRange, outerTxn]
        let stripped = try self.alice.outbound(response)
        #expect(stripped.succeeded)
        #expect(stripped.responses[0].responseRange.kvs.map(\.key) == [F.bytes("a")])
        #expect(stripped.responses[1].responseTxn.responses[0].responseRange.kvs.map(\.key) == [F.bytes("a")])
    }

    @Test func emptyTxnOperationIsRefusedAsEtcdDoes() {
        let txn = F.txn(success: [Etcdserverpb_RequestOp()])
        #expect(
            F.refusal { try self.alice.inbound(txn) }
                == RPCStatus(.invalidArgument, "etcdserver: key not found"))
    }

    @Test func readOnlyTenantsMayReadButNotWrite() throws {
        let reader = F.alice(.read)
        let denied = RPCStatus(.permissionDenied, "etcdserver: permission denied")
        #expect(try reader.inbound(F.range(F.bytes("a"))).key == F.bytes("tenants/alice/a"))
        #expect(F.refusal { try reader.inbound(F.put(F.bytes("a"))) } == denied)
        #expect(F.refusal { try reader.inbound(F.delete(F.bytes("a"))) } == denied)
        let readTxn = F.txn(compare: [F.compare(F.bytes("a"))], success: [F.operation(F.range(F.bytes("a")))])
        #expect(try reader.inbound(readTxn).success.count == 1)
        // A write in the branch that may not run still needs write permission.
        let nestedWrite = F.txn(
            failure: [F.operation(F.txn(failure: [F.operation(F.delete(F.bytes("x")))]))])
        #expect(F.refusal { try reader.inbound(nestedWrite) } == denied)
    }

    @Test func compactionIsRefusedForTenants() {
        var request = Etcdserverpb_CompactionRequest()
        request.revision = 10
        #expect(F.refusal { try self.alice.inbound(request) } == Namespace.Refusal.permissionDenied)
    }
}
