import CairnAPI
import CairnRPC
import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import CairnGateway

/// Watch coalescing against a scripted etcd over a real CairnRPC connection;
/// gateway clients drive `WatchSession`s directly.
@Suite(.serialized)
struct WatchCoalescingTests {
    @Test func identicalWatchesShareOneUpstreamWatch() async throws {
        try await WatchHarness.with { harness in
            var clients: [WatchTestClient] = []
            for _ in 0..<20 {
                let client = try await harness.client()
                try await client.create("config/a")
                clients.append(client)
            }
            let all = clients
            #expect(await watchEventually { all.allSatisfy { $0.created(0) != nil } })
            #expect(try await harness.etcd.watcherCount() == 1)
            #expect(harness.gauges().upstreamWatches == 1)
            #expect(harness.gauges().clientWatches == 20)
            var revisions: [Int64] = []
            for index in 0..<5 { revisions.append(try await harness.etcd.put("config/a", "v\(index)")) }
            try await harness.etcd.put("config/b", "other")
            #expect(await watchEventually { all.allSatisfy { $0.eventRevisions(0) == revisions } })
            #expect(try await harness.etcd.run { $0.onBehalfOf } == ["alice"])
        }
    }

    @Test func differentFiltersOrPrevKVAreSeparateUpstreamWatches() async throws {
        try await WatchHarness.with { harness in
            let plain = try await harness.client()
            let noPut = try await harness.client()
            let withPrevious = try await harness.client()
            let otherTenant = try await harness.client(tenant: "bob")
            try await plain.create("k")
            try await noPut.create("k", filters: [0])
            try await withPrevious.create("k", prevKV: true)
            try await otherTenant.create("k")
            #expect(await watchEventually { try await harness.etcd.watcherCount() == 4 })
            let first = try await harness.etcd.put("k", "1")
            let second = try await harness.etcd.put("k", "2")
            let deleted = try await harness.etcd.delete("k")
            #expect(await watchEventually { plain.eventRevisions(0) == [first, second, deleted] })
            #expect(await watchEventually { noPut.eventRevisions(0) == [deleted] })
            #expect(await watchEventually { withPrevious.eventRevisions(0) == [first, second, deleted] })
            let previous = withPrevious.responses.filter { !$0.events.isEmpty }.map {
                $0.events[0].prevKv.value
            }
            #expect(previous == [Data(), Data("1".utf8), Data("2".utf8)])
            #expect(harness.gauges("alice").upstreamWatches == 3)
            #expect(harness.gauges("bob").upstreamWatches == 1)
        }
    }

    @Test func lateJoinerIsServedFromTheRecentEvents() async throws {
        try await WatchHarness.with { harness in
            let early = try await harness.client()
            try await early.create("k")
            #expect(await watchEventually { early.created(0) != nil })
            var revisions: [Int64] = []
            for index in 0..<6 { revisions.append(try await harness.etcd.put("k", "\(index)")) }
            #expect(await watchEventually { early.eventRevisions(0) == revisions })
            let late = try await harness.client()
            try await late.create("k", start: revisions[2])
            #expect(await watchEventually { late.eventRevisions(0) == Array(revisions[2...]) })
            #expect(try await harness.etcd.run { $0.createsReceived } == 1)
            let next = try await harness.etcd.put("k", "more")
            #expect(await watchEventually { late.eventRevisions(0) == Array(revisions[2...]) + [next] })
            #expect(early.eventRevisions(0) == revisions + [next])
        }
    }

