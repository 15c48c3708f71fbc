import CairnAPI
import CairnGateway
import CairnRPC
import Foundation
import Testing

private typealias F = TenancyFixture

/// Random requests and answers against the namespace's properties (see
/// `Namespace`). Each failure message carries the seed; rerun with
/// `CAIRN_SEED=<seed>` to replay it.
@Suite("Namespace: properties under random requests")
struct NamespacePropertyTests {
    /// Namespaces whose prefixes exercise `prefixEnd`: a plain one, one
    /// ending in `0xff` bytes (the end carries into an earlier byte), and
    /// one of `0xff` only (no end: the namespace runs to the end of keys).
    static let namespaces: [Namespace] = [
        F.alice(),
        Namespace(prefix: F.bytes([0x61, 0xff, 0xff]), permissions: .readwrite, leaseTag: 7),
        Namespace(prefix: F.bytes([0xff]), permissions: .readwrite, leaseTag: 8),
    ]

    static let alphabet: [UInt8] = [0x00, 0x01, 0x2e, 0x2f, 0x30, 0x61, 0x62, 0x7f, 0xfe, 0xff]

    static let casesPerSeed = 400

    // MARK: generators

    /// A key in the tenant's view, biased to the shapes that break ranges.
    static func tenantKey(_ random: inout TenancyRandom) -> Data {
        switch random.below(10) {
        case 0: return Data()
        case 1: return Data([0])
        case 2: return Data(repeating: 0xff, count: 1 + random.below(3))
        case 3: return F.bytes(["tenants/bob/x", "../bob/", "tenants/alice/", "/"][random.below(4)])
        default:
            return Data(
                (0..<(1 + random.below(5))).map { _ in Self.alphabet[random.below(Self.alphabet.count)] })
        }
    }

    static func rangeEnd(for key: Data, _ random: inout TenancyRandom) -> Data {
        switch random.below(7) {
        case 0: return Data()
        case 1: return Data([0])
        case 2: return Namespace.prefixEnd(key)
        case 3: return key + Data([0])
        case 4: return Data(repeating: 0xff, count: 1 + random.below(4))
        default: return Self.tenantKey(&random)
        }
    }

    /// Upstream keys around the namespace's edges that are not in it.
    static func foreignKeys(_ namespace: Namespace, _ random: inout TenancyRandom) -> [Data] {
        let prefix = namespace.prefix
        var keys: [Data] = [Data(), Data([0]), Data([0xff, 0xff, 0xff]), F.bytes("tenants/bob/secret")]
        keys.append(prefix.dropLast())
        keys.append(Data(prefix.dropLast()) + Data([0xff, 0xff]))
        if namespace.end != Data([0]) {
            keys.append(namespace.end)
            keys.append(namespace.end + Self.tenantKey(&random))
        }
        var below = [UInt8](prefix)
        if below[below.count - 1] > 0 {
            below[below.count - 1] -= 1
            keys.append(Data(below) + Self.tenantKey(&random))
        }
        return keys.filter { !$0.starts(with: prefix) }
    }

    /// Tenant keys worth probing a range with: its bounds and neighbours.
    static func probes(key: Data, rangeEnd: Data, _ random: inout TenancyRandom) -> [Data] {
        var probes = [key, rangeEnd, key + Data([0]), Data(), Data([0]), Data([0xff, 0xff, 0xff, 0xff])]
        if !key.isEmpty { probes.append(key.dropLast()) }
        for _ in 0..<6 { probes.append(Self.tenantKey(&random)) }
        return probes
    }

    // MARK: checks

