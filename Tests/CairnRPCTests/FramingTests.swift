import CairnAPI
import Foundation
import NIOCore
import Testing

@testable import CairnRPC

@Suite struct FramingTests {
    @Test func percentEncodingRoundTripsAnyText() {
        let texts = ["", "plain text", "100% sure", "ünïcödé ✓", "tab\tnew\nline", "%%%41"]
        for text in texts {
            let encoded = PercentEncoding.encode(text)
            #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
            #expect(PercentEncoding.decode(encoded) == text)
        }
        #expect(PercentEncoding.encode("a%b") == "a%25b")
        #expect(PercentEncoding.decode("bad%zzsequence%4") == "bad%zzsequence%4")
    }

    @Test func grpcTimeoutParsesEveryUnitAndRejectsMalformedValues() {
        #expect(GRPCTimeout.parse("1H") == .hours(1))
        #expect(GRPCTimeout.parse("2M") == .minutes(2))
        #expect(GRPCTimeout.parse("3S") == .seconds(3))
        #expect(GRPCTimeout.parse("40m") == .milliseconds(40))
        #expect(GRPCTimeout.parse("500u") == .microseconds(500))
        #expect(GRPCTimeout.parse("99999999n") == .nanoseconds(99_999_999))
        for bad in ["", "S", "10", "123456789S", "1x", "-1S", "1.5S", " 1S"] {
            #expect(GRPCTimeout.parse(Substring(bad)) == nil, "\(bad) should be rejected")
        }
        #expect(GRPCTimeout.format(.milliseconds(250)) == "250000u")
        for amount: TimeAmount in [.nanoseconds(1), .milliseconds(250), .seconds(5), .hours(30)] {
            let parsed = GRPCTimeout.parse(Substring(GRPCTimeout.format(amount)))!
            #expect(parsed >= amount, "a formatted timeout never shortens the deadline")
        }
    }

    @Test func deframerJoinsMessagesSplitAcrossFramesAndSplitsBatchedOnes() throws {
        var wire = ByteBuffer()
        wire.writeGRPCMessage([1, 2, 3])
        wire.writeGRPCMessage([])
        wire.writeGRPCMessage(Array(repeating: 7, count: 300))
        var deframer = MessageDeframer(messageBytesMax: 1024)
        var messages: [[UInt8]] = []
        // Feed one byte at a time: the worst split a peer can choose.
        while let byte = wire.readSlice(length: 1) {
            deframer.append(byte)
            while let message = try deframer.nextMessage() {
                messages.append(Array(message.readableBytesView))
            }
        }
        #expect(messages == [[1, 2, 3], [], Array(repeating: 7, count: 300)])
        #expect(deframer.bufferedBytes == 0)
    }

    @Test func deframerRefusesOversizedMessagesFromThePrefixAlone() {
        var prefix = ByteBuffer()
        prefix.writeInteger(UInt8(0))
        prefix.writeInteger(UInt32(5000))
        var deframer = MessageDeframer(messageBytesMax: 4096)
        deframer.append(prefix)
        #expect(throws: MessageDeframer.Failure.tooLarge(length: 5000, limit: 4096)) {
            try deframer.nextMessage()
        }
    }

    @Test func deframerRefusesCompressedMessages() {
        var wire = ByteBuffer()
        wire.writeInteger(UInt8(1))
        wire.writeInteger(UInt32(0))
        var deframer = MessageDeframer(messageBytesMax: 4096)
        deframer.append(wire)
        #expect(throws: MessageDeframer.Failure.compressedWithoutEncoding) { try deframer.nextMessage() }
    }

    @Test func endpointParsingAcceptsEtcdStyleURLs() throws {
        #expect(try RPCClient.parse("127.0.0.1:2379") == ("127.0.0.1", 2379))
        #expect(try RPCClient.parse("http://localhost:2379") == ("localhost", 2379))
        #expect(try RPCClient.parse("https://[::1]:2379/") == ("::1", 2379))
        #expect(throws: RPCStatus.self) { try RPCClient.parse("localhost") }
        #expect(throws: RPCStatus.self) { try RPCClient.parse("localhost:99999") }
    }
}

@Suite struct FramedSerializationTests {
    @Test func framedSerializationEqualsPrefixPlusPlainSerialization() throws {
        var request = Etcdserverpb_PutRequest()
        request.key = Data("key".utf8)
        request.value = Data(repeating: 0xAB, count: 1000)
        var expected = ByteBuffer()
        expected.writeGRPCMessage(try request.serializedBytes())
        #expect(try request.grpcFramed() == expected)
        #expect(try Etcdserverpb_PutRequest().grpcFramed() == ByteBuffer(bytes: [0, 0, 0, 0, 0]))
    }
}
