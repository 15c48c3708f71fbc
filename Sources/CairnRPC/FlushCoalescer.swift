/// When a connection handler flushes: once per read burst for answers made
/// while reading, and once per event-loop tick for writes made outside a
/// read (futures completing, stream sends), so a batch of writes costs one
/// syscall. Shared by the server and client handlers.
struct FlushCoalescer {
    private var needsFlush = false
    private var inReadBurst = false
    private var flushScheduled = false

    mutating func readBurstBegan() {
        self.inReadBurst = true
    }

    mutating func readBurstEnded() {
        self.inReadBurst = false
    }

    /// Records a write; `true` if the caller must schedule a flush for later
    /// in this event-loop tick (and then call `scheduledFlushRan`).
    mutating func wrote() -> Bool {
        self.needsFlush = true
        guard !self.inReadBurst && !self.flushScheduled else { return false }
        self.flushScheduled = true
        return true
    }

    mutating func scheduledFlushRan() {
        self.flushScheduled = false
    }

    /// `true` if writes are waiting for a flush; resets the flag.
    mutating func takeFlush() -> Bool {
        defer { self.needsFlush = false }
        return self.needsFlush
    }
}
