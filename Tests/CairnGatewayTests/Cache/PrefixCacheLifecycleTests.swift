import CairnAPI
import Foundation
import Testing

@testable import CairnGateway

/// The cache's lifecycle: what makes it live, what breaks it, and that a
/// broken or loading cache never answers.
@Suite struct PrefixCacheLifecycleTests {
    static func keyValue(_ key: String, _ value: String, revision: Int64, created: Int64? = nil)
        -> Mvccpb_KeyValue
    {
        var keyValue = Mvccpb_KeyValue()
        keyValue.key = Data(key.utf8)
        keyValue.value = Data(value.utf8)
        keyValue.modRevision = revision
        keyValue.createRevision = created ?? revision
        keyValue.version = 1
        return keyValue
    }

    static func put(_ key: String, _ value: String, revision: Int64) -> Mvccpb_Event {
        var event = Mvccpb_Event()
        event.type = .put
        event.kv = keyValue(key, value, revision: revision)
        return event
    }

    static func delete(_ key: String, revision: Int64) -> Mvccpb_Event {
        var event = Mvccpb_Event()
        event.type = .delete
        event.kv.key = Data(key.utf8)
        event.kv.modRevision = revision
        return event
    }

    static func loaded(_ keyValues: [Mvccpb_KeyValue] = [], revision: Int64 = 10) throws -> PrefixCache {
        var cache = PrefixCache(prefix: Data("p/".utf8))
        var response = Etcdserverpb_RangeResponse()
        response.header.revision = revision
        response.kvs = keyValues
        response.count = Int64(keyValues.count)
        #expect(try cache.load(response) == revision)
        return cache
    }

