import ArgumentParser
import CairnRPC
import NIOCore
import NIOPosix

/// `cairn-bench rpc-server`: the RPC layer alone, in front of an in-memory map.
///
/// It lets `etcdctl`, grpcio and h2load exercise CairnRPC (framing, HTTP/2,
/// errors, streams) and measures the transport's own cost per call, with no
/// consensus or disk behind it. Not a store: nothing is durable.
struct RPCServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc-server",
        abstract: "Serve KV Put/Range and Watch from memory over CairnRPC (no durability)."
    )

    @Option(help: "Address to listen on, HOST:PORT.")
    var listenAddr = "127.0.0.1:2379"

    @Option(help: "Largest request in bytes (etcd's --max-request-bytes); gRPC overhead of 512 KiB is added.")
    var maxRequestBytes = 1_572_864

    @Option(help: "Event loop threads (default: one per core).")
    var threads = System.coreCount

    func run() async throws {
        guard let colon = self.listenAddr.lastIndex(of: ":"),
            let port = Int(self.listenAddr[self.listenAddr.index(after: colon)...])
        else {
            throw ValidationError("--listen-addr must be HOST:PORT, got \(self.listenAddr)")
        }
        let host = String(self.listenAddr[..<colon])
        var configuration = RPCServerConfiguration()
        configuration.requestBytesMax = self.maxRequestBytes + 524_288
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, self.threads))
        let store = MemoryStore()
        let server = try await RPCServer.start(
            host: host, port: port, router: store.router(), configuration: configuration, group: group)
        print("cairn-bench rpc-server listening on \(server.localAddress)")
        await waitForTerminationSignal()
        print("cairn-bench rpc-server shutting down")
        await server.shutdown()
        try await group.shutdownGracefully()
    }
}
