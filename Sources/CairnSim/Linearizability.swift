/// One client operation on a key-value register, as a client saw it: what it asked, what
/// it was told (nil: no answer, the operation is indeterminate), and when it called and got
/// the answer. Times are any monotonic unit (simulator steps, nanoseconds).
public struct KeyValueOperation: Hashable, Sendable {
    /// What the client asked.
    public enum Input: Hashable, Sendable {
        case get(key: String)
        case put(key: String, value: String)
        /// Sets `new` if the key's value is `expected` (nil: the key is absent).
        case compareAndSwap(key: String, expected: String?, new: String)

        public var key: String {
            switch self {
            case .get(let key), .put(let key, _), .compareAndSwap(let key, _, _): return key
            }
        }
    }

    /// What the client was told.
    public enum Output: Hashable, Sendable {
        /// The value read (nil: absent).
        case get(value: String?)
        case put
        case compareAndSwap(succeeded: Bool)
    }

    public var client: Int
    public var input: Input
    /// Nil when no answer came (timeout, crash): the operation may or may not have happened.
    public var output: Output?
    public var callTime: Int64
    /// Nil when no answer came.
    public var returnTime: Int64?

    public init(client: Int, input: Input, output: Output?, callTime: Int64, returnTime: Int64?) {
        self.client = client
        self.input = input
        self.output = output
        self.callTime = callTime
        self.returnTime = returnTime
    }
}

/// Decides whether a history of key-value operations is linearizable (Herlihy & Wing):
/// whether every operation can be placed at one instant between its call and its return so
/// that the sequence obeys a key-value register, with every answer as given.
///
/// The search is Wing & Gong's, with Lowe's memoization of (linearized set, state), as in
/// Porcupine. Operations on different keys never constrain each other (linearizability is
/// local), so each key is checked alone. An operation without an answer returns "at
/// infinity" and its output is whatever the model says, so it may take effect or not; a read
/// without an answer constrains nothing and is dropped.
public struct LinearizabilityChecker: Sendable {
    /// The verdict.
    public enum Verdict: Hashable, Sendable {
        case linearizable
        /// No order explains the history of `key`.
        case notLinearizable(key: String)
        /// The search hit `searchStepsMax` on `key` before deciding.
        case unknown(key: String)
    }

    /// Search steps per key before the checker gives up (`unknown`), so a pathological
    /// history cannot hang a test.
    public var searchStepsMax: Int

    public init(searchStepsMax: Int = 5_000_000) {
        self.searchStepsMax = searchStepsMax
    }

    public func check(_ history: [KeyValueOperation]) -> Verdict {
        var byKey: [String: [KeyValueOperation]] = [:]
        for operation in history {
            if case .get = operation.input, operation.output == nil { continue }
            byKey[operation.input.key, default: []].append(operation)
        }
        for key in byKey.keys.sorted() {
            switch search(byKey[key]!) {
            case .some(true): continue
            case .some(false): return .notLinearizable(key: key)
            case .none: return .unknown(key: key)
            }
        }
        return .linearizable
    }

    /// The model: the register's next state after `operation`, or nil when the answer the
    /// client got is impossible from `state`.
    static func step(_ state: String?, _ operation: KeyValueOperation) -> String?? {
        switch operation.input {
        case .get:
            guard case .get(let value) = operation.output, value == state else { return .none }
            return .some(state)
        case .put(_, let value):
            return .some(value)
        case .compareAndSwap(_, let expected, let new):
            let swaps = state == expected
            switch operation.output {
            case .none: return .some(swaps ? new : state)
            case .compareAndSwap(let succeeded)? where succeeded == swaps: return .some(swaps ? new : state)
            default: return .none
            }
        }
    }

    private struct Event {
        var operation: Int
        var isCall: Bool
        var time: Int64
    }

    private struct Memo: Hashable {
        var linearized: [UInt64]
        var state: String?
    }

