import CairnAPI
import CairnClient
import CairnRPC
import CairnTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// A server to run the same v3lock/v3election scenario against: a real
/// `cairn member`, or the real etcd (when installed), so every expected
/// answer is checked to be etcd's own.
enum CoordinationTarget: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case cairn
    case etcd

    var testDescription: String { self.rawValue }

    /// Starts the server, runs `body` with a client, and stops both.
    func run(_ body: (EtcdClient) async throws -> Void) async throws {
        let process: AnyObject
        let endpoint: String
        var directory: URL?
        defer { if let directory { try? FileManager.default.removeItem(at: directory) } }
        switch self {
        case .cairn:
            let member = try MemberProcess()
            process = member
            endpoint = member.endpoint
        case .etcd:
            let port = TestPorts.allocate()
            let etcdDirectory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "cairn-etcd-\(getpid())-\(port)")
            directory = etcdDirectory
            process = try EtcdProcess.start(
                clientPort: port, peerPort: TestPorts.allocate(), dataDirectory: etcdDirectory)
            endpoint = "127.0.0.1:\(port)"
        }
        let client = try EtcdClient(endpoints: [endpoint])
        do {
            // etcd may not have elected itself when its port opens.
            var probe = Etcdserverpb_RangeRequest()
            probe.key = Data("probe".utf8)
            _ = try await client.rpc.unary(EtcdKV.range, probe, options: .init(waitForReady: true))
            try await body(client)
        } catch {
            await client.shutdown()
            withExtendedLifetime(process) {}
            throw error
        }
        await client.shutdown()
        withExtendedLifetime(process) {}
    }
}

extension EtcdClient {
    func lock(_ name: String, lease: Int64, timeout: TimeAmount? = nil) async throws -> V3lockpb_LockResponse
    {
        var request = V3lockpb_LockRequest()
        request.name = Data(name.utf8)
        request.lease = lease
        return try await self.rpc.unary(EtcdLock.lock, request, options: .init(timeout: timeout))
    }

    func unlock(_ key: Data) async throws -> V3lockpb_UnlockResponse {
        var request = V3lockpb_UnlockRequest()
        request.key = key
        return try await self.rpc.unary(EtcdLock.unlock, request)
    }

    func keys(_ prefix: String) async throws -> [String] {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(prefix.utf8)
        var end = Array(prefix.utf8)
        end[end.count - 1] += 1
        request.rangeEnd = Data(end)
        request.sortTarget = .create
        request.sortOrder = .ascend
        return try await self.rpc.unary(EtcdKV.range, request).kvs.map {
            String(decoding: $0.key, as: UTF8.self)
        }
    }
}

/// Expects `body` to fail with `code` and `message`.
func expectStatus(
    _ code: RPCStatus.Code, _ message: String, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> some Any
) async {
    do {
        _ = try await body()
        Issue.record("expected \(code) \(message), got success", sourceLocation: sourceLocation)
    } catch let status as RPCStatus {
        #expect(status.code == code, sourceLocation: sourceLocation)
        #expect(status.message == message, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code) \(message), got \(error)", sourceLocation: sourceLocation)
    }
}

/// The v3lock service (`v3lockpb.Lock`) through gRPC, on Cairn and etcd.
@Suite(.serialized) struct MemberLockServiceTests {
    @Test(arguments: CoordinationTarget.allCases)
    func uncontendedLockIsReentrantAndUnlockDeletes(_ target: CoordinationTarget) async throws {
        try await target.run { client in
            let lease = try await client.grantLease(ttl: 30).id
            let held = try await client.lock("L", lease: lease)
            #expect(String(decoding: held.key, as: UTF8.self) == "L/" + String(lease, radix: 16))
            #expect(held.header.revision == 2)
            // The same lease locks again at once: same key, no new revision.
            let again = try await client.lock("L", lease: lease)
            #expect(again.key == held.key && again.header.revision == 2)
            #expect(try await client.unlock(held.key).header.revision == 3)
            #expect(try await client.keys("L/").isEmpty)
            await expectStatus(.unknown, "etcdserver: requested lease not found") {
                try await client.lock("L", lease: 0x7777)
            }
            await expectStatus(.unknown, "etcdserver: key is not provided") {
                try await client.unlock(Data())
            }
        }
    }

