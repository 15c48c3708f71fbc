import CairnAPI
import CairnGateway
import CairnRPC
import Foundation
import Testing

private typealias F = TenancyFixture

/// The hand-written attacks of issue 7 ("Done when"): tenant alice, with
/// every request shape we could think of, tries to read, write, watch or
/// learn of tenant bob's keys and leases. A small key space holds both
/// tenants' keys and the keys just around alice's prefix; each attack is
/// rewritten by alice's namespace and evaluated on it with etcd's range
/// rules, and must touch alice's keys only.
@Suite("Namespace: attacks on isolation")
struct NamespaceAttackTests {
    let alice = F.alice()
    let bob = F.bob()

    /// Upstream keys: alice's, bob's, and neighbours of alice's prefix.
    let keySpace: [Data] =
        [
            "tenants/alice/a", "tenants/alice/config/x", "tenants/alice/\u{7f}",
            "tenants/bob/secret", "tenants/bob/a", "tenants/alice", "tenants/alice0", "tenants/alicf",
            "tenants/alica/zzz", "tenants/", "a",
        ].map(F.bytes) + [Data([0]), Data([0xff]), F.bytes("tenants/alice/") + Data([0xff, 0xff])]

    var aliceKeys: Set<Data> { Set(self.keySpace.filter { $0.starts(with: F.bytes(F.alicePrefix)) }) }

    /// The keys of the key space an upstream range selects.
    func touched(key: Data, rangeEnd: Data) -> Set<Data> {
        Set(self.keySpace.filter { F.rangeSelects($0, key: key, rangeEnd: rangeEnd) })
    }

