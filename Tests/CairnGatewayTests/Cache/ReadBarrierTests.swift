import Testing

@testable import CairnGateway

/// The shared read barrier: one round trip for the reads waiting at that
/// moment, late arrivals on the next one, bounded waits, and (by simulation)
/// that a served linearizable read always sees every write completed before
/// it arrived.
@Suite struct ReadBarrierTests {
    typealias Action = ReadBarrier.Action
    static let cache = ReadBarrier.CacheID(1)
    static let start = GatewayInstant(nanoseconds: 1_000_000_000)

    static func at(milliseconds: Int64) -> GatewayInstant {
        start.advanced(by: .milliseconds(milliseconds))
    }

    @Test func readsBeforeTheSendShareOneBarrierAndLateArrivalsGetTheNext() {
        var barrier = ReadBarrier()
        var first: [ReadBarrier.ReadID] = []
        var started: [Action] = []
        for _ in 0..<1000 {
            let (id, actions) = barrier.linearizableRead(
                cache: Self.cache, knownRevision: 50, sessionFloor: 0, now: Self.start)
            first.append(id)
            started += actions
        }
        #expect(
            started == [.startBarrier(ReadBarrier.BarrierID(rawValue: 1))], "one upstream request for all")
        barrier.barrierSent(ReadBarrier.BarrierID(rawValue: 1))
        let (late, lateActions) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: 50, sessionFloor: 0, now: Self.at(milliseconds: 1))
        #expect(lateActions.isEmpty, "no second barrier while one is in flight")
        let completed = barrier.barrierCompleted(
            ReadBarrier.BarrierID(rawValue: 1), revision: 45, now: Self.at(milliseconds: 2))
        #expect(completed == first.map { .serve($0) } + [.startBarrier(ReadBarrier.BarrierID(rawValue: 2))])
        #expect(barrier.waiterCount == 1)
        #expect(
            barrier.barrierCompleted(
                ReadBarrier.BarrierID(rawValue: 2), revision: 49, now: Self.at(milliseconds: 3)) == [
                    .serve(late)
                ])
        #expect(barrier.barrierInFlight == nil)
        #expect(barrier.waiterCount == 0)
    }

    @Test func aStaleCacheWaitsAndAsksForProgress() {
        var barrier = ReadBarrier()
        let (id, actions) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: 90, sessionFloor: 0, now: Self.start)
        #expect(actions == [.startBarrier(ReadBarrier.BarrierID(rawValue: 1))])
        barrier.barrierSent(ReadBarrier.BarrierID(rawValue: 1))
        #expect(
            barrier.barrierCompleted(ReadBarrier.BarrierID(rawValue: 1), revision: 100, now: Self.start) == [
                .requestProgress(Self.cache)
            ])
        #expect(
            barrier.cacheAdvanced(ReadBarrier.CacheID(2), to: 500, now: Self.start).isEmpty, "another cache")
        #expect(
            barrier.cacheAdvanced(Self.cache, to: 95, now: Self.at(milliseconds: 5)).isEmpty,
            "progress asked recently")
        #expect(
            barrier.cacheAdvanced(Self.cache, to: 96, now: Self.at(milliseconds: 11)) == [
                .requestProgress(Self.cache)
            ])
        #expect(barrier.cacheAdvanced(Self.cache, to: 100, now: Self.at(milliseconds: 12)) == [.serve(id)])
        #expect(barrier.waiterCount == 0)
    }

    @Test func aStaleCacheForwardsAfterTheBoundedWait() {
        var barrier = ReadBarrier(limits: .init(waitMax: .milliseconds(50)))
        let (id, _) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: 90, sessionFloor: 0, now: Self.start)
        barrier.barrierSent(ReadBarrier.BarrierID(rawValue: 1))
        _ = barrier.barrierCompleted(
            ReadBarrier.BarrierID(rawValue: 1), revision: 100, now: Self.at(milliseconds: 10))
        #expect(barrier.nextDeadline == Self.at(milliseconds: 50))
        #expect(barrier.tick(now: Self.at(milliseconds: 30)) == [.requestProgress(Self.cache)])
        #expect(barrier.tick(now: Self.at(milliseconds: 50)) == [.forward(id, .timedOut)])
        #expect(barrier.nextDeadline == nil)
        #expect(barrier.cacheAdvanced(Self.cache, to: 100, now: Self.at(milliseconds: 51)).isEmpty)
    }

    @Test func aFailedBarrierForwardsItsReadsAndTheNextStillStarts() {
        var barrier = ReadBarrier()
        let (first, _) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: 90, sessionFloor: 0, now: Self.start)
        barrier.barrierSent(ReadBarrier.BarrierID(rawValue: 1))
        let (second, _) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: 90, sessionFloor: 0, now: Self.start)
        #expect(
            barrier.barrierFailed(ReadBarrier.BarrierID(rawValue: 1), now: Self.start)
                == [.forward(first, .barrierFailed), .startBarrier(ReadBarrier.BarrierID(rawValue: 2))])
        #expect(
            barrier.barrierCompleted(ReadBarrier.BarrierID(rawValue: 2), revision: 80, now: Self.start) == [
                .serve(second)
            ])
    }

    @Test func aBarrierPastItsTimeoutFailsAndItsLateAnswerIsIgnored() {
        var barrier = ReadBarrier(limits: .init(waitMax: .seconds(5), barrierTimeout: .milliseconds(200)))
        let (first, _) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: 90, sessionFloor: 0, now: Self.start)
        barrier.barrierSent(ReadBarrier.BarrierID(rawValue: 1))
        let (second, _) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: 90, sessionFloor: 0, now: Self.at(milliseconds: 100))
        #expect(barrier.nextDeadline == Self.at(milliseconds: 200))
        #expect(
            barrier.tick(now: Self.at(milliseconds: 200))
                == [.forward(first, .barrierFailed), .startBarrier(ReadBarrier.BarrierID(rawValue: 2))])
        #expect(
            barrier.barrierCompleted(
                ReadBarrier.BarrierID(rawValue: 1), revision: 10, now: Self.at(milliseconds: 201)
            ).isEmpty)
        #expect(barrier.waiterCount == 1)
        #expect(
            barrier.barrierCompleted(
                ReadBarrier.BarrierID(rawValue: 2), revision: 10, now: Self.at(milliseconds: 202)) == [
                    .serve(second)
                ])
    }

    @Test func readsBeyondTheWaiterBoundAreForwardedAtOnce() {
        var barrier = ReadBarrier(limits: .init(waitersMax: 3))
        for _ in 0..<3 {
            _ = barrier.linearizableRead(
                cache: Self.cache, knownRevision: 90, sessionFloor: 0, now: Self.start)
        }
        let (id, actions) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: 90, sessionFloor: 0, now: Self.start)
        #expect(actions == [.forward(id, .waitersFull)])
        let (stale, staleActions) = barrier.serializableRead(
            cache: Self.cache, knownRevision: 90, sessionFloor: 95, now: Self.start)
        #expect(staleActions == [.forward(stale, .waitersFull)])
        let (fresh, freshActions) = barrier.serializableRead(
            cache: Self.cache, knownRevision: 90, sessionFloor: 90, now: Self.start)
        #expect(freshActions == [.serve(fresh)], "a read that needs no wait is served even at the bound")
        #expect(barrier.waiterCount == 3)
    }

    @Test func anUnusableCacheForwardsItsReads() {
        var barrier = ReadBarrier()
        let (unloaded, unloadedActions) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: nil, sessionFloor: 0, now: Self.start)
        #expect(unloadedActions == [.forward(unloaded, .cacheUnusable)])
        let (waiting, _) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: 5, sessionFloor: 0, now: Self.start)
        let (other, _) = barrier.linearizableRead(
            cache: ReadBarrier.CacheID(2), knownRevision: 5, sessionFloor: 0, now: Self.start)
        #expect(barrier.cacheUnusable(Self.cache) == [.forward(waiting, .cacheUnusable)])
        barrier.barrierSent(ReadBarrier.BarrierID(rawValue: 1))
        #expect(
            barrier.barrierCompleted(ReadBarrier.BarrierID(rawValue: 1), revision: 5, now: Self.start) == [
                .serve(other)
            ])
    }

    @Test func theSessionFloorHoldsBackCachedAnswers() {
        var barrier = ReadBarrier()
        // Serializable: the cache (P = 40) is behind what the session saw (45).
        let (serializable, actions) = barrier.serializableRead(
            cache: Self.cache, knownRevision: 40, sessionFloor: 45, now: Self.start)
        #expect(actions == [.requestProgress(Self.cache)])
        // Linearizable: the barrier says 30, but the session saw 45.
        let (linearizable, _) = barrier.linearizableRead(
            cache: Self.cache, knownRevision: 40, sessionFloor: 45, now: Self.start)
        barrier.barrierSent(ReadBarrier.BarrierID(rawValue: 1))
        #expect(
            barrier.barrierCompleted(ReadBarrier.BarrierID(rawValue: 1), revision: 30, now: Self.start)
                .isEmpty)
        #expect(barrier.cacheAdvanced(Self.cache, to: 44, now: Self.start).isEmpty)
        #expect(
            barrier.cacheAdvanced(Self.cache, to: 45, now: Self.start) == [
                .serve(serializable), .serve(linearizable),
            ])

        var floor = SessionRevisionFloor()
        floor.observe(45)
        floor.observe(30)
        #expect(floor.highestSeen == 45)
        #expect(!floor.admits(44))
        #expect(floor.admits(45))
    }

    /// A seeded simulation of writes, reads, barrier sends, leader read
    /// indexes, completions and cache progress: every served read's cache
    /// revision is at least the upstream revision when the read arrived
    /// (linearizability), every read ends exactly once, and at most one
    /// barrier is ever in flight.
    @Test(arguments: [UInt64(11), 12, 13, 14, 15, 16])
    func servedReadsAreLinearizable(seed: UInt64) {
        var random = CacheTestRandom(seed: seed)
        var barrier = ReadBarrier(limits: .init(waitersMax: 50, waitMax: .milliseconds(40)))
        var now = Self.start
        var upstream: Int64 = 100
        var cacheKnown: Int64 = 100
        var arrivals: [ReadBarrier.ReadID: Int64] = [:]
        var ended: Set<ReadBarrier.ReadID> = []
        var barrierState: (id: ReadBarrier.BarrierID, sent: Bool, readIndex: Int64?)?
        var served = 0
        func perform(_ actions: [Action]) {
            for action in actions {
                switch action {
                case .startBarrier(let id):
                    #expect(barrierState == nil, "two barriers in flight")
                    barrierState = (id, false, nil)
                case .requestProgress: break
                case .serve(let id):
                    #expect(cacheKnown >= arrivals[id]!, "seed \(seed): read \(id) served before its writes")
                    #expect(ended.insert(id).inserted)
                    served += 1
                case .forward(let id, _):
                    #expect(ended.insert(id).inserted)
                }
            }
        }
        for _ in 0..<5000 {
            now = now.advanced(by: .microseconds(Int.random(in: 0...3000, using: &random)))
            switch Int.random(in: 0..<12, using: &random) {
            case 0..<3:
                upstream += 1
            case 3..<6:
                let (id, actions) = barrier.linearizableRead(
                    cache: Self.cache, knownRevision: cacheKnown, sessionFloor: 0, now: now)
                arrivals[id] = upstream
                perform(actions)
            case 6:
                if let state = barrierState, !state.sent {
                    barrier.barrierSent(state.id)
                    barrierState?.sent = true
                }
            case 7:
                if let state = barrierState, state.sent, state.readIndex == nil {
                    barrierState?.readIndex = upstream
                }
            case 8:
                if let state = barrierState, let readIndex = state.readIndex {
                    barrierState = nil
                    if Int.random(in: 0..<8, using: &random) == 0 {
                        perform(barrier.barrierFailed(state.id, now: now))
                    } else {
                        perform(barrier.barrierCompleted(state.id, revision: readIndex, now: now))
                    }
                }
            case 9, 10:
                if cacheKnown < upstream {
                    cacheKnown += Int64.random(in: 1...(upstream - cacheKnown), using: &random)
                    perform(barrier.cacheAdvanced(Self.cache, to: cacheKnown, now: now))
                }
            default:
                // A barrier past its timeout is abandoned (its answer would be ignored).
                let before = barrier.barrierInFlight
                let actions = barrier.tick(now: now)
                if before != nil && barrier.barrierInFlight != before { barrierState = nil }
                perform(actions)
            }
            #expect(barrier.waiterCount <= 50)
        }
        perform(barrier.tick(now: now.advanced(by: .seconds(10))))
        #expect(ended.count == arrivals.count, "every read ended")
        #expect(served > 100)
    }
}
