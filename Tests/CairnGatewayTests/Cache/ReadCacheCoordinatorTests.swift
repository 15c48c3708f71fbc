import CairnAPI
import Foundation
import Testing

@testable import CairnGateway

/// The coordinator with recorded effects: barrier sharing across one loop
/// turn, serving from the right cache, progress requests, reloads and timers.
@Suite struct ReadCacheCoordinatorTests {
    /// Records the effects and lets the test run deferred work and answer barriers.
    final class Harness {
        var now = GatewayInstant(nanoseconds: 0)
        var deferred: [() -> Void] = []
        var barrierCompletions: [(Result<Int64, any Error>) -> Void] = []
        var progressRequests: [ReadBarrier.CacheID] = []
        var scheduledTicks: [GatewayInstant] = []
        var reloads: [ReadBarrier.CacheID] = []
        var outcomes: [Int: ReadCacheCoordinator.Outcome] = [:]
        var coordinator: ReadCacheCoordinator!

        init(limits: ReadBarrier.Limits = .init()) {
            coordinator = ReadCacheCoordinator(
                limits: limits,
                effects: .init(
                    now: { [unowned self] in now },
                    executeSoon: { [unowned self] in deferred.append($0) },
                    sendBarrier: { [unowned self] in barrierCompletions.append($0) },
                    requestProgress: { [unowned self] in progressRequests.append($0) },
                    scheduleTick: { [unowned self] in scheduledTicks.append($0) },
                    reload: { [unowned self] in reloads.append($0) }))
        }

        func runDeferred() {
            let work = deferred
            deferred = []
            for item in work { item() }
        }

        func read(
            _ number: Int, key: String, rangeEnd: String = "", linearizable: Bool = true, floor: Int64 = 0
        ) {
            var request = Etcdserverpb_RangeRequest()
            request.key = Data(key.utf8)
            request.rangeEnd = Data(rangeEnd.utf8)
            var session = SessionRevisionFloor()
            session.observe(floor)
            coordinator.read(request, session: session, linearizable: linearizable) {
                [unowned self] outcome in
                #expect(outcomes[number] == nil, "completed twice")
                outcomes[number] = outcome
            }
        }

        func answeredKeys(_ number: Int) -> [String]? {
            guard case .answered(let response) = outcomes[number] else { return nil }
            return response.kvs.map { String(decoding: $0.key, as: UTF8.self) }
        }

        func answeredRevision(_ number: Int) -> Int64? {
            guard case .answered(let response) = outcomes[number] else { return nil }
            return response.header.revision
        }

        func isForwarded(_ number: Int) -> Bool {
            if case .forward = outcomes[number] { return true }
            return false
        }
    }

    static let alpha = ReadBarrier.CacheID(1)
    static let beta = ReadBarrier.CacheID(2)

    static func makeLoaded(_ harness: Harness, revision: Int64 = 10) throws {
        for (id, prefix) in [(alpha, "a/"), (beta, "b/")] {
            harness.coordinator.addCache(id, PrefixCache(prefix: Data(prefix.utf8)))
            var response = Etcdserverpb_RangeResponse()
            response.header.revision = revision
            response.kvs = [PrefixCacheLifecycleTests.keyValue(prefix + "k", "v", revision: 3)]
            #expect(try harness.coordinator.loaded(id, response: response) == revision)
        }
    }

    @Test func readsOfOneLoopTurnShareOneBarrier() throws {
        let harness = Harness()
        try Self.makeLoaded(harness)
        harness.read(1, key: "a/k")
        harness.read(2, key: "b/", rangeEnd: "b0")
        harness.runDeferred()
        #expect(harness.barrierCompletions.count == 1)
        harness.read(3, key: "a/k")
        harness.runDeferred()
        #expect(harness.barrierCompletions.count == 1, "the late read waits for the next barrier")
        harness.barrierCompletions[0](.success(9))
        #expect(harness.answeredKeys(1) == ["a/k"])
        #expect(harness.answeredKeys(2) == ["b/k"])
        #expect(harness.answeredRevision(2) == 10)
        #expect(harness.outcomes[3] == nil)
        harness.runDeferred()
        #expect(harness.barrierCompletions.count == 2)
        harness.barrierCompletions[1](.success(10))
        #expect(harness.answeredKeys(3) == ["a/k"])
    }

    @Test func theBarrierRequestIsALinearizableCount() {
        let request = ReadCacheCoordinator.barrierRequest(key: Data("gateway/barrier".utf8))
        #expect(request.countOnly && !request.serializable && request.revision == 0)
        #expect(request.key == Data("gateway/barrier".utf8) && request.rangeEnd.isEmpty)
    }

    @Test func serializableReadsOfAFreshCacheAreAnsweredAtOnce() throws {
        let harness = Harness()
        try Self.makeLoaded(harness)
        harness.read(1, key: "a/k", linearizable: false)
        #expect(harness.answeredKeys(1) == ["a/k"])
        harness.read(2, key: "c/k", linearizable: false)
        #expect(harness.isForwarded(2), "no cache holds the range")
        harness.read(3, key: "a/", rangeEnd: "b/", linearizable: false)
        #expect(harness.isForwarded(3), "the range leaves the cache's prefix")
        #expect(harness.barrierCompletions.isEmpty && harness.deferred.isEmpty)
    }

