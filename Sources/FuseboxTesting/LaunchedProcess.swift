public import Foundation

/// A built executable of this package (next to the test bundle), e.g. "fuseboxd".
public func builtProduct(_ name: String) -> URL {
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
}

/// A child process whose standard output is collected line by line while it
/// runs, so a test can wait for what it prints. Stderr goes to a file (for
/// failure messages) rather than a pipe nobody drains.
public final class LaunchedProcess: @unchecked Sendable {
    public let process = Process()
    private let output = Pipe()
    private let collected = OutputCollector()
    /// Where stderr went.
    public let stderrPath: String

    /// Starts `executable` with `arguments`.
    public init(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws {
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        stderrPath = FileManager.default.temporaryDirectory.appendingPathComponent("stderr-\(UUID().uuidString).log").path
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        let collected = self.collected
        output.fileHandleForReading.readabilityHandler = { handle in collected.append(handle.availableData) }
        try process.run()
    }

    /// Everything printed so far.
    public var text: String { collected.text }

    /// Complete lines printed so far.
    public var lines: [String] {
        let t = text
        var all = t.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        if !t.hasSuffix("\n"), !all.isEmpty { all.removeLast() }
        return all
    }

    /// What it wrote to stderr (the last `limit` bytes).
    public func stderrTail(_ limit: Int = 4000) -> String {
        let data = FileManager.default.contents(atPath: stderrPath) ?? Data()
        return String(decoding: data.suffix(limit), as: UTF8.self)
    }

    /// Waits (bounded) until a printed line satisfies `match`; returns it.
    public func waitForLine(timeout: TimeInterval, _ match: (String) -> Bool) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = lines.first(where: match) { return line }
            if !process.isRunning { return lines.first(where: match) }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return nil
    }

    /// Sends `signal`, waits (bounded) for the exit; returns the status.
    @discardableResult
    public func stop(_ signal: Int32 = SIGTERM, timeout: TimeInterval = 15) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        output.fileHandleForReading.readabilityHandler = nil
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(atPath: stderrPath)
    }
}

/// `fuseboxd` started with the test certificates on 127.0.0.1 (port 0 unless
/// a test restarts a server on the port it had).
public final class FuseboxdProcess: @unchecked Sendable {
    public let launched: LaunchedProcess
    public let port: Int
    public let metricsPort: Int
    public let dataDirectory: String

    public init(dataDirectory: String, port: Int = 0, extra: [String] = [], environment: [String: String]? = nil) throws {
        self.dataDirectory = dataDirectory
        launched = try LaunchedProcess(builtProduct("fuseboxd"), [
            "--host", "127.0.0.1", "--port", "\(port)", "--data-dir", dataDirectory, "--cert", try TestCertificates.path("server.pem"),
            "--key", try TestCertificates.path("server.key"), "--client-ca", try TestCertificates.path("ca.pem"),
            "--metrics-port", "0",
        ] + extra, environment: environment)
        guard let observability = launched.waitForLine(timeout: 30, { $0.contains("observability on http://127.0.0.1:") }),
            let listening = launched.lines.first(where: { $0.contains("listening on 127.0.0.1:") }),
            let p = Self.port(after: "listening on 127.0.0.1:", in: listening),
            let m = Self.port(after: "observability on http://127.0.0.1:", in: observability)
        else {
            launched.stop(SIGKILL)
            throw TestCertificateError(output: "fuseboxd did not start: \(launched.text)\n\(launched.stderrTail())")
        }
        self.port = p
        self.metricsPort = m
    }

    private static func port(after marker: String, in line: String) -> Int? {
        guard let range = line.range(of: marker) else { return nil }
        return Int(line[range.upperBound...].prefix { $0.isNumber })
    }

    public var process: Process { launched.process }

    /// Sends `signal` and waits (bounded) for the exit; returns (status, seconds).
    @discardableResult
    public func stop(_ signal: Int32, timeout: TimeInterval = 15) -> (Int32, TimeInterval) {
        let start = Date()
        let status = launched.stop(signal, timeout: timeout)
        return (status, Date().timeIntervalSince(start))
    }
}
