import CairnAPI
import Foundation
import Testing

@testable import CairnGateway

/// The cache against the reference store: the same random writes feed both
/// (the cache only through watch responses), and seeded random Range requests
/// with every option must get byte-identical answers, or nil exactly when the
/// request is one the cache must not answer.
@Suite struct PrefixCacheModelTests {
    static let prefix = CacheFixture.bytes("t/a/")
    static let prefixEnd = CacheFixture.bytes("t/a0")
    static let suffixAlphabet: [UInt8] = [0x00, 0x61, 0x62, 0x63, 0x7a, 0xff]

    static func randomKey(_ random: inout CacheTestRandom) -> [UInt8] {
        let roll = Int.random(in: 0..<10, using: &random)
        if roll == 0 {
            return [
                CacheFixture.bytes("t/"), CacheFixture.bytes("t/a"), CacheFixture.bytes("t/a0"),
                CacheFixture.bytes("t/b/x"), CacheFixture.bytes("s"),
            ][
                Int.random(in: 0..<5, using: &random)]
        }
        let length = Int.random(in: 0...3, using: &random)
        return prefix + (0..<length).map { _ in suffixAlphabet.randomElement(using: &random)! }
    }

    static func isInside(_ request: Etcdserverpb_RangeRequest) -> Bool {
        let key = [UInt8](request.key)
        let end = [UInt8](request.rangeEnd)
        guard request.revision == 0, key.starts(with: prefix) else { return false }
        if end.isEmpty { return true }
        if end == [0] { return false }
        return !prefixEnd.lexicographicallyPrecedes(end)
    }

    static func randomRequest(_ random: inout CacheTestRandom, revisionMax: Int64)
        -> Etcdserverpb_RangeRequest
    {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(randomKey(&random))
        switch Int.random(in: 0..<6, using: &random) {
        case 0: request.rangeEnd = Data()
        case 1: request.rangeEnd = Data(prefixEnd)
        case 2: request.rangeEnd = Data([0])
        case 3: request.rangeEnd = Data(CacheFixture.bytes("t/b"))
        default: request.rangeEnd = Data(randomKey(&random))
        }
        if Int.random(in: 0..<15, using: &random) == 0 {
            request.revision = Int64.random(in: 1...revisionMax, using: &random)
        }
        request.limit = [-1, 0, 0, 0, 1, 2, 3, 7, 100][Int.random(in: 0..<9, using: &random)]
        request.sortOrder = [.none, .ascend, .descend][Int.random(in: 0..<3, using: &random)]
        request.sortTarget = [.key, .version, .create, .mod, .value][Int.random(in: 0..<5, using: &random)]
        request.keysOnly = Bool.random(using: &random)
        request.countOnly = Int.random(in: 0..<5, using: &random) == 0
        request.serializable = Bool.random(using: &random)
        func filter() -> Int64 {
            Int.random(in: 0..<3, using: &random) == 0 ? Int64.random(in: 1...revisionMax, using: &random) : 0
        }
        request.minModRevision = filter()
        request.maxModRevision = filter()
        request.minCreateRevision = filter()
        request.maxCreateRevision = filter()
        return request
    }

    static func randomTransaction(_ store: inout CacheReferenceStore, _ random: inout CacheTestRandom)
        -> [Mvccpb_Event]
    {
        var puts: [([UInt8], [UInt8])] = []
        var deletes: [[UInt8]] = []
        for _ in 0..<Int.random(in: 1...3, using: &random) {
            let key = randomKey(&random)
            if Int.random(in: 0..<4, using: &random) == 0 {
                if !puts.contains(where: { $0.0 == key }) { deletes.append(key) }
            } else if !puts.contains(where: { $0.0 == key }) && !deletes.contains(key) {
                let value = (0..<Int.random(in: 0...2, using: &random)).map { _ in
                    UInt8.random(in: 0x61...0x63, using: &random)
                }
                puts.append((key, value))
            }
        }
        return store.transaction(puts: puts, deletes: deletes)
    }

