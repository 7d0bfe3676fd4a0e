import Foundation
import FuseboxRPC
import FuseboxTLS
import NIOCore
import NIOPosix
import Synchronization

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Settings shared by the scenarios.
struct Environment: Sendable {
    var fuseboxd: String
    var certs: String
    var work: String
    var quick: Bool
}

/// Every child started, so that a SIGTERM to the harness (scripts/bench's
/// timeout) kills them too instead of leaving etcd members and replicas behind.
let runningChildren = Mutex<[Child]>([])

/// On SIGTERM: SIGKILL every child still running, then exit.
func killChildrenOnTermination() -> any DispatchSourceSignal {
    signal(SIGTERM, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
    source.setEventHandler {
        for child in runningChildren.withLock({ $0 }) where child.process.isRunning { kill(child.pid, SIGKILL) }
        exit(143)
    }
    source.resume()
    return source
}

/// A started child process (fuseboxd or a peer), killed at the end.
final class Child: @unchecked Sendable {
    let process = Process()
    let log: String
    init(_ path: String, _ args: [String], log: String) throws {
        self.log = log
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = FileHandle(forWritingAtPath: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        runningChildren.withLock { $0.append(self) }
    }
    var pid: Int32 { process.processIdentifier }
    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    func waitFor(_ text: String, timeout: TimeInterval = 30) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let out = output
            if out.contains(text) { return out }
            if !process.isRunning { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw BenchError("\(process.executableURL?.lastPathComponent ?? "?") did not print \"\(text)\": \(output.suffix(2000))")
    }

    func stop() {
        if process.isRunning { kill(pid, SIGTERM) }
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }
}

/// A process and its direct children (nginx's master and workers).
func processTree(_ pid: Int32) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return [pid] + entries.compactMap { Int32($0) }.filter { candidate in
        guard candidate != pid, let text = try? String(contentsOfFile: "/proc/\(candidate)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return false }
        // After the command: state, then the parent's pid.
        return text[text.index(after: close)...].split(separator: " ").dropFirst().first.flatMap { Int32($0) } == pid
    }
}

/// CPU seconds of a process and its direct children.
func treeCPUSeconds(_ pid: Int32) -> Double {
    processTree(pid).map(cpuSeconds).reduce(0, +)
}

/// Resident memory of a process, in KiB (VmRSS).
func rssKiB(_ pid: Int32) -> Int {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return 0 }
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
}

/// CPU time (user + system) a process has used, in seconds.
func cpuSeconds(_ pid: Int32) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = text.lastIndex(of: ")")
    else { return 0 }
    let fields = text[text.index(after: close)...].split(separator: " ")
    // After the command: state is field 3; utime 14, stime 15 (1-based in proc(5)).
    guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return 0 }
    return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A free TCP port on 127.0.0.1 (for peers that cannot report the port they bound).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
func waitForPort(_ port: Int, timeout: TimeInterval = 30) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port)).bigEndian
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        close(fd)
        if ok == 0 { return }
        Thread.sleep(forTimeInterval: 0.05)
    }
    throw BenchError("nothing listens on 127.0.0.1:\(port)")
}

/// fuseboxd, release build, on port 0 with the bench certificates.
final class Fuseboxd {
    let child: Child
    let port: Int
    let env: Environment

    init(_ env: Environment, name: String, extraConfig: String = "", anonymous: Bool = false) throws {
        self.env = env
        let dir = "\(env.work)/\(name)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let config = """
            limits:
              maxConnections: 20000
              maxConcurrentStreams: 1000
              idleTimeoutSeconds: 3600
            \(extraConfig)
            """
        try config.write(toFile: "\(dir)/fuseboxd.yaml", atomically: true, encoding: .utf8)
        var args = [
            "--config", "\(dir)/fuseboxd.yaml", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--data-dir", "\(dir)/data",
            "--cert", "\(env.certs)/server.pem", "--key", "\(env.certs)/server.key", "--client-ca", "\(env.certs)/ca.pem",
        ]
        if anonymous { args.append("--dev-insecure-no-client-certs") }
        child = try Child(env.fuseboxd, args, log: "\(dir)/fuseboxd.log")
        let out = try child.waitFor("observability on")
        guard let r = out.range(of: "listening on 127.0.0.1:"), let p = Int(out[r.upperBound...].prefix { $0.isNumber }) else {
            throw BenchError("fuseboxd printed no port: \(out)")
        }
        port = p
    }

    /// Client TLS with the dev certificate of `identity` (none: anonymous).
    func clientTLS(_ identity: String?) -> TLSConfiguration {
        var tls = TLSConfiguration(role: .client)
        tls.trustRootsPath = "\(env.certs)/ca.pem"
        if let identity {
            tls.certificateChainPath = "\(env.certs)/\(identity).pem"
            tls.privateKeyPath = "\(env.certs)/\(identity).key"
        }
        return tls
    }

    func client(_ identity: String?, group: any EventLoopGroup) throws -> RPCClient {
        var c = RPCClientConfiguration(host: "127.0.0.1", port: port, tls: clientTLS(identity))
        c.connectTimeout = .seconds(30)
        return try RPCClient(configuration: c, group: group)
    }

    func stop() { child.stop() }
}

/// Percentile of `values` (nearest rank), in the values' unit.
func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

func ms(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
}

func fmt(_ x: Double, _ digits: Int = 1) -> String {
    guard x.isFinite else { return "n/a" }
    return String(format: "%.\(digits)f", x)
}

/// Runs `count` async jobs with at most `width` at once.
func concurrently(_ count: Int, width: Int, _ job: @escaping @Sendable (Int) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        while next < min(width, count) {
            let i = next
            group.addTask { try await job(i) }
            next += 1
        }
        while try await group.next() != nil {
            if next < count {
                let i = next
                group.addTask { try await job(i) }
                next += 1
            }
        }
    }
}

/// One row of the results table.
struct Row {
    var scenario: String
    var fusebox: String
    var peer: String
    var ratio: String
    var goal: String
    var met: String
}
