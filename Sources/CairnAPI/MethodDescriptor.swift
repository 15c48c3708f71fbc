import SwiftProtobuf

/// One gRPC method of the etcd API with its message types.
///
/// Servers register handlers and clients make calls by descriptor rather than
/// by path string, so a typo or a mismatched message type is a compile error.
/// The descriptors for etcd's services are generated from our `.proto` files
/// by `scripts/generate-protos` into `Generated/Services.swift`.
public struct MethodDescriptor<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: Sendable {
    /// How many messages flow in each direction, as declared in the `.proto`.
    public enum Streaming: Sendable, Equatable {
        case unary
        case serverStreaming
        case clientStreaming
        case bidirectional
    }

    /// The HTTP/2 `:path` of the method: `/<package>.<Service>/<Method>`.
    public let path: String
    public let streaming: Streaming

    public init(service: String, method: String, streaming: Streaming) {
        self.path = "/\(service)/\(method)"
        self.streaming = streaming
    }
}
