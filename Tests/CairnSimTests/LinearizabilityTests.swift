import Testing

@testable import CairnSim

/// The linearizability checker must reject what is wrong, not only accept what is right.
@Suite struct LinearizabilityTests {
    typealias Operation = KeyValueOperation

    static func put(_ client: Int, _ key: String, _ value: String, _ call: Int64, _ ret: Int64?) -> Operation
    {
        Operation(
            client: client, input: .put(key: key, value: value), output: ret == nil ? nil : .put,
            callTime: call,
            returnTime: ret)
    }

    static func get(_ client: Int, _ key: String, _ value: String?, _ call: Int64, _ ret: Int64) -> Operation
    {
        Operation(
            client: client, input: .get(key: key), output: .get(value: value), callTime: call, returnTime: ret
        )
    }

    static func cas(
        _ client: Int, _ key: String, _ expected: String?, _ new: String, _ succeeded: Bool?, _ call: Int64,
        _ ret: Int64?
    ) -> Operation {
        Operation(
            client: client, input: .compareAndSwap(key: key, expected: expected, new: new),
            output: succeeded.map { .compareAndSwap(succeeded: $0) }, callTime: call, returnTime: ret)
    }

    let checker = LinearizabilityChecker()

    @Test func aStaleReadIsRejected() {
        // x=1 finished, then x=2 finished, then a read that started later still sees 1.
        let history = [
            Self.put(1, "x", "1", 0, 10),
            Self.put(1, "x", "2", 20, 30),
            Self.get(2, "x", "1", 40, 50),
        ]
        #expect(checker.check(history) == .notLinearizable(key: "x"))
    }

    @Test func aReadConcurrentWithAWriteMaySeeEitherValue() {
        for seen in ["1", "2"] {
            let history = [
                Self.put(1, "x", "1", 0, 10),
                Self.put(1, "x", "2", 20, 30),
                Self.get(2, "x", seen, 25, 50),
            ]
            #expect(checker.check(history) == .linearizable)
        }
    }

    @Test func aValidInterleavedHistoryOnSeveralKeysIsAccepted() {
        let history = [
            Self.get(3, "y", nil, 0, 5),
            Self.put(1, "x", "a", 1, 12),
            Self.cas(2, "x", nil, "b", false, 11, 20),
            Self.get(3, "x", "a", 13, 14),
            Self.cas(1, "x", "a", "c", true, 15, 25),
            Self.put(2, "y", "q", 21, 30),
            Self.get(3, "x", "c", 26, 27),
            Self.get(3, "y", "q", 31, 32),
        ]
        #expect(checker.check(history) == .linearizable)
    }

    @Test func anUnansweredWriteMayOrMayNotHaveHappened() {
        let happened = [
            Self.put(1, "x", "1", 0, nil),
            Self.get(2, "x", "1", 50, 60),
            Self.get(2, "x", "1", 70, 80),
        ]
        #expect(checker.check(happened) == .linearizable)
        let didNot = [Self.put(1, "x", "1", 0, nil), Self.get(2, "x", nil, 50, 60)]
        #expect(checker.check(didNot) == .linearizable)
        // But it cannot take effect, be undone and take effect again.
        let flicker = [
            Self.put(1, "x", "1", 0, nil),
            Self.get(2, "x", "1", 50, 60),
            Self.get(2, "x", nil, 70, 80),
        ]
        #expect(checker.check(flicker) == .notLinearizable(key: "x"))
    }

    @Test func aCompareAndSwapMustAgreeWithTheValueItCompared() {
        let wrong = [
            Self.put(1, "x", "a", 0, 10),
            Self.cas(2, "x", "a", "b", false, 20, 30),  // it was "a": must have succeeded
        ]
        #expect(checker.check(wrong) == .notLinearizable(key: "x"))
        let lostUpdate = [
            Self.put(1, "x", "a", 0, 10),
            Self.cas(2, "x", "a", "b", true, 20, 30),
            Self.cas(3, "x", "a", "c", true, 21, 31),  // both cannot have seen "a"
        ]
        #expect(checker.check(lostUpdate) == .notLinearizable(key: "x"))
    }

    @Test func theSearchGivesUpAtItsBoundRatherThanHanging() {
        var history: [Operation] = []
        for client in 0..<10 { history.append(Self.put(client, "x", "\(client)", 0, 100)) }
        history.append(Self.get(99, "x", "never", 101, 102))
        #expect(LinearizabilityChecker(searchStepsMax: 50).check(history) == .unknown(key: "x"))
        #expect(LinearizabilityChecker().check(history) == .notLinearizable(key: "x"))
    }
}
