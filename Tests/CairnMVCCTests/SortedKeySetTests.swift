import CairnCore
import Testing

@testable import CairnMVCC

@Suite struct SortedKeySetTests {
    @Test func staysSortedAcrossChunkSplits() {
        var random = SplitMix64(state: 7)
        var set = SortedKeySet()
        var model = Set<Key>()
        for _ in 0..<3000 {
            let key = Key(Array("k\(random.below(100_000))".utf8))
            if model.insert(key).inserted { set.insert(key) }
        }
        #expect(set.count == model.count)
        #expect(set.all == model.sorted())
        var visited: [Key] = []
        set.forEach(from: "k5") { key in
            visited.append(key)
            return visited.count < 10
        }
        #expect(visited == Array(model.sorted().filter { !($0 < "k5") }.prefix(10)))
        set.removeAll { $0.bytes.last! % 2 == 0 }
        #expect(set.all == model.sorted().filter { $0.bytes.last! % 2 == 1 })
        #expect(set.count == set.all.count)
    }
}
