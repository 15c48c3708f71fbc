import NIOHTTP2

/// When to give an HTTP/2 peer more flow-control credit.
///
/// Cairn's connection handlers decode DATA as it arrives and never queue raw
/// frames, so credit can be returned as soon as a window falls to half of its
/// target; what bounds memory is the per-message size limit, not the window.
struct InboundWindowPolicy {
    let targetBytes: Int

    /// The WINDOW_UPDATE increment to send for a window now at `currentBytes`,
    /// or `nil` while it is still above half of the target.
    func increment(currentBytes: Int) -> Int? {
        guard currentBytes <= self.targetBytes / 2 else { return nil }
        return self.targetBytes - currentBytes
    }
}

/// The WINDOW_UPDATE frames a connection owes its peer, sent later in the
/// event-loop tick rather than from inside the window event.
///
/// NIOHTTP2 fires window events while it is itself writing (between frames
/// of a flush); a control frame written from inside that callback can be
/// queued behind data frames NIOHTTP2 is about to send, which breaks its
/// ordering invariant. So events only record the latest window size per
/// stream, and the owner sends what is due from a deferred task. Shared by
/// the server and client handlers.
struct InboundWindowUpdates {
    let stream: InboundWindowPolicy
    let connection: InboundWindowPolicy
    private var latestWindowBytes: [HTTP2StreamID: Int] = [:]

    init(streamTargetBytes: Int, connectionTargetBytes: Int) {
        self.stream = InboundWindowPolicy(targetBytes: streamTargetBytes)
        self.connection = InboundWindowPolicy(targetBytes: connectionTargetBytes)
    }

    /// Records a window size; `true` if the caller must schedule `takeDue`.
    mutating func record(_ streamID: HTTP2StreamID, windowBytes: Int) -> Bool {
        let wasEmpty = self.latestWindowBytes.isEmpty
        self.latestWindowBytes[streamID] = windowBytes
        return wasEmpty
    }

    /// The updates due now, for the connection and for streams still open.
    mutating func takeDue(isOpen: (HTTP2StreamID) -> Bool) -> [HTTP2Frame] {
        var frames: [HTTP2Frame] = []
        for (streamID, windowBytes) in self.latestWindowBytes {
            let isConnection = streamID == .rootStream
            guard isConnection || isOpen(streamID) else { continue }
            let policy = isConnection ? self.connection : self.stream
            if let increment = policy.increment(currentBytes: windowBytes) {
                frames.append(
                    HTTP2Frame(streamID: streamID, payload: .windowUpdate(windowSizeIncrement: increment)))
            }
        }
        self.latestWindowBytes.removeAll(keepingCapacity: true)
        return frames
    }
}
