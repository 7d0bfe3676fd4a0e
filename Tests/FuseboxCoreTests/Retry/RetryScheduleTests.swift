import Testing

@testable import FuseboxCore

@Suite struct RetryScheduleTests {
    private var random = SplitMix64(seed: 3)
    private let now = Timestamp(milliseconds: 0)

    private func policy(attempts: Int = 3, on: Set<RetryCondition> = [.networkError, .serverError]) -> RetryPolicy {
        var p = RetryPolicy()
        p.maxAttempts = attempts
        p.retryOn = on
        p.jitter = .none
        return p
    }

    @Test mutating func retriesUpToMaxAttemptsWithBackoff() {
        var schedule = RetrySchedule(policy: policy())
        var budget = RetryBudget(policy: nil)
        let failure = AttemptFailure.failed(condition: .networkError, code: nil, pushbackMs: nil)
        #expect(schedule.afterFailure(failure, at: now, deadline: nil, budget: &budget, using: &random) == .retry(afterMs: 100))
        #expect(schedule.afterFailure(failure, at: now, deadline: nil, budget: &budget, using: &random) == .retry(afterMs: 200))
        #expect(schedule.afterFailure(failure, at: now, deadline: nil, budget: &budget, using: &random) == .giveUp(.attemptsExhausted))
    }

    @Test mutating func rejectionsAreNeverRetried() {
        var budget = RetryBudget(policy: nil)
        var p = policy()
        p.retryOn = [.anyFailure]
        for rejection in Rejection.allCases {
            var schedule = RetrySchedule(policy: p)
            #expect(schedule.afterFailure(.rejected(rejection), at: now, deadline: nil, budget: &budget, using: &random) == .giveUp(.rejected))
        }
    }

    @Test func classificationFollowsConditionsAndCodeLists() {
        var p = policy(on: [.networkError])
        p.retryableErrors = ["http.503"]
        p.nonRetryableErrors = ["net.cert"]
        let schedule = RetrySchedule(policy: p)
        #expect(schedule.isRetryable(.failed(condition: .networkError, code: nil, pushbackMs: nil)))
        #expect(!schedule.isRetryable(.failed(condition: .timeout, code: nil, pushbackMs: nil)))
        #expect(schedule.isRetryable(.failed(condition: nil, code: "http.503", pushbackMs: nil)))
        #expect(!schedule.isRetryable(.failed(condition: .networkError, code: "net.cert", pushbackMs: nil)))
    }

    @Test mutating func pushbackIsHonouredAndNegativePushbackStops() {
        var budget = RetryBudget(policy: nil)
        var schedule = RetrySchedule(policy: policy(on: [.rateLimited]))
        #expect(schedule.afterFailure(.failed(condition: .rateLimited, code: nil, pushbackMs: 1_500), at: now, deadline: nil, budget: &budget, using: &random) == .retry(afterMs: 1_500))
        #expect(schedule.afterFailure(.failed(condition: .rateLimited, code: nil, pushbackMs: -1), at: now, deadline: nil, budget: &budget, using: &random) == .giveUp(.serverPushback))
    }

    @Test mutating func totalDeadlineIsRespected() {
        var budget = RetryBudget(policy: nil)
        var schedule = RetrySchedule(policy: policy())
        let failure = AttemptFailure.failed(condition: .serverError, code: nil, pushbackMs: nil)
        #expect(schedule.afterFailure(failure, at: now, deadline: now.adding(milliseconds: 100), budget: &budget, using: &random) == .giveUp(.deadlineExceeded))
    }

    @Test mutating func budgetStopsRetriesWhenHalfTheTokensAreGone() {
        var budgetPolicy = RetryBudgetPolicy()
        budgetPolicy.maxTokens = 4
        budgetPolicy.tokenRatio = 0.5
        var budget = RetryBudget(policy: budgetPolicy)
        let failure = AttemptFailure.failed(condition: .serverError, code: nil, pushbackMs: nil)
        var schedule = RetrySchedule(policy: policy(attempts: 10))
        #expect(schedule.afterFailure(failure, at: now, deadline: nil, budget: &budget, using: &random) == .retry(afterMs: 100))  // 3 tokens left
        #expect(schedule.afterFailure(failure, at: now, deadline: nil, budget: &budget, using: &random) == .giveUp(.budgetExhausted))  // 2 = half
        budget.recordSuccess()
        #expect(budget.allowsRetry)  // 2.5 > 2
        #expect(budget.tokens == 2.5)
    }
}
