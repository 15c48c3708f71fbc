import CairnAPI
import CairnRPC
import Foundation
import Testing

@testable import CairnClient

@Suite struct LeaseTests {
    @Test func leaseAttachTimeToLiveAndRevokeDeletesKeys() async throws {
        try await EtcdFixture.with { client, _ in
            let lease = try await client.grantLease(ttl: 30)
            #expect(lease.id != 0)
            #expect(lease.ttl == 30)
            try await client.put(key: "session/a", value: "1", lease: lease.id)
            try await client.put(key: "session/b", value: "2", lease: lease.id)
            try await client.put(key: "durable", value: "3")

            #expect(try await client.leases() == [lease.id])
            let alive = try await client.leaseTimeToLive(lease.id, keys: true)
            #expect(alive.grantedTtl == 30)
            #expect(alive.ttl > 0 && alive.ttl <= 30)
            #expect(Set(alive.keys.map { $0.text }) == ["session/a", "session/b"])
            #expect(try await client.get("session/a").kvs.first?.lease == lease.id)

            let revoked = try await client.revokeLease(lease.id)
            #expect(revoked.header.revision == 5, "revoking deletes the attached keys in one revision")
            #expect(try await client.get("session/", end: .prefix).count == 0)
            #expect(try await client.get("durable").count == 1)
            #expect(try await client.leaseTimeToLive(lease.id).ttl == -1)
            #expect(try await client.leases().isEmpty)

            let error = await #expect(throws: RPCStatus.self) { try await client.revokeLease(lease.id) }
            #expect(error?.etcdError == .leaseNotFound)
            let unknown = await #expect(throws: RPCStatus.self) {
                try await client.put(key: "x", value: "y", lease: 12345)
            }
            #expect(unknown?.etcdError == .leaseNotFound)
        }
    }

    @Test func keepAliveRefreshesUntilRevoked() async throws {
        try await EtcdFixture.with { client, _ in
            // Generous TTLs: a loaded CI machine can stall a process for seconds.
            let lease = try await client.grantLease(ttl: 10)
            var answers = 0
            let error = await #expect(throws: LeaseKeepAliveError.self) {
                for try await answer in client.keepAlive(lease.id) {
                    #expect(answer.id == lease.id)
                    #expect(answer.ttl == 10)
                    answers += 1
                    if answers == 2 { try await client.revokeLease(lease.id) }
                }
            }
            #expect(answers == 2)
            #expect(error == .leaseExpired(id: lease.id))
        }
    }

    @Test func keepAliveUntilCancelledOutlivesTheTTL() async throws {
        try await EtcdFixture.with { client, _ in
            let lease = try await client.grantLease(ttl: 6)
            try await client.put(key: "alive", value: "1", lease: lease.id)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await client.keepAliveUntilCancelled(lease.id) }
                try await Task.sleep(for: .milliseconds(9_000))
                #expect(try await client.get("alive").count == 1, "kept alive past its 6 s TTL")
                let remaining = try await client.leaseTimeToLive(lease.id)
                #expect(remaining.ttl > 0)
                group.cancelAll()
                try await group.waitForAll()
            }
        }
    }
}
