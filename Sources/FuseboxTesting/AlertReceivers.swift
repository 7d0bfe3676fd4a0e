import Foundation

/// Tests/Support/alert_receivers.py, running: an HTTPS webhook receiver that
/// verifies fuseboxd's signatures, an SMTP server that requires STARTTLS and
/// AUTH, and a port where nothing listens. Each event it reports is a JSON
/// object (see the script).
public final class AlertReceivers: @unchecked Sendable {
    public let process: LaunchedProcess
    public let httpsPort: Int
    public let smtpPort: Int
    /// A port with nothing listening (connection refused).
    public let refusedPort: Int

    public init(secret: String, smtpUser: String, smtpPassword: String) throws {
        process = try LaunchedProcess(URL(fileURLWithPath: "/usr/bin/env"), [
            "python3", repositoryRoot.appendingPathComponent("Tests/Support/alert_receivers.py").path,
            "--cert", try TestCertificates.path("server.pem"), "--key", try TestCertificates.path("server.key"),
            "--secret", secret, "--smtp-user", smtpUser, "--smtp-password", smtpPassword,
        ])
        guard let ready = process.waitForLine(timeout: 30, { $0.hasPrefix("READY ") }) else {
            process.stop(SIGKILL)
            throw TestCertificateError(output: "alert receivers did not start: \(process.text)\n\(process.stderrTail())")
        }
        var ports: [String: Int] = [:]
        for field in ready.split(separator: " ").dropFirst() {
            let parts = field.split(separator: "=")
            if parts.count == 2 { ports[String(parts[0])] = Int(parts[1]) }
        }
        httpsPort = ports["https"] ?? 0
        smtpPort = ports["smtp"] ?? 0
        refusedPort = ports["refused"] ?? 0
    }

    /// The events of `kind` ("http" or "smtp") received so far, in order.
    public func events(_ kind: String) -> [[String: Any]] {
        process.lines.compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], object["kind"] as? String == kind else { return nil }
            return object
        }
    }

    /// The webhook requests that came to `path`.
    public func requests(to path: String) -> [[String: Any]] {
        events("http").filter { $0["path"] as? String == path }
    }

    public func stop() { process.stop(SIGTERM, timeout: 5) }
}
