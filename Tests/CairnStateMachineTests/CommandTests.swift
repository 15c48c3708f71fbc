import CairnCore
import CairnMVCC
import Testing

@testable import CairnStateMachine

@Suite struct CommandTests {
    @Test func randomCommandsRoundTrip() throws {
        var generator = CommandGenerator(seed: 1)
        for _ in 0..<2000 {
            let original = generator.command()
            let decoded = try Command(decoding: original.encoded())
            #expect(decoded == original)
        }
    }

    @Test func extremeIntegersRoundTrip() throws {
        for value in [Int64.min, -1, 0, 1, Int64.max] {
            let original = Command(
                requester: RequestIdentity(member: MemberID(.max), id: .max),
                operation: .leaseGrant(id: LeaseID(value), ttlSeconds: value))
            #expect(try Command(decoding: original.encoded()) == original)
        }
    }

    @Test func everyProperPrefixFailsToDecode() {
        var generator = CommandGenerator(seed: 2)
        for _ in 0..<200 {
            let bytes = generator.command().encoded()
            for length in 0..<bytes.count {
                #expect(throws: DecodeError.self) { try Command(decoding: Array(bytes[..<length])) }
            }
        }
    }

    @Test func trailingBytesAreRejected() {
        let bytes = command(.noOp).encoded() + [0]
        #expect(throws: DecodeError.trailingBytes(1)) { try Command(decoding: bytes) }
    }

    @Test func unknownVersionAndTagAreRejected() {
        var bytes = command(.noOp).encoded()
        bytes[0] = 2
        #expect(throws: DecodeError.unsupportedVersion(2)) { try Command(decoding: bytes) }
        bytes[0] = Command.formatVersion
        bytes[bytes.count - 1] = 99
        #expect(throws: DecodeError.unknownTag(99)) { try Command(decoding: bytes) }
    }

    /// Random bytes, and valid encodings with random bytes changed, decode to
    /// a value or an error; reaching the end of the loop is the test.
    @Test func fuzzedBytesNeverTrap() {
        var random = SeededGenerator(seed: 3)
        var generator = CommandGenerator(seed: 4)
        var decodedCount = 0
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int.random(in: 0...64, using: &random)).map { _ in
                    UInt8.random(in: 0...255, using: &random)
                }
                if !bytes.isEmpty { bytes[0] = Command.formatVersion }
            } else {
                bytes = generator.command().encoded()
                for _ in 0..<Int.random(in: 1...3, using: &random) {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(
                        in: 0...255, using: &random)
                }
            }
            if (try? Command(decoding: bytes)) != nil { decodedCount += 1 }
        }
        #expect(decodedCount > 0)
    }

    @Test func hostileCountsAndNestingAreRejected() {
        // A put whose key claims 2^40 bytes.
        var writer = ByteWriter()
        writer.byte(Command.formatVersion)
        writer.unsigned(1)
        writer.unsigned(1)
        writer.byte(1)
        writer.unsigned(1 << 40)
        #expect(throws: DecodeError.malformed("count \(1 << 40) beyond input")) {
            try Command(decoding: writer.bytes)
        }
        // Txns nested deeper than the decoder allows.
        var nested = TxnRequest()
        for _ in 0..<(ByteReader.txnNestingDepthMax + 1) { nested = TxnRequest(success: [.txn(nested)]) }
        #expect(throws: DecodeError.malformed("txn nesting too deep")) {
            try Command(decoding: command(.txn(nested)).encoded())
        }
    }

    @Test func varintOverflowIsRejected() throws {
        var reader = ByteReader([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
        #expect(throws: DecodeError.malformed("varint overflow")) { try reader.unsigned() }
        var maximum = ByteReader([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
        #expect(try maximum.unsigned() == .max)
    }

    @Test func encodingIsCompact() {
        let put = command(.put(PutRequest(key: "foo", value: Array("bar".utf8))))
        // version, member, id, tag, key (1+3), value (1+3), lease, three flags
        #expect(put.encoded().count == 16)
    }
}
