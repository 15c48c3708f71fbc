import CairnCore
import Testing

@testable import CairnMVCC

/// The worked example of `KeyIndex`'s type comment, step by step.
@Suite struct KeyIndexTests {
    func example() -> KeyIndex {
        var index = KeyIndex()
        index.put(Revision(main: 2))
        index.put(Revision(main: 3))
        index.tombstone(Revision(main: 4))
        index.put(Revision(main: 5))
        index.put(Revision(main: 6))
        return index
    }

    @Test func readsFindTheLiveGeneration() {
        let index = example()
        #expect(index.get(at: 1) == nil)
        #expect(
            index.get(at: 2) == .init(modified: Revision(main: 2), created: Revision(main: 2), version: 1))
        #expect(
            index.get(at: 3) == .init(modified: Revision(main: 3), created: Revision(main: 2), version: 2))
        #expect(index.get(at: 4) == nil)
        #expect(
            index.get(at: 5) == .init(modified: Revision(main: 5), created: Revision(main: 5), version: 1))
        #expect(
            index.get(at: 99) == .init(modified: Revision(main: 6), created: Revision(main: 5), version: 2))
    }

    @Test func compactionKeepsTheNewestReadableRevision() {
        var index = example()
        #expect(index.compact(at: 3) == [Revision(main: 2)])
        #expect(
            index.get(at: 3) == .init(modified: Revision(main: 3), created: Revision(main: 2), version: 2))
        #expect(index.compact(at: 4) == [Revision(main: 3), Revision(main: 4)])
        #expect(index.get(at: 4) == nil)
        #expect(index.allRevisions == [Revision(main: 5), Revision(main: 6)])
        #expect(index.get(at: 6)?.version == 2)
        index.tombstone(Revision(main: 7))
        #expect(index.compact(at: 7) == [Revision(main: 5), Revision(main: 6), Revision(main: 7)])
        #expect(index.isEmpty)
    }

    @Test func compactionBelowEverythingKeepsAll() {
        var index = example()
        #expect(index.compact(at: 1).isEmpty)
        #expect(index.allRevisions.count == 5)
    }
}