    func expectConfined(_ key: Data, _ rangeEnd: Data, _ attack: String) {
        let touched = self.touched(key: key, rangeEnd: rangeEnd)
        #expect(
            touched.isSubset(of: self.aliceKeys), "\(attack) reaches \(touched.subtracting(self.aliceKeys))")
    }

    /// Tenant ranges an attacker would try, with what they aim at.
    static let hostileRanges: [(key: Data, rangeEnd: Data, attack: String)] = [
        (Data([0]), Data([0]), "from-key \\0 (all keys)"),
        (F.bytes("a"), Data([0]), "from a key to the end"),
        (F.bytes("a"), Data([0xff, 0xff, 0xff, 0xff]), "range_end past the prefix"),
        (Data([0xff]), Data([0]), "from \\xff to the end"),
        (F.bytes("../bob/"), Data([0]), "path traversal"),
        (F.bytes("tenants/bob/secret"), Data(), "bob's absolute key"),
        (F.bytes("tenants/bob/"), F.bytes("tenants/bob0"), "bob's whole prefix"),
        (Data([0]), Data([0x01]), "the lowest keys"),
        (F.bytes("z"), F.bytes("a"), "an inverted range"),
        (Data([0]), Data(), "the single key \\0"),
    ]

    @Test func rangesAndDeletesNeverLeaveTheNamespace() throws {
        for (key, rangeEnd, attack) in Self.hostileRanges {
            let range = try self.alice.inbound(F.range(key, rangeEnd))
            self.expectConfined(range.key, range.rangeEnd, "range: \(attack)")
            let delete = try self.alice.inbound(F.delete(key, rangeEnd))
            self.expectConfined(delete.key, delete.rangeEnd, "delete: \(attack)")
        }
        let all = try self.alice.inbound(F.range(Data([0]), Data([0])))
        #expect(
            self.touched(key: all.key, rangeEnd: all.rangeEnd) == self.aliceKeys,
            "\\0..\\0 is the whole namespace")
    }

    @Test func emptyKeysAreRefusedNotWidened() {
        for rangeEnd in [Data(), Data([0]), F.bytes("zzz")] {
            #expect(
                F.refusal { try self.alice.inbound(F.range(Data(), rangeEnd)) }
                    == Namespace.Refusal.keyNotProvided)
            #expect(
                F.refusal { try self.alice.inbound(F.delete(Data(), rangeEnd)) }
                    == Namespace.Refusal.keyNotProvided)
        }
    }

    @Test func txnComparesAndOperationsOnForeignKeysStayInside() throws {
        var operations: [Etcdserverpb_RequestOp] = []
        var compares: [Etcdserverpb_Compare] = []
        for (key, rangeEnd, _) in Self.hostileRanges {
            compares.append(F.compare(key, rangeEnd))
            operations.append(F.operation(F.range(key, rangeEnd)))
            operations.append(F.operation(F.delete(key, rangeEnd)))
        }
        operations.append(F.operation(F.put(F.bytes("tenants/bob/secret"))))
        let nested = F.txn(compare: compares, success: operations, failure: operations)
        let txn = F.txn(compare: compares, success: [F.operation(nested)], failure: operations)
        let rewritten = try self.alice.inbound(txn)
        func check(_ txn: Etcdserverpb_TxnRequest) {
            for compare in txn.compare { self.expectConfined(compare.key, compare.rangeEnd, "txn compare") }
            for operation in txn.success + txn.failure {
                switch operation.request {
                case .requestRange(let range): self.expectConfined(range.key, range.rangeEnd, "txn range")
                case .requestDeleteRange(let delete):
                    self.expectConfined(delete.key, delete.rangeEnd, "txn delete")
                case .requestPut(let put): self.expectConfined(put.key, Data(), "txn put")
                case .requestTxn(let inner): check(inner)
                case nil: Issue.record("an operation lost its request")
                }
            }
        }
        check(rewritten)
    }

    @Test func watchesOfEveryShapeStayInside() throws {
        for (key, rangeEnd, attack) in Self.hostileRanges + [(Data(), Data([0]), "empty key to the end")] {
            var request = Etcdserverpb_WatchRequest()
            request.createRequest.key = key
            request.createRequest.rangeEnd = rangeEnd
            request.createRequest.prevKv = true
            let create = try self.alice.inbound(request).createRequest
            self.expectConfined(create.key, create.rangeEnd, "watch: \(attack)")
        }
    }

    @Test func progressRequestsCarryNothingToRewrite() throws {
        var progress = Etcdserverpb_WatchRequest()
        progress.progressRequest = Etcdserverpb_WatchProgressRequest()
        #expect(try self.alice.inbound(progress) == progress)
        var cancel = Etcdserverpb_WatchRequest()
        cancel.cancelRequest.watchID = 1
        #expect(try self.alice.inbound(cancel) == cancel)
    }

    @Test func bobsLeasesAreInvisibleAndUnusable() throws {
        var generator = TenancyRandom(seed: 0xb0b)
        let bobsLease = try self.bob.inbound(Etcdserverpb_LeaseGrantRequest(), using: &generator).id
        #expect(self.bob.ownsLease(bobsLease) && !self.alice.ownsLease(bobsLease))
        let notFound = Namespace.Refusal.leaseNotFound

        var revoke = Etcdserverpb_LeaseRevokeRequest()
        revoke.id = bobsLease
        #expect(F.refusal { try self.alice.inbound(revoke) } == notFound)
        var keepAlive = Etcdserverpb_LeaseKeepAliveRequest()
        keepAlive.id = bobsLease
        guard case .answer(let kept) = self.alice.inbound(keepAlive) else {
            Issue.record("bob's lease was kept alive by alice")
            return
        }
        #expect(kept.ttl == 0 && kept.id == bobsLease)
        var timeToLive = Etcdserverpb_LeaseTimeToLiveRequest()
        timeToLive.id = bobsLease
        timeToLive.keys = true
        guard case .answer(let inspected) = self.alice.inbound(timeToLive) else {
            Issue.record("bob's lease was inspected by alice")
            return
        }
        #expect(inspected.ttl == -1 && inspected.keys.isEmpty)
        #expect(F.refusal { try self.alice.inbound(F.put(F.bytes("k"), lease: bobsLease)) } == notFound)
        let txn = F.txn(success: [F.operation(F.put(F.bytes("k"), lease: bobsLease))])
        #expect(F.refusal { try self.alice.inbound(txn) } == notFound)
        var grant = Etcdserverpb_LeaseGrantRequest()
        grant.id = bobsLease
        #expect(F.refusal { try self.alice.inbound(grant) } == Namespace.Refusal.permissionDenied)

        var leases = Etcdserverpb_LeaseLeasesResponse()
        var status = Etcdserverpb_LeaseStatus()
        status.id = bobsLease
        leases.leases = [status]
        #expect(try self.alice.outbound(leases).leases.isEmpty)
    }

    @Test func lockNamesAndKeysCannotReachBob() throws {
        for name in ["", "../bob/mutex", "tenants/bob/mutex", "\u{0}"] {
            var lock = V3lockpb_LockRequest()
            lock.name = F.bytes(name)
            let rewritten = try self.alice.inbound(lock)
            #expect(rewritten.name.starts(with: F.bytes(F.alicePrefix)), "lock name \(name)")
        }
        var unlock = V3lockpb_UnlockRequest()
        unlock.key = F.bytes("tenants/bob/mutex/694d")
        #expect(try self.alice.inbound(unlock).key == F.bytes("tenants/alice/tenants/bob/mutex/694d"))
        var lock = V3lockpb_LockRequest()
        lock.name = F.bytes("mutex")
        lock.lease = self.bob.leaseID(randomBits: 1)
        #expect(F.refusal { try self.alice.inbound(lock) } == Namespace.Refusal.coordinationLeaseNotFound)
    }

    @Test func electionNamesAndLeaderKeysCannotReachBob() throws {
        var leader = V3electionpb_LeaderRequest()
        leader.name = F.bytes("tenants/bob/election")
        #expect(try self.alice.inbound(leader).name == F.bytes("tenants/alice/tenants/bob/election"))
        var resign = V3electionpb_ResignRequest()
        resign.leader.name = F.bytes("tenants/bob/election")
        resign.leader.key = F.bytes("tenants/bob/election/694d")
        resign.leader.lease = self.alice.leaseID(randomBits: 2)
        let rewritten = try self.alice.inbound(resign)
        #expect(rewritten.leader.key.starts(with: F.bytes(F.alicePrefix)))
        #expect(rewritten.leader.name.starts(with: F.bytes(F.alicePrefix)))
        var observed = V3electionpb_LeaderResponse()
        observed.kv = F.keyValue(F.bytes("tenants/bob/election/694d"))
        #expect(F.refusal { try self.alice.outbound(observed) } == Namespace.Refusal.foreignKeyInAnswer)
    }

    @Test func compactionIsClusterWide() {
        #expect(
            F.refusal { try self.alice.inbound(Etcdserverpb_CompactionRequest()) }
                == Namespace.Refusal.permissionDenied)
    }
}
