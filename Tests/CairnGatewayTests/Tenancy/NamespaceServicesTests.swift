import CairnAPI
import CairnGateway
import CairnRPC
import Foundation
import Testing

private typealias F = TenancyFixture

@Suite("Namespace: Watch, Lease, Lock and Election")
struct NamespaceServicesTests {
    let alice = F.alice()
    let bob = F.bob()
    let end = F.bytes("tenants/alice0")

    // MARK: watch

    func watchCreate(_ key: Data, _ rangeEnd: Data = Data()) -> Etcdserverpb_WatchRequest {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = key
        create.rangeEnd = rangeEnd
        create.prevKv = true
        create.startRevision = 9
        var request = Etcdserverpb_WatchRequest()
        request.createRequest = create
        return request
    }

    @Test func watchRangesAreRewritten() throws {
        let single = try self.alice.inbound(self.watchCreate(F.bytes("k"))).createRequest
        #expect(single.key == F.bytes("tenants/alice/k") && single.rangeEnd.isEmpty)
        #expect(single.prevKv && single.startRevision == 9)
        let prefix = try self.alice.inbound(self.watchCreate(F.bytes("k"), F.bytes("l"))).createRequest
        #expect(prefix.rangeEnd == F.bytes("tenants/alice/l"))
        let fromKey = try self.alice.inbound(self.watchCreate(F.bytes("k"), F.bytes([0]))).createRequest
        #expect(fromKey.rangeEnd == self.end)
    }

    @Test func watchOfAnEmptyKeyReadsItAsNulAsEtcdDoes() throws {
        let all = try self.alice.inbound(self.watchCreate(Data(), F.bytes([0]))).createRequest
        #expect(all.key == F.bytes("tenants/alice/") + F.bytes([0]))
        #expect(all.rangeEnd == self.end)
        let single = try self.alice.inbound(self.watchCreate(Data())).createRequest
        #expect(single.key == F.bytes("tenants/alice/") + F.bytes([0]) && single.rangeEnd.isEmpty)
    }

    @Test func cancelAndProgressRequestsPassUnchanged() throws {
        var cancel = Etcdserverpb_WatchRequest()
        cancel.cancelRequest.watchID = 4
        #expect(try self.alice.inbound(cancel) == cancel)
        var progress = Etcdserverpb_WatchRequest()
        progress.progressRequest = Etcdserverpb_WatchProgressRequest()
        #expect(try self.alice.inbound(progress) == progress)
        #expect(try F.alice(.read).inbound(self.watchCreate(F.bytes("k"))).createRequest.key.count > 0)
    }

    @Test func watchEventsAreStrippedAndForeignOnesDropped() throws {
        func event(_ key: String, previous: String?) -> Mvccpb_Event {
            var event = Mvccpb_Event()
            event.type = .put
            event.kv = F.keyValue(F.bytes(key))
            if let previous { event.prevKv = F.keyValue(F.bytes(previous)) }
            return event
        }
        var response = Etcdserverpb_WatchResponse()
        response.watchID = 3
        response.events = [
            event("tenants/alice/a", previous: "tenants/alice/a"), event("tenants/bob/b", previous: nil),
            event("tenants/alice/c", previous: nil), event("tenants/alice/d", previous: "tenants/bob/d"),
        ]
        let stripped = try self.alice.outbound(response)
        #expect(stripped.watchID == 3)
        #expect(stripped.events.map(\.kv.key) == [F.bytes("a"), F.bytes("c")])
        #expect(stripped.events[0].prevKv.key == F.bytes("a"))
        #expect(!stripped.events[1].hasPrevKv)
    }

    // MARK: lease

    @Test func leaseTagsAreStableDistinctAndInRange() {
        let tag = Namespace.leaseTag(forTenantNamed: "alice")
        #expect(tag == Namespace.leaseTag(forTenantNamed: "alice"))
        #expect(tag != Namespace.leaseTag(forTenantNamed: "bob"))
        for name in ["", "a", "alice", "tenant-7", String(repeating: "z", count: 300)] {
            let tag = Namespace.leaseTag(forTenantNamed: name)
            #expect(tag >= 1 && tag <= Namespace.leaseTagMax)
        }
    }

    @Test func grantWithoutAnIDGetsATaggedRandomOne() throws {
        var generator = TenancyRandom(seed: 1)
        let first = try self.alice.inbound(Etcdserverpb_LeaseGrantRequest(), using: &generator)
        let second = try self.alice.inbound(Etcdserverpb_LeaseGrantRequest(), using: &generator)
        #expect(first.id > 0 && second.id > 0 && first.id != second.id)
        #expect(self.alice.ownsLease(first.id) && self.alice.ownsLease(second.id))
        #expect(!self.bob.ownsLease(first.id))
        #expect(UInt64(first.id) >> 32 == UInt64(self.alice.leaseTag))
    }

