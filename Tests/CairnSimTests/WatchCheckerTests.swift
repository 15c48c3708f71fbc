import Testing

@testable import CairnSim

/// The watch checker rejects each broken guarantee and accepts a correct stream.
@Suite struct WatchCheckerTests {
    static func put(_ revision: Int64, _ key: String, _ value: String) -> WatchedEvent {
        WatchedEvent(revision: revision, key: Array(key.utf8), kind: .put, value: Array(value.utf8))
    }

    static func delete(_ revision: Int64, _ key: String) -> WatchedEvent {
        WatchedEvent(revision: revision, key: Array(key.utf8), kind: .delete)
    }

    static let history = [
        put(2, "a", "1"), put(3, "b", "1"), put(4, "a", "2"), put(5, "a", "3"), put(5, "ab", "1"),
        delete(6, "a"), put(7, "c", "1"),
    ]

    static let prefixA = WatchChecker.Watch(key: Array("a".utf8), rangeEnd: Array("b".utf8), startRevision: 3)

    func check(_ received: [WatchedEvent], progress: Int64? = nil) -> String? {
        WatchChecker.check(
            watch: Self.prefixA, received: received, progressRevision: progress, history: Self.history)
    }

    @Test func aCorrectStreamPasses() {
        let stream = [Self.put(4, "a", "2"), Self.put(5, "a", "3"), Self.put(5, "ab", "1")]
        #expect(check(stream) == nil)
        #expect(check(stream + [Self.delete(6, "a")], progress: 7) == nil)
        #expect(check([]) == nil)
        let single = WatchChecker.Watch(key: Array("c".utf8), startRevision: 1)
        #expect(
            WatchChecker.check(watch: single, received: [Self.put(7, "c", "1")], history: Self.history) == nil
        )
    }

    @Test func reorderedDuplicatedInventedOrMissingEventsAreRejected() {
        #expect(check([Self.put(5, "a", "3"), Self.put(4, "a", "2")]) != nil)  // order
        #expect(check([Self.put(4, "a", "2"), Self.put(4, "a", "2")]) != nil)  // duplicate
        #expect(check([Self.put(4, "a", "9")]) != nil)  // value never written
        #expect(check([Self.put(5, "a", "3")]) != nil)  // gap: revision 4 missing
        #expect(check([Self.put(4, "a", "2"), Self.put(5, "a", "3")]) != nil)  // half a revision
        #expect(check([Self.put(4, "a", "2")], progress: 6) != nil)  // progress claims 5 and 6 arrived
        #expect(check([Self.put(3, "b", "1")]) != nil)  // outside the range
    }
}
