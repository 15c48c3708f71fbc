import CairnAPI
import Foundation
import SwiftProtobuf
import Testing

/// Encodes `message` and checks it against protobuf bytes worked out by hand
/// from etcd's field numbers, then decodes those bytes back to the message.
///
/// Hand-computed bytes pin the wire schema: a wrong field number, a wrong
/// scalar type (int64 vs sint64, say) or a missing field changes them.
private func expectWire<M: SwiftProtobuf.Message & Equatable>(
    _ message: M, _ expected: [UInt8], sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let encoded: [UInt8] = try message.serializedBytes()
    #expect(encoded == expected, sourceLocation: sourceLocation)
    let decoded = try M(serializedBytes: expected)
    #expect(decoded == message, sourceLocation: sourceLocation)
}

@Suite struct WireEncodingTests {
    @Test func putRequestFields() throws {
        var put = Etcdserverpb_PutRequest()
        put.key = Data("a".utf8)
        put.value = Data("b".utf8)
        put.lease = 5
        try expectWire(put, [0x0A, 0x01, 0x61, 0x12, 0x01, 0x62, 0x18, 0x05])

        put.prevKv = true
        put.ignoreValue = true
        put.ignoreLease = true
        try expectWire(
            put,
            [0x0A, 0x01, 0x61, 0x12, 0x01, 0x62, 0x18, 0x05, 0x20, 0x01, 0x28, 0x01, 0x30, 0x01])
    }

    @Test func rangeRequestAllFieldsAndSortEnums() throws {
        var range = Etcdserverpb_RangeRequest()
        range.key = Data("a".utf8)
        range.rangeEnd = Data("b".utf8)
        range.limit = 10
        range.revision = 7
        range.sortOrder = .descend
        range.sortTarget = .mod
        range.serializable = true
        range.keysOnly = true
        range.countOnly = true
        range.minModRevision = 1
        range.maxModRevision = 2
        range.minCreateRevision = 3
        range.maxCreateRevision = 4
        try expectWire(
            range,
            [
                0x0A, 0x01, 0x61, 0x12, 0x01, 0x62, 0x18, 0x0A, 0x20, 0x07, 0x28, 0x02, 0x30, 0x03,
                0x38, 0x01, 0x40, 0x01, 0x48, 0x01, 0x50, 0x01, 0x58, 0x02, 0x60, 0x03, 0x68, 0x04,
            ])
        #expect(Etcdserverpb_RangeRequest.SortOrder.ascend.rawValue == 1)
        #expect(Etcdserverpb_RangeRequest.SortTarget.value.rawValue == 4)
        #expect(Etcdserverpb_RangeRequest.SortTarget.version.rawValue == 1)
    }

