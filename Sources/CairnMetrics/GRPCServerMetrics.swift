import CairnAPI
import Prometheus

/// How a gRPC method streams, with go-grpc-prometheus's `grpc_type` labels.
public enum GRPCMethodType: String, Sendable {
    case unary
    case clientStream = "client_stream"
    case serverStream = "server_stream"
    case bidiStream = "bidi_stream"
}

/// `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`
/// as etcd exposes it through go-grpc-prometheus: every known method is
/// pre-registered with every status code, so the series exist at zero.
///
/// The counters are created once here; counting a finished call is one
/// dictionary lookup of its path (no allocation) and one atomic add.
/// Paths not given at init (unknown methods) are not counted, as gRPC's
/// interceptors never see them either.
///
/// Properties:
/// 1. `counters[row * codeCount + code]` is the series of `methods[row]`
///    and status code `code` (0…16).
public final class GRPCServerMetrics: Sendable {
    /// gRPC's status code names (`codes.Code.String()`), indexed by code.
    public static let codeNames = [
        "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
        "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
        "Unimplemented",
        "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    ]
    static var descriptor: MetricNameDescriptor {
        MetricNameDescriptor(
            namespace: "grpc", subsystem: "server", metricName: "handled", unitName: "total",
            helpText: "Total number of RPCs completed on the server, regardless of success or failure.")
    }

    private let rows: [String: Int]
    private let counters: [Counter]

    /// Registers the series of `methods` (`/package.Service/Method` paths).
    public init(registry: PrometheusCollectorRegistry, methods: [(path: String, type: GRPCMethodType)]) {
        var rows: [String: Int] = [:]
        var counters: [Counter] = []
        counters.reserveCapacity(methods.count * Self.codeNames.count)
        for (path, type) in methods where rows[path] == nil {
            let parts = path.split(separator: "/")
            guard parts.count == 2 else { continue }
            rows[path] = rows.count
            for code in Self.codeNames {
                counters.append(
                    registry.makeCounter(
                        descriptor: Self.descriptor,
                        labels: [
                            ("grpc_type", type.rawValue), ("grpc_service", String(parts[0])),
                            ("grpc_method", String(parts[1])), ("grpc_code", code),
                        ]))
            }
        }
        self.rows = rows
        self.counters = counters
    }

    /// Counts one finished call of `path` with gRPC status `code`.
    public func handled(path: String, code: Int) {
        guard let row = self.rows[path], code >= 0, code < Self.codeNames.count else { return }
        self.counters[row * Self.codeNames.count + code].increment()
    }
}

extension GRPCServerMetrics {
    /// Every method of etcd's v3 API (KV, Watch, Lease, Cluster,
    /// Maintenance, Auth, Election, Lock) with its streaming type, from
    /// the generated descriptors: what a member or a gateway serves.
    public static var etcdMethods: [(path: String, type: GRPCMethodType)] {
        // The streaming methods; every other etcd method is unary.
        let streaming = Dictionary(
            uniqueKeysWithValues: [
                Self.entry(EtcdWatch.watch), Self.entry(EtcdLease.leaseKeepAlive),
                Self.entry(EtcdMaintenance.snapshot), Self.entry(EtcdElection.observe),
            ])
        return EtcdServices.allPaths.map { ($0, streaming[$0] ?? .unary) }
    }

    private static func entry<Request, Response>(_ method: MethodDescriptor<Request, Response>)
        -> (String, GRPCMethodType)
    {
        switch method.streaming {
        case .unary: (method.path, .unary)
        case .clientStreaming: (method.path, .clientStream)
        case .serverStreaming: (method.path, .serverStream)
        case .bidirectional: (method.path, .bidiStream)
        }
    }
}
