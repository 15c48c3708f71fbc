import CairnCore

/// What a snapshot file's trailer promises about its content.
struct SnapshotTrailer {
    var contentBytes: Int
    var contentCRC: UInt32
}

/// Names, header and trailer of snapshot files (see `SnapshotStore`).
extension SnapshotStore {
    static func fileName(index: UInt64, term: UInt64) -> String {
        hexadecimal(index) + "-" + hexadecimal(term) + suffix
    }

    static func parseName(_ name: String) -> (index: UInt64, term: UInt64)? {
        guard name.hasSuffix(suffix) else { return nil }
        let parts = name.dropLast(suffix.count).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = parseHexadecimal(parts[0]), let term = parseHexadecimal(parts[1])
        else { return nil }
        return (index, term)
    }

    static func header(index: UInt64, term: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: headerBytes)
        writer.write(contentsOf: magic)
        writer.write(version)
        writer.write(UInt32(0))
        writer.write(index)
        writer.write(term)
        return writer.bytes
    }

    static func trailer(header: [UInt8], contentBytes: Int, contentCRC: UInt32) -> [UInt8] {
        var writer = ByteWriter(capacity: trailerBytes)
        writer.write(UInt64(contentBytes))
        writer.write(contentCRC)
        let crc = CRC32C.finalize(CRC32C.update(CRC32C.update(CRC32C.initial, header), writer.bytes))
        writer.write(crc)
        return writer.bytes
    }

    /// Checks header and trailer against each other, the file name and the
    /// file size; the content CRC is checked after reading the content.
    static func verifyFrame(
        header: [UInt8], trailer: [UInt8], index: UInt64, term: UInt64, fileBytes: Int, limit: Int
    ) -> Result<SnapshotTrailer, RecordCodec.DecodeFailure> {
        guard header.count == headerBytes, trailer.count == trailerBytes else {
            return .failure(.init("file of \(fileBytes) bytes is too short"))
        }
        var reader = ByteReader(trailer[...])
        let contentBytes = reader.readUInt64()!
        let contentCRC = reader.readUInt32()!
        let frameCRC = reader.readUInt32()!
        let computed = CRC32C.finalize(
            CRC32C.update(CRC32C.update(CRC32C.initial, header), trailer[..<(trailerBytes - 4)]))
        guard computed == frameCRC else {
            return .failure(.init("header or trailer checksum mismatch (torn or damaged file)"))
        }
        reader = ByteReader(header[...])
        guard reader.readBytes(8).map(Array.init) == magic else {
            return .failure(.init("not a snapshot file (wrong magic)"))
        }
        let fileVersion = reader.readUInt32()!
        _ = reader.readUInt32()!
        let fileIndex = reader.readUInt64()!
        let fileTerm = reader.readUInt64()!
        guard fileVersion == version else {
            return .failure(.init("unsupported snapshot format version \(fileVersion)"))
        }
        guard fileIndex == index, fileTerm == term else {
            return .failure(.init("header says index \(fileIndex) term \(fileTerm), unlike the file name"))
        }
        guard contentBytes <= UInt64(limit) else {
            return .failure(.init("content of \(contentBytes) bytes exceeds snapshotBytesMax \(limit)"))
        }
        guard UInt64(fileBytes - headerBytes - trailerBytes) == contentBytes else {
            return .failure(
                .init("file size does not match the \(contentBytes) content bytes of its trailer"))
        }
        return .success(SnapshotTrailer(contentBytes: Int(contentBytes), contentCRC: contentCRC))
    }
}
