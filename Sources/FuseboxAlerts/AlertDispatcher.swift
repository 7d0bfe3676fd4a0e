import CCurlShims
import CoreMetrics
import Foundation
public import Logging
import NIOConcurrencyHelpers
import NIOPosix

/// Sends notifications to their sinks, off the event loops: each sink has a
/// bounded queue and a thread of its own, so a slow or dead sink delays
/// neither breaker decisions (`send` only enqueues) nor the other sinks.
/// Each notification gets up to `maxAttempts` attempts with exponential
/// backoff (0.5 s, 1 s, 2 s, … at most 30 s, or the receiver's Retry-After up
/// to 60 s); a full queue drops and counts it.
///
/// Metrics: `fusebox_alerts_sent_total{rule,severity,sink}` (delivered),
/// `fusebox_alerts_dropped_total{sink}` (queue full),
/// `fusebox_alert_delivery_failures_total{sink}` (every attempt failed),
/// `fusebox_alert_delivery_retries_total{sink}`.
public final class AlertDispatcher: Sendable {
    public let history: AlertHistory
    /// This server's name in payloads.
    public let server: String
    private let queues: [String: SinkQueue]
    private let logger: Logger

    public init(sinks: [AlertSink], server: String, history: AlertHistory = AlertHistory(), logger: Logger = Logger(label: "fusebox.alerts")) {
        Curl.initialize()
        self.history = history
        self.server = server
        self.logger = logger
        self.queues = Dictionary(uniqueKeysWithValues: sinks.map { ($0.name, SinkQueue(sink: $0, server: server, history: history, logger: logger)) })
    }

    /// The sinks' names.
    public var sinkNames: [String] { queues.keys.sorted() }

    /// Records `n` in the history and queues it for each of its sinks. Never blocks.
    public func send(_ n: AlertNotification) {
        let sinks = n.sinks.filter { queues[$0] != nil }
        history.append(n, sinks: sinks)
        logger.notice(
            "alert", metadata: ["status": "\(n.status.rawValue)", "rule": "\(n.rule)", "severity": "\(n.severity.rawValue)", "subject": "\(n.subject)",
                "summary": "\(n.summary)"])
        for name in sinks { queues[name]?.enqueue(n) }
    }

    /// Notifications waiting or being tried, over every sink.
    public var pending: Int { queues.values.reduce(0) { $0 + $1.pending } }

    /// Stops taking notifications; waits up to `grace` for the queued ones to
    /// be tried, then stops the threads: a retry waiting gives up, what is
    /// still queued is recorded as not sent, and an attempt under way may
    /// take its sink's timeout to end.
    public func shutdown(grace: Duration = .seconds(5)) async {
        let deadline = ContinuousClock.now + grace
        while pending > 0, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        for q in queues.values { await q.stop() }
    }
}

/// One sink's queue and thread.
final class SinkQueue: Sendable {
    let sink: AlertSink
    let server: String
    let history: AlertHistory
    let logger: Logger
    private let pool: NIOThreadPool
    private struct State {
        var queue: [AlertNotification] = []
        /// A drain job is submitted or running.
        var running = false
        /// The drain job holds a notification (taken from the queue, being tried).
        var trying = false
        var stopping = false
        /// Notifications waiting or being tried: what the capacity bounds.
        var held: Int { queue.count + (trying ? 1 : 0) }
    }
    private let state = NIOLockedValueBox(State())

    init(sink: AlertSink, server: String, history: AlertHistory, logger: Logger) {
        self.sink = sink
        self.server = server
        self.history = history
        self.logger = logger
        self.pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
    }

    var pending: Int { state.withLockedValue { $0.held } }

    func enqueue(_ n: AlertNotification) {
        let start: Bool? = state.withLockedValue { s in
            guard !s.stopping, s.held < sink.queueCapacity else { return nil }
            s.queue.append(n)
            defer { s.running = true }
            return !s.running
        }
        guard let start else {
            Counter(label: "fusebox_alerts_dropped_total", dimensions: [("sink", sink.name)]).increment()
            history.update(n.id, sink: sink.name, .dropped)
            logger.warning("alert dropped: the sink's queue is full", metadata: ["sink": "\(sink.name)", "rule": "\(n.rule)", "subject": "\(n.subject)"])
            return
        }
        if start { pool.submit { [self] _ in drain() } }
    }

    private var stopping: Bool { state.withLockedValue { $0.stopping } }

    private func drain() {
        while true {
            let (next, abandoned): (AlertNotification?, [AlertNotification]) = state.withLockedValue { s in
                s.trying = false
                if s.stopping {
                    // Shutting down: what is still queued is not tried.
                    defer { s.queue = [] }
                    s.running = false
                    return (nil, s.queue)
                }
                guard !s.queue.isEmpty else {
                    s.running = false
                    return (nil, [])
                }
                s.trying = true
                return (s.queue.removeFirst(), [])
            }
            for n in abandoned {
                Counter(label: "fusebox_alert_delivery_failures_total", dimensions: [("sink", sink.name)]).increment()
                history.update(n.id, sink: sink.name, .failed(attempts: 0, error: "not sent: fuseboxd shut down first"))
            }
            guard let n = next else { return }
            deliver(n)
        }
    }

