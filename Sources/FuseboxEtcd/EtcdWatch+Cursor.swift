import FuseboxWire

extension EtcdWatch {
    /// Where a watch stands in the store's history, and what each response
    /// from etcd means for it. A value: the stream handler feeds it responses
    /// and does what the returned action says; across reconnections it tells
    /// where the next stream starts.
    struct Cursor: Sendable, Equatable {
        /// How a stream ends without a transport failure.
        enum End: Sendable, Equatable {
            /// The revision the stream needed was compacted; history up to this one is gone.
            case compacted(Int64)
            /// etcd canceled the watch, for this reason.
            case canceled(String)
        }

        /// What to do with a response.
        enum Action: Sendable, Equatable {
            /// The stream is established: later failures count from zero.
            case created
            /// Report these events (in order; possibly none left after dropping repeats).
            case deliver([EtcdWatchEvent])
            /// Stop this watch.
            case end(End)
        }

        /// The revision the next stream starts from; 0 while no stream has
        /// been created and the watch started "from now".
        private(set) var nextRevision: Int64

        /// A cursor for a watch from `startRevision` (0: from the revision it is created at).
        init(startRevision: Int64) {
            nextRevision = Swift.max(startRevision, 0)
        }

        /// Takes in one response of the current stream.
        mutating func receive(_ response: Etcdserverpb_WatchResponse) -> Action {
            if response.compactRevision > 0 { return .end(.compacted(response.compactRevision)) }
            if response.canceled { return .end(.canceled(response.cancelReason.isEmpty ? "no reason given" : response.cancelReason)) }
            let headerRevision = response.header?.revision ?? 0
            if response.created {
                // A watch "from now" resumes after the revision it was created at.
                if nextRevision == 0 { nextRevision = headerRevision + 1 }
                return .created
            }
            if response.events.isEmpty {
                // A progress notification: every later event has a higher revision.
                nextRevision = Swift.max(nextRevision, headerRevision + 1)
                return .deliver([.progress(revision: headerRevision)])
            }
            var events: [EtcdWatchEvent] = []
            var last = nextRevision - 1
            for event in response.events {
                guard let kv = event.kv else { continue }
                let value = EtcdKeyValue(kv)
                // Already reported before a reconnection: never twice.
                guard value.modRevision >= nextRevision else { continue }
                events.append(event.type == .delete ? .delete(value) : .put(value))
                last = Swift.max(last, value.modRevision)
            }
            nextRevision = Swift.max(nextRevision, last + 1)
            return .deliver(events)
        }
    }
}