    @Test(arguments: CoordinationTarget.allCases)
    func waiterAcquiresOnlyAfterEarlierHolderUnlocks(_ target: CoordinationTarget) async throws {
        try await target.run { client in
            let first = try await client.grantLease(ttl: 30).id
            let second = try await client.grantLease(ttl: 30).id
            let held = try await client.lock("L", lease: first)
            let acquired = NIOLockedValueBox(false)
            let waiter = Task {
                let response = try await client.lock("L", lease: second)
                acquired.withLockedValue { $0 = true }
                return response
            }
            try await Task.sleep(nanoseconds: 400_000_000)
            #expect(!acquired.withLockedValue { $0 })
            #expect(try await client.keys("L/").count == 2)
            let unlocked = try await client.unlock(held.key)
            let response = try await waiter.value
            #expect(String(decoding: response.key, as: UTF8.self) == "L/" + String(second, radix: 16))
            // The header of the read that found no earlier key.
            #expect(response.header.revision == unlocked.header.revision)
        }
    }

    @Test(arguments: CoordinationTarget.allCases)
    func waitersAcquireInCreationOrder(_ target: CoordinationTarget) async throws {
        try await target.run { client in
            var granted: [Int64] = []
            for _ in 0..<3 { granted.append(try await client.grantLease(ttl: 30).id) }
            let leases = granted
            let held = try await client.lock("Q", lease: leases[0])
            let order = NIOLockedValueBox<[Int64]>([])
            let second = Task {
                let response = try await client.lock("Q", lease: leases[1])
                order.withLockedValue { $0.append(leases[1]) }
                return response
            }
            try await Task.sleep(nanoseconds: 200_000_000)
            let third = Task {
                let response = try await client.lock("Q", lease: leases[2])
                order.withLockedValue { $0.append(leases[2]) }
                return response
            }
            try await Task.sleep(nanoseconds: 200_000_000)
            _ = try await client.unlock(held.key)
            let secondHeld = try await second.value
            try await Task.sleep(nanoseconds: 300_000_000)
            // The third waits for the second, not only for the first.
            #expect(order.withLockedValue { $0 } == [leases[1]])
            _ = try await client.unlock(secondHeld.key)
            _ = try await third.value
            #expect(order.withLockedValue { $0 } == [leases[1], leases[2]])
        }
    }

    @Test(arguments: CoordinationTarget.allCases)
    func waiterPastItsDeadlineStopsAndDeletesItsKey(_ target: CoordinationTarget) async throws {
        try await target.run { client in
            let first = try await client.grantLease(ttl: 30).id
            let second = try await client.grantLease(ttl: 30).id
            let held = try await client.lock("L", lease: first)
            do {
                _ = try await client.lock("L", lease: second, timeout: .milliseconds(300))
                Issue.record("a blocked lock answered")
            } catch let status as RPCStatus {
                #expect(status.code == .deadlineExceeded)
            }
            // etcd unlocks a failed waiter: only the holder's key is left.
            var keys: [String] = []
            for _ in 0..<50 {
                keys = try await client.keys("L/")
                if keys.count == 1 { break }
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            #expect(keys == [String(decoding: held.key, as: UTF8.self)])
        }
    }

    /// Beyond etcd (which waits on): a waiter whose lease is gone stops.
    @Test func waiterWhoseLeaseIsRevokedStops() async throws {
        try await CoordinationTarget.cairn.run { client in
            let first = try await client.grantLease(ttl: 30).id
            let second = try await client.grantLease(ttl: 30).id
            _ = try await client.lock("L", lease: first)
            let waiter = Task { try await client.lock("L", lease: second) }
            try await Task.sleep(nanoseconds: 300_000_000)
            _ = try await client.revokeLease(second)
            await expectStatus(.unknown, "etcdserver: requested lease not found") { try await waiter.value }
        }
    }
}
