import CairnCore
import Testing

@Suite struct CRC32CTests {
    @Test func knownAnswerForCheckString() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test func emptyInputIsZero() {
        #expect(CRC32C.checksum([UInt8]()) == 0)
    }

    /// Test vectors of RFC 3720 (iSCSI), appendix B.4.
    @Test func rfc3720Vectors() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
    }

    @Test func incrementalUpdateEqualsOneShot() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for split in [0, 1, 17, 500, 999, 1000] {
            let state = CRC32C.update(CRC32C.update(CRC32C.initial, bytes[..<split]), bytes[split...])
            #expect(CRC32C.finalize(state) == CRC32C.checksum(bytes))
        }
    }

    @Test func singleBitFlipChangesChecksum() {
        var bytes = Array("the quick brown fox".utf8)
        let original = CRC32C.checksum(bytes)
        for bit in 0..<(bytes.count * 8) {
            bytes[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(CRC32C.checksum(bytes) != original)
            bytes[bit / 8] ^= 1 << UInt8(bit % 8)
        }
    }
}