    @Test func aStaleCacheIsServedOnceProgressArrives() throws {
        let harness = Harness()
        try Self.makeLoaded(harness)
        harness.read(1, key: "a/k")
        harness.runDeferred()
        harness.barrierCompletions[0](.success(15))
        #expect(harness.progressRequests == [Self.alpha])
        #expect(harness.outcomes[1] == nil)
        harness.coordinator.apply(CacheFixture.progress(15), to: Self.alpha)
        #expect(harness.answeredRevision(1) == 15)
    }

    @Test func aProgressAnswerFromTheCoalescerServesWaiters() throws {
        let harness = Harness()
        try Self.makeLoaded(harness)
        harness.read(1, key: "b/k")
        harness.runDeferred()
        harness.barrierCompletions[0](.success(15))
        #expect(harness.progressRequests == [Self.beta])
        harness.coordinator.progressConfirmed(Self.beta, revision: 14)
        #expect(harness.outcomes[1] == nil)
        harness.coordinator.progressConfirmed(Self.beta, revision: 16)
        #expect(harness.answeredRevision(1) == 16)
        harness.coordinator.feedInterrupted(Self.beta, reason: .compacted(compactRevision: 12))
        #expect(harness.coordinator.caches[Self.beta]?.state == .broken(.compacted(compactRevision: 12)))
        #expect(harness.reloads == [Self.beta])
    }

    @Test func aBrokenCacheForwardsItsWaitersAndReloads() throws {
        let harness = Harness()
        try Self.makeLoaded(harness)
        harness.read(1, key: "b/k")
        harness.runDeferred()
        harness.barrierCompletions[0](.success(15))
        var compacted = Etcdserverpb_WatchResponse()
        compacted.canceled = true
        compacted.compactRevision = 12
        harness.coordinator.apply(compacted, to: Self.beta)
        #expect(harness.isForwarded(1))
        #expect(harness.reloads == [Self.beta])
        harness.read(2, key: "b/k", linearizable: false)
        #expect(harness.isForwarded(2))
    }

    @Test func aSessionAheadOfTheCacheWaitsThenTimesOut() throws {
        let harness = Harness(limits: .init(waitMax: .milliseconds(30)))
        try Self.makeLoaded(harness)
        harness.read(1, key: "a/k", linearizable: false, floor: 12)
        #expect(harness.outcomes[1] == nil)
        #expect(harness.progressRequests == [Self.alpha])
        #expect(harness.scheduledTicks == [GatewayInstant(nanoseconds: 30_000_000)])
        harness.now = GatewayInstant(nanoseconds: 30_000_000)
        harness.coordinator.tick()
        #expect(harness.isForwarded(1))
    }

    /// A batch of reads admitted as one waits for a barrier sent after its
    /// admission, and then for its cache to reach the barrier and the
    /// batch's floor; it gets the cache itself, and a broken cache gets nil.
    @Test func aGroupWaitsForItsOwnBarrierAndGetsTheCache() throws {
        let harness = Harness()
        try Self.makeLoaded(harness)
        harness.read(1, key: "a/k")
        harness.runDeferred()
        var caches: [PrefixCache?] = []
        var session = SessionRevisionFloor()
        session.observe(12)
        harness.coordinator.readGroup(cache: Self.alpha, session: session, linearizable: true) {
            caches.append($0)
        }
        harness.runDeferred()
        harness.barrierCompletions[0](.success(11))
        #expect(caches.isEmpty, "the group arrived after the first barrier was sent")
        harness.runDeferred()
        #expect(harness.barrierCompletions.count == 2)
        harness.barrierCompletions[1](.success(11))
        #expect(caches.isEmpty, "the cache (10) is below the group's floor (12)")
        harness.coordinator.apply(CacheFixture.progress(12), to: Self.alpha)
        #expect(caches.count == 1)
        let cache = try #require(caches.first ?? nil)
        #expect(cache.knownRevision == 12)
        var request = Etcdserverpb_RangeRequest()
        request.key = Data("a/k".utf8)
        #expect(cache.answer(request)?.kvs.map(\.value) == [Data("v".utf8)])

        harness.coordinator.readGroup(cache: Self.beta, session: SessionRevisionFloor(), linearizable: true) {
            caches.append($0)
        }
        harness.runDeferred()
        harness.coordinator.feedInterrupted(Self.beta)
        #expect(caches.count == 2 && caches[1] == nil, "a broken cache forwards the group")
        harness.coordinator.readGroup(cache: ReadBarrier.CacheID(9), session: session, linearizable: true) {
            caches.append($0)
        }
        #expect(caches.count == 3 && caches[2] == nil, "an unknown cache forwards at once")
    }
}
