extension ReadBarrier {
    /// A linearizable read of `cache` arrives. `knownRevision` is the cache's
    /// P (nil when it is not live: the read is forwarded); `sessionFloor` is
    /// the highest revision the client's session has seen.
    public mutating func linearizableRead(
        cache: CacheID, knownRevision: Int64?, sessionFloor: Int64, now: GatewayInstant
    ) -> (ReadID, [Action]) {
        let id = issueReadID()
        guard let knownRevision else { return (id, [.forward(id, .cacheUnusable)]) }
        guard waiters.count < limits.waitersMax else { return (id, [.forward(id, .waitersFull)]) }
        knownRevisions[cache] = knownRevision
        var actions: [Action] = []
        let number: UInt64
        if let inFlight {
            // A barrier sent before this read arrived proves nothing for it.
            number = inFlight.sent ? inFlight.number + 1 : inFlight.number
        } else {
            number = startBarrier(now: now, into: &actions)
        }
        waiters.append(
            Waiter(
                id: id, cache: cache, floor: sessionFloor, deadline: now.advanced(by: limits.waitMax),
                phase: .awaitingBarrier(number)))
        return (id, actions)
    }

    /// A serializable read of `cache` arrives: served at once when the cache
    /// is not behind the session's floor, else it waits for the cache to
    /// catch up (asking for progress) until its deadline.
    public mutating func serializableRead(
        cache: CacheID, knownRevision: Int64?, sessionFloor: Int64, now: GatewayInstant
    ) -> (ReadID, [Action]) {
        let id = issueReadID()
        guard let knownRevision else { return (id, [.forward(id, .cacheUnusable)]) }
        knownRevisions[cache] = knownRevision
        if knownRevision >= sessionFloor { return (id, [.serve(id)]) }
        guard waiters.count < limits.waitersMax else { return (id, [.forward(id, .waitersFull)]) }
        var actions: [Action] = []
        waiters.append(
            Waiter(
                id: id, cache: cache, floor: sessionFloor, deadline: now.advanced(by: limits.waitMax),
                phase: .catchingUp(target: sessionFloor)))
        requestProgressIfDue(cache, now: now, into: &actions)
        return (id, actions)
    }

    /// The lead is sending the barrier now: reads arriving from here on wait
    /// for the next one.
    public mutating func barrierSent(_ barrier: BarrierID) {
        guard let inFlight, inFlight.number == barrier.rawValue else { return }
        self.inFlight?.sent = true
    }

    /// The barrier answered with the leader's revision: its reads now wait
    /// for their caches to reach it (or are served at once), and the next
    /// barrier starts if reads arrived meanwhile. A stale ID (a barrier
    /// already timed out) is ignored.
    public mutating func barrierCompleted(_ barrier: BarrierID, revision: Int64, now: GatewayInstant)
        -> [Action]
    {
        guard let inFlight, inFlight.number == barrier.rawValue else { return [] }
        self.inFlight = nil
        var actions: [Action] = []
        var progressCaches: [CacheID] = []
        var remaining: [Waiter] = []
        remaining.reserveCapacity(waiters.count)
        for var waiter in waiters {
            guard waiter.phase == .awaitingBarrier(barrier.rawValue) else {
                remaining.append(waiter)
                continue
            }
            let target = max(revision, waiter.floor)
            if let known = knownRevisions[waiter.cache], known >= target {
                actions.append(.serve(waiter.id))
            } else {
                waiter.phase = .catchingUp(target: target)
                remaining.append(waiter)
                if !progressCaches.contains(waiter.cache) { progressCaches.append(waiter.cache) }
            }
        }
        waiters = remaining
        for cache in progressCaches { requestProgressIfDue(cache, now: now, into: &actions) }
        startNextBarrierIfNeeded(after: barrier.rawValue, now: now, into: &actions)
        return actions
    }

