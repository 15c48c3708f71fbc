import CairnCore
import Testing

@testable import CairnMVCC

/// `EventHistory`'s bookkeeping: revisions stay addressable as the front is
/// dropped and as compaction removes the deletes of the first revision.
@Suite struct EventHistoryTests {
    static func put(_ key: String, at revision: Int64) -> Event {
        Event(
            kind: .put,
            keyValue: KeyValue(
                key: Key(Array(key.utf8)), createRevision: revision, modRevision: revision, version: 1,
                value: []))
    }

    static func delete(_ key: String, at revision: Int64) -> Event {
        Event(
            kind: .delete,
            keyValue: KeyValue(
                key: Key(Array(key.utf8)), createRevision: 0, modRevision: revision, version: 0, value: []))
    }

    static func described(_ records: some Sequence<EventHistory.Record>) -> [String] {
        records.map { "\($0.isDelete ? "-" : "+")\(String(decoding: $0.key.bytes, as: UTF8.self))@\($0.sub)" }
    }

    @Test func revisionsStayAddressableAsTheFrontGoes() {
        var history = EventHistory(firstRevision: 2)
        history.append([Self.put("a", at: 2)])
        history.append([Self.put("b", at: 3), Self.delete("a", at: 3), Self.put("c", at: 3)])
        history.append([Self.delete("b", at: 4)])
        #expect(history.revisionCount == 3)
        #expect(Self.described(history.records(of: 3)) == ["+b@0", "-a@1", "+c@2"])
        history.removeFirstRevision()
        #expect(history.firstRevision == 3 && history.revisionCount == 2)
        #expect(Self.described(history.records(of: 4)) == ["-b@0"])
        history.removeDeletesOfFirstRevision()
        // The puts keep their sub revisions, by which their versions are found.
        #expect(Self.described(history.records(of: 3)) == ["+b@0", "+c@2"])
        #expect(Self.described(history.records(of: 4)) == ["-b@0"])
        history.append([Self.put("d", at: 5)])
        #expect(Self.described(history.records(of: 5)) == ["+d@0"])
        history.removeFirstRevision()
        history.removeFirstRevision()
        #expect(history.firstRevision == 5)
        #expect(Self.described(history.records(of: 5)) == ["+d@0"])
    }
}
