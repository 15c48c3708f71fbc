/// Little-endian encoding helpers for the on-disk formats.
///
/// Every integer on disk is little-endian and fixed-width so a record can be
/// parsed without look-ahead and a torn record is recognised by its length.
struct ByteWriter {
    private(set) var bytes: [UInt8]

    init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func write(_ value: UInt8) {
        bytes.append(value)
    }

    mutating func write(_ value: UInt16) {
        for shift in stride(from: 0, to: 16, by: 8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt16(shift)))
        }
    }

    mutating func write(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift)))
        }
    }

    mutating func write(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    mutating func write<Bytes: Sequence>(contentsOf other: Bytes) where Bytes.Element == UInt8 {
        bytes.append(contentsOf: other)
    }
}

/// Reads fixed-width little-endian integers from a byte slice; every read
/// returns nil instead of trapping when the input is too short, because the
/// input comes from disk and may be torn.
struct ByteReader {
    private let bytes: ArraySlice<UInt8>
    private(set) var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    var remaining: Int { bytes.endIndex - position }

    mutating func readUInt8() -> UInt8? {
        guard remaining >= 1 else { return nil }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func readUInt16() -> UInt16? {
        readInteger(UInt16.self, width: 2)
    }

    mutating func readUInt32() -> UInt32? {
        readInteger(UInt32.self, width: 4)
    }

    mutating func readUInt64() -> UInt64? {
        readInteger(UInt64.self, width: 8)
    }

    /// The rest of the input.
    mutating func readRemaining() -> ArraySlice<UInt8> {
        defer { position = bytes.endIndex }
        return bytes[position...]
    }

    mutating func readBytes(_ count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, remaining >= count else { return nil }
        defer { position += count }
        return bytes[position..<(position + count)]
    }

    private mutating func readInteger<Value: FixedWidthInteger>(_ type: Value.Type, width: Int) -> Value? {
        guard remaining >= width else { return nil }
        var value: Value = 0
        for offset in 0..<width {
            value |= Value(bytes[position + offset]) << Value(offset * 8)
        }
        position += width
        return value
    }
}

/// Fixed-width, zero-padded lower-case hexadecimal, so file names sort in
/// numeric order as plain strings.
func hexadecimal(_ value: UInt64, width: Int = 16) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// Parses the output of `hexadecimal`.
func parseHexadecimal<Text: StringProtocol>(_ text: Text) -> UInt64? {
    guard text.count == 16 else { return nil }
    return UInt64(text, radix: 16)
}