    /// Delivers `events` as one response, or split into fragments.
    static func deliver(
        _ events: [Mvccpb_Event], to cache: inout PrefixCache, headerRevision: Int64,
        _ random: inout CacheTestRandom
    ) -> [PrefixCache.ApplyOutcome] {
        guard events.count > 1, Bool.random(using: &random) else {
            return [cache.apply(CacheFixture.watchResponse(events: events, headerRevision: headerRevision))]
        }
        let cut = Int.random(in: 1..<events.count, using: &random)
        let first = cache.apply(
            CacheFixture.watchResponse(
                events: Array(events[..<cut]), headerRevision: headerRevision, fragment: true))
        let rest = cache.apply(
            CacheFixture.watchResponse(events: Array(events[cut...]), headerRevision: headerRevision))
        return [first, rest]
    }

    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func answersMatchTheReference(seed: UInt64) throws {
        var random = CacheTestRandom(seed: seed)
        var store = CacheReferenceStore()
        for _ in 0..<20 { _ = Self.randomTransaction(&store, &random) }
        var cache = PrefixCache(prefix: Data(Self.prefix))
        let load = store.range(cache.loadRequest(), headerRevision: store.revision)
        var expectedKnown = try cache.load(load)
        #expect(expectedKnown == store.revision)
        var pending: [Mvccpb_Event] = []
        var compared = 0
        var withMore = 0
        for _ in 0..<600 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4:
                let events = Self.randomTransaction(&store, &random)
                pending += events.filter { [UInt8]($0.kv.key).starts(with: Self.prefix) }
            case 4:
                _ = store.unrelatedWrite()
            case 5, 6:
                guard let last = pending.last else { break }
                let outcomes = Self.deliver(pending, to: &cache, headerRevision: store.revision, &random)
                #expect(outcomes.last == .advanced(from: expectedKnown, to: last.kv.modRevision))
                expectedKnown = last.kv.modRevision
                pending = []
            case 7:
                guard pending.isEmpty else { break }
                let outcome = cache.apply(CacheFixture.progress(store.revision))
                #expect(
                    outcome
                        == (store.revision > expectedKnown
                            ? .advanced(from: expectedKnown, to: store.revision) : .unchanged))
                expectedKnown = store.revision
            default:
                guard pending.isEmpty else { break }
                for _ in 0..<10 {
                    let request = Self.randomRequest(&random, revisionMax: store.revision)
                    let answer = cache.answer(request)
                    if Self.isInside(request) {
                        let expected = store.range(request, headerRevision: expectedKnown) {
                            $0.starts(with: Self.prefix)
                        }
                        #expect(answer == expected, "seed \(seed) request \(request)")
                        compared += 1
                        if expected.more && expected.kvs.count > 1 { withMore += 1 }
                    } else {
                        #expect(answer == nil, "seed \(seed) request \(request)")
                    }
                }
            }
            #expect(cache.knownRevision == expectedKnown)
            #expect(cache.storage.invariantsHold())
        }
        #expect(compared > 100)
        #expect(withMore > 5)
    }

    /// A cache of the whole key space (empty prefix) answers from-key and
    /// all-keys ranges too.
    @Test func wholeKeySpaceCacheAnswersFromKeyRanges() throws {
        var random = CacheTestRandom(seed: 42)
        var store = CacheReferenceStore()
        for _ in 0..<30 { _ = Self.randomTransaction(&store, &random) }
        var cache = PrefixCache(prefix: Data())
        #expect(cache.prefixEnd == nil)
        _ = try cache.load(store.range(cache.loadRequest(), headerRevision: store.revision))
        for (key, end) in [
            ([UInt8(0)], [UInt8(0)]), (CacheFixture.bytes("t/a/b"), [0]),
            (CacheFixture.bytes("t/"), CacheFixture.bytes("t/a/c")),
        ] {
            var request = Etcdserverpb_RangeRequest()
            request.key = Data(key)
            request.rangeEnd = Data(end)
            request.sortOrder = .descend
            request.limit = 4
            #expect(cache.answer(request) == store.range(request, headerRevision: store.revision))
        }
        var empty = Etcdserverpb_RangeRequest()
        empty.rangeEnd = Data([0])
        #expect(cache.answer(empty) == nil, "an empty key is etcd's error, left to upstream")
    }
}
