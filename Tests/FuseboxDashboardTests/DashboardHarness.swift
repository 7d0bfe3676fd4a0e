import Foundation
@testable import FuseboxDashboard
import FuseboxServer
import FuseboxTesting
import FuseboxTLS
import NIOCore
import NIOPosix
import XCTest

/// A fuseboxd in the test process with its dashboard on 127.0.0.1 port 0
/// (the browser test, with Chromium, is FuseboxServerTests.DashboardBrowserTests),
/// and `curl` as the browser: real TLS, real cookies, real HTTP/1.1.
struct DashboardHarness {
    static let adminToken = "fbx_admin-token-for-tests"
    static let readerToken = "fbx_reader-token-for-tests"

    let server: ServerHarness
    let dashboard: DashboardServer
    let task: Task<Void, Never>
    let group: MultiThreadedEventLoopGroup
    let jar: String

    static func start() async throws -> DashboardHarness {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let server = try await ServerHarness.start(group: group)
        var settings = DashboardSettings()
        settings.port = 0
        settings.tokens = [
            .init(name: "alice", role: .admin, sha256: DashboardAuth.sha256(Array(adminToken.utf8))),
            .init(name: "wallboard", role: .reader, sha256: DashboardAuth.sha256(Array(readerToken.utf8))),
        ]
        let tls = TLSConfiguration.server(
            certificateChainPath: try TestCertificates.path("server.pem"), privateKeyPath: try TestCertificates.path("server.key"),
            clientCAPath: try TestCertificates.path("ca.pem"))
        let dashboard = try await DashboardServer.start(settings: settings, app: server.app, tls: tls, group: group)
        let task = Task { await dashboard.serve() }
        let jar = FileManager.default.temporaryDirectory.appendingPathComponent("fusebox-jar-\(UUID().uuidString)").path
        return DashboardHarness(server: server, dashboard: dashboard, task: task, group: group, jar: jar)
    }

    func stop() async throws {
        await dashboard.shutdown()
        await task.value
        try await server.stop()
        try? FileManager.default.removeItem(atPath: jar)
        try await group.shutdownGracefully()
    }

    struct Answer {
        var status: Int
        var headers: String
        var body: String

        func header(_ name: String) -> String? {
            for line in headers.split(whereSeparator: \.isNewline) {
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2, parts[0].lowercased() == name.lowercased() { return parts[1].trimmingCharacters(in: .whitespaces) }
            }
            return nil
        }

        func json() throws -> [String: Any] {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], "not a JSON object: \(body)")
        }
    }

    /// One request with curl, cookies kept in this harness's jar (`jar: nil`
    /// sends none). Async: curl runs as a child process while the test's
    /// threads stay free for the server. `upTo` seconds, after which curl
    /// stops and what it read so far is the answer (status 0 if nothing came).
    func request(
        _ method: String, _ path: String, jar: String? = "", headers: [String: String] = [:], form: String? = nil, json: String? = nil,
        upTo maxSeconds: Int = 20, allowTimeout: Bool = false
    ) async throws -> Answer {
        let jarPath = jar == "" ? self.jar : jar
        let dir = FileManager.default.temporaryDirectory
        let headerFile = dir.appendingPathComponent("h-\(UUID().uuidString)").path
        let bodyFile = dir.appendingPathComponent("b-\(UUID().uuidString)").path
        let outFile = dir.appendingPathComponent("o-\(UUID().uuidString)").path
        defer {
            for file in [headerFile, bodyFile, outFile] { try? FileManager.default.removeItem(atPath: file) }
        }
        var args = [
            "-sS", "--max-time", "\(maxSeconds)", "--cacert", try TestCertificates.path("ca.pem"), "-X", method, "-D", headerFile, "-o", bodyFile,
            "-w", "%{http_code}",
        ]
        if let jarPath { args += ["-b", jarPath, "-c", jarPath] }
        for (name, value) in headers { args += ["-H", "\(name): \(value)"] }
        if let form { args += ["-H", "content-type: application/x-www-form-urlencoded", "--data-binary", form] }
        if let json { args += ["-H", "content-type: application/json", "--data-binary", json] }
        args.append("https://localhost:\(dashboard.port)\(path)")
        _ = FileManager.default.createFile(atPath: outFile, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outFile))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = args
        process.standardOutput = output
        process.standardError = output
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        try? output.close()
        let printed = (try? String(contentsOfFile: outFile, encoding: .utf8)) ?? ""
        let head = (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? ""
        // The status line: "HTTP/1.1 200 OK".
        let code = head.split(separator: "\r\n").first.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) }
        guard status == 0 || (allowTimeout && status == 28), let code else {
            throw CurlError(description: "curl \(method) \(path) failed (\(status)): \(printed)")
        }
        return Answer(
            status: code, headers: (try? String(contentsOfFile: headerFile, encoding: .utf8)) ?? "",
            body: (try? String(contentsOfFile: bodyFile, encoding: .utf8)) ?? "")
    }

    /// Signs in with `token`; returns the session's CSRF token.
    @discardableResult
    func signIn(_ token: String) async throws -> String {
        let answer = try await request("POST", "/login", form: "token=\(token)")
        XCTAssertEqual(answer.status, 303, answer.body)
        let session = try await request("GET", "/api/v1/session").json()
        return try XCTUnwrap(session["csrf"] as? String)
    }
}

struct CurlError: Error, CustomStringConvertible {
    var description: String
}
