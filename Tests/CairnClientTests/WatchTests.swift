import CairnAPI
import CairnRPC
import CairnTestSupport
import Foundation
import Testing

@testable import CairnClient

/// Takes `count` responses' events from a watch.
func takeEvents(_ stream: WatchStream, count: Int) async throws -> [Mvccpb_Event] {
    var events: [Mvccpb_Event] = []
    for try await response in stream {
        events.append(contentsOf: response.events)
        if events.count >= count { break }
    }
    return events
}

@Suite struct WatchTests {
    @Test func liveWatchOfAPrefixSeesPutsAndDeletesInOrder() async throws {
        try await EtcdFixture.with { client, _ in
            try await client.put(key: "cfg/before", value: "old")
            let watch = try await client.watch("cfg/", end: .prefix, prevKV: true)
            try await client.put(key: "cfg/a", value: "1")
            try await client.put(key: "other", value: "ignored")
            try await client.put(key: "cfg/a", value: "2")
            try await client.delete("cfg/a")
            let events = try await takeEvents(watch, count: 3)
            #expect(events.map(\.type) == [.put, .put, .delete])
            #expect(events.map(\.kv.modRevision) == [3, 5, 6])
            #expect(events.map(\.kv.keyString) == ["cfg/a", "cfg/a", "cfg/a"])
            #expect(events[1].prevKv.valueString == "1")
            #expect(events[2].prevKv.valueString == "2")
        }
    }

    @Test func watchFromAPastRevisionReplaysHistory() async throws {
        try await EtcdFixture.with { client, _ in
            for index in 0..<3 { try await client.put(key: "h", value: "v\(index)") }
            let watch = try await client.watch("h", startRevision: 3, filters: [.nodelete])
            try await client.delete("h")
            try await client.put(key: "h", value: "again")
            let events = try await takeEvents(watch, count: 3)
            #expect(events.map(\.kv.modRevision) == [3, 4, 6], "the delete at 5 is filtered out")
            #expect(events.map(\.kv.valueString) == ["v1", "v2", "again"])
        }
    }

    @Test func severalWatchesShareOneStream() async throws {
        try await EtcdFixture.with { client, _ in
            let first = try await client.watch("m/1")
            let second = try await client.watch("m/2")
            let both = try await client.watch("m/", end: .prefix)
            // etcd numbers watches per stream from 0: distinct IDs prove one stream.
            #expect(Set([first.watchID, second.watchID, both.watchID]).count == 3)
            #expect(client.watchMultiplexers.count == 1)
            #expect(await client.watchMultiplexers[0].usage() == (3, true))
            try await client.put(key: "m/2", value: "b")
            try await client.put(key: "m/1", value: "a")
            #expect(try await takeEvents(first, count: 1).map(\.kv.keyString) == ["m/1"])
            #expect(try await takeEvents(second, count: 1).map(\.kv.keyString) == ["m/2"])
            #expect(try await takeEvents(both, count: 2).map(\.kv.keyString) == ["m/2", "m/1"])
        }
    }

    @Test func stoppingIterationCancelsOnlyThatWatch() async throws {
        try await EtcdFixture.with { client, _ in
            let multiplexer = client.watchMultiplexers[0]
            let kept = try await client.watch("c/kept")
            do {
                let dropped = try await client.watch("c/dropped")
                try await client.put(key: "c/dropped", value: "1")
                #expect(try await takeEvents(dropped, count: 1).count == 1)
            }
            try await eventually { await multiplexer.usage() == (1, true) }
            try await client.put(key: "c/dropped", value: "2")
            try await client.put(key: "c/kept", value: "k")
            let events = try await takeEvents(kept, count: 1)
            #expect(events.map(\.kv.keyString) == ["c/kept"])
            #expect(events.first?.kv.modRevision == 4)
            // The last watch gone, the stream closes; a new watch reopens one.
            try await eventually { await multiplexer.usage() == (0, false) }
            let later = try await client.watch("c/", end: .prefix, startRevision: 2)
            #expect(try await takeEvents(later, count: 3).map(\.kv.modRevision) == [2, 3, 4])
        }
    }

