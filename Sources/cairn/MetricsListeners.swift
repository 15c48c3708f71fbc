import ArgumentParser
import CairnMetrics
import NIOCore

/// `--listen-metrics-urls` for `cairn member` and `cairn gateway`: one
/// HTTP/1.1 listener per URL answering `/metrics`, `/health`, `/livez`
/// and `/readyz` with the process's own registry and checks.
enum MetricsListeners {
    /// Checks the flag's value (empty: no listener).
    static func validate(_ urls: String) throws {
        guard !urls.isEmpty else { return }
        do {
            _ = try MetricsServer.parse(urls: urls)
        } catch {
            throw ValidationError("--listen-metrics-urls: \(error)")
        }
    }

    /// Starts a listener on each URL, logging where it serves.
    static func start(
        _ urls: String, responder: MetricsResponder, group: any EventLoopGroup, log: (String) -> Void
    ) async throws -> [MetricsServer] {
        guard !urls.isEmpty else { return [] }
        var servers: [MetricsServer] = []
        for (host, port) in try MetricsServer.parse(urls: urls) {
            let server = try await MetricsServer.start(
                host: host, port: port, responder: responder, group: group)
            log("serving metrics and health on http://\(host):\(server.localAddress.port ?? port)")
            servers.append(server)
        }
        return servers
    }
}