    @Test func lateJoinerBeyondTheBufferCatchesUpWithoutGapOrDuplicate() async throws {
        var configuration = WatchCoalescerConfiguration.fast
        configuration.recentEventsMax = 2
        try await WatchHarness.with(configuration) { harness in
            try await harness.etcd.run { $0.historyEventDelay = .milliseconds(2) }
            let early = try await harness.client()
            try await early.create("k")
            #expect(await watchEventually { early.created(0) != nil })
            var revisions: [Int64] = []
            for index in 0..<8 { revisions.append(try await harness.etcd.put("k", "\(index)")) }
            #expect(await watchEventually { early.eventRevisions(0) == revisions })
            let late = try await harness.client()
            try await late.create("k", start: revisions[1])
            // Writes while the catch-up is still replaying history.
            for index in 0..<3 { revisions.append(try await harness.etcd.put("k", "during\(index)")) }
            #expect(await watchEventually { late.eventRevisions(0) == Array(revisions[1...]) })
            // The catch-up watch hands over and goes away.
            #expect(await watchEventually { try await harness.etcd.watcherCount() == 1 })
            #expect(try await harness.etcd.run { $0.createsReceived } == 2)
            #expect(harness.gauges().catchUpWatches == 0)
            var more: [Int64] = []
            for index in 0..<3 { more.append(try await harness.etcd.put("k", "more\(index)")) }
            #expect(await watchEventually { late.eventRevisions(0) == Array(revisions[1...]) + more })
            #expect(await watchEventually { early.eventRevisions(0) == revisions + more })
        }
    }

