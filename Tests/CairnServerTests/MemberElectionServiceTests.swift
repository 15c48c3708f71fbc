import CairnAPI
import CairnClient
import CairnRPC
import CairnTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing

extension EtcdClient {
    func campaign(_ name: String, lease: Int64, value: String, timeout: TimeAmount? = nil) async throws
        -> V3electionpb_CampaignResponse
    {
        var request = V3electionpb_CampaignRequest()
        request.name = Data(name.utf8)
        request.lease = lease
        request.value = Data(value.utf8)
        return try await self.rpc.unary(EtcdElection.campaign, request, options: .init(timeout: timeout))
    }

    func proclaim(_ leader: V3electionpb_LeaderKey?, value: String) async throws
        -> V3electionpb_ProclaimResponse
    {
        var request = V3electionpb_ProclaimRequest()
        if let leader { request.leader = leader }
        request.value = Data(value.utf8)
        return try await self.rpc.unary(EtcdElection.proclaim, request)
    }

    func leader(_ name: String) async throws -> V3electionpb_LeaderResponse {
        var request = V3electionpb_LeaderRequest()
        request.name = Data(name.utf8)
        return try await self.rpc.unary(EtcdElection.leader, request)
    }

    func resign(_ leader: V3electionpb_LeaderKey?) async throws -> V3electionpb_ResignResponse {
        var request = V3electionpb_ResignRequest()
        if let leader { request.leader = leader }
        return try await self.rpc.unary(EtcdElection.resign, request)
    }
}

/// Collects an Observe stream's answers as (revision, key, value).
final class ObservedLeaders: Sendable {
    let seen = NIOLockedValueBox<[(revision: Int64, key: String, value: String)]>([])
    let stream: RPCClientStream<V3electionpb_LeaderRequest>

    init(_ client: EtcdClient, name: String) {
        let seen = self.seen
        self.stream = client.rpc.connection().openStream(
            EtcdElection.observe,
            onResponse: { (response: V3electionpb_LeaderResponse) in
                seen.withLockedValue {
                    $0.append(
                        (
                            response.header.revision, String(decoding: response.kv.key, as: UTF8.self),
                            String(decoding: response.kv.value, as: UTF8.self)
                        ))
                }
            }, onClose: { _ in })
        var request = V3electionpb_LeaderRequest()
        request.name = Data(name.utf8)
        self.stream.send(request)
        self.stream.finish()
    }

    /// Waits until `count` answers arrived (or 5 s passed) and returns them.
    func waitFor(_ count: Int) async throws -> [(revision: Int64, key: String, value: String)] {
        for _ in 0..<250 {
            let current = self.seen.withLockedValue { $0 }
            if current.count >= count { return current }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        return self.seen.withLockedValue { $0 }
    }
}

/// The v3election service (`v3electionpb.Election`) through gRPC, on Cairn and etcd.
@Suite(.serialized) struct MemberElectionServiceTests {
    @Test(arguments: CoordinationTarget.allCases)
    func campaignProclaimLeaderResign(_ target: CoordinationTarget) async throws {
        try await target.run { client in
            await expectStatus(.unknown, "election: no leader") { try await client.leader("E") }
            let lease = try await client.grantLease(ttl: 30).id
            let won = try await client.campaign("E", lease: lease, value: "a")
            #expect(won.header.revision == 2)
            #expect(String(decoding: won.leader.key, as: UTF8.self) == "E/" + String(lease, radix: 16))
            #expect(won.leader.name == Data("E".utf8) && won.leader.rev == 2 && won.leader.lease == lease)
            var leader = try await client.leader("E")
            #expect(leader.kv.value == Data("a".utf8) && leader.kv.createRevision == 2)
            #expect(leader.header.revision == 2)
            #expect(try await client.proclaim(won.leader, value: "a2").header.revision == 3)
            leader = try await client.leader("E")
            #expect(leader.kv.value == Data("a2".utf8) && leader.kv.version == 2)
            // Campaigning again with the same lease keeps the key and proclaims.
            let again = try await client.campaign("E", lease: lease, value: "a3")
            #expect(again.leader.rev == 2 && again.header.revision == 3)
            #expect(try await client.leader("E").kv.value == Data("a3".utf8))
            #expect(try await client.resign(won.leader).header.revision == 5)
            await expectStatus(.unknown, "election: no leader") { try await client.leader("E") }
            await expectStatus(.unknown, "election: not leader") {
                try await client.proclaim(won.leader, value: "x")
            }
            // Resigning a key that is gone still answers (the txn's header).
            #expect(try await client.resign(won.leader).header.revision == 5)
            await expectStatus(.unknown, "\"leader\" field must be provided") {
                try await client.proclaim(nil, value: "x")
            }
            await expectStatus(.unknown, "\"leader\" field must be provided") { try await client.resign(nil) }
            await expectStatus(.unknown, "etcdserver: requested lease not found") {
                try await client.campaign("E", lease: 0x7777, value: "x")
            }
        }
    }

    @Test(arguments: CoordinationTarget.allCases)
    func secondCandidateWinsWhenTheLeaderResignsAndObserversFollow(_ target: CoordinationTarget) async throws
    {
        try await target.run { client in
            let observer = ObservedLeaders(client, name: "E")
            defer { observer.stream.cancel() }
            let first = try await client.grantLease(ttl: 30).id
            let second = try await client.grantLease(ttl: 30).id
            let won = try await client.campaign("E", lease: first, value: "a")
            let elected = NIOLockedValueBox(false)
            let candidate = Task {
                let response = try await client.campaign("E", lease: second, value: "b")
                elected.withLockedValue { $0 = true }
                return response
            }
            try await Task.sleep(nanoseconds: 400_000_000)
            #expect(!elected.withLockedValue { $0 })
            _ = try await client.proclaim(won.leader, value: "a2")
            _ = try await client.resign(won.leader)
            let response = try await candidate.value
            #expect(response.leader.rev == 3)
            // The header of the candidate's own put.
            #expect(response.header.revision == 3)
            let firstKey = "E/" + String(first, radix: 16)
            let secondKey = "E/" + String(second, radix: 16)
            let seen = try await observer.waitFor(3)
            #expect(seen.map(\.key) == [firstKey, firstKey, secondKey])
            #expect(seen.map(\.value) == ["a", "a2", "b"])
            #expect(seen.map(\.revision) == [2, 4, 5])
        }
    }

    @Test(arguments: CoordinationTarget.allCases)
    func cancelledCandidateResigns(_ target: CoordinationTarget) async throws {
        try await target.run { client in
            let first = try await client.grantLease(ttl: 30).id
            let second = try await client.grantLease(ttl: 30).id
            _ = try await client.campaign("E", lease: first, value: "a")
            do {
                _ = try await client.campaign("E", lease: second, value: "b", timeout: .milliseconds(300))
                Issue.record("a blocked campaign answered")
            } catch let status as RPCStatus {
                // A loaded etcd may see the client's cancel before its own
                // deadline and answer "context canceled" (unknown) instead.
                #expect(
                    status.code == .deadlineExceeded || (target == .etcd && status.code == .unknown),
                    "\(status)")
            }
            var keys: [String] = []
            for _ in 0..<50 {
                keys = try await client.keys("E/")
                if keys.count == 1 { break }
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            #expect(keys == ["E/" + String(first, radix: 16)])
        }
    }
}
