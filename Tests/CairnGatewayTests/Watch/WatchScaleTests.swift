import CairnAPI
import Testing

@testable import CairnGateway

/// Issue 7's coalescing goal at full size: 10,000 client watches of one key
/// use one upstream watch, and every one of them gets every event in order.
@Suite(.serialized)
struct WatchScaleTests {
    @Test func tenThousandClientWatchesOfOneKeyUseOneUpstreamWatch() async throws {
        let harness = try await WatchHarness.start()
        let sessions = 200
        let watchesPerSession = 50
        var clients: [WatchTestClient] = []
        for _ in 0..<sessions {
            let client = try await harness.client()
            for _ in 0..<watchesPerSession { try await client.create("hot") }
            clients.append(client)
        }
        let all = clients
        #expect(
            await watchEventually(timeout: .seconds(60)) {
                all.allSatisfy { $0.responses.count == watchesPerSession }
            })
        #expect(try await harness.etcd.watcherCount() == 1)
        #expect(harness.gauges().upstreamWatches == 1)
        #expect(harness.gauges().clientWatches == sessions * watchesPerSession)
        let puts = 20
        let clock = ContinuousClock()
        let started = clock.now
        var revisions: [Int64] = []
        for index in 0..<puts { revisions.append(try await harness.etcd.put("hot", "\(index)")) }
        let expected = revisions
        #expect(
            await watchEventually(timeout: .seconds(120)) {
                all.allSatisfy { $0.responses.count == watchesPerSession * (1 + puts) }
            })
        let elapsed = clock.now - started
        print("scale: \(sessions * watchesPerSession) watches × \(puts) events delivered in \(elapsed)")
        for client in clients {
            for watchID in 0..<Int64(watchesPerSession) {
                #expect(client.eventRevisions(watchID) == expected)
            }
        }
        await harness.stop()
    }
}
