import CairnTestSupport
import Foundation
import Testing
import Yams

/// Parses every file under `deploy/` and checks the fields that must agree
/// across files: names, selectors, ports, probes, volumes and the flags
/// the command lines pass. A manifest that drifts from another fails here,
/// not in a cluster.
@Suite struct DeployManifestTests {
    typealias Object = [String: Any]

    static let deploy = TestProcess.repositoryRoot.appendingPathComponent("deploy")

    /// Every document of every Kubernetes file, with the file it came from.
    static func documents() throws -> [(file: String, object: Object)] {
        let directory = Self.deploy.appendingPathComponent("kubernetes")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter {
            $0.hasSuffix(".yaml")
        }.sorted()
        var documents: [(String, Object)] = []
        for file in files {
            let text = try String(contentsOf: directory.appendingPathComponent(file), encoding: .utf8)
            for document in try Yams.load_all(yaml: text) {
                guard let object = document as? Object else {
                    throw TestFailure("\(file): a document is not a map")
                }
                documents.append((file, object))
            }
        }
        return documents
    }

    static func objects(_ kind: String, in documents: [(file: String, object: Object)]) -> [Object] {
        documents.filter { $0.object["kind"] as? String == kind }.map(\.object)
    }

    static func name(_ object: Object) -> String {
        (object["metadata"] as? Object)?["name"] as? String ?? ""
    }

    static func podSpec(_ workload: Object) -> Object {
        ((workload["spec"] as? Object)?["template"] as? Object)?["spec"] as? Object ?? [:]
    }

    static func podLabels(_ workload: Object) -> [String: String] {
        (((workload["spec"] as? Object)?["template"] as? Object)?["metadata"] as? Object)?["labels"]
            as? [String: String] ?? [:]
    }

    static func containers(_ workload: Object) -> [Object] {
        Self.podSpec(workload)["containers"] as? [Object] ?? []
    }

    /// A container's command line as one string (command, args).
    static func commandLine(_ container: Object) -> String {
        ((container["command"] as? [String] ?? []) + (container["args"] as? [String] ?? [])).joined(
            separator: " ")
    }

    static func ports(_ container: Object) -> [String: Int] {
        var ports: [String: Int] = [:]
        for port in container["ports"] as? [Object] ?? [] {
            if let name = port["name"] as? String, let number = port["containerPort"] as? Int {
                ports[name] = number
            }
        }
        return ports
    }

    static func selects(_ selector: [String: String], _ labels: [String: String]) -> Bool {
        !selector.isEmpty && selector.allSatisfy { labels[$0.key] == $0.value }
    }

    @Test func everyManifestParsesAndNamesItsKind() throws {
        let documents = try Self.documents()
        #expect(documents.count >= 10)
        for (file, object) in documents {
            #expect(object["apiVersion"] is String && object["kind"] is String, "\(file)")
            #expect(!Self.name(object).isEmpty, "\(file): \(object["kind"] ?? "?") without a name")
        }
    }

