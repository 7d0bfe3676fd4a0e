public import FuseboxEtcd
public import Foundation
import FuseboxTLS
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A real etcd cluster on 127.0.0.1 for one test: `size` members with free
/// ports and temporary data directories, started at once, killed (SIGKILL)
/// and removed by `stop()`. Each member's output goes to `member-N.log` in
/// the cluster's directory, quoted by `logTail` for failure messages.
public final class EtcdTestCluster: @unchecked Sendable {
    public struct Member {
        public let name: String
        public let clientPort: Int
        public let peerPort: Int
        public let dataDirectory: URL
        public let log: URL
        public let process: Process
        /// The command line it was started with (a restart reuses it).
        public let arguments: [String]
    }

    /// Certificate and key for the members' client URLs (https), with the CA that signed them.
    public struct TLSFiles {
        public let certificate: String
        public let key: String
        public let ca: String
        /// With one, etcd requires client certificates signed by `ca`
        /// (`--client-cert-auth`), and `client()` presents this one.
        public let clientIdentity: (certificate: String, key: String)?

        /// Server certificate, its key and the CA that signed it (PEM paths);
        /// `clientIdentity`: require client certificates, and present this one.
        public init(certificate: String, key: String, ca: String, clientIdentity: (certificate: String, key: String)? = nil) {
            self.certificate = certificate
            self.key = key
            self.ca = ca
            self.clientIdentity = clientIdentity
        }
    }

    public let root: URL
    public private(set) var members: [Member] = []
    public let tls: TLSFiles?

