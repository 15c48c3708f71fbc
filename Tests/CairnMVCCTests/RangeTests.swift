import CairnCore
import CairnMVCC
import Testing

@Suite struct RangeTests {
    /// a@2 b@3 c@4 d@5, then b again @6 (values chosen so value order differs
    /// from key order).
    func fixture() throws -> MVCCStore {
        var store = MVCCStore()
        try store.put("a", "3")
        try store.put("b", "1")
        try store.put("c", "4")
        try store.put("d", "2")
        try store.put("b", "5")
        return store
    }

    func request(
        _ order: SortOrder = .none, _ target: SortTarget = .key, limit: Int64 = 0
    ) -> RangeRequest {
        RangeRequest(key: "a", rangeEnd: "z", limit: limit, sortOrder: order, sortTarget: target)
    }

    @Test func rangeEndRules() throws {
        let store = try fixture()
        #expect(keys(try store.get("b")) == ["b"])
        #expect(keys(try store.get("b", rangeEnd: "d")) == ["b", "c"])
        #expect(keys(try store.get("c", rangeEnd: "\0")) == ["c", "d"])
        #expect(keys(try store.get("\0", rangeEnd: "\0")) == ["a", "b", "c", "d"])
        #expect(keys(try store.range(RangeRequest(key: "b", rangeEnd: KeyRange.prefixEnd(of: "b")))) == ["b"])
        #expect(keys(try store.get("d", rangeEnd: "b")).isEmpty)
        expectError(.emptyKey) { try store.get("") }
    }

    @Test func limitSetsMoreAndCountIsTheTotal() throws {
        let store = try fixture()
        let limited = try store.range(request(limit: 2))
        #expect(keys(limited) == ["a", "b"])
        #expect(limited.more)
        #expect(limited.count == 4)
        let exact = try store.range(request(limit: 4))
        #expect(!exact.more)
        let countOnly = try store.range(RangeRequest(key: "a", rangeEnd: "z", countOnly: true))
        #expect(countOnly.keyValues.isEmpty)
        #expect(countOnly.count == 4)
    }

    @Test func sortDefaultsFollowEtcd() throws {
        let store = try fixture()
        #expect(keys(try store.range(request(.none, .key))) == ["a", "b", "c", "d"])
        #expect(keys(try store.range(request(.ascend, .key))) == ["a", "b", "c", "d"])
        #expect(keys(try store.range(request(.descend, .key))) == ["d", "c", "b", "a"])
        // A non-key target with order NONE sorts ascending.
        #expect(keys(try store.range(request(.none, .value))) == ["d", "a", "c", "b"])
        #expect(keys(try store.range(request(.descend, .value))) == ["b", "c", "a", "d"])
        #expect(keys(try store.range(request(.ascend, .mod))) == ["a", "c", "d", "b"])
        #expect(keys(try store.range(request(.descend, .create))) == ["d", "c", "b", "a"])
        // Ties keep key order in both directions.
        #expect(keys(try store.range(request(.ascend, .version))) == ["a", "c", "d", "b"])
        #expect(keys(try store.range(request(.descend, .version))) == ["b", "a", "c", "d"])
    }

    @Test func sortHappensBeforeLimit() throws {
        let store = try fixture()
        let response = try store.range(request(.descend, .key, limit: 1))
        #expect(keys(response) == ["d"])
        #expect(response.more)
        #expect(response.count == 4)
    }

    @Test func keysOnlyDropsValues() throws {
        let store = try fixture()
        let response = try store.range(RangeRequest(key: "a", rangeEnd: "z", keysOnly: true))
        #expect(response.keyValues.allSatisfy { $0.value.isEmpty })
        #expect(response.keyValues[1].version == 2)
    }

    @Test func revisionFiltersApplyAfterTheRangeAndKeepCount() throws {
        let store = try fixture()
        var filtered = request(limit: 1)
        filtered.minModRevision = 4
        let response = try store.range(filtered)
        #expect(keys(response) == ["b"])
        #expect(response.more)
        #expect(response.count == 4, "count is the range's, before filters")
        var created = request()
        created.maxCreateRevision = 3
        #expect(keys(try store.range(created)) == ["a", "b"])
        created.minCreateRevision = 3
        #expect(keys(try store.range(created)) == ["b"])
        var modded = request()
        modded.maxModRevision = 4
        #expect(keys(try store.range(modded)) == ["a", "c"])
    }

    @Test func historicalReads() throws {
        var store = try fixture()
        #expect(try store.value("b", revision: 3) == "1")
        #expect(try store.value("b", revision: 6) == "5")
        #expect(try store.value("c", revision: 3) == nil)
        #expect(try store.get("a", rangeEnd: "z", revision: 4).count == 3)
        #expect(try store.get("a", revision: 4).revision == 6, "the header carries the current revision")
        #expect(try store.value("b", revision: -3) == "5", "negative means current, as in etcd")
        expectError(.futureRevision) { try store.get("a", revision: 7) }
        try store.compact(4)
        expectError(.compacted) { try store.get("a", revision: 3) }
        #expect(try store.value("b", revision: 4) == "1", "the compacted revision itself stays readable")
        #expect(try store.value("a", revision: 4) == "3")
    }
}

@Suite struct CompactionTests {
    @Test func compactionErrorsFollowEtcd() throws {
        var store = MVCCStore()
        try store.put("a", "1")
        try store.put("a", "2")
        expectError(.futureRevision) { try store.compact(4) }
        try store.compact(2)
        expectError(.compacted) { try store.compact(2) }
        expectError(.compacted) { try store.compact(1) }
        expectError(.compacted) { try store.compact(-5) }
        try store.compact(3)
        #expect(store.compactedRevision == 3)
    }

    @Test func compactionKeepsLatestVersionOfLiveKeys() throws {
        var store = MVCCStore()
        try store.put("a", "1")  // 2
        try store.put("b", "1")  // 3
        try store.put("a", "2")  // 4
        try store.delete("b")  // 5
        try store.put("c", "1")  // 6
        try store.compact(5)
        #expect(try store.value("a", revision: 5) == "2")
        #expect(try store.value("b", revision: 5) == nil)
        #expect(try store.value("c") == "1")
        #expect(keys(try store.get("\0", rangeEnd: "\0", revision: 5)) == ["a"])
        #expect(try store.get("a").keyValues.first?.version == 2, "versions survive compaction")
    }

    @Test func hashDependsOnContentAndRevision() throws {
        var one = MVCCStore()
        var two = MVCCStore()
        try one.put("a", "1")
        try two.put("a", "1")
        #expect(try one.hashKeySpace() == two.hashKeySpace())
        try one.put("b", "1")
        try two.put("b", "2")
        #expect(try one.hashKeySpace().hash != two.hashKeySpace().hash)
        #expect(try one.hashKeySpace(revision: 2) == two.hashKeySpace(revision: 2))
        expectError(.futureRevision) { try one.hashKeySpace(revision: 9) }
    }
}
