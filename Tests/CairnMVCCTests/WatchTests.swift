import CairnCore
import CairnMVCC
import Testing

/// A store and a hub driven together, as the member's apply loop drives them.
struct WatchBench {
    var store = MVCCStore()
    var hub: WatchHub
    var events: [Event] = []

    init(limits: WatchHub.Limits = WatchHub.Limits()) {
        hub = WatchHub(revision: 1, limits: limits)
    }

    mutating func record(_ produced: [Event]) {
        guard let revision = produced.first?.revision else { return }
        events += produced
        hub.applied(events: produced, revision: revision)
        hub.step(store: store)
    }

    mutating func put(_ key: String, _ value: String) throws {
        record(try store.put(PutRequest(key: Key(key), value: bytes(value)), isLeaseGranted: anyLease).events)
    }

    mutating func delete(_ key: String, _ rangeEnd: String = "") throws {
        record(try store.deleteRange(DeleteRangeRequest(key: Key(key), rangeEnd: Key(rangeEnd))).events)
    }

    mutating func watch(
        _ key: String, _ rangeEnd: String = "", start: Int64 = 0, stream: UInt64 = 1,
        configure: (inout WatchCreateRequest) -> Void = { _ in }
    ) -> WatchID {
        var request = WatchCreateRequest(key: Key(key), rangeEnd: Key(rangeEnd), startRevision: start)
        configure(&request)
        let id = try! hub.watch(request, stream: WatchStreamID(stream)).get()
        hub.step(store: store)
        return id
    }

    mutating func drain(_ stream: UInt64 = 1, max: Int = .max) -> [WatchResponse] {
        hub.drain(stream: WatchStreamID(stream), responsesMax: max)
    }
}

func eventKeys(_ responses: [WatchResponse]) -> [String] {
    responses.flatMap(\.events).map { "\($0.kind == .put ? "put" : "del") \($0.keyValue.key)@\($0.revision)" }
}

