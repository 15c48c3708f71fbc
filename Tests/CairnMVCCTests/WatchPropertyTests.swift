import CairnCore
import CairnMVCC
import Testing

/// Random writes, watchers, drains and steps with tiny buffers: every watcher
/// must receive exactly the matching history from its start revision, in
/// order, with no revision split across responses.
@Suite struct WatchPropertyTests {
    struct Subscription {
        var stream: WatchStreamID
        var id: WatchID
        var request: WatchCreateRequest
        var start: Int64
        var received: [WatchResponse] = []
    }

    static let keys: [Key] = ["a", "b", "c", "d", "e"]

    @Test(arguments: [11, 12, 13] as [UInt64])
    func watchersSeeExactlyTheirHistory(seed: UInt64) throws {
        var random = SplitMix64(state: seed)
        let limits = WatchHub.Limits(
            eventsBufferedMax: 4, catchUpEventsMax: 3, catchUpRevisionsMax: 5, catchUpWatchersMax: 2)
        var bench = WatchBench(limits: limits)
        var subscriptions: [Subscription] = []
        var statesSeen: [WatchHub.WatcherState: Int] = [:]
        var compactions: Set<Int64> = []
        for step in 0..<1500 {
            for subscription in subscriptions {
                if let state = bench.hub.state(of: subscription.id, stream: subscription.stream) {
                    statesSeen[state, default: 0] += 1
                }
            }
            switch random.below(10) {
            case 0..<4:
                try bench.put(random.pick(Self.keys).description, "v\(step)")
            case 4:
                let start = random.pick(Self.keys)
                try bench.delete(
                    start.description, random.chance(50) ? "" : random.pick(Self.keys).description)
            case 5:
                var writable = Self.keys.shuffledDeterministically(&random)
                let operations: [RequestOperation] = (0..<random.below(4)).compactMap { _ in
                    writable.popLast().map { key in
                        random.chance(70) ? put(key.description, "t\(step)") : delete(key.description)
                    }
                }
                bench.record(
                    try bench.store.txn(TxnRequest(success: operations), isLeaseGranted: anyLease).events)
            case 6 where subscriptions.count < 12:
                subscriptions.append(subscribe(&bench, &random))
            case 6 where random.chance(10):
                try compact(&bench, &random, &compactions)
            case 7, 8:
                drain(&bench, &subscriptions, &random)
            default:
                bench.hub.step(store: bench.store)
            }
        }
        for _ in 0..<2000 {
            bench.hub.step(store: bench.store)
            drain(&bench, &subscriptions, &random, all: true)
        }
        for subscription in subscriptions {
            check(subscription, history: bench.events, compactions: compactions)
        }
        #expect(compactions.count >= 3, "the run must compact")
        #expect(
            subscriptions.contains { $0.received.last?.canceled == true }, "some watcher must be compacted")
        #expect(bench.store.currentRevision > 500)
        #expect(statesSeen[.blocked, default: 0] > 50, "slow consumers must get blocked: \(statesSeen)")
        #expect(statesSeen[.catchingUp, default: 0] > 50, "watchers must catch up: \(statesSeen)")
    }

    func subscribe(_ bench: inout WatchBench, _ random: inout SplitMix64) -> Subscription {
        let stream = WatchStreamID(UInt64(random.below(4)))
        let key = random.pick(Self.keys)
        var request = WatchCreateRequest(
            key: key, rangeEnd: random.chance(50) ? Key([]) : Key([0]),
            startRevision: random.chance(30) ? 0 : Int64(random.below(Int(bench.store.currentRevision) + 2)))
        request.noPut = random.chance(15)
        request.noDelete = !request.noPut && random.chance(15)
        request.previousKeyValue = random.chance(50)
        let id = try! bench.hub.watch(request, stream: stream).get()
        let start = request.startRevision > 0 ? request.startRevision : bench.store.currentRevision + 1
        return Subscription(stream: stream, id: id, request: request, start: start)
    }

    func drain(
        _ bench: inout WatchBench, _ subscriptions: inout [Subscription], _ random: inout SplitMix64,
        all: Bool = false
    ) {
        for stream in 0..<4 {
            let responses = bench.hub.drain(
                stream: WatchStreamID(UInt64(stream)), responsesMax: all ? .max : random.below(3))
            for response in responses {
                guard
                    let index = subscriptions.firstIndex(where: {
                        $0.stream.rawValue == stream && $0.id == response.watchID
                    })
                else {
                    Issue.record("response for unknown watcher \(response.watchID)")
                    continue
                }
                subscriptions[index].received.append(response)
            }
        }
    }

    /// Compacts at a random revision whose events are all puts: etcd drops
    /// deletes made at the compact revision from history, which this oracle
    /// does not model (a unit test covers it).
    func compact(_ bench: inout WatchBench, _ random: inout SplitMix64, _ compactions: inout Set<Int64>)
        throws
    {
        let oldest = max(bench.store.compactedRevision + 1, 2)
        guard oldest <= bench.store.currentRevision else { return }
        let revision = oldest + Int64(random.below(Int(bench.store.currentRevision - oldest) + 1))
        guard !bench.events.contains(where: { $0.revision == revision && $0.kind == .delete }) else { return }
        try bench.store.compact(revision)
        compactions.insert(revision)
        bench.hub.step(store: bench.store)
    }

    func check(_ subscription: Subscription, history: [Event], compactions: Set<Int64>) {
        let range = subscription.request.range
        let expected = history.filter { event in
            event.revision >= subscription.start && range.contains(event.keyValue.key)
                && !(subscription.request.noPut && event.kind == .put)
                && !(subscription.request.noDelete && event.kind == .delete)
        }.map { event in
            var event = event
            if !subscription.request.previousKeyValue { event.previous = nil }
            return event
        }
        // Read from history after compaction at its own revision, an event
        // has no previous version (etcd reads it at revision - 1): ignore it.
        let received = subscription.received.flatMap(\.events).map { event in
            var event = event
            if compactions.contains(event.revision) { event.previous = nil }
            return event
        }
        let comparable = expected.map { event in
            var event = event
            if compactions.contains(event.revision) { event.previous = nil }
            return event
        }
        let context = "watcher \(subscription.id) on \(subscription.stream) from \(subscription.start)"
        if let last = subscription.received.last, last.canceled {
            // Compacted: everything up to the cancel, then nothing.
            #expect(last.compactRevision != 0, "\(context)")
            #expect(Array(comparable.prefix(received.count)) == received, "\(context)")
        } else {
            #expect(received == comparable, "\(context)")
        }
        #expect(subscription.received.first?.created == true)
        var lastRevision: Int64 = 0
        for response in subscription.received where !response.events.isEmpty {
            #expect(response.events[0].revision > lastRevision, "a revision was split across responses")
            lastRevision = response.events.last!.revision
        }
    }
}
