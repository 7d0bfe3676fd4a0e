import Foundation
import FuseboxAuthority
import FuseboxCore
import FuseboxServer
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// `/api/v1/events`: the breakers' watch hub as Server-Sent Events.
extension DashboardRoutes {
    /// Serves `/api/v1/events` until the browser goes or the server stops.
    func stream(
        to outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, version: HTTPVersion, session: DashboardAuth.Session, registry: String,
        slot: Int, closed: EventLoopFuture<Void>
    ) async throws {
        var headers = HTTPHeaders([("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-store")])
        SecurityHeaders.add(to: &headers)
        try await outbound.write(.head(HTTPResponseHead(version: version, status: .ok, headers: headers)))
        let sink = EventStreamSink()
        streams.attach(sink, to: slot)
        let watch = app.authority.watch(BreakerSelector(registry: registry), sink: sink)
        defer { app.authority.unwatch(watch) }
        // The browser went away: end at once, not at the next write.
        closed.whenComplete { _ in sink.finish() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var tick = 0
                while !Task.isCancelled {
                    try await Task.sleep(for: .seconds(5))
                    tick += 1
                    sink.tick(.rates)
                    if tick % 3 == 0 { sink.tick(.keepalive) }
                }
            }
            for await item in sink.items {
                guard auth.session(session.id) != nil else { break }  // signed out or expired
                let text: String
                switch item {
                case .watch(let event):
                    sink.taken()
                    text = eventText(event, registry: registry)
                case .rates:
                    let (atMs, rates) = activity.lastRates()
                    let selected = registry.isEmpty ? rates : rates.filter { $0.key.hasPrefix(registry + "/") }
                    text = Self.event("rates", RatesJSON(atMs: atMs, rates: selected))
                case .keepalive:
                    text = ": keepalive\n\n"
                }
                try await outbound.write(.body(.byteBuffer(ByteBuffer(string: text))))
            }
            group.cancelAll()
        }
        try? await outbound.write(.end(nil))
    }

    private func eventText(_ event: BreakerWatchEvent, registry: String) -> String {
        switch event {
        case .snapshot(let views):
            let counts = app.windowCounts()
            let sparks = activity.sparks()
            return Self.event("snapshot", ["breakers": views.map { breakerJSON($0, counts: counts, sparks: sparks) }])
        case .transition(let e):
            let view = BreakerView(key: e.key, policy: e.policy, status: e.transition.status)
            let breaker = DashboardJSON.breaker(view, counts: nil, spark: [])
            return Self.event("transition", TransitionJSON(breaker: breaker, from: e.transition.from.displayName, clients: e.transition.contributingClients))
        }
    }

    private static func event(_ name: String, _ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let data = (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
        return "event: \(name)\ndata: \(data)\n\n"
    }
}

/// The open event streams: slots reserved before a stream starts (bounded
/// in all and per session), ended on shutdown.
final class EventStreams: Sendable {
    struct Refusal: Error {
        var message: String
    }

    private struct Slot {
        var session: String
        var sink: EventStreamSink?
    }

    private let state = NIOLockedValueBox<(next: Int, slots: [Int: Slot])>((0, [:]))

    var count: Int { state.withLockedValue { $0.slots.count } }

    /// Takes a slot for a stream of `session`, or says why not.
    func reserve(for session: String, total: Int, perSession: Int) -> Result<Int, Refusal> {
        state.withLockedValue { s in
            guard s.slots.count < total else {
                return .failure(Refusal(message: "\(total) event streams are open, the most this server serves; try again later"))
            }
            guard s.slots.values.filter({ $0.session == session }).count < perSession else {
                return .failure(Refusal(message: "this session has \(perSession) event streams open, the most one session may; close a tab"))
            }
            s.next += 1
            s.slots[s.next] = Slot(session: session)
            return .success(s.next)
        }
    }

    func attach(_ sink: EventStreamSink, to slot: Int) {
        state.withLockedValue { $0.slots[slot]?.sink = sink }
    }

    func release(_ slot: Int) { _ = state.withLockedValue { $0.slots.removeValue(forKey: slot) } }

    func finishAll() {
        for sink in state.withLockedValue({ $0.slots.values.compactMap(\.sink) }) { sink.finish() }
    }
}