    private func deliver(_ n: AlertNotification) {
        var attempt = 0
        var lastError = ""
        attempts: while attempt < max(sink.maxAttempts, 1) {
            attempt += 1
            let outcome = Curl.deliver(n, to: sink, server: server)
            switch outcome {
            case .delivered:
                Counter(label: "fusebox_alerts_sent_total", dimensions: [("rule", n.rule), ("severity", n.severity.rawValue), ("sink", sink.name)])
                    .increment()
                history.update(n.id, sink: sink.name, .delivered(attempts: attempt))
                return
            case .permanent(let error):
                lastError = error
                break attempts
            case .retry(let error, let after):
                lastError = error
                guard attempt < sink.maxAttempts, !stopping else { break attempts }
                Counter(label: "fusebox_alert_delivery_retries_total", dimensions: [("sink", sink.name)]).increment()
                let backoff = min(500 * (1 << min(attempt - 1, 16)), 30_000)
                let jittered = Int.random(in: backoff / 2...backoff)
                sleep(ms: after.map { min($0 * 1000, 60_000) } ?? jittered)
            }
        }
        Counter(label: "fusebox_alert_delivery_failures_total", dimensions: [("sink", sink.name)]).increment()
        history.update(n.id, sink: sink.name, .failed(attempts: attempt, error: lastError))
        logger.error(
            "alert not delivered", metadata: ["sink": "\(sink.name)", "rule": "\(n.rule)", "subject": "\(n.subject)", "attempts": "\(attempt)",
                "error": "\(lastError)"])
    }

    /// Sleeps on this sink's thread, waking early when stopping.
    private func sleep(ms: Int) {
        let end = ContinuousClock.now + .milliseconds(ms)
        while ContinuousClock.now < end, !stopping { usleep(20_000) }
    }

    func stop() async {
        state.withLockedValue { $0.stopping = true }
        try? await pool.shutdownGracefully()
    }
}

/// libcurl, through CCurlShims.
enum Curl {
    enum Outcome {
        case delivered
        /// Worth another attempt (connection failed, timeout, 5xx, 429, SMTP 4xx); Retry-After seconds if given.
        case retry(String, after: Int?)
        /// Another attempt would fail the same way (4xx, a bad URL, TLS verification).
        case permanent(String)
    }

    private static let initialized: Bool = { fb_curl_global_init() == 0 }()

    static func initialize() { _ = initialized }

    static func deliver(_ n: AlertNotification, to sink: AlertSink, server: String) -> Outcome {
        switch sink.kind {
        case .webhook(let url, let secret):
            let body = AlertPayloads.webhook(n, server: server)
            var headers = ["Content-Type: application/json", "User-Agent: fuseboxd", "X-Fusebox-Event: \(n.status.rawValue)"]
            if let secret {
                let timestamp = Int64(Date().timeIntervalSince1970)
                headers.append("X-Fusebox-Timestamp: \(timestamp)")
                headers.append("X-Fusebox-Signature: \(AlertPayloads.signature(secret: secret, timestamp: timestamp, body: body))")
            }
            return post(url, headers: headers, body: body, sink: sink)
        case .slack(let url):
            return post(url, headers: ["Content-Type: application/json", "User-Agent: fuseboxd"], body: AlertPayloads.slack(n, server: server), sink: sink)
        case .email(let email):
            let mail = AlertPayloads.email(n, server: server, from: email.from, to: email.to)
            var result = fb_curl_result()
            let code = withCStrings(email.to.map { "<\($0)>" }) { recipients in
                fb_curl_smtp_send(
                    email.url, email.username, email.password, "<\(email.from)>", recipients, email.to.count, mail, mail.utf8.count,
                    email.requireTLS ? 1 : 0, sink.timeoutMs, sink.caFile, &result)
            }
            if code == 0 { return .delivered }
            let error = message(result)
            // 4xx replies are transient in SMTP; 5xx and TLS or login failures are not.
            if (400..<500).contains(result.status) || [6, 7, 28, 55, 56].contains(code) { return .retry(error, after: nil) }
            return .permanent(error)
        }
    }

    private static func post(_ url: String, headers: [String], body: String, sink: AlertSink) -> Outcome {
        var result = fb_curl_result()
        let code = withCStrings(headers) { h in
            fb_curl_http_post(url, h, headers.count, body, body.utf8.count, sink.timeoutMs, sink.caFile, &result)
        }
        if code != 0 {
            // Couldn't resolve (6), connect (7), timeout (28), send (55), receive (56), empty reply (52): try again.
            return [6, 7, 28, 52, 55, 56].contains(code) ? .retry(message(result), after: nil) : .permanent(message(result))
        }
        switch result.status {
        case 200..<300: return .delivered
        case 429, 500..<600:
            return .retry("HTTP \(result.status)", after: result.retry_after_seconds > 0 ? Int(result.retry_after_seconds) : nil)
        default: return .permanent("HTTP \(result.status)")
        }
    }

    private static func message(_ result: fb_curl_result) -> String {
        var r = result
        let text = withUnsafeBytes(of: &r.error) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return result.status > 0 ? "\(text) (reply \(result.status))" : text
    }

    /// Calls `body` with a C array of C strings for `strings`.
    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        let pointers = copies.map { UnsafePointer($0) } + [nil]
        return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
