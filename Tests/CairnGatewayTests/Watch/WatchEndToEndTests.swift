import CairnAPI
import CairnRPC
import Foundation
import NIOConcurrencyHelpers
import NIOPosix
import Testing

@testable import CairnGateway

/// The whole path on real sockets: etcd clients → a gateway `RPCServer`
/// whose Watch method is a `WatchSession` → the coalescer → one upstream
/// stream to the scripted etcd. The tenant's namespace is applied by the
/// `inbound`/`outbound` closures, as the gateway's tenancy layer will.
@Suite(.serialized)
struct WatchEndToEndTests {
    static let prefix = Data("tenants/alice/".utf8)

    static func inbound(_ request: Etcdserverpb_WatchCreateRequest) throws(RPCStatus)
        -> Etcdserverpb_WatchCreateRequest
    {
        if request.key == Data("forbidden".utf8) {
            throw RPCStatus(.permissionDenied, "etcdserver: permission denied")
        }
        var rewritten = request
        rewritten.key = Self.prefix + request.key
        if !request.rangeEnd.isEmpty { rewritten.rangeEnd = Self.prefix + request.rangeEnd }
        return rewritten
    }

    static func outbound(_ response: Etcdserverpb_WatchResponse) -> Etcdserverpb_WatchResponse {
        var stripped = response
        for index in stripped.events.indices {
            stripped.events[index].kv.key = stripped.events[index].kv.key.dropFirst(Self.prefix.count)
        }
        return stripped
    }

    @Test func manyClientsThroughTheGatewayShareOneUpstreamWatch() async throws {
        let harness = try await WatchHarness.start()
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var router = RPCServiceRouter()
        let coalescer = harness.coalescer
        router.streaming(EtcdWatch.watch) { stream in
            WatchSession(
                writer: stream, coalescer: coalescer, tenant: "alice", inbound: Self.inbound,
                outbound: Self.outbound)
        }
        let gateway = try await RPCServer.start(
            host: "127.0.0.1", port: 0, router: router, group: serverGroup)
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let port = gateway.localAddress.port!
        var connections: [RPCConnection] = []
        var logs: [NIOLockedValueBox<[Etcdserverpb_WatchResponse]>] = []
        for index in 0..<50 {
            let connection = RPCConnection(host: "127.0.0.1", port: port, eventLoop: clientGroup.next())
            let log = NIOLockedValueBox<[Etcdserverpb_WatchResponse]>([])
            let stream = connection.openStream(
                EtcdWatch.watch, onResponse: { response in log.withLockedValue { $0.append(response) } },
                onClose: { _ in })
            var create = Etcdserverpb_WatchRequest()
            create.createRequest.key = Data("a".utf8)
            stream.send(create)
            if index == 0 {
                var forbidden = Etcdserverpb_WatchRequest()
                forbidden.createRequest.key = Data("forbidden".utf8)
                stream.send(forbidden)
            }
            connections.append(connection)
            logs.append(log)
        }
        let all = logs
        #expect(
            await watchEventually {
                all.allSatisfy { log in log.withLockedValue { $0.contains { $0.created && !$0.canceled } } }
            })
        #expect(try await harness.etcd.watcherCount() == 1)
        #expect(harness.gauges().clientWatches == 50)
        let refused = logs[0].withLockedValue { $0.first { $0.created && $0.canceled } }
        #expect(
            refused?.cancelReason == "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        )
        var revisions: [Int64] = []
        for index in 0..<10 { revisions.append(try await harness.etcd.put("tenants/alice/a", "\(index)")) }
        try await harness.etcd.put("tenants/bob/a", "not yours")
        #expect(
            await watchEventually {
                all.allSatisfy { log in
                    log.withLockedValue { $0.flatMap { $0.events.map(\.kv.modRevision) } } == revisions
                }
            })
        let keys = Set(logs.flatMap { log in log.withLockedValue { $0.flatMap { $0.events.map(\.kv.key) } } })
        #expect(keys == [Data("a".utf8)])
        for connection in connections { connection.shutdown() }
        #expect(await watchEventually { try await harness.etcd.watcherCount() == 0 })
        #expect(await watchEventually { harness.coalescer.gauges()["alice"] == nil })
        await gateway.shutdown()
        try await serverGroup.shutdownGracefully()
        try await clientGroup.shutdownGracefully()
        await harness.stop()
    }
}