    /// int64 fields are plain varints: -1 takes ten bytes (sint64 would take one).
    @Test func negativeRevisionIsTenByteVarint() throws {
        var range = Etcdserverpb_RangeRequest()
        range.revision = -1
        try expectWire(range, [0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    }

    @Test func watchRequestOneofCases() throws {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data("k".utf8)
        create.startRevision = 300
        create.filters = [.nodelete]
        create.prevKv = true
        create.watchID = 9
        create.fragment = true
        var request = Etcdserverpb_WatchRequest()
        request.createRequest = create
        try expectWire(
            request,
            [
                0x0A, 0x0F, 0x0A, 0x01, 0x6B, 0x18, 0xAC, 0x02, 0x2A, 0x01, 0x01, 0x30, 0x01,
                0x38, 0x09, 0x40, 0x01,
            ])

        var cancel = Etcdserverpb_WatchCancelRequest()
        cancel.watchID = 9
        request.cancelRequest = cancel
        try expectWire(request, [0x12, 0x02, 0x08, 0x09])

        request.progressRequest = Etcdserverpb_WatchProgressRequest()
        try expectWire(request, [0x1A, 0x00])
    }

    @Test func keyValueAllSixFields() throws {
        var keyValue = Mvccpb_KeyValue()
        keyValue.key = Data("k".utf8)
        keyValue.createRevision = 2
        keyValue.modRevision = 3
        keyValue.version = 4
        keyValue.value = Data("v".utf8)
        keyValue.lease = 6
        try expectWire(
            keyValue,
            [0x0A, 0x01, 0x6B, 0x10, 0x02, 0x18, 0x03, 0x20, 0x04, 0x2A, 0x01, 0x76, 0x30, 0x06])
    }

    @Test func eventTypeAndNestedKeyValue() throws {
        var event = Mvccpb_Event()
        event.type = .delete
        event.kv.key = Data("k".utf8)
        event.prevKv.lease = 1
        try expectWire(event, [0x08, 0x01, 0x12, 0x03, 0x0A, 0x01, 0x6B, 0x1A, 0x02, 0x30, 0x01])
    }

    @Test func responseHeaderUnsignedAndSignedFields() throws {
        var header = Etcdserverpb_ResponseHeader()
        header.clusterID = UInt64.max
        header.memberID = 2
        header.revision = 3
        header.raftTerm = 4
        try expectWire(
            header,
            [
                0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
                0x10, 0x02, 0x18, 0x03, 0x20, 0x04,
            ])
    }

    /// range_end is field 64, whose tag needs a two-byte varint; lease is the
    /// last case of the target_union oneof.
    @Test func compareRangeEndIsFieldSixtyFour() throws {
        var compare = Etcdserverpb_Compare()
        compare.result = .notEqual
        compare.target = .lease
        compare.key = Data("k".utf8)
        compare.lease = 7
        compare.rangeEnd = Data("z".utf8)
        try expectWire(
            compare,
            [0x08, 0x03, 0x10, 0x04, 0x1A, 0x01, 0x6B, 0x40, 0x07, 0x82, 0x04, 0x01, 0x7A])
    }

    @Test func txnNestsRequestOps() throws {
        var put = Etcdserverpb_PutRequest()
        put.key = Data("a".utf8)
        var operation = Etcdserverpb_RequestOp()
        operation.requestPut = put
        var txn = Etcdserverpb_TxnRequest()
        txn.success = [operation]
        var range = Etcdserverpb_RangeRequest()
        range.key = Data("b".utf8)
        var failure = Etcdserverpb_RequestOp()
        failure.requestRange = range
        txn.failure = [failure]
        try expectWire(
            txn, [0x12, 0x05, 0x12, 0x03, 0x0A, 0x01, 0x61, 0x1A, 0x05, 0x0A, 0x03, 0x0A, 0x01, 0x62])
    }

    /// Fields new in etcd 3.5.
    @Test func etcd35Additions() throws {
        var status = Etcdserverpb_AuthStatusResponse()
        status.enabled = true
        status.authRevision = 300
        try expectWire(status, [0x10, 0x01, 0x18, 0xAC, 0x02])

        var downgrade = Etcdserverpb_DowngradeRequest()
        downgrade.action = .cancel
        downgrade.version = "3.4"
        try expectWire(downgrade, [0x08, 0x02, 0x12, 0x03, 0x33, 0x2E, 0x34])

        var userAdd = Etcdserverpb_AuthUserAddRequest()
        userAdd.name = "u"
        userAdd.options.noPassword = true
        userAdd.hashedPassword = "h"
        try expectWire(userAdd, [0x0A, 0x01, 0x75, 0x1A, 0x02, 0x08, 0x01, 0x22, 0x01, 0x68])

        var memberList = Etcdserverpb_MemberListRequest()
        memberList.linearizable = true
        try expectWire(memberList, [0x08, 0x01])
    }

    @Test func statusResponseLaterFields() throws {
        var status = Etcdserverpb_StatusResponse()
        status.raftAppliedIndex = 1
        status.errors = ["e"]
        status.dbSizeInUse = 2
        status.isLearner = true
        try expectWire(status, [0x38, 0x01, 0x42, 0x01, 0x65, 0x48, 0x02, 0x50, 0x01])
    }

    @Test func leaseAndAuthPermissionFields() throws {
        var grant = Etcdserverpb_LeaseGrantRequest()
        grant.ttl = 60
        grant.id = 0x7F
        try expectWire(grant, [0x08, 0x3C, 0x10, 0x7F])

        var permission = Authpb_Permission()
        permission.permType = .readwrite
        permission.key = Data("a".utf8)
        permission.rangeEnd = Data("b".utf8)
        try expectWire(permission, [0x08, 0x02, 0x12, 0x01, 0x61, 0x1A, 0x01, 0x62])
    }

    /// JSON keeps etcd's field names (grpc-gateway clients depend on them).
    @Test func jsonUsesEtcdFieldNames() throws {
        var status = Etcdserverpb_StatusResponse()
        status.dbSizeInUse = 2
        status.header.clusterID = 1
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        let json = try status.jsonString(options: options)
        #expect(json == #"{"header":{"cluster_id":"1"},"dbSizeInUse":"2"}"#)
    }

    /// Unknown fields, such as etcd 3.6's additions, survive a decode/encode.
    @Test func unknownFieldsArePreserved() throws {
        // HashKVResponse{hash: 1, hash_revision (3.6, field 4): 5}
        let bytes: [UInt8] = [0x10, 0x01, 0x20, 0x05]
        let response = try Etcdserverpb_HashKVResponse(serializedBytes: bytes)
        #expect(response.hash == 1)
        let reencoded: [UInt8] = try response.serializedBytes()
        #expect(reencoded == bytes)
    }
}