    /// true: linearizable; false: not; nil: out of steps.
    private func search(_ operations: [KeyValueOperation]) -> Bool? {
        // Events in time order; at equal times calls come first (overlap, the lenient reading).
        var events: [Event] = []
        for (index, operation) in operations.enumerated() {
            events.append(Event(operation: index, isCall: true, time: operation.callTime))
            events.append(Event(operation: index, isCall: false, time: operation.returnTime ?? .max))
        }
        events.sort {
            ($0.time, $0.isCall ? 0 : 1, $0.operation) < ($1.time, $1.isCall ? 0 : 1, $1.operation)
        }
        var list = EventList(events.map { ($0.operation, $0.isCall) }, operationCount: operations.count)
        var linearized = [UInt64](repeating: 0, count: (operations.count + 63) / 64)
        var state: String? = nil
        var seen: Set<Memo> = []
        var stack: [(node: Int, state: String?)] = []
        var cursor = list.head
        var steps = 0
        while cursor != EventList.end {
            steps += 1
            if steps > searchStepsMax { return nil }
            let (operation, isCall) = list.event(cursor)
            if isCall {
                if let next = Self.step(state, operations[operation]) {
                    var bits = linearized
                    bits[operation / 64] |= 1 << UInt64(operation % 64)
                    if seen.insert(Memo(linearized: bits, state: next)).inserted {
                        stack.append((cursor, state))
                        state = next
                        linearized = bits
                        list.lift(cursor)
                        cursor = list.head
                        continue
                    }
                }
                cursor = list.next(cursor)
            } else {
                // An operation returned before we could linearize it: undo the last choice.
                guard let (node, previous) = stack.popLast() else { return false }
                let undone = list.event(node).operation
                linearized[undone / 64] &= ~(1 << UInt64(undone % 64))
                state = previous
                list.unlift(node)
                cursor = list.next(node)
            }
        }
        return true
    }
}

/// A doubly linked list of call/return events over arrays: lifting an operation removes its
/// call and return in O(1), unlifting restores them (dancing links).
private struct EventList {
    static let end = -1
    private var operations: [Int]
    private var isCall: [Bool]
    private var previous: [Int]
    private var nextNode: [Int]
    /// The return node of each operation's call node.
    private var match: [Int]
    private(set) var head: Int

    init(_ events: [(operation: Int, isCall: Bool)], operationCount: Int) {
        operations = events.map(\.operation)
        isCall = events.map(\.isCall)
        let count = events.count
        // Node i+1 for event i; node 0 is a sentinel before the head.
        previous = (0...count).map { $0 - 1 }
        nextNode = (0...count).map { $0 + 1 < count + 1 ? $0 + 1 : Self.end }
        match = [Int](repeating: Self.end, count: count + 1)
        var returnNode = [Int](repeating: Self.end, count: operationCount)
        for (position, event) in events.enumerated() where !event.isCall {
            returnNode[event.operation] = position + 1
        }
        for (position, event) in events.enumerated() where event.isCall {
            match[position + 1] = returnNode[event.operation]
        }
        head = count > 0 ? 1 : Self.end
    }

    func event(_ node: Int) -> (operation: Int, isCall: Bool) { (operations[node - 1], isCall[node - 1]) }

    func next(_ node: Int) -> Int { nextNode[node] }

    private mutating func unlink(_ node: Int) {
        let before = previous[node]
        let after = nextNode[node]
        nextNode[before] = after
        if after != Self.end { previous[after] = before }
        head = nextNode[0]
    }

    private mutating func relink(_ node: Int) {
        let before = previous[node]
        let after = nextNode[node]
        nextNode[before] = node
        if after != Self.end { previous[after] = node }
        head = nextNode[0]
    }

    mutating func lift(_ call: Int) {
        unlink(call)
        unlink(match[call])
    }

    mutating func unlift(_ call: Int) {
        relink(match[call])
        relink(call)
    }
}
