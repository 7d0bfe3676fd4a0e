import Foundation
import XCTest

/// The repository root, found from this file's location.
let repositoryRoot: URL = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            return url
        }
    }
    return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
}()

/// Output of a finished child process.
struct ProcessResult {
    var status: Int32
    var output: String
}

/// Runs `arguments` (looked up on PATH) to completion with a time limit,
/// capturing stdout and stderr together.
func runProcess(_ arguments: [String], in directory: URL = repositoryRoot, timeout: TimeInterval = 300) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.currentDirectoryURL = directory
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let collected = OutputCollector()
    pipe.fileHandleForReading.readabilityHandler = { handle in collected.append(handle.availableData) }
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline {
        Thread.sleep(forTimeInterval: 0.05)
    }
    if process.isRunning {
        process.terminate()
        process.waitUntilExit()
        XCTFail("\(arguments.joined(separator: " ")) did not finish within \(timeout) s")
    }
    process.waitUntilExit()
    pipe.fileHandleForReading.readabilityHandler = nil
    collected.append(pipe.fileHandleForReading.readDataToEndOfFile())
    return ProcessResult(status: process.terminationStatus, output: collected.text)
}

/// Thread-safe accumulation of a pipe's bytes.
private final class OutputCollector: @unchecked Sendable {
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
