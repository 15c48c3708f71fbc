import CairnCore

/// Why decoding failed. Committed entries and snapshots come from disk and
/// the network, so garbage must surface as this error, never as a trap.
public enum DecodeError: Error, Hashable, Sendable {
    /// The input ended inside a value.
    case truncated
    /// A format version this build does not know.
    case unsupportedVersion(UInt8)
    /// A tag byte naming no known case.
    case unknownTag(UInt8)
    /// A value outside its allowed range (varint overflow, bad count, bad nesting).
    case malformed(String)
    /// Bytes left over after the value.
    case trailingBytes(Int)
    /// The checksum does not match the content.
    case checksumMismatch
}

/// Appends the compact binary forms: LEB128 varints for unsigned integers,
/// zig-zag varints for signed ones, length-prefixed byte strings.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func byte(_ value: UInt8) { bytes.append(value) }

    mutating func unsigned(_ value: UInt64) {
        var remaining = value
        while remaining >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining >>= 7
        }
        bytes.append(UInt8(remaining))
    }

    mutating func signed(_ value: Int64) {
        unsigned(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    mutating func data(_ value: [UInt8]) {
        unsigned(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    mutating func key(_ value: Key) { data(value.bytes) }

    mutating func count(_ value: Int) { unsigned(UInt64(value)) }
}

/// Reads what `ByteWriter` wrote, checking every bound.
///
/// Properties:
/// 1. `position` never exceeds `bytes.count`; every read past the end throws
///    `truncated`.
/// 2. A count read with `count()` never exceeds the bytes left, since every
///    encoded element takes at least one byte; a hostile count cannot make a
///    decoder reserve or loop more than the input's size.
struct ByteReader {
    let bytes: [UInt8]
    private(set) var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }

    mutating func byte() throws(DecodeError) -> UInt8 {
        guard position < bytes.count else { throw .truncated }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func unsigned() throws(DecodeError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let next = try byte()
            if shift == 63 && next > 1 { throw .malformed("varint overflow") }
            value |= UInt64(next & 0x7f) << shift
            if next & 0x80 == 0 { return value }
            shift += 7
            if shift > 63 { throw .malformed("varint too long") }
        }
    }

    mutating func signed() throws(DecodeError) -> Int64 {
        let raw = try unsigned()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    mutating func bool() throws(DecodeError) -> Bool {
        switch try byte() {
        case 0: false
        case 1: true
        case let other: throw .malformed("bool \(other)")
        }
    }

    mutating func count() throws(DecodeError) -> Int {
        let raw = try unsigned()
        guard raw <= UInt64(remaining) else { throw .malformed("count \(raw) beyond input") }
        return Int(raw)
    }

    mutating func data() throws(DecodeError) -> [UInt8] {
        let length = try count()
        defer { position += length }
        return Array(bytes[position..<position + length])
    }

    mutating func key() throws(DecodeError) -> Key { Key(try data()) }

    func expectEnd() throws(DecodeError) {
        if remaining != 0 { throw .trailingBytes(remaining) }
    }
}