@Suite struct WatchTests {
    @Test func liveWatcherGetsCreatedThenEvents() throws {
        var bench = WatchBench()
        try bench.put("a", "0")  // 2
        let id = bench.watch("a", KeyRange.prefixEnd(of: "a").description)
        try bench.put("ab", "1")  // 3
        try bench.put("b", "1")  // 4
        try bench.delete("ab")  // 5
        let responses = bench.drain()
        #expect(responses.first == WatchResponse(watchID: id, revision: 2, created: true))
        #expect(eventKeys(Array(responses.dropFirst())) == ["put ab@3", "del ab@5"])
        #expect(responses.dropFirst().map(\.revision) == [3, 5])
        #expect(
            responses.dropFirst().flatMap(\.events).allSatisfy { $0.previous == nil },
            "no prev_kv unless asked")
    }

    @Test func filtersAndPreviousKeyValues() throws {
        var bench = WatchBench()
        try bench.put("k", "1")
        _ = bench.watch("k") {
            $0.noPut = true
            $0.previousKeyValue = true
        }
        _ = bench.watch("k", stream: 2) { $0.noDelete = true }
        try bench.put("k", "2")
        try bench.delete("k")
        let noPut = bench.drain().dropFirst()
        #expect(eventKeys(Array(noPut)) == ["del k@4"])
        #expect(noPut.first?.events.first?.previous?.value == bytes("2"))
        #expect(eventKeys(Array(bench.drain(2).dropFirst())) == ["put k@3"])
    }

    @Test func watcherFromThePastGetsHistoryThenLiveEventsInOrder() throws {
        var bench = WatchBench(limits: .init(catchUpEventsMax: 2))
        for index in 0..<6 { try bench.put("k\(index)", "v") }  // 2...7
        let id = bench.watch("k", "l", start: 3)
        #expect(bench.hub.state(of: id, stream: WatchStreamID(1)) == .catchingUp)
        #expect(bench.hub.progressRevision(of: id, stream: WatchStreamID(1)) == 4)
        for _ in 0..<3 { bench.hub.step(store: bench.store) }
        #expect(bench.hub.state(of: id, stream: WatchStreamID(1)) == .synced)
        try bench.put("k9", "v")  // 8
        let responses = bench.drain()
        #expect(eventKeys(responses) == (3...8).map { "put k\($0 == 8 ? 9 : $0 - 2)@\($0)" })
        #expect(
            responses.filter { !$0.events.isEmpty }.allSatisfy { $0.events.count <= 2 }, "bounded batches")
    }

    @Test func compactedStartIsCanceledWithTheCompactRevision() throws {
        var bench = WatchBench()
        for _ in 0..<4 { try bench.put("k", "v") }  // 2...5
        try bench.store.compact(4)
        let id = bench.watch("k", start: 3)
        let responses = bench.drain()
        #expect(responses.count == 2)
        #expect(responses[0].created)
        #expect(responses[1] == WatchResponse(watchID: id, revision: 5, canceled: true, compactRevision: 4))
        #expect(bench.hub.watcherCount == 0)
        // Starting exactly at the compacted revision is allowed.
        _ = bench.watch("k", start: 4, stream: 2)
        #expect(eventKeys(bench.drain(2)) == ["put k@4", "put k@5"])
    }

    @Test func futureStartWaitsForItsRevision() throws {
        var bench = WatchBench()
        _ = bench.watch("k", start: 4)
        try bench.put("k", "1")  // 2
        try bench.put("k", "2")  // 3
        try bench.put("k", "3")  // 4
        #expect(eventKeys(bench.drain()) == ["put k@4"])
    }

    @Test func slowWatcherIsBlockedThenRefedWithoutLossWhileOthersFlow() throws {
        var bench = WatchBench(limits: .init(eventsBufferedMax: 3, catchUpEventsMax: 2))
        let slow = bench.watch("k", "l")
        _ = bench.watch("k", "l", stream: 2)
        var fast: [WatchResponse] = bench.drain(2)
        _ = bench.drain(1)  // the created response
        for index in 0..<10 {
            try bench.put("k\(index % 3)", "\(index)")  // 2...11
            fast += bench.drain(2)
        }
        #expect(bench.hub.state(of: slow, stream: WatchStreamID(1)) == .blocked)
        #expect(bench.hub.pendingResponses(stream: WatchStreamID(1)) == 3)
        #expect(eventKeys(fast).count == 10, "the fast stream never waits for the slow one")
        var slowResponses: [WatchResponse] = []
        for _ in 0..<10 {
            slowResponses += bench.drain(1, max: 1)
            bench.hub.step(store: bench.store)
        }
        try bench.put("k0", "last")  // 12
        slowResponses += bench.drain(1)
        let expected = (2...11).map { "put k\(($0 - 2) % 3)@\($0)" } + ["put k0@12"]
        #expect(eventKeys(slowResponses) == expected)
        #expect(bench.hub.state(of: slow, stream: WatchStreamID(1)) == .synced)
    }

    @Test func blockedWatcherOvertakenByCompactionIsCanceledNotSilentlyDropped() throws {
        var bench = WatchBench(limits: .init(eventsBufferedMax: 1))
        let id = bench.watch("k")
        _ = bench.drain()
        for index in 0..<4 { try bench.put("k", "\(index)") }  // 2...5
        #expect(bench.hub.state(of: id, stream: WatchStreamID(1)) == .blocked)
        try bench.store.compact(5)
        bench.hub.step(store: bench.store)
        let responses = bench.drain()
        #expect(eventKeys(responses) == ["put k@2"])
        #expect(responses.last?.canceled == true)
        #expect(responses.last?.compactRevision == 5)
    }

    @Test func progressIsSentOnlyWhenTheStreamIsSynced() throws {
        var bench = WatchBench(limits: .init(catchUpEventsMax: 1, catchUpRevisionsMax: 1))
        for _ in 0..<3 { try bench.put("k", "v") }  // 2...4
        _ = bench.watch("other")
        let queued = bench.hub.requestProgress(stream: WatchStreamID(1))
        #expect(queued)
        #expect(bench.drain().last == WatchResponse(watchID: .streamWide, revision: 4))
        let id = bench.watch("k", start: 2)
        let deferred = !bench.hub.requestProgress(stream: WatchStreamID(1))
        #expect(deferred, "one watcher is still catching up")
        #expect(bench.hub.progressRevision(of: id, stream: WatchStreamID(1)) == 2)
        bench.hub.step(store: bench.store)
        bench.hub.step(store: bench.store)
        let responses = bench.drain()
        #expect(eventKeys(responses) == ["put k@2", "put k@3", "put k@4"])
        #expect(
            responses.last == WatchResponse(watchID: .streamWide, revision: 4), "progress follows the events")
    }

    @Test func periodicProgressGoesToIdleSyncedWatchersThatAskedForIt() throws {
        var bench = WatchBench()
        let asked = bench.watch("a") { $0.progressNotify = true }
        _ = bench.watch("b")
        let busy = bench.watch("c") { $0.progressNotify = true }
        _ = bench.drain()
        try bench.put("c", "1")  // 2
        _ = bench.drain()
        bench.hub.progressTick()
        #expect(bench.drain() == [WatchResponse(watchID: asked, revision: 2)])
        bench.hub.progressTick()
        let second = bench.drain()
        #expect(Set(second.map(\.watchID)) == [asked, busy])
    }

    @Test func createErrorsAndIdentifiers() throws {
        var bench = WatchBench()
        let stream = WatchStreamID(1)
        #expect(
            try bench.hub.watch(WatchCreateRequest(key: "a", watchID: WatchID(1)), stream: stream).get()
                == WatchID(1))
        #expect(try bench.hub.watch(WatchCreateRequest(key: "a"), stream: stream).get() == WatchID(0))
        #expect(try bench.hub.watch(WatchCreateRequest(key: "a"), stream: stream).get() == WatchID(2))
        let duplicate = bench.hub.watch(WatchCreateRequest(key: "a", watchID: WatchID(2)), stream: stream)
        #expect(duplicate == .failure(.duplicateID))
        let empty = bench.hub.watch(WatchCreateRequest(key: "b", rangeEnd: "a"), stream: stream)
        #expect(empty == .failure(.emptyRange))
        let failures = bench.drain().filter(\.canceled)
        #expect(
            failures.map(\.cancelReason) == [
                "mvcc: duplicate watch ID provided on the WatchStream", "mvcc: watcher range is empty",
            ])
        #expect(failures.allSatisfy { $0.created && $0.watchID == .streamWide })
        // Another stream numbers its watchers from zero again.
        #expect(
            try bench.hub.watch(WatchCreateRequest(key: "a"), stream: WatchStreamID(2)).get() == WatchID(0))
        // An empty key watches from "\0".
        _ = try bench.hub.watch(
            WatchCreateRequest(key: Key([]), rangeEnd: Key([0])), stream: WatchStreamID(3)
        ).get()
        try bench.put("zz", "1")
        #expect(eventKeys(bench.drain(3)) == ["put zz@2"])
    }

    @Test func cancelDropsPendingEventsAndConfirms() throws {
        var bench = WatchBench()
        let id = bench.watch("k")
        try bench.put("k", "1")
        let canceled = bench.hub.cancel(id, stream: WatchStreamID(1))
        let again = bench.hub.cancel(id, stream: WatchStreamID(1))
        #expect(canceled && !again)
        #expect(bench.drain() == [WatchResponse(watchID: id, revision: 2, canceled: true)])
        try bench.put("k", "2")
        #expect(bench.drain().isEmpty)
    }

    @Test func fragmentsSplitLargeResponsesButKeepAllEvents() throws {
        var bench = WatchBench()
        _ = bench.watch("k", "l") { $0.fragment = true }
        _ = bench.drain()
        let big = String(repeating: "x", count: 100)
        let txn = TxnRequest(success: (0..<5).map { put("k\($0)", big) })
        bench.record(try bench.store.txn(txn, isLeaseGranted: anyLease).events)
        let fragments = bench.hub.drain(stream: WatchStreamID(1), fragmentBytesMax: 350)
        #expect(fragments.count == 3)
        #expect(fragments.map(\.fragment) == [true, true, false])
        #expect(fragments.flatMap(\.events).count == 5)
        #expect(fragments.allSatisfy { $0.revision == 2 })
    }
}

