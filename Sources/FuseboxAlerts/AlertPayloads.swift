import COpenSSL
import Foundation

/// What each kind of sink receives (docs/ALERTS.md shows each).
public enum AlertPayloads {
    /// The generic webhook's JSON body.
    public static func webhook(_ n: AlertNotification, server: String) -> String {
        var subject: [String: String] = [:]
        if !n.breaker.isEmpty {
            subject["registry"] = n.registry
            subject["breaker"] = n.breaker
        }
        let body: [String: Any] = [
            "version": 1,
            "id": "\(server)-\(n.id)",
            "status": n.status.rawValue,
            "rule": n.rule,
            "kind": n.kind,
            "severity": n.severity.rawValue,
            "subject": subject,
            "summary": n.summary,
            "startedAt": iso(n.startedAtMs),
            "at": iso(n.atMs),
            "suppressedTriggers": n.suppressedTriggers,
            "server": server,
        ]
        return json(body)
    }

    /// A Slack incoming webhook's payload: `text` (the notification's
    /// fallback) and Block Kit `blocks`, a header section and a context line.
    public static func slack(_ n: AlertNotification, server: String) -> String {
        let icon: String
        switch (n.status, n.severity) {
        case (.resolved, _): icon = ":white_check_mark:"
        case (_, .info): icon = ":information_source:"
        case (_, .warning): icon = ":warning:"
        case (_, .critical): icon = ":red_circle:"
        case (_, .emergency): icon = ":rotating_light:"
        }
        let head = n.status == .resolved ? "RESOLVED" : n.severity.displayName
        let text = "\(icon) [\(head)] \(n.summary)"
        var context = "rule `\(n.rule)` · \(n.subject) · since \(iso(n.startedAtMs)) · fuseboxd \(server)"
        if n.suppressedTriggers > 0 { context += " · \(n.suppressedTriggers) more triggers in the cooldown" }
        let body: [String: Any] = [
            "text": String(text.prefix(3_000)),
            "blocks": [
                ["type": "section", "text": ["type": "mrkdwn", "text": String(("*\(head)* \(icon) \(n.summary)").prefix(3_000))]],
                ["type": "context", "elements": [["type": "mrkdwn", "text": String(context.prefix(3_000))]]],
            ],
        ]
        return json(body)
    }

    /// The e-mail subject: "[Fusebox CRITICAL] breaker default/payments is OPEN".
    public static func emailSubject(_ n: AlertNotification) -> String {
        let head = n.status == .resolved ? "RESOLVED \(n.severity.displayName)" : n.severity.displayName
        return "[Fusebox \(head)] \(n.summary)"
    }

    /// A complete RFC 5322 message, CRLF line ends, UTF-8 text.
    public static func email(_ n: AlertNotification, server: String, from: String, to: [String]) -> String {
        let date = DateFormatter()
        date.locale = Locale(identifier: "en_US_POSIX")
        date.timeZone = TimeZone(identifier: "UTC")
        date.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        let host = from.split(separator: "@").last.map(String.init) ?? "fusebox"
        let lines = [
            "From: \(header(from))",
            "To: \(to.map(header).joined(separator: ", "))",
            "Subject: \(encodedWord(emailSubject(n)))",
            "Date: \(date.string(from: Date(timeIntervalSince1970: Double(n.atMs) / 1000)))",
            "Message-ID: <\(server)-\(n.id)-\(n.atMs)@\(header(host))>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            "",
            n.summary,
            "",
            "Status:    \(n.status.rawValue)",
            "Severity:  \(n.severity.rawValue)",
            "Rule:      \(n.rule) (\(n.kind))",
            "Subject:   \(n.subject)",
            "Since:     \(iso(n.startedAtMs))",
            "At:        \(iso(n.atMs))",
            "Server:    \(server)",
        ] + (n.suppressedTriggers > 0 ? ["Merged:    \(n.suppressedTriggers) more triggers during the cooldown"] : [])
        // A line of "." alone would end the SMTP DATA early; libcurl escapes it, but no line here is one.
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// The webhook's signature header value: "sha256=" and the hex
    /// HMAC-SHA256 under `secret` of "<timestamp>.<body>".
    public static func signature(secret: String, timestamp: Int64, body: String) -> String {
        let message = Array("\(timestamp).\(body)".utf8)
        let key = Array(secret.utf8)
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = key.withUnsafeBufferPointer { k in
            message.withUnsafeBufferPointer { m in
                HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress, m.count, &digest, &length)
            }
        }
        return "sha256=" + digest.prefix(Int(length)).map { String(format: "%02x", $0) }.joined()
    }

    static func iso(_ ms: Int64) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }

    private static func json(_ value: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// A header value without line breaks (no header injection through a breaker's name).
    private static func header(_ text: String) -> String {
        String(text.map { $0 == "\r" || $0 == "\n" ? " " : $0 })
    }

    /// RFC 2047 for a subject that is not plain ASCII.
    private static func encodedWord(_ text: String) -> String {
        let clean = header(text)
        guard clean.unicodeScalars.contains(where: { !$0.isASCII }) else { return clean }
        return "=?utf-8?B?\(Data(clean.utf8).base64EncodedString())?="
    }
}