    @Test func cancellingTheConsumingTaskCancelsTheWatch() async throws {
        try await EtcdFixture.with { client, _ in
            let watch = try await client.watch("t")
            let consumer = Task { try await takeEvents(watch, count: 100).count }
            try await client.put(key: "t", value: "1")
            try await Task.sleep(for: .milliseconds(100))
            consumer.cancel()
            _ = try? await consumer.value
            try await eventually { await client.watchMultiplexers[0].usage() == (0, false) }
        }
    }

    @Test func watchFromACompactedRevisionFailsWithTheCompactRevision() async throws {
        try await EtcdFixture.with { client, _ in
            for index in 0..<4 { try await client.put(key: "old", value: "\(index)") }
            try await client.compact(revision: 4)
            let error = await #expect(throws: WatchError.self) {
                let watch = try await client.watch("old", startRevision: 2)
                for try await _ in watch {}
            }
            #expect(error == .compacted(compactRevision: 4))
            #expect(
                error?.description.hasPrefix("etcdserver: mvcc: required revision has been compacted") == true
            )
            // The failed watch leaves the stream usable.
            let fresh = try await client.watch("old", startRevision: 4)
            #expect(try await takeEvents(fresh, count: 2).map(\.kv.modRevision) == [4, 5])
        }
    }

    @Test func aSlowConsumerFailsAtTheBufferBoundWithoutLosingBufferedResponses() async throws {
        var configuration = EtcdClientConfiguration()
        configuration.watchBufferedResponsesMax = 4
        try await EtcdFixture.with(configuration: configuration) { client, _ in
            let watch = try await client.watch("s")
            for index in 0..<30 { try await client.put(key: "s", value: "\(index)") }
            try await eventually { await client.watchMultiplexers[0].usage().watches == 0 }
            var revisions: [Int64] = []
            let error = await #expect(throws: WatchError.self) {
                for try await response in watch { revisions += response.events.map(\.kv.modRevision) }
            }
            #expect(error == .consumerTooSlow(bufferedResponsesMax: 4))
            #expect(revisions.count >= 4)
            #expect(revisions == Array(2..<Int64(2 + revisions.count)), "no gap before the failure")
        }
    }

    @Test func progressRequestsAnswerEveryWatch() async throws {
        try await EtcdFixture.with { client, _ in
            try await client.put(key: "p", value: "1")
            let first = try await client.watch("p")
            let second = try await client.watch("q")
            client.requestProgress()
            for watch in [first, second] {
                var iterator = watch.makeAsyncIterator()
                let response = try await iterator.next()
                #expect(response?.isProgressNotify == true)
                #expect(response?.header.revision == 2)
            }
        }
    }

    @Test func watchesResumeAfterTheServerRestartsWithoutGapOrRepeat() async throws {
        try await EtcdFixture.with { client, fixture in
            let watch = try await client.watch("r/", end: .prefix)
            let other = try await client.watch("s")
            var iterator = watch.makeAsyncIterator()
            try await client.put(key: "r/1", value: "a")
            #expect(try await iterator.next()?.events.map(\.kv.modRevision) == [2])

            try fixture.restart()
            // Another client writes while the watch may still be reconnecting.
            let writer = try EtcdClient(endpoints: [fixture.endpoint])
            try await eventually { (try? await writer.put(key: "r/2", value: "b")) != nil }
            await writer.shutdown()
            try await eventually { (try? await client.put(key: "r/3", value: "c")) != nil }
            try await client.put(key: "s", value: "d")

            var revisions: [Int64] = []
            while revisions.count < 2, let response = try await iterator.next() {
                revisions += response.events.map(\.kv.modRevision)
            }
            #expect(revisions == [3, 4], "resumed after the last delivered revision: no gap, no repeat")
            #expect(try await takeEvents(other, count: 1).map(\.kv.modRevision) == [5])
        }
    }

    @Test func watchCreationIsBoundedByTheCallTimeout() async throws {
        var configuration = EtcdClientConfiguration()
        configuration.callTimeout = .milliseconds(300)
        // Nothing listens on this port: the create request is never answered.
        let client = try EtcdClient(
            endpoints: ["127.0.0.1:\(TestPorts.allocate())"], configuration: configuration)
        let error = await #expect(throws: RPCStatus.self) { _ = try await client.watch("k") }
        #expect(error?.code == .deadlineExceeded)
        let unary = await #expect(throws: RPCStatus.self) { _ = try await client.get("k") }
        #expect(unary?.code == .unavailable || unary?.code == .deadlineExceeded)
        await client.shutdown()
    }
}
