import CairnAPI
import Foundation
import Testing

@testable import CairnGateway

/// The memo that strips a tenant's prefix once per fanned-out response:
/// it must answer exactly as stripping each response would.
@Suite struct WatchViewMemoTests {
    static func response(_ keys: [String], watchID: Int64 = 1) -> Etcdserverpb_WatchResponse {
        var response = Etcdserverpb_WatchResponse()
        response.watchID = watchID
        response.events = keys.map { key in
            var event = Mvccpb_Event()
            event.kv.key = Data(key.utf8)
            event.kv.modRevision = 5
            return event
        }
        return response
    }

    static func keys(_ response: Etcdserverpb_WatchResponse) -> [String] {
        response.events.map { String(decoding: $0.kv.key, as: UTF8.self) }
    }

    @Test func theSameEventsAreStrippedOnceAndOthersAfresh() {
        let memo = WatchViewMemo()
        let tenantA = Namespace(prefix: Data("t/a/".utf8), permissions: .readwrite, leaseTag: 1)
        let tenantB = Namespace(prefix: Data("t/b/".utf8), permissions: .readwrite, leaseTag: 2)
        let shared = Self.response(["t/a/x", "t/a/y"])
        for watchID: Int64 in 1...3 {
            var copy = shared
            copy.watchID = watchID
            let view = memo.view(of: copy, tenantA)
            #expect(Self.keys(view) == ["x", "y"] && view.watchID == watchID)
        }
        // Equal contents in another array, and the same array under another prefix.
        #expect(Self.keys(memo.view(of: Self.response(["t/a/z"]), tenantA)) == ["z"])
        let foreign = Self.response(["t/a/x"])
        #expect(Self.keys(memo.view(of: foreign, tenantB)).isEmpty, "a foreign key is never shown")
        #expect(Self.keys(memo.view(of: foreign, tenantA)) == ["x"])
        // A changed copy of a memoized array is a new array.
        var changed = foreign
        changed.events[0].kv.key = Data("t/a/w".utf8)
        #expect(Self.keys(memo.view(of: changed, tenantA)) == ["w"])
        #expect(memo.view(of: Self.response([]), tenantA).events.isEmpty)
    }
}