@Suite struct WatchRestoreTests {
    @Test func restoredStoreFeedsSyncedWatchersFromItsHistory() throws {
        var bench = WatchBench()
        try bench.put("k", "1")  // 2
        let id = bench.watch("k")
        _ = bench.drain()
        // A snapshot taken elsewhere: the same history plus two more writes.
        var snapshot = bench.store
        _ = try snapshot.put(PutRequest(key: "k", value: bytes("2")), isLeaseGranted: anyLease)  // 3
        _ = try snapshot.put(PutRequest(key: "k", value: bytes("3")), isLeaseGranted: anyLease)  // 4
        bench.store = snapshot
        bench.hub.restored(store: bench.store)
        #expect(bench.hub.state(of: id, stream: WatchStreamID(1)) == .catchingUp)
        bench.hub.step(store: bench.store)
        #expect(eventKeys(bench.drain()) == ["put k@3", "put k@4"])
        #expect(bench.hub.state(of: id, stream: WatchStreamID(1)) == .synced)
        // A snapshot compacted past the watcher cancels it.
        var compacted = bench.store
        _ = try compacted.put(PutRequest(key: "k", value: bytes("4")), isLeaseGranted: anyLease)  // 5
        _ = try compacted.put(PutRequest(key: "k", value: bytes("5")), isLeaseGranted: anyLease)  // 6
        try compacted.compact(6)
        bench.store = compacted
        bench.hub.restored(store: bench.store)
        bench.hub.step(store: bench.store)
        let responses = bench.drain()
        #expect(responses.last?.canceled == true)
        #expect(responses.last?.compactRevision == 6)
    }
}

