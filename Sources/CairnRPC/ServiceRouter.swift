import CairnAPI
import NIOCore
import SwiftProtobuf

/// A service's side of a streaming call: Cairn calls it on the connection's
/// event loop as messages arrive, and it answers through its `RPCServerStream`.
public protocol RPCStreamHandler<Request>: AnyObject {
    associatedtype Request: SwiftProtobuf.Message
    /// One request message.
    func received(_ request: Request)
    /// The client half-closed: no more requests will arrive.
    func receivedEnd()
    /// The call ended before the service finished it: the client reset the
    /// stream or went away, or the deadline passed. Nothing more can be sent.
    func cancelled()
}

/// The table of methods a server answers, built once at start-up.
///
/// Services are plain functions over generated messages; the router decodes
/// requests, calls them on the connection's event loop and encodes answers,
/// so a service never sees bytes or HTTP/2.
public struct RPCServiceRouter: Sendable {
    private(set) var methods: [String: RegisteredMethod] = [:]
    private(set) var services: Set<String> = []

    public init() {}

    /// A unary method answered synchronously on the event loop: no task hop,
    /// no future. Throw an `RPCStatus` to fail the call.
    public mutating func unary<Request, Response>(
        _ method: MethodDescriptor<Request, Response>,
        requestBytesMax: Int? = nil,
        _ handler: @escaping @Sendable (Request, RPCContext) throws -> Response
    ) {
        self.register(method, requestBytesMax: requestBytesMax) { payload, call in
            guard let request: Request = Self.decode(payload, for: call) else { return }
            do {
                call.respondUnary(try handler(request, RPCContext(call: call)))
            } catch {
                call.finish(RPCStatus(error))
            }
        }
    }

    /// A unary method that answers later, for example once a write has
    /// committed. The future may complete on any event loop.
    public mutating func unaryFuture<Request, Response>(
        _ method: MethodDescriptor<Request, Response>,
        requestBytesMax: Int? = nil,
        _ handler: @escaping @Sendable (Request, RPCContext) -> EventLoopFuture<Response>
    ) {
        self.register(method, requestBytesMax: requestBytesMax) { payload, call in
            guard let request: Request = Self.decode(payload, for: call) else { return }
            let eventLoop = call.eventLoop
            handler(request, RPCContext(call: call)).hop(to: eventLoop).assumeIsolated().whenComplete {
                result in
                switch result {
                case .success(let response): call.respondUnary(response)
                case .failure(let error): call.finish(RPCStatus(error))
                }
            }
        }
    }

    /// A client-, server- or bidirectionally streaming method. `open` runs when
    /// the call's headers arrive and returns the handler for its messages.
    public mutating func streaming<Request, Response>(
        _ method: MethodDescriptor<Request, Response>,
        requestBytesMax: Int? = nil,
        _ open: @escaping @Sendable (RPCServerStream<Response>) -> any RPCStreamHandler<Request>
    ) {
        precondition(method.streaming != .unary, "\(method.path) is unary: register it with unary(_:)")
        let (service, _) = Self.split(method.path)
        self.services.insert(String(service))
        self.methods[method.path] = RegisteredMethod(
            requestBytesMax: requestBytesMax,
            kind: .streaming { call in
                let handler = open(RPCServerStream<Response>(call: call))
                return StreamSink(
                    receive: { payload in
                        do {
                            handler.received(try Request(serializedBytes: payload.readableBytesSpan))
                            return nil
                        } catch {
                            return .requestUndecodable(error)
                        }
                    },
                    end: { handler.receivedEnd() },
                    cancel: { handler.cancelled() }
                )
            }
        )
    }

    private mutating func register<Request, Response>(
        _ method: MethodDescriptor<Request, Response>,
        requestBytesMax: Int?,
        _ body: @escaping @Sendable (ByteBuffer, ServerCall) -> Void
    ) {
        precondition(method.streaming == .unary, "\(method.path) streams: register it with streaming(_:)")
        let (service, _) = Self.split(method.path)
        self.services.insert(String(service))
        self.methods[method.path] = RegisteredMethod(requestBytesMax: requestBytesMax, kind: .unary(body))
    }

    /// Decodes a unary request, or ends the call with gRPC's status for an undecodable one.
    private static func decode<Request: SwiftProtobuf.Message>(_ payload: ByteBuffer, for call: ServerCall)
        -> Request?
    {
        do {
            return try Request(serializedBytes: payload.readableBytesSpan)
        } catch {
            call.finish(.requestUndecodable(error))
            return nil
        }
    }

    /// The status for a path no method is registered at, with grpc-go's texts.
    func unknownMethodStatus(path: String) -> RPCStatus {
        let (service, method) = Self.split(path)
        if self.services.contains(String(service)) {
            return RPCStatus(.unimplemented, "unknown method \(method) for service \(service)")
        }
        return RPCStatus(.unimplemented, "unknown service \(service)")
    }

    /// Splits `/pkg.Service/Method` into its service and method names.
    static func split(_ path: String) -> (service: Substring, method: Substring) {
        let trimmed = path.drop(while: { $0 == "/" })
        guard let slash = trimmed.lastIndex(of: "/") else { return (trimmed, "") }
        return (trimmed[..<slash], trimmed[trimmed.index(after: slash)...])
    }
}

/// A method as the connection handler sees it: bytes in, effects on the call.
struct RegisteredMethod: Sendable {
    enum Kind: Sendable {
        case unary(@Sendable (ByteBuffer, ServerCall) -> Void)
        case streaming(@Sendable (ServerCall) -> StreamSink)
    }

    var requestBytesMax: Int?
    var kind: Kind
}

/// A streaming handler with its message type erased.
struct StreamSink {
    /// Decodes and delivers one message; a status if it cannot be decoded.
    var receive: (ByteBuffer) -> RPCStatus?
    var end: () -> Void
    var cancel: () -> Void
}

extension RPCStatus {
    /// Maps anything a service throws to a status: an `RPCStatus` as it is,
    /// anything else as `unknown` with its description, as grpc-go does.
    public init(_ error: any Error) {
        if let status = error as? RPCStatus {
            self = status
        } else {
            self = RPCStatus(.unknown, String(describing: error))
        }
    }

    static func requestUndecodable(_ error: any Error) -> RPCStatus {
        RPCStatus(.internal, "grpc: error unmarshalling request: \(error)")
    }
}