    static func prefixRequest() -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data("p/".utf8)
        request.rangeEnd = Data("p0".utf8)
        return request
    }

    @Test func aNewCacheIsLoadingAndDoesNotAnswer() {
        var cache = PrefixCache(prefix: Data("p/".utf8))
        #expect(cache.state == .loading)
        #expect(cache.knownRevision == nil)
        #expect(cache.answer(Self.prefixRequest()) == nil)
        #expect(cache.apply(CacheFixture.progress(50)) == .ignored)
        let request = cache.loadRequest()
        #expect(request.key == Data("p/".utf8) && request.rangeEnd == Data("p0".utf8))
        #expect(!request.serializable)
    }

    @Test func loadRefusesIncompleteForeignOrUnstampedResponses() throws {
        var cache = PrefixCache(prefix: Data("p/".utf8))
        var response = Etcdserverpb_RangeResponse()
        #expect(throws: PrefixCache.LoadError.missingRevision) { try cache.load(response) }
        response.header.revision = 9
        response.more = true
        #expect(throws: PrefixCache.LoadError.incomplete) { try cache.load(response) }
        response.more = false
        response.kvs = [Self.keyValue("q/x", "1", revision: 3)]
        #expect(throws: PrefixCache.LoadError.keyOutsidePrefix) { try cache.load(response) }
        #expect(cache.state == .loading)
        response.kvs = [Self.keyValue("p/x", "1", revision: 3)]
        #expect(try cache.load(response) == 9)
        #expect(throws: PrefixCache.LoadError.notLoading) { try cache.load(response) }
        #expect(cache.answer(Self.prefixRequest())?.kvs.map(\.key) == [Data("p/x".utf8)])
    }

    @Test func loadBeyondCapacityBreaksTheCache() {
        var cache = PrefixCache(prefix: Data("p/".utf8), limits: .init(entriesMax: 2))
        var response = Etcdserverpb_RangeResponse()
        response.header.revision = 9
        response.kvs = ["p/a", "p/b", "p/c"].map { Self.keyValue($0, "v", revision: 2) }
        #expect(throws: PrefixCache.LoadError.overCapacity) { try cache.load(response) }
        #expect(cache.state == .broken(.overCapacity))
    }

    @Test func eventsAndProgressAdvanceTheKnownRevision() throws {
        var cache = try Self.loaded([Self.keyValue("p/a", "1", revision: 5)])
        #expect(cache.knownRevision == 10)
        let outcome = cache.apply(
            CacheFixture.watchResponse(
                events: [Self.put("p/b", "2", revision: 12), Self.delete("p/a", revision: 12)],
                headerRevision: 15))
        // The header revision of an event response is not a progress claim.
        #expect(outcome == .advanced(from: 10, to: 12))
        #expect(cache.answer(Self.prefixRequest())?.kvs.map(\.key) == [Data("p/b".utf8)])
        #expect(cache.answer(Self.prefixRequest())?.header.revision == 12)
        #expect(cache.apply(CacheFixture.progress(20)) == .advanced(from: 12, to: 20))
        #expect(cache.apply(CacheFixture.progress(18)) == .unchanged)
        var created = CacheFixture.progress(30)
        created.created = true
        #expect(cache.apply(created) == .unchanged, "a created response proves nothing")
        #expect(cache.knownRevision == 20)
        #expect(cache.answer(Self.prefixRequest())?.header.revision == 20)
    }

    @Test func eventsOutsideThePrefixAreIgnoredButTheirRevisionCounts() throws {
        var cache = try Self.loaded()
        #expect(
            cache.apply(
                CacheFixture.watchResponse(events: [Self.put("q/x", "1", revision: 11)], headerRevision: 11))
                == .advanced(from: 10, to: 11))
        #expect(cache.entryCount == 0)
    }

    @Test func compactionCancelDuplicatesAndReorderingBreakTheCache() throws {
        var compacted = try Self.loaded()
        var response = Etcdserverpb_WatchResponse()
        response.canceled = true
        response.compactRevision = 8
        #expect(compacted.apply(response) == .broke(.compacted(compactRevision: 8)))
        #expect(compacted.answer(Self.prefixRequest()) == nil)
        #expect(compacted.knownRevision == nil)
        #expect(compacted.entryCount == 0)

        var canceled = try Self.loaded()
        response.compactRevision = 0
        response.cancelReason = "permission denied"
        #expect(canceled.apply(response) == .broke(.canceled(reason: "permission denied")))

        var duplicate = try Self.loaded()
        _ = duplicate.apply(
            CacheFixture.watchResponse(events: [Self.put("p/a", "1", revision: 12)], headerRevision: 12))
        #expect(
            duplicate.apply(
                CacheFixture.watchResponse(events: [Self.put("p/a", "1", revision: 12)], headerRevision: 12))
                == .broke(.outOfOrder(eventRevision: 12, knownRevision: 12)))

        var beforeLoad = try Self.loaded()
        #expect(
            beforeLoad.apply(
                CacheFixture.watchResponse(events: [Self.put("p/a", "1", revision: 10)], headerRevision: 10))
                == .broke(.outOfOrder(eventRevision: 10, knownRevision: 10)))

        var reordered = try Self.loaded()
        let events = [Self.put("p/a", "1", revision: 14), Self.put("p/b", "1", revision: 13)]
        #expect(
            reordered.apply(CacheFixture.watchResponse(events: events, headerRevision: 14))
                == .broke(.outOfOrder(eventRevision: 13, knownRevision: 14)))
        #expect(reordered.answer(Self.prefixRequest()) == nil)

        var afterProgress = try Self.loaded()
        _ = afterProgress.apply(CacheFixture.progress(20))
        #expect(
            afterProgress.apply(
                CacheFixture.watchResponse(events: [Self.put("p/a", "1", revision: 19)], headerRevision: 21))
                == .broke(.outOfOrder(eventRevision: 19, knownRevision: 20)))
    }

    @Test func aBrokenCacheReloads() throws {
        var cache = try Self.loaded([Self.keyValue("p/a", "1", revision: 5)])
        cache.markBroken()
        #expect(cache.state == .broken(.feedInterrupted))
        #expect(cache.apply(CacheFixture.progress(40)) == .ignored)
        cache.beginReload()
        #expect(cache.state == .loading)
        var response = Etcdserverpb_RangeResponse()
        response.header.revision = 40
        response.kvs = [Self.keyValue("p/z", "9", revision: 33)]
        #expect(try cache.load(response) == 40)
        #expect(cache.answer(Self.prefixRequest())?.kvs.map(\.key) == [Data("p/z".utf8)])
    }

    @Test func fragmentsApplyOnlyWhenComplete() throws {
        var cache = try Self.loaded()
        let first = CacheFixture.watchResponse(
            events: [Self.put("p/a", "1", revision: 11), Self.put("p/b", "1", revision: 11)],
            headerRevision: 11,
            fragment: true)
        #expect(cache.apply(first) == .unchanged)
        #expect(cache.answer(Self.prefixRequest())?.kvs.isEmpty == true, "half a revision is never visible")
        #expect(cache.knownRevision == 10)
        #expect(
            cache.apply(
                CacheFixture.watchResponse(events: [Self.put("p/c", "1", revision: 11)], headerRevision: 11))
                == .advanced(from: 10, to: 11))
        #expect(cache.answer(Self.prefixRequest())?.count == 3)
    }

    @Test func progressFromOutsideTheFeedAdvancesOnlyWhenItProvesMore() throws {
        var cache = try Self.loaded()
        #expect(cache.noteProgress(9) == .unchanged)
        #expect(cache.noteProgress(12) == .advanced(from: 10, to: 12))
        let fragment = CacheFixture.watchResponse(
            events: [Self.put("p/a", "1", revision: 13)], headerRevision: 13, fragment: true)
        #expect(cache.apply(fragment) == .unchanged)
        #expect(cache.noteProgress(20) == .unchanged, "a revision is half delivered")
        #expect(cache.knownRevision == 12)
        cache.markBroken(.compacted(compactRevision: 11))
        #expect(cache.noteProgress(30) == .ignored)
    }

    @Test func fragmentsBeyondTheBoundBreakTheCache() throws {
        var cache = PrefixCache(prefix: Data("p/".utf8), limits: .init(fragmentEventsMax: 2))
        var response = Etcdserverpb_RangeResponse()
        response.header.revision = 10
        _ = try cache.load(response)
        let events = (0..<3).map { Self.put("p/\($0)", "v", revision: 11) }
        #expect(
            cache.apply(CacheFixture.watchResponse(events: events, headerRevision: 11, fragment: true))
                == .broke(.fragmentTooLarge))
    }

    @Test func growingBeyondCapacityBreaksTheCache() throws {
        var cache = PrefixCache(prefix: Data("p/".utf8), limits: .init(entriesMax: 100, bytesMax: 30))
        var response = Etcdserverpb_RangeResponse()
        response.header.revision = 10
        _ = try cache.load(response)
        #expect(
            cache.apply(
                CacheFixture.watchResponse(
                    events: [Self.put("p/a", "0123456789", revision: 11)], headerRevision: 11))
                == .advanced(from: 10, to: 11))
        #expect(cache.storedBytes == 13)
        #expect(
            cache.apply(
                CacheFixture.watchResponse(
                    events: [Self.put("p/b", "0123456789abcdef", revision: 12)], headerRevision: 12)
            ) == .broke(.overCapacity))
    }

    @Test func historicalRevisionsAndForeignRangesAreForwarded() throws {
        let cache = try Self.loaded([Self.keyValue("p/a", "1", revision: 5)])
        var request = Self.prefixRequest()
        #expect(cache.answer(request) != nil)
        request.revision = 10
        #expect(cache.answer(request) == nil, "no history is kept, even at the known revision")
        request.revision = 0
        request.rangeEnd = Data("p1".utf8)
        #expect(cache.answer(request) == nil, "range end past the prefix")
        request.rangeEnd = Data([0])
        #expect(cache.answer(request) == nil, "from-key leaves a bounded prefix")
        request.rangeEnd = Data("p0".utf8)
        request.key = Data("p".utf8)
        #expect(cache.answer(request) == nil, "start before the prefix")
        request.key = Data("p/".utf8)
        request.sortTarget = .UNRECOGNIZED(9)
        #expect(cache.answer(request) == nil, "etcd answers an invalid sort option with an error")
    }

    @Test func prefixEndFollowsEtcd() {
        #expect(CacheKeyBytes.prefixEnd(Data("abc".utf8)) == Data("abd".utf8))
        #expect(CacheKeyBytes.prefixEnd(Data([0x61, 0xff])) == Data([0x62]))
        #expect(CacheKeyBytes.prefixEnd(Data([0xff, 0xff])) == nil)
        #expect(CacheKeyBytes.prefixEnd(Data()) == nil)
        #expect(CacheKeyBytes.compare(Data([0x01]), Data([0x01, 0x00])) < 0)
        #expect(CacheKeyBytes.compare(Data([0xff]), Data([0x01, 0x00])) > 0)
    }

    /// The chunked storage against a dictionary, across many chunk splits
    /// and merges.
    @Test func sortedStorageMatchesADictionary() {
        var random = CacheTestRandom(seed: 99)
        var storage = SortedKeyValues()
        var model: [[UInt8]: Int64] = [:]
        for step in 0..<6000 {
            let key = (0..<Int.random(in: 1...3, using: &random)).map { _ in
                UInt8.random(in: 0...30, using: &random)
            }
            if Int.random(in: 0..<3, using: &random) == 0 {
                #expect(storage.remove(Data(key)) == (model.removeValue(forKey: key) != nil))
            } else {
                storage.upsert(Self.keyValue(String(decoding: key, as: UTF8.self), "", revision: Int64(step)))
                model[Array(String(decoding: key, as: UTF8.self).utf8)] = Int64(step)
            }
        }
        #expect(storage.invariantsHold())
        #expect(storage.chunks.count > 2)
        var scanned: [[UInt8]] = []
        storage.forEach(from: Data([5]), to: Data([20])) { keyValue in
            scanned.append([UInt8](keyValue.key))
            return true
        }
        let expected = model.keys.filter {
            !$0.lexicographicallyPrecedes([5]) && $0.lexicographicallyPrecedes([20])
        }
        .sorted { $0.lexicographicallyPrecedes($1) }
        #expect(scanned == expected)
        #expect(storage.count == model.count)
        for _ in 0..<200 {
            let lower = [UInt8.random(in: 0...31, using: &random)]
            let upper: [UInt8]? =
                Bool.random(using: &random) ? [UInt8.random(in: 0...31, using: &random)] : nil
            let inRange = model.keys.filter { key in
                !key.lexicographicallyPrecedes(lower)
                    && (upper.map { key.lexicographicallyPrecedes($0) } ?? true)
            }
            #expect(storage.count(from: Data(lower), to: upper.map { Data($0) }) == inRange.count)
            var descending: [[UInt8]] = []
            storage.forEachDescending(from: Data(lower), to: upper.map { Data($0) }) { keyValue in
                descending.append([UInt8](keyValue.key))
                return true
            }
            #expect(descending == inRange.sorted { $1.lexicographicallyPrecedes($0) })
        }
    }
}