    /// Property 1: the rewritten range lies in `[prefix, end)`.
    /// Property 2: it selects exactly the tenant's keys the tenant's range
    /// selects, and no key outside the namespace.
    static func checkRange(
        _ namespace: Namespace, tenant: (key: Data, rangeEnd: Data), upstream: (key: Data, rangeEnd: Data),
        seed: UInt64, _ random: inout TenancyRandom
    ) {
        let context =
            "seed \(seed) prefix \([UInt8](namespace.prefix)) tenant range "
            + "\([UInt8](tenant.key))..\([UInt8](tenant.rangeEnd)) upstream "
            + "\([UInt8](upstream.key))..\([UInt8](upstream.rangeEnd))"
        #expect(upstream.key.starts(with: namespace.prefix), "key outside: \(context)")
        if !upstream.rangeEnd.isEmpty && namespace.end != Data([0]) {
            #expect(upstream.rangeEnd != Data([0]), "range to the end of all keys: \(context)")
            #expect(
                !namespace.end.lexicographicallyPrecedes(upstream.rangeEnd),
                "end past the namespace: \(context)")
        }
        for probe in Self.probes(key: tenant.key, rangeEnd: tenant.rangeEnd, &random) {
            let inTenant = F.rangeSelects(probe, key: tenant.key, rangeEnd: tenant.rangeEnd)
            let inUpstream = F.rangeSelects(
                namespace.prefix + probe, key: upstream.key, rangeEnd: upstream.rangeEnd)
            #expect(inTenant == inUpstream, "probe \([UInt8](probe)) differs: \(context)")
        }
        for foreign in Self.foreignKeys(namespace, &random) {
            let selected = F.rangeSelects(foreign, key: upstream.key, rangeEnd: upstream.rangeEnd)
            #expect(!selected, "foreign key \([UInt8](foreign)) selected: \(context)")
        }
    }

    @Test(arguments: F.propertySeeds())
    func rangesStayInsideAndKeepTheirMeaning(seed: UInt64) {
        var random = TenancyRandom(seed: seed)
        for _ in 0..<Self.casesPerSeed {
            let namespace = Self.namespaces[random.below(Self.namespaces.count)]
            let key = Self.tenantKey(&random)
            let rangeEnd = Self.rangeEnd(for: key, &random)
            var range = Etcdserverpb_RangeRequest()
            range.key = key
            range.rangeEnd = rangeEnd
            var delete = Etcdserverpb_DeleteRangeRequest()
            delete.key = key
            delete.rangeEnd = rangeEnd
            guard !key.isEmpty else {
                #expect(
                    F.refusal { try namespace.inbound(range) } == Namespace.Refusal.keyNotProvided,
                    "seed \(seed)")
                #expect(
                    F.refusal { try namespace.inbound(delete) } == Namespace.Refusal.keyNotProvided,
                    "seed \(seed)")
                continue
            }
            guard let rewrittenRange = try? namespace.inbound(range),
                let rewrittenDelete = try? namespace.inbound(delete)
            else {
                Issue.record("seed \(seed): a range with a key was refused")
                continue
            }
            Self.checkRange(
                namespace, tenant: (key, rangeEnd), upstream: (rewrittenRange.key, rewrittenRange.rangeEnd),
                seed: seed, &random)
            #expect(
                rewrittenDelete.key == rewrittenRange.key
                    && rewrittenDelete.rangeEnd == rewrittenRange.rangeEnd)
        }
    }

    @Test(arguments: F.propertySeeds())
    func watchRangesStayInsideAndKeepEtcdsWatchMeaning(seed: UInt64) throws {
        var random = TenancyRandom(seed: seed)
        for _ in 0..<Self.casesPerSeed {
            let namespace = Self.namespaces[random.below(Self.namespaces.count)]
            var create = Etcdserverpb_WatchCreateRequest()
            create.key = Self.tenantKey(&random)
            create.rangeEnd = Self.rangeEnd(for: create.key, &random)
            let rewritten = try namespace.inbound(create)
            // etcd's watch server reads an empty key as "\0".
            let tenantKey = create.key.isEmpty ? Data([0]) : create.key
            Self.checkRange(
                namespace, tenant: (tenantKey, create.rangeEnd),
                upstream: (rewritten.key, rewritten.rangeEnd),
                seed: seed, &random)
        }
    }

    // MARK: txn

    static func randomTxn(_ random: inout TenancyRandom, depth: Int, leases: [Int64])
        -> Etcdserverpb_TxnRequest
    {
        var txn = Etcdserverpb_TxnRequest()
        for _ in 0..<random.below(3) {
            let key = random.chance(5) ? Data() : Self.nonEmptyKey(&random)
            txn.compare.append(F.compare(key, random.chance(50) ? Data() : Self.rangeEnd(for: key, &random)))
        }
        for _ in 0..<random.below(4) {
            txn.success.append(Self.randomOperation(&random, depth: depth, leases: leases))
        }
        for _ in 0..<random.below(3) {
            txn.failure.append(Self.randomOperation(&random, depth: depth, leases: leases))
        }
        return txn
    }

    static func nonEmptyKey(_ random: inout TenancyRandom) -> Data {
        let key = Self.tenantKey(&random)
        return key.isEmpty ? Data([0x61]) : key
    }

    static func randomOperation(_ random: inout TenancyRandom, depth: Int, leases: [Int64])
        -> Etcdserverpb_RequestOp
    {
        let key = random.chance(4) ? Data() : Self.nonEmptyKey(&random)
        switch random.below(depth > 0 ? 4 : 3) {
        case 0: return F.operation(F.range(key, Self.rangeEnd(for: key, &random)))
        case 1:
            let lease = random.chance(70) ? 0 : leases[random.below(leases.count)]
            return F.operation(F.put(key, lease: lease))
        case 2: return F.operation(F.delete(key, Self.rangeEnd(for: key, &random)))
        default: return F.operation(Self.randomTxn(&random, depth: depth - 1, leases: leases))
        }
    }

    /// The test's own oracle of what etcd answers first for a txn.
    static func expectedRefusal(_ txn: Etcdserverpb_TxnRequest, _ namespace: Namespace) -> RPCStatus? {
        if let shape = Self.shapeRefusal(txn) { return shape }
        var writes = false
        var foreignLease = false
        Self.visitOperations(txn) { operation in
            switch operation.request {
            case .requestPut(let put):
                writes = true
                if put.lease != 0 && !namespace.ownsLease(put.lease) { foreignLease = true }
            case .requestDeleteRange: writes = true
            default: break
            }
        }
        if writes && namespace.permissions == .read { return Namespace.Refusal.permissionDenied }
        return foreignLease ? Namespace.Refusal.leaseNotFound : nil
    }

    static func shapeRefusal(_ txn: Etcdserverpb_TxnRequest) -> RPCStatus? {
        if txn.compare.contains(where: { $0.key.isEmpty }) { return Namespace.Refusal.keyNotProvided }
        for operation in txn.success + txn.failure {
            switch operation.request {
            case .requestRange(let range) where range.key.isEmpty: return Namespace.Refusal.keyNotProvided
            case .requestPut(let put) where put.key.isEmpty: return Namespace.Refusal.keyNotProvided
            case .requestDeleteRange(let delete) where delete.key.isEmpty:
                return Namespace.Refusal.keyNotProvided
            case .requestTxn(let inner): if let refusal = Self.shapeRefusal(inner) { return refusal }
            default: continue
            }
        }
        return nil
    }

    static func visitOperations(_ txn: Etcdserverpb_TxnRequest, _ visit: (Etcdserverpb_RequestOp) -> Void) {
        for operation in txn.success + txn.failure {
            visit(operation)
            if case .requestTxn(let inner) = operation.request { Self.visitOperations(inner, visit) }
        }
    }

    /// Every key range of a txn in a fixed order (compares, then operations
    /// depth first), tagged with its kind so shapes can be compared.
    static func ranges(_ txn: Etcdserverpb_TxnRequest) -> [(kind: String, key: Data, rangeEnd: Data)] {
        var result = txn.compare.map { (kind: "compare", key: $0.key, rangeEnd: $0.rangeEnd) }
        for operation in txn.success + txn.failure {
            switch operation.request {
            case .requestRange(let range): result.append(("range", range.key, range.rangeEnd))
            case .requestPut(let put): result.append(("put", put.key, Data()))
            case .requestDeleteRange(let delete): result.append(("delete", delete.key, delete.rangeEnd))
            case .requestTxn(let inner):
                result.append(contentsOf: [("txn", Data(), Data())] + Self.ranges(inner))
            case nil: result.append(("none", Data(), Data()))
            }
        }
        return result
    }

    @Test(arguments: F.propertySeeds())
    func nestedTxnsAreConfinedEverywhere(seed: UInt64) {
        var random = TenancyRandom(seed: seed)
        let alice = F.alice()
        let leases: [Int64] = [alice.leaseID(randomBits: 1), F.bob().leaseID(randomBits: 1), 99, -3]
        var accepted = 0
        for _ in 0..<Self.casesPerSeed {
            let namespace = random.chance(20) ? F.alice(.read) : alice
            let txn = Self.randomTxn(&random, depth: 3, leases: leases)
            let expected = Self.expectedRefusal(txn, namespace)
            let refusal = F.refusal { try namespace.inbound(txn) }
            #expect(refusal == expected, "seed \(seed): txn \(txn)")
            guard expected == nil, let rewritten = try? namespace.inbound(txn) else { continue }
            accepted += 1
            let before = Self.ranges(txn)
            let after = Self.ranges(rewritten)
            #expect(before.map(\.kind) == after.map(\.kind), "seed \(seed): txn shape changed")
            for (tenant, upstream) in zip(before, after) where tenant.kind != "txn" {
                Self.checkRange(
                    namespace, tenant: (tenant.key, tenant.rangeEnd),
                    upstream: (upstream.key, upstream.rangeEnd),
                    seed: seed, &random)
            }
        }
        #expect(accepted > Self.casesPerSeed / 10, "seed \(seed): too few valid txns to test anything")
    }

    // MARK: answers

    /// Property 3: stripping gives back the tenant's keys, in order, and
    /// drops every key outside the namespace.
    @Test(arguments: F.propertySeeds())
    func answersRoundTripAndNeverSurfaceForeignKeys(seed: UInt64) throws {
        var random = TenancyRandom(seed: seed)
        for _ in 0..<(Self.casesPerSeed / 4) {
            let namespace = Self.namespaces[random.below(Self.namespaces.count)]
            let foreign = Self.foreignKeys(namespace, &random)
            var tenantKeys: [Data] = []
            var upstreamKeys: [Data] = []
            for _ in 0..<random.below(8) {
                if random.chance(30) {
                    upstreamKeys.append(foreign[random.below(foreign.count)])
                } else {
                    let key = Self.tenantKey(&random)
                    tenantKeys.append(key)
                    upstreamKeys.append(namespace.prefix + key)
                }
            }
            let context = "seed \(seed) prefix \([UInt8](namespace.prefix))"
            var range = Etcdserverpb_RangeResponse()
            range.kvs = upstreamKeys.map { F.keyValue($0) }
            range.count = Int64(upstreamKeys.count)
            let strippedRange = try namespace.outbound(range)
            #expect(strippedRange.kvs.map(\.key) == tenantKeys, "\(context)")
            #expect(strippedRange.count == Int64(tenantKeys.count), "\(context)")

            var delete = Etcdserverpb_DeleteRangeResponse()
            delete.prevKvs = range.kvs
            #expect(try namespace.outbound(delete).prevKvs.map(\.key) == tenantKeys, "\(context)")

            var watch = Etcdserverpb_WatchResponse()
            watch.events = upstreamKeys.map { key in
                var event = Mvccpb_Event()
                event.kv = F.keyValue(key)
                event.prevKv = F.keyValue(key)
                return event
            }
            let events = try namespace.outbound(watch).events
            #expect(
                events.map(\.kv.key) == tenantKeys && events.map(\.prevKv.key) == tenantKeys, "\(context)")

            var timeToLive = Etcdserverpb_LeaseTimeToLiveResponse()
            timeToLive.keys = upstreamKeys
            #expect(try namespace.outbound(timeToLive).keys == tenantKeys, "\(context)")

            var operation = Etcdserverpb_ResponseOp()
            operation.responseRange = range
            var inner = Etcdserverpb_TxnResponse()
            inner.responses = [operation]
            var nested = Etcdserverpb_ResponseOp()
            nested.responseTxn = inner
            var txn = Etcdserverpb_TxnResponse()
            txn.responses = [nested, operation]
            let strippedTxn = try namespace.outbound(txn)
            #expect(strippedTxn.responses[1].responseRange.kvs.map(\.key) == tenantKeys, "\(context)")
            let nestedKeys = strippedTxn.responses[0].responseTxn.responses[0].responseRange.kvs.map(\.key)
            #expect(nestedKeys == tenantKeys, "\(context)")

            for key in foreign {
                var lock = V3lockpb_LockResponse()
                lock.key = key
                #expect(F.refusal { try namespace.outbound(lock) } == Namespace.Refusal.foreignKeyInAnswer)
                var put = Etcdserverpb_PutResponse()
                put.prevKv = F.keyValue(key)
                #expect(F.refusal { try namespace.outbound(put) } == Namespace.Refusal.foreignKeyInAnswer)
            }
        }
    }

    // MARK: leases

    /// Property 4: every request naming a lease without the tenant's tag is
    /// answered as etcd answers for a lease that does not exist, and one
    /// tenant's granted leases are never another's.
    @Test(arguments: F.propertySeeds())
    func foreignLeasesAreAlwaysRefused(seed: UInt64) throws {
        var random = TenancyRandom(seed: seed)
        let alice = F.alice()
        let bob = F.bob()
        for _ in 0..<Self.casesPerSeed {
            let id: Int64
            switch random.below(5) {
            case 0: id = try alice.inbound(Etcdserverpb_LeaseGrantRequest(), using: &random).id
            case 1: id = try bob.inbound(Etcdserverpb_LeaseGrantRequest(), using: &random).id
            case 2: id = Int64(bitPattern: random.next())
            case 3:
                id = Int64(bitPattern: UInt64(alice.leaseTag) << 32 | 1 << 63 | UInt64(random.next() >> 40))
            default: id = Int64(random.below(3)) - 1
            }
            let owned = id > 0 && UInt64(id) >> 32 == UInt64(alice.leaseTag)
            #expect(alice.ownsLease(id) == owned, "seed \(seed) lease \(id)")
            #expect(!(alice.ownsLease(id) && bob.ownsLease(id)), "seed \(seed) lease \(id) has two owners")
            try Self.checkLeaseUses(alice, id: id, owned: owned, seed: seed)
        }
    }

    static func checkLeaseUses(_ namespace: Namespace, id: Int64, owned: Bool, seed: UInt64) throws {
        let context = "seed \(seed) lease \(id)"
        let notFound = Namespace.Refusal.leaseNotFound
        let attachable = owned || id == 0
        #expect(
            (F.refusal { try namespace.inbound(F.put(F.bytes("k"), lease: id)) } == nil) == attachable,
            "\(context)")
        if !attachable {
            #expect(
                F.refusal { try namespace.inbound(F.put(F.bytes("k"), lease: id)) } == notFound, "\(context)")
            let txn = F.txn(success: [F.operation(F.put(F.bytes("k"), lease: id))])
            #expect(F.refusal { try namespace.inbound(txn) } == notFound, "\(context)")
        }
        var revoke = Etcdserverpb_LeaseRevokeRequest()
        revoke.id = id
        #expect(F.refusal { try namespace.inbound(revoke) } == (owned ? nil : notFound), "\(context)")
        var keepAlive = Etcdserverpb_LeaseKeepAliveRequest()
        keepAlive.id = id
        if case .forward = namespace.inbound(keepAlive) {
            #expect(owned, "\(context)")
        } else {
            #expect(!owned)
        }
        var timeToLive = Etcdserverpb_LeaseTimeToLiveRequest()
        timeToLive.id = id
        if case .forward = namespace.inbound(timeToLive) {
            #expect(owned, "\(context)")
        } else {
            #expect(!owned)
        }
        var lock = V3lockpb_LockRequest()
        lock.name = F.bytes("m")
        lock.lease = id
        let lockRefusal = F.refusal { try namespace.inbound(lock) }
        #expect(lockRefusal == (attachable ? nil : Namespace.Refusal.coordinationLeaseNotFound), "\(context)")
        var campaign = V3electionpb_CampaignRequest()
        campaign.name = F.bytes("e")
        campaign.lease = id
        let campaignRefusal = F.refusal { try namespace.inbound(campaign) }
        #expect(
            campaignRefusal == (attachable ? nil : Namespace.Refusal.coordinationLeaseNotFound), "\(context)")
        var grant = Etcdserverpb_LeaseGrantRequest()
        grant.id = id
        let grantRefusal = F.refusal { try namespace.inbound(grant) }
        #expect(grantRefusal == (attachable ? nil : Namespace.Refusal.permissionDenied), "\(context)")
    }
}