@Suite struct WatchFairnessTests {
    @Test func blockedWatchersDoNotUseUpCatchUpSlots() throws {
        var bench = WatchBench(limits: .init(eventsBufferedMax: 2, catchUpWatchersMax: 1))
        for index in 0..<4 { try bench.put("k", "\(index)") }  // 2...5
        let first = bench.watch("k", start: 2, stream: 1)
        #expect(bench.hub.state(of: first, stream: WatchStreamID(1)) == .catchingUp)
        bench.hub.step(store: bench.store)  // fills the first watcher's buffer
        let second = bench.watch("k", start: 2, stream: 2)
        for _ in 0..<2 {
            bench.hub.step(store: bench.store)
            _ = bench.drain(2)
        }
        #expect(bench.hub.state(of: first, stream: WatchStreamID(1)) == .blocked)
        #expect(bench.hub.state(of: second, stream: WatchStreamID(2)) == .synced)
        #expect(eventKeys(bench.drain(1)) == ["put k@2", "put k@3"])
    }
}

@Suite struct WatchEdgeTests {
    @Test func negativeStartReplaysHistoryOrIsCompactedAsInEtcd() throws {
        var bench = WatchBench()
        try bench.put("k", "1")  // 2
        _ = bench.watch("k", start: -1)
        #expect(eventKeys(bench.drain()) == ["put k@2"])
        try bench.store.compact(2)
        _ = bench.watch("k", start: -1, stream: 2)
        let canceled = bench.drain(2).last
        #expect(canceled?.canceled == true)
        #expect(canceled?.compactRevision == 2)
    }

    @Test func hugeLimitDoesNotOverflow() throws {
        var store = MVCCStore()
        try store.put("a", "1")
        let response = try store.range(RangeRequest(key: "a", rangeEnd: "z", limit: .max))
        #expect(keys(response) == ["a"])
        #expect(!response.more)
    }
}