    /// Starts the members; call `waitUntilHealthy` before use.
    public init(size: Int = 3, tls: TLSFiles? = nil) throws {
        self.tls = tls
        root = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-etcd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let ports = try Self.freePorts(2 * size)
        let scheme = tls == nil ? "http" : "https"
        let names = (1...size).map { "n\($0)" }
        let token = "fusebox-test-\(UUID().uuidString.prefix(8))"
        let initialCluster = names.enumerated().map { "\($1)=http://127.0.0.1:\(ports[2 * $0 + 1])" }.joined(separator: ",")
        for (i, name) in names.enumerated() {
            let clientURL = "\(scheme)://127.0.0.1:\(ports[2 * i])"
            let peerURL = "http://127.0.0.1:\(ports[2 * i + 1])"
            let data = root.appendingPathComponent(name)
            var arguments = [
                "--name", name, "--data-dir", data.path,
                "--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
                "--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
                "--initial-cluster", initialCluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", token,
                // Faster elections than the defaults (100 ms / 1 s), so that a
                // killed leader is replaced well within a test's time.
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--experimental-watch-progress-notify-interval", "1s",
            ]
            if let tls { arguments += ["--cert-file", tls.certificate, "--key-file", tls.key] }
            if let tls, tls.clientIdentity != nil { arguments += ["--client-cert-auth", "--trusted-ca-file", tls.ca] }
            let log = root.appendingPathComponent("member-\(i + 1).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
            process.arguments = arguments
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            members.append(Member(
                name: name, clientPort: ports[2 * i], peerPort: ports[2 * i + 1], dataDirectory: data, log: log, process: process,
                arguments: arguments))
        }
    }

    /// "127.0.0.1:port" of every member, in member order.
    public var endpoints: [String] { members.map { "127.0.0.1:\($0.clientPort)" } }

    /// The typed endpoint of member `i`.
    public func endpoint(_ i: Int) -> EtcdEndpoint { EtcdEndpoint(host: "127.0.0.1", port: members[i].clientPort) }

    /// A client of every member.
    public func client(endpoints: [String]? = nil) throws -> EtcdClient {
        var tlsConfiguration: TLSConfiguration?
        if let tls {
            tlsConfiguration = .client(
                trustRootsPath: tls.ca, certificateChainPath: tls.clientIdentity?.certificate, privateKeyPath: tls.clientIdentity?.key)
        }
        var configuration = try EtcdConfiguration(endpoints: endpoints ?? self.endpoints, tls: tlsConfiguration)
        configuration.requestTimeout = .seconds(3)
        configuration.retryTimeout = .seconds(10)
        return try EtcdClient(configuration: configuration)
    }

    /// The index of the member that is the leader now, asked through `client`.
    public func leaderIndex(_ client: EtcdClient) async throws -> Int {
        var ids: [UInt64] = []
        var leader: UInt64 = 0
        for i in members.indices {
            let status = try await client.status(of: endpoint(i))
            ids.append(status.memberID)
            leader = status.leader
        }
        guard let index = ids.firstIndex(of: leader) else { throw EtcdError(.noLeader, "no member is the leader \(leader)") }
        return index
    }

    /// A client whose first (current) endpoint is member `first`, the others after it.
    public func client(preferring first: Int) throws -> EtcdClient {
        try client(endpoints: [endpoints[first]] + endpoints.enumerated().filter { $0.offset != first }.map(\.element))
    }

    /// Waits (bounded) until every running member reports a leader.
    public func waitUntilHealthy(_ client: EtcdClient, timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        for (i, member) in members.enumerated() where member.process.isRunning {
            while true {
                do {
                    let status = try await client.status(of: endpoint(i))
                    if status.isHealthy { break }
                    last = "\(member.name): no leader yet"
                } catch {
                    last = "\(member.name): \(error)"
                }
                guard ContinuousClock.now < deadline else {
                    throw EtcdError(.unavailable, "the etcd cluster did not become healthy within \(timeout): \(last)\n\(logTail())")
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Kills member `i` with SIGKILL and waits for it to exit.
    public func kill(_ i: Int) {
        let process = members[i].process
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Starts killed member `i` again on its data directory (it rejoins the cluster).
    public func restart(_ i: Int) throws {
        let old = members[i]
        guard !old.process.isRunning else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
        process.arguments = old.arguments
        let handle = try FileHandle(forWritingTo: old.log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        members[i] = Member(
            name: old.name, clientPort: old.clientPort, peerPort: old.peerPort, dataDirectory: old.dataDirectory, log: old.log,
            process: process, arguments: old.arguments)
    }

    /// Sends SIGKILL to every member that runs, without waiting (a hung test's last act).
    public func killAll() {
        for member in members where member.process.isRunning { Glibc.kill(member.process.processIdentifier, SIGKILL) }
    }

    /// Kills every member and removes the data directories.
    public func stop() {
        for i in members.indices { kill(i) }
        try? FileManager.default.removeItem(at: root)
    }

    /// The end of every member's log, for failure messages.
    public func logTail(_ limit: Int = 1500) -> String {
        members.map { member in
            let data = FileManager.default.contents(atPath: member.log.path) ?? Data()
            return "--- \(member.name) ---\n" + String(decoding: data.suffix(limit), as: UTF8.self)
        }.joined(separator: "\n")
    }

    /// `count` distinct free TCP ports on 127.0.0.1 (held open together while chosen).
    public static func freePorts(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { for s in sockets { close(s) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard s >= 0 else { throw EtcdError(.other, "socket() failed: errno \(errno)") }
            sockets.append(s)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = 0
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else { throw EtcdError(.other, "bind() failed: errno \(errno)") }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let named = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) }
            }
            guard named == 0 else { throw EtcdError(.other, "getsockname() failed: errno \(errno)") }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
        }
        return ports
    }
}

/// Runs `body` with a healthy three-member cluster and a client of all of
/// it; stops the cluster afterwards and prints how long the test took.
public func withCluster(
    _ name: String = #function, size: Int = 3, tls: EtcdTestCluster.TLSFiles? = nil,
    _ body: (EtcdTestCluster, EtcdClient) async throws -> Void
) async throws {
    let started = ContinuousClock.now
    let cluster = try EtcdTestCluster(size: size, tls: tls)
    defer {
        cluster.stop()
        print("\(name): \(ContinuousClock.now - started) with its etcd cluster")
    }
    // No etcd test runs for minutes: a hang reports itself and ends the run
    // instead of holding CI until its limit.
    let watchdog = TestWatchdog(name, limit: .seconds(300)) {
        let tail = cluster.logTail()
        cluster.killAll()
        return tail
    }
    defer { watchdog.disarm() }
    let client = try cluster.client()
    do {
        try await cluster.waitUntilHealthy(client)
        print("\(name): cluster healthy after \(ContinuousClock.now - started)")
        try await body(cluster, client)
    } catch {
        await client.close()
        XCTFail("\(error)\n\(cluster.logTail())")
        return
    }
    await client.close()
}
