import CairnCore
import CairnMVCC
import Testing

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

func anyLease(_ lease: LeaseID) -> Bool { true }

extension MVCCStore {
    /// Puts `key` = `value` and returns the revision of the put.
    @discardableResult
    mutating func put(_ key: String, _ value: String, lease: Int64 = 0) throws -> Int64 {
        try put(
            PutRequest(key: Key(key), value: bytes(value), lease: LeaseID(lease)), isLeaseGranted: anyLease
        )
        .response.revision
    }

    @discardableResult
    mutating func delete(_ key: String, rangeEnd: String = "") throws -> DeleteRangeResponse {
        try deleteRange(DeleteRangeRequest(key: Key(key), rangeEnd: Key(rangeEnd))).response
    }

    func get(_ key: String, rangeEnd: String = "", revision: Int64 = 0) throws -> RangeResponse {
        try range(RangeRequest(key: Key(key), rangeEnd: Key(rangeEnd), revision: revision))
    }

    func value(_ key: String, revision: Int64 = 0) throws -> String? {
        try get(key, revision: revision).keyValues.first.map { String(decoding: $0.value, as: UTF8.self) }
    }
}

func keys(_ response: RangeResponse) -> [String] { response.keyValues.map(\.key.description) }

/// Expects `body` to throw exactly `expected`.
func expectError<T>(
    _ expected: CairnError, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> T
) {
    do {
        _ = try body()
        Issue.record("expected \(expected.message)", sourceLocation: sourceLocation)
    } catch let error as CairnError {
        #expect(error == expected, sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
    }
}