    /// The barrier failed (error, leader unknown): its reads are forwarded,
    /// and the next barrier starts if reads arrived meanwhile.
    public mutating func barrierFailed(_ barrier: BarrierID, now: GatewayInstant) -> [Action] {
        guard let inFlight, inFlight.number == barrier.rawValue else { return [] }
        self.inFlight = nil
        var actions = forwardWaiters(reason: .barrierFailed) {
            $0.phase == .awaitingBarrier(barrier.rawValue)
        }
        startNextBarrierIfNeeded(after: barrier.rawValue, now: now, into: &actions)
        return actions
    }

    /// The cache's known revision advanced (after `PrefixCache.apply`
    /// returned `.advanced`): serves the reads whose target it reached.
    public mutating func cacheAdvanced(_ cache: CacheID, to revision: Int64, now: GatewayInstant)
        -> [Action]
    {
        knownRevisions[cache] = max(knownRevisions[cache] ?? revision, revision)
        var actions: [Action] = []
        var stillBehind = false
        waiters.removeAll { waiter in
            guard waiter.cache == cache, case .catchingUp(let target) = waiter.phase else { return false }
            if revision >= target {
                actions.append(.serve(waiter.id))
                return true
            }
            stillBehind = true
            return false
        }
        if stillBehind { requestProgressIfDue(cache, now: now, into: &actions) }
        return actions
    }

    /// The cache broke or is reloading: its waiting reads are forwarded.
    public mutating func cacheUnusable(_ cache: CacheID) -> [Action] {
        knownRevisions[cache] = nil
        lastProgressRequests[cache] = nil
        return forwardWaiters(reason: .cacheUnusable) { $0.cache == cache }
    }

    /// Time passed: reads past their deadline are forwarded, a barrier past
    /// its timeout counts as failed, and caches still behind are asked for
    /// progress again.
    public mutating func tick(now: GatewayInstant) -> [Action] {
        // Expired reads go first, so a timed-out barrier restarts only for
        // reads still willing to wait.
        var actions = forwardWaiters(reason: .timedOut) { $0.deadline <= now }
        if let inFlight, inFlight.deadline <= now {
            actions += barrierFailed(BarrierID(rawValue: inFlight.number), now: now)
        }
        var behind: [CacheID] = []
        for waiter in waiters {
            if case .catchingUp = waiter.phase, !behind.contains(waiter.cache) { behind.append(waiter.cache) }
        }
        for cache in behind { requestProgressIfDue(cache, now: now, into: &actions) }
        return actions
    }

    // MARK: helpers

    private mutating func issueReadID() -> ReadID {
        defer { nextReadNumber += 1 }
        return ReadID(rawValue: nextReadNumber)
    }

    private mutating func startBarrier(now: GatewayInstant, into actions: inout [Action]) -> UInt64 {
        precondition(inFlight == nil, "a barrier is already in flight: \(String(describing: inFlight))")
        let number = nextBarrierNumber
        nextBarrierNumber += 1
        inFlight = (number, now.advanced(by: limits.barrierTimeout), false)
        actions.append(.startBarrier(BarrierID(rawValue: number)))
        return number
    }

    private mutating func startNextBarrierIfNeeded(
        after finished: UInt64, now: GatewayInstant, into actions: inout [Action]
    ) {
        guard waiters.contains(where: { $0.phase == .awaitingBarrier(finished + 1) }) else { return }
        let number = startBarrier(now: now, into: &actions)
        precondition(number == finished + 1, "barrier \(number) started after \(finished)")
    }

    private mutating func forwardWaiters(reason: ForwardReason, where matches: (Waiter) -> Bool) -> [Action] {
        var actions: [Action] = []
        waiters.removeAll { waiter in
            guard matches(waiter) else { return false }
            actions.append(.forward(waiter.id, reason))
            return true
        }
        return actions
    }

    private mutating func requestProgressIfDue(
        _ cache: CacheID, now: GatewayInstant, into actions: inout [Action]
    ) {
        if let last = lastProgressRequests[cache], now < last.advanced(by: limits.progressRequestInterval) {
            return
        }
        lastProgressRequests[cache] = now
        actions.append(.requestProgress(cache))
    }
}
