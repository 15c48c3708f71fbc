/// A segment's file name: `<sequence>-<first index>.wal`, both as 16
/// lower-case hex digits so names sort in log order. The sequence counts
/// segments from 0 with no gaps; the first index is the index the log's next
/// entry had when the segment was created.
struct SegmentName: Equatable, Comparable {
    static let suffix = ".wal"
    static let temporarySuffix = ".wal.tmp"

    var sequence: UInt64
    var firstIndex: UInt64

    var fileName: String {
        hexadecimal(sequence) + "-" + hexadecimal(firstIndex) + SegmentName.suffix
    }

    init(sequence: UInt64, firstIndex: UInt64) {
        self.sequence = sequence
        self.firstIndex = firstIndex
    }

    init?(fileName: String) {
        guard fileName.hasSuffix(SegmentName.suffix) else { return nil }
        let stem = fileName.dropLast(SegmentName.suffix.count)
        let parts = stem.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let sequence = parseHexadecimal(parts[0]),
            let firstIndex = parseHexadecimal(parts[1])
        else { return nil }
        self.init(sequence: sequence, firstIndex: firstIndex)
    }

    static func < (lhs: SegmentName, rhs: SegmentName) -> Bool {
        lhs.sequence < rhs.sequence
    }
}

/// What the WAL knows about a segment on disk.
struct SegmentInfo {
    var name: SegmentName
    /// The highest entry index any record of the segment holds (superseded
    /// or not); nil when it holds no entry. A segment may be released once a
    /// snapshot covers this index.
    var maxEntryIndex: UInt64?
}

/// What open cut from the end of the last segment: a torn or partly written
/// tail that was never acknowledged. The shell logs it.
public struct TailRepair: Equatable, Sendable, CustomStringConvertible {
    /// File name of the segment that was truncated.
    public var segment: String
    /// The segment now ends here: the end of its last good record.
    public var offset: Int
    public var bytesDropped: Int
    /// What was wrong with the first dropped record.
    public var reason: String

    public var description: String {
        "cut \(bytesDropped) bytes of torn WAL tail from \(segment) at offset \(offset) (\(reason))"
    }
}

/// Everything replay rebuilt from the WAL, in the form Raft restarts from.
public struct WALRecovery: Equatable, Sendable {
    /// The newest hard state, nil if none was ever written.
    public var hardState: HardState?
    /// The newest snapshot marker: load this snapshot (or a newer one) from
    /// the snapshot store before applying `entries`.
    public var snapshot: SnapshotMarker?
    /// The final log after Raft's overwrite rule: contiguous, ascending,
    /// starting right after the snapshot index passed to `open` (default:
    /// `snapshot?.index`).
    public var entries: [LogEntry]
    /// Number of segment files replayed.
    public var segmentCount: Int
    /// Non-nil when a torn tail was cut.
    public var tailRepair: TailRepair?
}

/// Replays segments in order into a `ReplayedLog`.
struct SegmentReplayer {
    let directory: String
    /// Any length that fits in the file is accepted on replay: a record is
    /// bounded when it is written, and lowering the limit later must not make
    /// old records unreadable.
    let replayRecordBytesMax = Int(UInt32.max)
    var log = ReplayedLog()

    /// What replaying one segment found.
    struct Outcome {
        var info: SegmentInfo
        /// Where the segment's records end: appends continue here.
        var end: Int
        /// For the last segment only: a torn tail that starts at `end`, why,
        /// and how many bytes it holds before the trailing zeros.
        var cut: (reason: String, bytesDropped: Int)?
    }

    /// Replays one segment. Zeros after the last record (preallocated or
    /// not yet written space) end a last segment cleanly; anything else that
    /// does not parse is a torn tail (last segment, nothing valid after it)
    /// or corruption.
    mutating func replay(_ name: SegmentName, bytes: [UInt8], isLast: Bool) throws(StorageError) -> Outcome {
        let path = joinPath(directory, name.fileName)
        var info = SegmentInfo(name: name, maxEntryIndex: nil)
        var offset = try replayHeader(name, bytes: bytes, path: path)
        while offset < bytes.count {
            switch RecordFrame.parse(bytes, at: offset, recordBytesMax: replayRecordBytesMax) {
            case .record(let type, let payload, let end):
                let record = try decodeRecord(type: type, payload: payload, path: path, offset: offset)
                if let problem = log.apply(record) {
                    throw .corruption(file: path, offset: offset, detail: problem)
                }
                if case .entry(let entry) = record {
                    info.maxEntryIndex = max(info.maxEntryIndex ?? 0, entry.index)
                }
                offset = end
            case .incomplete(let reason), .invalid(let reason):
                guard isLast else {
                    throw .corruption(file: path, offset: offset, detail: "\(reason) in a sealed segment")
                }
                // Only here, at the end, is the zero tail looked at.
                let dataEnd = Self.dataEnd(bytes)
                if offset >= dataEnd { return Outcome(info: info, end: offset, cut: nil) }
                if RecordFrame.validFrameExists(
                    in: bytes, after: offset, before: dataEnd, recordBytesMax: replayRecordBytesMax)
                {
                    throw .corruption(
                        file: path, offset: offset, detail: "\(reason), followed by valid records")
                }
                return Outcome(info: info, end: offset, cut: (reason, dataEnd - offset))
            }
        }
        return Outcome(info: info, end: offset, cut: nil)
    }

    /// One past the last non-zero byte (0 for an all-zero buffer): where the
    /// written data of a preallocated segment ends. Scans backwards a word
    /// at a time, so a 64 MiB preallocated segment costs milliseconds even
    /// in a debug build.
    static func dataEnd(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { raw -> Int in
            var end = raw.count
            while end >= 8 {
                if raw.loadUnaligned(fromByteOffset: end - 8, as: UInt64.self) != 0 { break }
                end -= 8
            }
            while end > 0 && raw[end - 1] == 0 { end -= 1 }
            return end
        }
    }

    /// Checks the header record; a segment only gets its name after its
    /// header is durable, so a bad header is always corruption.
    private func replayHeader(_ name: SegmentName, bytes: [UInt8], path: String) throws(StorageError) -> Int {
        guard
            case .record(let type, let payload, let end) = RecordFrame.parse(
                bytes, at: 0, recordBytesMax: replayRecordBytesMax)
        else {
            throw .corruption(file: path, offset: 0, detail: "missing or damaged segment header")
        }
        guard type == RecordType.segmentHeader.rawValue,
            case .success(.header(let header)) = RecordCodec.decode(type: type, payload: payload)
        else {
            throw .corruption(file: path, offset: 0, detail: "first record is not a valid segment header")
        }
        guard header.sequence == name.sequence, header.firstIndex == name.firstIndex else {
            throw .corruption(file: path, offset: 0, detail: "segment header does not match the file name")
        }
        return end
    }

    private func decodeRecord(type: UInt8, payload: ArraySlice<UInt8>, path: String, offset: Int)
        throws(StorageError) -> WALRecord
    {
        switch RecordCodec.decode(type: type, payload: payload) {
        case .success(.record(let record)):
            return record
        case .success(.header):
            throw .corruption(file: path, offset: offset, detail: "segment header in the middle of a segment")
        case .failure(let failure):
            throw .corruption(file: path, offset: offset, detail: failure.reason)
        }
    }
}
