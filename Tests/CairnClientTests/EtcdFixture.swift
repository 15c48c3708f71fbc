import CairnClient
import CairnTestSupport
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A real etcd on loopback with a fresh data directory, so revisions start
/// from an empty store (the first write is revision 2).
final class EtcdFixture: Sendable {
    let clientPort: Int
    let peerPort: Int
    let dataDirectory: URL
    private let process: Mutex<BackgroundProcess>

    init() throws {
        self.clientPort = TestPorts.allocate()
        self.peerPort = TestPorts.allocate()
        self.dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cairn-client-etcd-\(getpid())-\(self.clientPort)")
        try? FileManager.default.removeItem(at: self.dataDirectory)
        self.process = Mutex(try Self.launch(self.clientPort, self.peerPort, self.dataDirectory))
    }

    private static func launch(_ clientPort: Int, _ peerPort: Int, _ dataDirectory: URL) throws
        -> BackgroundProcess
    {
        try EtcdProcess.start(
            clientPort: clientPort, peerPort: peerPort, dataDirectory: dataDirectory, name: "client-etcd")
    }

    /// Kills etcd (SIGKILL, as a crash) and starts it again on the same data
    /// and ports.
    func restart() throws {
        try self.process.withLock { process in
            process.stop()
            process = try Self.launch(self.clientPort, self.peerPort, self.dataDirectory)
        }
    }

    var endpoint: String { "127.0.0.1:\(self.clientPort)" }

    func stop() {
        self.process.withLock { $0.stop() }
        try? FileManager.default.removeItem(at: self.dataDirectory)
    }

    /// Runs `body` with a client of a fresh etcd, then stops both.
    static func with(
        configuration: EtcdClientConfiguration = .init(),
        _ body: (EtcdClient, EtcdFixture) async throws -> Void
    ) async throws {
        let fixture = try EtcdFixture()
        defer { fixture.stop() }
        let client = try EtcdClient(endpoints: ["http://\(fixture.endpoint)"], configuration: configuration)
        do {
            // A fresh etcd listens before it has elected itself; leases and
            // linearizable calls need a leader, so wait for one (a loaded
            // machine can take seconds).
            try await eventually(timeoutSeconds: 60) { ((try? await client.status())?.leader ?? 0) != 0 }
            try await body(client, fixture)
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }
}

/// Waits until `condition` holds, polling, or fails after `timeoutSeconds`.
func eventually(timeoutSeconds: Double = 10, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(timeoutSeconds)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TestFailure("condition not met within \(timeoutSeconds)s")
}

extension Data {
    var text: String { String(decoding: self, as: UTF8.self) }
}