    @Test func progressRequestIsAnsweredPerClientInSyncWithItsEvents() async throws {
        try await WatchHarness.with { harness in
            let client = try await harness.client()
            try await client.create("k")
            #expect(await watchEventually { client.created(0) != nil })
            let event = try await harness.etcd.put("k", "1")
            for index in 0..<3 { try await harness.etcd.put("elsewhere", "\(index)") }
            let current = try await harness.etcd.revision()
            try await client.requestProgress()
            #expect(await watchEventually { client.responses.contains { $0.watchID == -1 } })
            let answer = try #require(client.responses.first { $0.watchID == -1 })
            #expect(answer.header.revision == current)
            #expect(answer.events.isEmpty && !answer.created && !answer.canceled)
            // The event came before the answer.
            let eventIndex = try #require(
                client.responses.firstIndex { $0.events.first?.kv.modRevision == event })
            let answerIndex = try #require(client.responses.firstIndex { $0.watchID == -1 })
            #expect(eventIndex < answerIndex)
            // Another client of the same broadcast gets nothing it did not ask for.
            let quiet = try await harness.client()
            try await quiet.create("k")
            #expect(await watchEventually { quiet.created(0) != nil })
            try await client.requestProgress()
            #expect(await watchEventually { client.responses.filter { $0.watchID == -1 }.count == 2 })
            #expect(!quiet.responses.contains { $0.watchID == -1 })
        }
    }

    @Test func cancelAnswersAndLastClientLeavingCancelsUpstream() async throws {
        try await WatchHarness.with { harness in
            let first = try await harness.client()
            let second = try await harness.client()
            try await first.create("k")
            try await second.create("k")
            #expect(await watchEventually { first.created(0) != nil && second.created(0) != nil })
            try await first.cancel(0)
            #expect(await watchEventually { first.canceled(0) != nil })
            let revision = try await harness.etcd.put("k", "1")
            #expect(await watchEventually { second.eventRevisions(0) == [revision] })
            #expect(first.eventRevisions(0).isEmpty)
            #expect(try await harness.etcd.watcherCount() == 1)
            try await second.close()
            #expect(await watchEventually { try await harness.etcd.watcherCount() == 0 })
            #expect(await watchEventually { harness.coalescer.gauges()["alice"] == nil })
        }
    }

    @Test func slowClientIsCancelledWhileOthersContinue() async throws {
        try await WatchHarness.with { harness in
            var sessionConfiguration = WatchSessionConfiguration()
            sessionConfiguration.clientBufferedResponsesMax = 5
            let slow = try await harness.client(configuration: sessionConfiguration)
            let fast = try await harness.client(configuration: sessionConfiguration)
            try await slow.create("k")
            try await fast.create("k")
            #expect(await watchEventually { slow.created(0) != nil && fast.created(0) != nil })
            try await slow.setWritable(false)
            var revisions: [Int64] = []
            for index in 0..<20 { revisions.append(try await harness.etcd.put("k", "\(index)")) }
            #expect(await watchEventually { fast.eventRevisions(0) == revisions })
            try await slow.setWritable(true)
            #expect(await watchEventually { slow.canceled(0) != nil })
            let reason = try #require(slow.canceled(0)).cancelReason
            #expect(reason.contains("clientBufferedResponsesMax = 5"))
            #expect(slow.eventRevisions(0).isEmpty)
            // The shared watch goes on for the fast client.
            let next = try await harness.etcd.put("k", "after")
            #expect(await watchEventually { fast.eventRevisions(0) == revisions + [next] })
            #expect(harness.gauges().clientWatches == 1)
        }
    }

    @Test func upstreamLossResumesWithoutGapOrDuplicate() async throws {
        try await WatchHarness.with { harness in
            let clients = [try await harness.client(), try await harness.client()]
            for client in clients { try await client.create("k", rangeEnd: "l") }
            #expect(await watchEventually { clients.allSatisfy { $0.created(0) != nil } })
            var revisions: [Int64] = []
            for index in 0..<4 { revisions.append(try await harness.etcd.put("k\(index)", "a")) }
            #expect(await watchEventually { clients.allSatisfy { $0.eventRevisions(0) == revisions } })
            try await harness.etcd.dropStreams()
            for index in 0..<4 { revisions.append(try await harness.etcd.put("k\(index)", "b")) }
            #expect(await watchEventually { clients.allSatisfy { $0.eventRevisions(0) == revisions } })
            #expect(await watchEventually { try await harness.etcd.watcherCount() == 1 })
            revisions.append(try await harness.etcd.put("k9", "c"))
            #expect(await watchEventually { clients.allSatisfy { $0.eventRevisions(0) == revisions } })
            #expect(clients.allSatisfy { $0.canceled(0) == nil })
        }
    }

    @Test func repeatedUpstreamFailuresCancelWithAReason() async throws {
        var configuration = WatchCoalescerConfiguration.fast
        configuration.resumeAttemptsMax = 3
        try await WatchHarness.with(configuration) { harness in
            let client = try await harness.client()
            try await client.create("k")
            #expect(await watchEventually { client.created(0) != nil })
            try await harness.etcd.dropStreams()
            await harness.etcd.stop()
            #expect(await watchEventually { client.canceled(0) != nil })
            #expect(try #require(client.canceled(0)).cancelReason.contains("could not be resumed"))
            #expect(harness.coalescer.gauges()["alice"] == nil)
        }
    }

    @Test func compactedStartRevisionIsCancelledAsEtcdDoes() async throws {
        var configuration = WatchCoalescerConfiguration.fast
        configuration.recentEventsMax = 100
        try await WatchHarness.with(configuration) { harness in
            var revisions: [Int64] = []
            for index in 0..<6 { revisions.append(try await harness.etcd.put("k", "\(index)")) }
            try await harness.etcd.compact(revisions[3])
            let client = try await harness.client()
            try await client.create("k", start: revisions[1])
            #expect(await watchEventually { client.canceled(0) != nil })
            #expect(client.created(0) != nil)
            #expect(try #require(client.canceled(0)).compactRevision == revisions[3])
            // A start at the compact revision works.
            try await client.create("k", start: revisions[3])
            #expect(await watchEventually { client.eventRevisions(1) == Array(revisions[3...]) })
            // A joiner of that shared watch below the compact revision is refused
            // even though the recent events would reach back.
            let late = try await harness.client()
            try await late.create("k", start: revisions[1])
            #expect(await watchEventually { late.canceled(0)?.compactRevision == revisions[3] })
        }
    }

    @Test func watchIDsFollowEtcd() async throws {
        try await WatchHarness.with { harness in
            let limitCount = NIOLockedValueBox(0)
            let client = try await harness.client(watchesMax: 3, limitCount: limitCount)
            try await client.create("a", watchID: 1)
            try await client.create("b")
            try await client.create("c")
            try await client.create("d", watchID: 1)
            try await client.create("z", rangeEnd: "a")
            try await client.create("e")
            #expect(await watchEventually { client.responses.filter(\.created).count == 6 })
            let created = client.responses.filter(\.created)
            #expect(created.map(\.watchID) == [1, 0, 2, -1, -1, -1])
            #expect(created[3].cancelReason == "mvcc: duplicate watch ID provided on the WatchStream")
            #expect(created[4].cancelReason == "mvcc: watcher range is empty")
            #expect(created[5].canceled && created[5].cancelReason.contains("limits.watches = 3"))
            #expect(limitCount.withLockedValue { $0 } == 1)
            #expect(created[0..<3].allSatisfy { !$0.canceled })
        }
    }

    @Test func periodicProgressNotifyAndFragments() async throws {
        try await WatchHarness.with { harness in
            var sessionConfiguration = WatchSessionConfiguration()
            sessionConfiguration.progressNotifyInterval = .milliseconds(50)
            sessionConfiguration.fragmentBytesMax = 200
            let client = try await harness.client(configuration: sessionConfiguration)
            try await client.create("k", rangeEnd: "l", progressNotify: true, fragment: true)
            try await client.create("x")
            #expect(await watchEventually { client.created(1) != nil })
            try await harness.etcd.put("elsewhere", "1")
            let current = try await harness.etcd.revision()
            #expect(
                await watchEventually {
                    client.responses.contains {
                        $0.watchID == 0 && $0.events.isEmpty && $0.header.revision == current
                    }
                })
            #expect(!client.responses.contains { $0.watchID == 1 && !$0.created })
            // A big multi-event response (a late joiner's replay) is fragmented.
            var revisions: [Int64] = []
            for index in 0..<6 {
                revisions.append(try await harness.etcd.put("k\(index)", String(repeating: "v", count: 80)))
            }
            let late = try await harness.client(configuration: sessionConfiguration)
            try await late.create("k", rangeEnd: "l", start: revisions[0], prevKV: true, fragment: true)
            #expect(await watchEventually { late.eventRevisions(0) == revisions })
            #expect(late.responses.contains { $0.fragment })
        }
    }

    @Test func readCacheSubscriberGetsEventsAndProgressInOrder() async throws {
        try await WatchHarness.with { harness in
            let deliveries = NIOLockedValueBox<[WatchDelivery]>([])
            let id = harness.coalescer.makeSubscriptionID()
            var request = Etcdserverpb_WatchCreateRequest()
            request.key = Data("config/".utf8)
            request.rangeEnd = Data("config0".utf8)
            harness.coalescer.subscribe(id, tenant: "alice", request: request, progressNotifications: true) {
                delivery in deliveries.withLockedValue { $0.append(delivery) }
            }
            #expect(
                await watchEventually {
                    deliveries.withLockedValue {
                        $0.contains { if case .created = $0 { true } else { false } }
                    }
                })
            let revision = try await harness.etcd.put("config/x", "1")
            try await harness.etcd.put("other", "1")
            let current = try await harness.etcd.revision()
            let answer = NIOLockedValueBox<Int64?>(nil)
            harness.coalescer.requestProgress(tenant: "alice", subscriptions: [id]) { revisions, _ in
                answer.withLockedValue { $0 = revisions[id] }
            }
            #expect(await watchEventually { answer.withLockedValue { $0 } == current })
            let seen: [Int64] = deliveries.withLockedValue { all in
                all.compactMap {
                    if case .response(let response) = $0 { response.header.revision } else { nil }
                }
            }
            #expect(seen == [revision, current])
            harness.coalescer.unsubscribe(id)
            #expect(await watchEventually { try await harness.etcd.watcherCount() == 0 })
        }
    }
}
