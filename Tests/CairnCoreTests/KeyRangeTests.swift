import CairnCore
import Testing

@Suite struct KeyRangeTests {
    @Test func emptyRangeEndIsOneKey() {
        let range = KeyRange(key: "foo", rangeEnd: Key([]))
        #expect(range == .single("foo"))
        #expect(range.contains("foo"))
        #expect(!range.contains("foo1"))
        #expect(!range.contains("fo"))
    }

    @Test func zeroRangeEndMeansFromKey() {
        let range = KeyRange(key: "b", rangeEnd: Key([0]))
        #expect(range == .from("b"))
        #expect(range.contains("b"))
        #expect(range.contains(Key([0xff, 0xff])))
        #expect(!range.contains("a"))
        #expect(!range.isPast(Key([0xff])))
    }

    @Test func zeroKeyAndZeroEndIsEverything() {
        let range = KeyRange(key: Key([0]), rangeEnd: Key([0]))
        #expect(range == KeyRange.all)
        #expect(range.contains(Key([0])))
        #expect(range.contains("a"))
        #expect(range.contains(Key([0xff])))
    }

    @Test func intervalIsHalfOpen() {
        let range = KeyRange(key: "a", rangeEnd: "c")
        #expect(range.contains("a"))
        #expect(range.contains("b"))
        #expect(range.contains("bzzz"))
        #expect(!range.contains("c"))
        #expect(range.isPast("c"))
        #expect(!range.isPast("b"))
        let backwards = KeyRange(key: "c", rangeEnd: "a")
        #expect(!backwards.contains("b"))
        #expect(!backwards.contains("c"))
    }

    @Test func prefixEndFollowsEtcd() {
        #expect(KeyRange.prefixEnd(of: "foo") == "fop")
        #expect(KeyRange.prefixEnd(of: Key([0x61, 0xff])) == Key([0x62]))
        #expect(KeyRange.prefixEnd(of: Key([0xff, 0xff])) == Key([0]))
        #expect(KeyRange.prefixEnd(of: Key([])) == Key([0]))
        let prefix = KeyRange.prefix("foo")
        #expect(prefix.contains("foo"))
        #expect(prefix.contains("foo/bar"))
        #expect(!prefix.contains("fop"))
        #expect(!prefix.contains("fo"))
    }

    @Test func rangeRoundTripsToEtcdPair() {
        for range in [KeyRange.single("k"), .from("k"), .interval("k", end: "m")] {
            #expect(KeyRange(key: range.start, rangeEnd: range.rangeEnd) == range)
        }
    }

    @Test func keysOrderByBytes() {
        #expect(Key("a") < Key("b"))
        #expect(Key("a") < Key("aa"))
        #expect(Key([0x7f]) < Key([0x80]))
        #expect(!(Key("b") < Key("b")))
    }

    @Test func revisionsOrderByMainThenSub() {
        #expect(Revision(main: 2, sub: 5) < Revision(main: 3, sub: 0))
        #expect(Revision(main: 3, sub: 0) < Revision(main: 3, sub: 1))
        #expect(!(Revision(main: 3, sub: 1) < Revision(main: 3, sub: 1)))
        #expect(LeaseID.none.rawValue == 0)
        #expect(WatchID.streamWide.rawValue == -1)
    }
}