    @Test func grantWithAClientChosenIDMustCarryTheTag() throws {
        var generator = TenancyRandom(seed: 2)
        var own = Etcdserverpb_LeaseGrantRequest()
        own.id = self.alice.leaseID(randomBits: 77)
        own.ttl = 30
        #expect(try self.alice.inbound(own, using: &generator) == own)
        var foreign = Etcdserverpb_LeaseGrantRequest()
        foreign.id = self.bob.leaseID(randomBits: 77)
        #expect(
            F.refusal { try self.alice.inbound(foreign, using: &generator) }
                == Namespace.Refusal.permissionDenied)
        foreign.id = 12345
        #expect(
            F.refusal { try self.alice.inbound(foreign, using: &generator) }
                == Namespace.Refusal.permissionDenied)
        #expect(
            F.refusal { try F.alice(.read).inbound(Etcdserverpb_LeaseGrantRequest(), using: &generator) }
                == Namespace.Refusal.permissionDenied)
    }

    @Test func grantAnswerOutsideTheTagIsRefused() throws {
        var response = Etcdserverpb_LeaseGrantResponse()
        response.id = self.alice.leaseID(randomBits: 1)
        #expect(try self.alice.outbound(response) == response)
        response.id = self.bob.leaseID(randomBits: 1)
        #expect(F.refusal { try self.alice.outbound(response) } == Namespace.Refusal.foreignLeaseInAnswer)
    }

    @Test func foreignLeasesLookLikeLeasesThatDoNotExist() throws {
        let foreign = self.bob.leaseID(randomBits: 9)
        let notFound = RPCStatus(.notFound, "etcdserver: requested lease not found")
        var revoke = Etcdserverpb_LeaseRevokeRequest()
        revoke.id = foreign
        #expect(F.refusal { try self.alice.inbound(revoke) } == notFound)
        revoke.id = self.alice.leaseID(randomBits: 9)
        #expect(try self.alice.inbound(revoke) == revoke)
        #expect(F.refusal { try F.alice(.read).inbound(revoke) } == Namespace.Refusal.permissionDenied)

        var keepAlive = Etcdserverpb_LeaseKeepAliveRequest()
        keepAlive.id = foreign
        var keepAliveAnswer = Etcdserverpb_LeaseKeepAliveResponse()
        keepAliveAnswer.id = foreign
        keepAliveAnswer.ttl = 0
        #expect(self.alice.inbound(keepAlive) == .answer(keepAliveAnswer))
        keepAlive.id = self.alice.leaseID(randomBits: 9)
        #expect(self.alice.inbound(keepAlive) == .forward(keepAlive))

        var timeToLive = Etcdserverpb_LeaseTimeToLiveRequest()
        timeToLive.id = foreign
        timeToLive.keys = true
        var timeToLiveAnswer = Etcdserverpb_LeaseTimeToLiveResponse()
        timeToLiveAnswer.id = foreign
        timeToLiveAnswer.ttl = -1
        #expect(self.alice.inbound(timeToLive) == .answer(timeToLiveAnswer))
        timeToLive.id = self.alice.leaseID(randomBits: 9)
        #expect(self.alice.inbound(timeToLive) == .forward(timeToLive))

        #expect(F.refusal { try self.alice.inbound(F.put(F.bytes("k"), lease: foreign)) } == notFound)
        let txn = F.txn(failure: [
            F.operation(F.txn(success: [F.operation(F.put(F.bytes("k"), lease: foreign))]))
        ])
        #expect(F.refusal { try self.alice.inbound(txn) } == notFound)
        let own = self.alice.leaseID(randomBits: 5)
        #expect(try self.alice.inbound(F.put(F.bytes("k"), lease: own)).lease == own)
    }

    @Test func timeToLiveKeysAreStrippedAndLeasesFiltered() throws {
        var timeToLive = Etcdserverpb_LeaseTimeToLiveResponse()
        timeToLive.id = self.alice.leaseID(randomBits: 1)
        timeToLive.keys = [F.bytes("tenants/alice/a"), F.bytes("tenants/bob/b"), F.bytes("tenants/alice/c")]
        #expect(try self.alice.outbound(timeToLive).keys == [F.bytes("a"), F.bytes("c")])

        var leases = Etcdserverpb_LeaseLeasesResponse()
        leases.leases = [1, self.alice.leaseID(randomBits: 1), self.bob.leaseID(randomBits: 2), -4].map {
            id in
            var status = Etcdserverpb_LeaseStatus()
            status.id = id
            return status
        }
        #expect(try self.alice.outbound(leases).leases.map(\.id) == [self.alice.leaseID(randomBits: 1)])
    }

    // MARK: lock

    @Test func lockNamesAndKeysAreConfined() throws {
        let lease = self.alice.leaseID(randomBits: 3)
        var lock = V3lockpb_LockRequest()
        lock.name = F.bytes("mutex")
        lock.lease = lease
        let rewritten = try self.alice.inbound(lock)
        #expect(rewritten.name == F.bytes("tenants/alice/mutex") && rewritten.lease == lease)

        var locked = V3lockpb_LockResponse()
        locked.key = F.bytes("tenants/alice/mutex/abc")
        #expect(try self.alice.outbound(locked).key == F.bytes("mutex/abc"))
        locked.key = F.bytes("tenants/bob/mutex/abc")
        #expect(F.refusal { try self.alice.outbound(locked) } == Namespace.Refusal.foreignKeyInAnswer)

        var unlock = V3lockpb_UnlockRequest()
        unlock.key = F.bytes("mutex/abc")
        #expect(try self.alice.inbound(unlock).key == F.bytes("tenants/alice/mutex/abc"))
        unlock.key = Data()
        #expect(
            F.refusal { try self.alice.inbound(unlock) }
                == RPCStatus(.unknown, "etcdserver: key is not provided"))
    }

    @Test func lockRefusalsSpeakAsEtcdsLockServer() {
        var lock = V3lockpb_LockRequest()
        lock.name = F.bytes("mutex")
        lock.lease = self.bob.leaseID(randomBits: 3)
        #expect(
            F.refusal { try self.alice.inbound(lock) }
                == RPCStatus(.unknown, "etcdserver: requested lease not found"))
        #expect(
            F.refusal { try F.alice(.read).inbound(lock) }
                == RPCStatus(.unknown, "etcdserver: permission denied"))
        var unlock = V3lockpb_UnlockRequest()
        unlock.key = F.bytes("mutex/1")
        #expect(
            F.refusal { try F.alice(.read).inbound(unlock) }
                == RPCStatus(.unknown, "etcdserver: permission denied"))
    }

    // MARK: election

    func leaderKey(name: String, key: String, lease: Int64) -> V3electionpb_LeaderKey {
        var leader = V3electionpb_LeaderKey()
        leader.name = F.bytes(name)
        leader.key = F.bytes(key)
        leader.rev = 12
        leader.lease = lease
        return leader
    }

    @Test func campaignProclaimResignAreConfined() throws {
        let lease = self.alice.leaseID(randomBits: 8)
        var campaign = V3electionpb_CampaignRequest()
        campaign.name = F.bytes("leader")
        campaign.lease = lease
        campaign.value = F.bytes("me")
        let rewritten = try self.alice.inbound(campaign)
        #expect(rewritten.name == F.bytes("tenants/alice/leader") && rewritten.value == F.bytes("me"))

        var elected = V3electionpb_CampaignResponse()
        elected.leader = self.leaderKey(
            name: "tenants/alice/leader", key: "tenants/alice/leader/7", lease: lease)
        let stripped = try self.alice.outbound(elected)
        #expect(stripped.leader == self.leaderKey(name: "leader", key: "leader/7", lease: lease))

        var proclaim = V3electionpb_ProclaimRequest()
        proclaim.leader = stripped.leader
        proclaim.value = F.bytes("new")
        let proclaimed = try self.alice.inbound(proclaim)
        #expect(proclaimed.leader == elected.leader && proclaimed.value == F.bytes("new"))

        var resign = V3electionpb_ResignRequest()
        resign.leader = stripped.leader
        #expect(try self.alice.inbound(resign).leader == elected.leader)
    }

    @Test func electionRefusalsSpeakAsEtcdsElectionServer() {
        let foreign = self.bob.leaseID(randomBits: 8)
        var campaign = V3electionpb_CampaignRequest()
        campaign.name = F.bytes("leader")
        campaign.lease = foreign
        #expect(F.refusal { try self.alice.inbound(campaign) } == Namespace.Refusal.coordinationLeaseNotFound)
        var proclaim = V3electionpb_ProclaimRequest()
        #expect(
            F.refusal { try self.alice.inbound(proclaim) }
                == RPCStatus(.unknown, "\"leader\" field must be provided"))
        proclaim.leader = self.leaderKey(name: "leader", key: "", lease: self.alice.leaseID(randomBits: 1))
        #expect(
            F.refusal { try self.alice.inbound(proclaim) } == Namespace.Refusal.coordinationKeyNotProvided)
        var resign = V3electionpb_ResignRequest()
        resign.leader = self.leaderKey(name: "leader", key: "leader/1", lease: foreign)
        #expect(F.refusal { try self.alice.inbound(resign) } == Namespace.Refusal.coordinationLeaseNotFound)
        resign.leader.lease = self.alice.leaseID(randomBits: 1)
        #expect(
            F.refusal { try F.alice(.read).inbound(resign) } == Namespace.Refusal.coordinationPermissionDenied
        )
    }

    @Test func leaderAndObserveAreReadsAndStripTheKey() throws {
        var request = V3electionpb_LeaderRequest()
        request.name = F.bytes("leader")
        #expect(try F.alice(.read).inbound(request).name == F.bytes("tenants/alice/leader"))
        var response = V3electionpb_LeaderResponse()
        response.kv = F.keyValue(F.bytes("tenants/alice/leader/7"), value: "me")
        let stripped = try self.alice.outbound(response)
        #expect(stripped.kv.key == F.bytes("leader/7") && stripped.kv.value == F.bytes("me"))
        response.kv.key = F.bytes("tenants/bob/leader/7")
        #expect(F.refusal { try self.alice.outbound(response) } == Namespace.Refusal.foreignKeyInAnswer)
    }
}
