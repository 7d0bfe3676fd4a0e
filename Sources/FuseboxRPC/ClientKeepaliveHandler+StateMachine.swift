import NIOCore

extension ClientKeepaliveHandler {
    /// When a client PINGs its connection and when it gives the connection up.
    ///
    /// Silence is measured only while calls are open: with calls open, once
    /// nothing has been received for `interval`, send a PING; if nothing at
    /// all (its ACK or any other frame) arrives within `timeout` of it, the
    /// connection is dead. Without calls there are no PINGs, so a server that
    /// enforces keepalive like grpc-core (PINGs without calls at most every
    /// 5 minutes) never counts a strike against this client.
    ///
    /// Pure: the owner passes the time in and keeps the one timer, at the
    /// deadline the actions name.
    struct StateMachine {
        /// What the owner does next.
        enum Action: Equatable {
            case none
            /// Call `checkDue` at this time (the owner keeps one such timer).
            case scheduleCheck(at: NIODeadline)
            /// Write a PING, and call `checkDue` at `answerBy`.
            case sendPing(answerBy: NIODeadline)
            /// Nothing arrived within the timeout after the PING: close the connection.
            case closeConnection
        }

        let interval: TimeAmount
        let timeout: TimeAmount
        private var openCalls = 0
        private var lastReceived = NIODeadline.distantPast
        private var pingSentAt: NIODeadline?
        private var checkPending = false
        private var closed = false

        init(interval: TimeAmount, timeout: TimeAmount) {
            self.interval = interval
            self.timeout = timeout
        }

        /// A call (stream) opened at `now`.
        mutating func callOpened(at now: NIODeadline) -> Action {
            openCalls += 1
            guard openCalls == 1, !closed, !checkPending else { return .none }
            // Silence without calls is not suspicious: the clock starts now.
            lastReceived = max(lastReceived, now)
            checkPending = true
            return .scheduleCheck(at: lastReceived + interval)
        }

        /// A call (stream) closed. A pending check finds no calls and stops.
        mutating func callClosed() {
            openCalls = max(0, openCalls - 1)
        }

        /// Something arrived from the server at `now`: it is alive. Cheap: the
        /// pending check looks at it when it is due.
        mutating func received(at now: NIODeadline) {
            lastReceived = now
            pingSentAt = nil
        }

        /// The scheduled check is due.
        mutating func checkDue(at now: NIODeadline) -> Action {
            checkPending = false
            guard !closed else { return .none }
            if let sent = pingSentAt {
                if now >= sent + timeout {
                    closed = true
                    return .closeConnection
                }
                checkPending = true
                return .scheduleCheck(at: sent + timeout)
            }
            guard openCalls > 0 else { return .none }
            if now - lastReceived >= interval {
                pingSentAt = now
                checkPending = true
                return .sendPing(answerBy: now + timeout)
            }
            checkPending = true
            return .scheduleCheck(at: lastReceived + interval)
        }
    }
}
