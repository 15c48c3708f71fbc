import CairnAPI
import CairnTestSupport
import Foundation
import NIOCore
import Testing

@testable import CairnRPC

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.serialized) struct KeepaliveTests {
    static func configuration() -> RPCServerConfiguration {
        var configuration = RPCServerConfiguration()
        configuration.keepaliveInterval = .milliseconds(100)
        configuration.keepaliveTimeout = .milliseconds(200)
        return configuration
    }

    @Test func silentPeerIsDroppedAfterAnUnansweredPing() async throws {
        let server = try await TestServer(configuration: Self.configuration())
        // A peer that speaks the HTTP/2 preface and then never answers anything.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(server.port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        #expect(connected == 0)
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]
        #expect(write(fd, preface, preface.count) == preface.count)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sawPing = false
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }  // closed by the server (or the 10 s bound passed)
            pending += buffer[0..<count]
            while pending.count >= 9 {
                let length = Int(pending[0]) << 16 | Int(pending[1]) << 8 | Int(pending[2])
                guard pending.count >= 9 + length else { break }
                if pending[3] == 6 && pending[4] & 1 == 0 { sawPing = true }
                pending.removeFirst(9 + length)
            }
        }
        #expect(sawPing, "the server pinged the idle peer")
        #expect(read(fd, &buffer, buffer.count) == 0, "the server closed the connection")
        await server.server.shutdown()
    }

    @Test func answeringPeerKeepsItsConnection() async throws {
        let server = try await TestServer(configuration: Self.configuration())
        let client = try RPCClient(endpoints: ["127.0.0.1:\(server.port)"])
        let first = try await client.unary(EtcdKV.put, Etcdserverpb_PutRequest())
        try await Task.sleep(for: .milliseconds(700))  // several ping intervals of silence
        let second = try await client.unary(EtcdKV.put, Etcdserverpb_PutRequest())
        #expect(first.header.memberID == second.header.memberID, "same client port: same connection")
        await client.shutdown()
        await server.server.shutdown()
    }
}
