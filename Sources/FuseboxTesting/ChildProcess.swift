public import Foundation

/// The repository root, found upwards from this file.
public let repositoryRoot: URL = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path),
            FileManager.default.fileExists(atPath: url.appendingPathComponent("Protos").path)
        {
            return url
        }
    }
    return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
}()

/// Output of a finished child process.
public struct ProcessResult: Sendable {
    /// Exit status (or the signal number, if it was killed).
    public var status: Int32
    /// Standard output and standard error, interleaved.
    public var output: String
    /// True when it was killed for running past its time limit.
    public var timedOut: Bool
}

/// Runs `arguments` (looked up on PATH) to completion, capturing stdout and
/// stderr together; a process still running after `timeout` seconds is killed.
public func runProcess(
    _ arguments: [String], in directory: URL = repositoryRoot, timeout: TimeInterval = 300,
    environment: [String: String]? = nil
) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.currentDirectoryURL = directory
    if let environment {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let collected = OutputCollector()
    pipe.fileHandleForReading.readabilityHandler = { handle in collected.append(handle.availableData) }
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline {
        Thread.sleep(forTimeInterval: 0.02)
    }
    let timedOut = process.isRunning
    if timedOut { process.terminate() }
    process.waitUntilExit()
    pipe.fileHandleForReading.readabilityHandler = nil
    // A grandchild may still hold the pipe open after a timeout: then take
    // what arrived rather than wait for an end that may never come.
    if !timedOut { collected.append(pipe.fileHandleForReading.readDataToEndOfFile()) }
    return ProcessResult(status: process.terminationStatus, output: collected.text, timedOut: timedOut)
}

/// Thread-safe accumulation of a pipe's bytes.
final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    func append(_ chunk: Data) {
        lock.lock()
        data.append(chunk)
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}
