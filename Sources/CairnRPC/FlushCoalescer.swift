import NIOCore
import NIOHTTP2

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

/// A connection handler that writes HTTP/2 frames under the flush policy
/// above; the server and client handlers share this one implementation.
protocol CoalescingFrameWriter: ChannelOutboundHandler, AnyObject where OutboundOut == HTTP2Frame {
    var context: ChannelHandlerContext? { get }
    var flushes: FlushCoalescer { get set }
}

extension CoalescingFrameWriter {
    /// Writes `frame`; the flush follows at the end of the read burst, or
    /// later in this event-loop tick for writes made outside a read.
    func write(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>? = nil) {
        guard let context = self.context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        context.write(self.wrapOutboundOut(frame), promise: promise)
        if self.flushes.wrote() {
            context.eventLoop.assumeIsolated().execute {
                self.flushes.scheduledFlushRan()
                self.flushIfNeeded()
            }
        }
    }

    func flushIfNeeded() {
        guard let context = self.context, self.flushes.takeFlush() else { return }
        context.flush()
    }
}
