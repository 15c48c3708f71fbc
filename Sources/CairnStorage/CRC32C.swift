/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum that
/// guards every WAL record and snapshot file.
///
/// Why Castagnoli and not the zlib CRC-32: it has better error-detection for
/// the record sizes we write and is what etcd, ext4 and iSCSI use, so its
/// known answers are easy to check. Table-driven, one byte at a time: a WAL
/// record is checksummed once on write and once on replay, far below the cost
/// of the fsync it rides with.
public enum CRC32C {
    /// 256-entry table for the reflected polynomial.
    private static let table: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        for byte in 0..<256 {
            var value = UInt32(byte)
            for _ in 0..<8 {
                value = (value & 1) == 1 ? (value >> 1) ^ 0x82F6_3B78 : value >> 1
            }
            table[byte] = value
        }
        return table
    }()

    /// The checksum of `bytes`.
    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        finalize(update(initial, bytes))
    }

    /// The running state before any byte. Feed it to `update` and pass the
    /// result to `finalize`; this lets a record's header and payload be
    /// checksummed without concatenating them.
    public static let initial: UInt32 = 0xFFFF_FFFF

    /// Folds `bytes` into a running (not finalized) state.
    public static func update<Bytes: Sequence>(_ state: UInt32, _ bytes: Bytes) -> UInt32
    where Bytes.Element == UInt8 {
        var crc = state
        table.withUnsafeBufferPointer { table in
            for byte in bytes {
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
        }
        return crc
    }

    /// Turns a running state into the checksum value.
    public static func finalize(_ state: UInt32) -> UInt32 {
        state ^ 0xFFFF_FFFF
    }
}
