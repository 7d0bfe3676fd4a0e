import FuseboxRPC
import FuseboxWire
import NIOConcurrencyHelpers

/// What a watch reports.
public enum EtcdWatchEvent: Sendable, Hashable {
    /// The key was written; `kv.modRevision` is the write's revision.
    case put(EtcdKeyValue)
    /// The key was deleted (or its lease expired); `kv.modRevision` is the
    /// delete's revision, the value is empty.
    case delete(EtcdKeyValue)
    /// Nothing changed up to `revision`: every later event has a higher one.
    case progress(revision: Int64)
    /// The watch's next revision was compacted away; history up to
    /// `revision` is gone. The watch has ended. The caller answers it with a
    /// re-read (a range at the latest revision) and a new watch from that
    /// read's revision + 1.
    case compacted(revision: Int64)

    /// The revision the event happened at (for `.progress` and `.compacted`, theirs).
    public var revision: Int64 {
        switch self {
        case .put(let kv), .delete(let kv): return kv.modRevision
        case .progress(let revision), .compacted(let revision): return revision
        }
    }
}

extension EtcdClient {
    /// Watches `key`, or [key, rangeEnd): the returned value's `run()` keeps
    /// the watch stream open (across endpoints) and the value itself is the
    /// sequence of events.
    ///
    /// - Parameters:
    ///   - rangeEnd: nil for the single key; `EtcdKeys.prefixEnd(key)` for a prefix.
    ///   - startRevision: the first revision to report (history included);
    ///     0 for changes after the watch is created.
    ///   - progressNotify: let etcd send `.progress` events while nothing changes.
    public func watch(_ key: [UInt8], rangeEnd: [UInt8]? = nil, startRevision: Int64 = 0, progressNotify: Bool = false) -> EtcdWatch {
        EtcdWatch(client: self, key: key, rangeEnd: rangeEnd, startRevision: startRevision, progressNotify: progressNotify)
    }
}

/// A watch of a key or a range: an `AsyncSequence` of `EtcdWatchEvent`s,
/// fed while `run()` runs.
///
/// ```swift
/// let watch = client.watch(prefix, rangeEnd: EtcdKeys.prefixEnd(prefix), startRevision: read.revision + 1)
/// try await withThrowingTaskGroup(of: Void.self) { group in
///     group.addTask { try await watch.run() }
///     for await event in watch { … }
/// }
/// ```
///
/// When the stream breaks (the member died, lost its leader, the connection
/// dropped), `run()` opens a new one on the next endpoint, from the revision
/// after the last one reported, so no event is lost or repeated. It gives up
/// (throws) only when no endpoint has served the watch for
/// `EtcdConfiguration.retryTimeout`. When the revision it needs has been
/// compacted, it reports `.compacted` and returns: compaction is answered by
/// a re-read. The sequence ends when `run()` ends. Events are buffered
/// without bound until read. Run `run()` once.
public final class EtcdWatch: AsyncSequence, Sendable {
    /// The events.
    public typealias Element = EtcdWatchEvent

    private let client: EtcdClient
    private let key: [UInt8]
    private let rangeEnd: [UInt8]?
    private let progressNotify: Bool
    private let events: AsyncStream<EtcdWatchEvent>
    private let continuation: AsyncStream<EtcdWatchEvent>.Continuation
    /// Where the watch stands; the next stream starts at its `nextRevision`.
    private let cursor: NIOLockedValueBox<Cursor>

    init(client: EtcdClient, key: [UInt8], rangeEnd: [UInt8]?, startRevision: Int64, progressNotify: Bool) {
        self.client = client
        self.key = key
        self.rangeEnd = rangeEnd
        self.progressNotify = progressNotify
        self.cursor = NIOLockedValueBox(Cursor(startRevision: startRevision))
        (events, continuation) = AsyncStream.makeStream(of: EtcdWatchEvent.self)
    }

    /// The iterator over the events.
    public func makeAsyncIterator() -> AsyncStream<EtcdWatchEvent>.Iterator { events.makeAsyncIterator() }

    /// The revision from which a reconnection would resume: one past the last
    /// one reported (0 before the first stream was created, for "from now").
    public var resumeRevision: Int64 { cursor.withLockedValue { $0.nextRevision } }

    /// Keeps the watch open until the task is cancelled (then returns), the
    /// revision is compacted (reports `.compacted`, returns), or no endpoint
    /// could serve it for `retryTimeout` (throws).
    ///
    /// - Throws: `EtcdError` `.unavailable` (or the last failure's code), or
    ///   `.watchCanceled` when etcd ended the watch for another reason.
    public func run() async throws(EtcdError) {
        defer { continuation.finish() }
        var failures = 0
        var failingSince: ContinuousClock.Instant?
        while !Task.isCancelled {
            let member = client.currentMember()
            let served = NIOLockedValueBox(false)
            do {
                let end = try await stream(on: member, served: served)
                switch end {
                case .compacted(let revision):
                    continuation.yield(.compacted(revision: revision))
                    return
                case .canceled(let reason):
                    throw EtcdError(.watchCanceled, "etcd canceled the watch: \(reason)", endpoint: member.endpoint.description)
                }
            } catch let error as EtcdError {
                throw error
            } catch {
                if Task.isCancelled { return }
                let failure = (error as? RPCError).map { EtcdError($0, endpoint: member.endpoint.description) }
                    ?? EtcdError(.other, "\(error)", endpoint: member.endpoint.description)
                if served.withLockedValue({ $0 }) {
                    failures = 0
                    failingSince = nil
                }
                failures += 1
                let since = failingSince ?? .now
                failingSince = since
                client.abandon(member)
                let delay = client.backoff(attempt: failures)
                guard ContinuousClock.now + delay < since + client.configuration.retryTimeout else {
                    var final = failure
                    final.message = "the watch could not be re-established on any endpoint within \(client.configuration.retryTimeout); last failure: \(failure.message)"
                    throw final
                }
                do { try await Task.sleep(for: delay) } catch { return }
            }
        }
    }

    /// One watch stream on `member`, from the cursor's next revision.
    private func stream(on member: EtcdClient.Member, served: NIOLockedValueBox<Bool>) async throws -> Cursor.End {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = key
        create.rangeEnd = rangeEnd ?? []
        create.startRevision = cursor.withLockedValue { $0.nextRevision }
        create.progressNotify = progressNotify
        var request = Etcdserverpb_WatchRequest()
        request.requestUnion = .createRequest(create)
        let bytes = try request.encode()
        let limits = WireLimits(maxMessageBytes: member.rpc.configuration.maximumReceiveMessageBytes)
        let cursor = self.cursor
        let continuation = self.continuation
        return try await member.rpc.call(path: EtcdMethod.watch.path, options: RPCCallOptions(metadata: EtcdClient.requireLeader)) { call in
            // The request side stays open: etcd ends a watch stream whose client half-closed.
            try await call.send(bytes, end: false)
            while let message = try await call.next() {
                let response = try Etcdserverpb_WatchResponse(decoding: message, limits: limits)
                switch cursor.withLockedValue({ $0.receive(response) }) {
                case .created:
                    served.withLockedValue { $0 = true }
                case .deliver(let events):
                    for event in events { continuation.yield(event) }
                case .end(let end):
                    return end
                }
            }
            throw RPCError(.unavailable, "etcd ended the watch stream")
        }
    }
}
