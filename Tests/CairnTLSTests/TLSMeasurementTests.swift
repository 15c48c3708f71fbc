import CairnTLS
import Foundation
import NIOCore
import Testing

/// Rough cost figures, run on demand (`CAIRN_TLS_MEASURE=1`): both ends in
/// one thread over `EmbeddedChannel`s, so the figures are CPU cost of both
/// sides together, without the kernel.
@Suite(
    "TLS measurements",
    .enabled(if: ProcessInfo.processInfo.environment["CAIRN_TLS_MEASURE"] == "1")
)
struct TLSMeasurementTests {
    @Test func mutualTLSHandshakesPerSecond() throws {
        let client = try Contexts.client()
        let server = try Contexts.server()
        let handshakes = 200
        let start = ContinuousClock.now
        for _ in 0..<handshakes {
            let pair = try EmbeddedPair(client: client, server: server)
            try pair.shuttle()
            #expect(pair.clientEvents.completed != nil && pair.serverEvents.completed != nil)
        }
        let seconds = Self.seconds(ContinuousClock.now - start)
        print("mTLS 1.3 handshakes (both ends, one thread): \(Int(Double(handshakes) / seconds))/s")
    }

    @Test func bulkThroughput() throws {
        let pair = try EmbeddedPair(client: Contexts.client(), server: Contexts.server())
        try pair.shuttle()
        let chunk = ByteBuffer(repeating: 7, count: 64 * 1024)
        let chunks = 1600  // 100 MiB
        let start = ContinuousClock.now
        for _ in 0..<chunks {
            pair.client.writeAndFlush(chunk, promise: nil)
            try pair.shuttle()
            pair.serverEvents.received.clear()
        }
        let seconds = Self.seconds(ContinuousClock.now - start)
        print(
            "TLS 1.3 encrypt+decrypt (both ends, one thread): \(Int(Double(chunks) * 0.0625 / seconds)) MiB/s"
        )
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