    @Test func membersFormAThreeMemberClusterTheirServicesAndBudgetAgreeOn() throws {
        let documents = try Self.documents()
        let statefulSet = try #require(Self.objects("StatefulSet", in: documents).first)
        let spec = try #require(statefulSet["spec"] as? Object)
        #expect(spec["replicas"] as? Int == 3)
        let labels = Self.podLabels(statefulSet)
        let selector = (spec["selector"] as? Object)?["matchLabels"] as? [String: String] ?? [:]
        #expect(Self.selects(selector, labels))
        // The headless Service is the StatefulSet's serviceName and publishes unready peers.
        let serviceName = try #require(spec["serviceName"] as? String)
        let services = Self.objects("Service", in: documents)
        let headless = try #require(services.first { Self.name($0) == serviceName })
        let headlessSpec = headless["spec"] as? Object ?? [:]
        #expect(headlessSpec["clusterIP"] as? String == "None")
        #expect(headlessSpec["publishNotReadyAddresses"] as? Bool == true)
        #expect(Self.selects(headlessSpec["selector"] as? [String: String] ?? [:], labels))
        // Anti-affinity spreads members over nodes.
        let antiAffinity = (Self.podSpec(statefulSet)["affinity"] as? Object)?["podAntiAffinity"] as? Object
        let terms = antiAffinity?["requiredDuringSchedulingIgnoredDuringExecution"] as? [Object] ?? []
        #expect(terms.contains { $0["topologyKey"] as? String == "kubernetes.io/hostname" })
        // The budget keeps a quorum (2 of 3).
        let budget = try #require(Self.objects("PodDisruptionBudget", in: documents).first)
        let budgetSpec = budget["spec"] as? Object ?? [:]
        #expect(budgetSpec["minAvailable"] as? Int == 2)
        let budgetSelector = (budgetSpec["selector"] as? Object)?["matchLabels"] as? [String: String] ?? [:]
        #expect(Self.selects(budgetSelector, labels))
        // The initial cluster names every replica at its stable DNS name.
        let member = try #require(Self.containers(statefulSet).first)
        let line = Self.commandLine(member)
        let namespace = (statefulSet["metadata"] as? Object)?["namespace"] as? String ?? "default"
        for ordinal in 0..<3 {
            let peer =
                "\(Self.name(statefulSet))-\(ordinal)=https://\(Self.name(statefulSet))-\(ordinal)"
                + ".\(serviceName).\(namespace).svc:"
            #expect(line.contains(peer), "initial cluster lacks \(peer)")
        }
    }

