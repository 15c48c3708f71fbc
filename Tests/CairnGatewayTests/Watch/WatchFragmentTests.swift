import CairnAPI
import Foundation
import Testing

@testable import CairnGateway

/// Fragmenting one client's response as etcd's `sendFragments` does.
struct WatchFragmentTests {
    static func response(events: Int, valueBytes: Int) -> Etcdserverpb_WatchResponse {
        var response = Etcdserverpb_WatchResponse()
        response.watchID = 3
        response.header.revision = 99
        response.events = (0..<events).map { index in
            var event = Mvccpb_Event()
            event.kv.key = Data("key\(index)".utf8)
            event.kv.value = Data(repeating: 0x61, count: valueBytes)
            event.kv.modRevision = Int64(90 + index)
            return event
        }
        return response
    }

    @Test func smallOrSingleEventResponsesAreNotSplit() throws {
        let small = Self.response(events: 3, valueBytes: 10)
        #expect(watchFragments(small, bytesMax: 1_000) == [small])
        let single = Self.response(events: 1, valueBytes: 5_000)
        #expect(watchFragments(single, bytesMax: 1_000) == [single])
    }

    @Test func largeResponsesSplitUnderTheBoundInOrder() throws {
        let large = Self.response(events: 10, valueBytes: 300)
        let fragments = watchFragments(large, bytesMax: 1_000)
        #expect(fragments.count > 1)
        #expect(fragments.dropLast().allSatisfy { $0.fragment })
        #expect(fragments.last?.fragment == false)
        #expect(fragments.flatMap(\.events) == large.events)
        #expect(fragments.allSatisfy { $0.watchID == 3 && $0.header.revision == 99 })
        for fragment in fragments where fragment.events.count > 1 {
            let bytes: [UInt8] = try fragment.serializedBytes()
            #expect(bytes.count < 1_000)
        }
    }
}