    @Test func portsProbesAndFlagsAgree() throws {
        let documents = try Self.documents()
        let services = Self.objects("Service", in: documents)
        for workload in Self.objects("StatefulSet", in: documents) + Self.objects("DaemonSet", in: documents)
            + Self.objects("Deployment", in: documents)
        {
            for container in Self.containers(workload) where Self.commandLine(container).contains("cairn") {
                let ports = Self.ports(container)
                let line = Self.commandLine(container)
                // Every declared port is the port a flag listens on.
                let flags: [String: String] = [
                    "client": "--listen-client-urls https://0.0.0.0:",
                    "peer": "--listen-peer-urls https://0.0.0.0:",
                    "metrics": "--listen-metrics-urls", "grpc": "--listen-addr=",
                ]
                for (name, number) in ports {
                    let flag = try #require(flags[name], "\(Self.name(workload)): unexpected port \(name)")
                    #expect(
                        line.range(of: "\(flag)[ =]?[^ ]*:\(number)( |$)", options: .regularExpression) != nil
                            || line.contains("\(flag)\(number)"),
                        "\(Self.name(workload)): port \(name)=\(number) is not what \(flag) listens on")
                }
                // Probes use the health endpoints on a declared port.
                for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
                    guard let get = (container[probe] as? Object)?["httpGet"] as? Object else { continue }
                    #expect(get["path"] as? String == path, "\(Self.name(workload)) \(probe)")
                    let port = get["port"]
                    #expect(
                        (port as? String).map { ports[$0] != nil } ?? (port as? Int).map {
                            ports.values.contains($0)
                        }
                            ?? false, "\(Self.name(workload)) \(probe) port \(String(describing: port))")
                }
                #expect(container["readinessProbe"] != nil, "\(Self.name(workload)) has no readiness probe")
                // Services in front of the workload name ports it declares.
                for service in services {
                    let spec = service["spec"] as? Object ?? [:]
                    guard Self.selects(spec["selector"] as? [String: String] ?? [:], Self.podLabels(workload))
                    else { continue }
                    for port in spec["ports"] as? [Object] ?? [] {
                        let target = port["targetPort"] as? String ?? ""
                        #expect(
                            ports[target] != nil,
                            "Service \(Self.name(service)) targets unknown port \(target)")
                    }
                }
            }
        }
    }

    @Test func volumesSecretsAndConfigMapsExist() throws {
        let documents = try Self.documents()
        let secrets = Set(
            Self.objects("Certificate", in: documents).compactMap {
                ($0["spec"] as? Object)?["secretName"] as? String
            })
        let configMaps = Set(Self.objects("ConfigMap", in: documents).map(Self.name))
        for workload in Self.objects("StatefulSet", in: documents) + Self.objects("DaemonSet", in: documents)
            + Self.objects("Deployment", in: documents)
        {
            let volumes = Self.podSpec(workload)["volumes"] as? [Object] ?? []
            var names = Set(volumes.compactMap { $0["name"] as? String })
            let claims = (workload["spec"] as? Object)?["volumeClaimTemplates"] as? [Object] ?? []
            names.formUnion(claims.compactMap { ($0["metadata"] as? Object)?["name"] as? String })
            for volume in volumes {
                if let secret = (volume["secret"] as? Object)?["secretName"] as? String {
                    #expect(
                        secrets.contains(secret),
                        "\(Self.name(workload)): no Certificate makes secret \(secret)")
                }
                if let map = (volume["configMap"] as? Object)?["name"] as? String {
                    #expect(configMaps.contains(map), "\(Self.name(workload)): no ConfigMap \(map)")
                }
            }
            for container in Self.containers(workload) {
                let mounts = container["volumeMounts"] as? [Object] ?? []
                for mount in mounts {
                    let name = mount["name"] as? String ?? ""
                    #expect(names.contains(name), "\(Self.name(workload)): mount of unknown volume \(name)")
                }
                // Every file a flag names lies under a mounted directory.
                let paths = Self.commandLine(container).split(whereSeparator: { $0 == " " || $0 == "=" })
                    .filter { $0.hasPrefix("/etc/") }
                let mountPaths = mounts.compactMap { $0["mountPath"] as? String }
                for path in paths {
                    #expect(
                        mountPaths.contains { path.hasPrefix($0 + "/") },
                        "\(Self.name(workload)): \(path) is not under a mounted volume")
                }
            }
        }
    }

    @Test func tenantsConfigMapIsAValidTenantsFileShape() throws {
        let documents = try Self.documents()
        let map = try #require(
            Self.objects("ConfigMap", in: documents).first { Self.name($0) == "cairn-tenants" })
        let text = try #require((map["data"] as? Object)?["tenants.yaml"] as? String)
        let file = try #require(try Yams.load(yaml: text) as? Object)
        let tenants = try #require(file["tenants"] as? [Object])
        #expect(!tenants.isEmpty)
        for tenant in tenants {
            #expect(
                tenant["name"] is String && tenant["prefix"] is String && tenant["identities"] is [String])
        }
    }

    @Test func systemdUnitsUseTheirEnvironmentFilesAndHardening() throws {
        let directory = Self.deploy.appendingPathComponent("systemd")
        for unit in ["cairn-member", "cairn-gateway"] {
            let text = try String(
                contentsOf: directory.appendingPathComponent("\(unit).service"), encoding: .utf8)
            let environment = try String(
                contentsOf: directory.appendingPathComponent("\(unit).env"), encoding: .utf8)
            let defined = Set(
                environment.split(separator: "\n").filter { !$0.hasPrefix("#") && $0.contains("=") }
                    .map { String($0.split(separator: "=")[0]) })
            let used = text.matches(of: /\$\{([A-Z_]+)\}/).map { String($0.output.1) }
            #expect(!used.isEmpty)
            for variable in used {
                #expect(defined.contains(variable), "\(unit): \(variable) is not in \(unit).env")
            }
            let subcommand = unit == "cairn-member" ? "member" : "gateway"
            #expect(text.contains("ExecStart=/usr/local/bin/cairn \(subcommand)"))
            for option in [
                "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "CapabilityBoundingSet=",
            ] {
                #expect(text.contains(option), "\(unit) lacks \(option)")
            }
            #expect(text.contains("ExecReload=/bin/kill -HUP $MAINPID"))
        }
    }
}
