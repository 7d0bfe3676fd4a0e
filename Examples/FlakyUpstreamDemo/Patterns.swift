import ArgumentParser
import Foundation
import FuseboxClient
import FuseboxCore
import NIOConcurrencyHelpers

/// `fusebox-example patterns`: the example of each pattern in docs/CLIENT.md
/// ("Patterns, one example each"), run for real against fuseboxd. The code
/// between `docs:` markers is the guide's code, line for line (a test checks
/// it); the dependencies it calls are stand-ins in this process that fail,
/// hang or answer as each example needs. One JSON line per pattern says
/// what happened.
struct Patterns: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run docs/CLIENT.md's example of each pattern against fuseboxd; one JSON line each.",
        discussion: """
            Apply the guide's example policies first (fusebox policies apply -f …), then:

              fusebox-example patterns --server 127.0.0.1:7443 \\
                --ca .fusebox/certs/ca.pem --cert .fusebox/certs/reporter.pem --key .fusebox/certs/reporter.key
            """)

    @Option(help: "fuseboxd, HOST:PORT (or several, comma-separated).") var server = "127.0.0.1:7443"
    @Option(help: "CA certificate that signed fuseboxd's certificate.") var ca = ".fusebox/certs/ca.pem"
    @Option(help: "Client certificate (role reporter).") var cert = ".fusebox/certs/reporter.pem"
    @Option(help: "Client private key.") var key = ".fusebox/certs/reporter.key"
    @Option(help: "Directory of the policy cache.") var cacheDir = ".fusebox/cache"
    @Option(help: "Only these patterns, comma-separated (retry, timeout, breaker, bulkhead, ratelimit, fallback, cache).")
    var only: String?

    func run() async throws {
        let endpoints: [FuseboxEndpoint]
        do throws(FuseboxConfigurationError) {
            endpoints = try FuseboxEndpoint.list(parsing: server)
        } catch {
            throw ValidationError("--server takes HOST:PORT or HOST:PORT,HOST:PORT,…: \(error.message)")
        }
        let configuration = FuseboxConfiguration(
            endpoints: endpoints, tls: .client(trustRootsPath: ca, certificateChainPath: cert, privateKeyPath: key),
            clientID: "patterns-\(ProcessInfo.processInfo.processIdentifier)", cacheDirectory: cacheDir)
        let fusebox = try await Fusebox.start(configuration)
        let wanted = only.map { Set($0.split(separator: ",").map(String.init)) }
        let examples: [(String, @Sendable (Fusebox) async throws -> [String: any Sendable])] = [
            ("retry", Self.retry), ("timeout", Self.timeout), ("breaker", Self.breaker), ("bulkhead", Self.bulkhead),
            ("ratelimit", Self.rateLimit), ("fallback", Self.fallback), ("cache", Self.cache),
        ]
        for (name, example) in examples where wanted?.contains(name) ?? true {
            let started = ContinuousClock.now
            var fields: [String: any Sendable]
            do {
                fields = try await example(fusebox)
            } catch {
                fields = ["error": "\(error)"]
            }
            fields["pattern"] = name
            fields["ms"] = Int((ContinuousClock.now - started) / .milliseconds(1))
            Service.emit(fields)
        }
        await fusebox.shutdown()
    }

    // MARK: The examples (docs/CLIENT.md)

    static func retry(_ fusebox: Fusebox) async throws -> [String: any Sendable] {
        let inventoryClient = Inventory(failures: 2)
        let sku = "sku-42"
        // docs: retry
        let inventory = fusebox.guard("inventory-api", policy: "retry-example")
        let stock = try await inventory.run { try await inventoryClient.stock(sku) }   // a 503 is a serverError: retried
        // docs: end
        return ["stock": stock, "calls": inventoryClient.calls]
    }

    static func timeout(_ fusebox: Fusebox) async throws -> [String: any Sendable] {
        let searchClient = Search(firstCallTakes: .seconds(5))
        let q = "fuses"
        // docs: timeout
        let search = fusebox.guard("search", policy: "timeout-example")
        let hits = try await search.run { try await searchClient.query(q) }   // cancelled at 500 ms, retried
        // docs: end
        return ["hits": hits.count, "calls": searchClient.calls]
    }

    static func breaker(_ fusebox: Fusebox) async throws -> [String: any Sendable] {
        let stripe = Stripe()
        let failures = Counter()
        let rejections = Counter()
        for n in 1...100 {
            let order = "order-\(n)"
            // docs: breaker
            let payments = fusebox.guard("stripe-api", policy: "breaker-example")
            do {
                let receipt = try await payments.run { try await stripe.charge(order) }
                log("charged: \(receipt)")
            } catch let e as GuardError {
                if case .circuitOpen(let retryAfter) = e.kind { log("answer 503, Retry-After: \(retryAfter?.description ?? "unknown")") }
                rejections.add()
            } catch {
                failures.add()   // the card network's own error; the breaker counts it
            }
            // docs: end
            if rejections.value > 0 { break }
            try await Task.sleep(for: .milliseconds(50))   // the server trips it once reports arrive
        }
        return ["failures": failures.value, "rejections": rejections.value, "charges": stripe.calls]
    }

    static func bulkhead(_ fusebox: Fusebox) async throws -> [String: any Sendable] {
        let db = Database(queryTakes: .milliseconds(600))
        let ok = Counter()
        let full = Counter()
        // docs: bulkhead
        let reports = fusebox.guard("report-db", policy: "bulkhead-example")
        await withTaskGroup(of: Void.self) { group in
            for id in 0..<40 {
                group.addTask {
                    do {
                        let row = try await reports.run(priority: id < 5 ? 10 : 0) { try await db.fetch(id) }
                        if !row.isEmpty { ok.add() }
                    } catch let e as GuardError where e.trigger == .bulkheadFull {
                        full.add()   // 10 run, 20 wait up to 250 ms, the rest are refused at once
                    } catch {}
                }
            }
        }
        // docs: end
        return ["ok": ok.value, "bulkheadFull": full.value]
    }

    static func rateLimit(_ fusebox: Fusebox) async throws -> [String: any Sendable] {
        let geocoder = Geocoder()
        let placed = Counter()
        let limited = Counter()
        let addresses = (0..<200).map { "\($0) Main Street" }
        // docs: ratelimit
        let geo = fusebox.guard("geocoder", policy: "ratelimit-example")
        await withTaskGroup(of: Void.self) { group in
            for address in addresses {
                group.addTask {
                    do {
                        _ = try await geo.run { try await geocoder.lookup(address) }
                        placed.add()
                    } catch let e as GuardError {
                        if case .rateLimited = e.kind { limited.add() }   // GuardError .rateLimited(retryAfter:)
                    } catch {}
                }
            }
        }
        // docs: end
        return ["placed": placed.value, "rateLimited": limited.value]
    }

    static func fallback(_ fusebox: Fusebox) async throws -> [String: any Sendable] {
        let recsClient = RecommendationsClient()
        let pricing = Pricing()
        let user = "user-7"
        // docs: fallback-static
        struct Recommendations: StaticFallbackRepresentable, Decodable {
            var recommendations: [String]
            init?(staticFallbackContentType: String, body: [UInt8]) {
                guard let r = try? JSONDecoder().decode(Self.self, from: Data(body)) else { return nil }
                self = r
            }
        }
        // docs: end
        var fallbackAfter = 0
        for attempt in 1...100 {
            do {
                // docs: fallback-call
                let recs: Recommendations = try await fusebox.guard("recs", policy: "fallback-example").run { try await recsClient.fetch(user) }
                // docs: end
                if recs.recommendations.isEmpty {
                    fallbackAfter = attempt
                    break
                }
            } catch {
                // Not a trigger: the recommendations service's own error, until the breaker opens.
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let lastKnownPrices = [Price(sku: "sku-42", cents: 1_999)]
        // docs: fallback-handler
        fusebox.registerFallback("cached-prices") { context in lastKnownPrices }   // must return the call's type
        let prices: [Price] = try await fusebox.guard("prices", policy: "fallback-handler-example").run { try await pricing.current() }
        // docs: end
        return ["staticAfterCalls": fallbackAfter, "prices": prices.count]
    }

    static func cache(_ fusebox: Fusebox) async throws -> [String: any Sendable] {
        let fxProvider = FXProvider()
        // docs: cache
        let fx = fusebox.guard("fx-rates", policy: "cache-example")
        let rates = try await fx.run(cacheKey: "EUR") { try await fxProvider.rates(for: "EUR") }
        let again = try await fx.run(cacheKey: "EUR") { try await fxProvider.rates(for: "EUR") }   // from the cache
        fx.invalidateCache("EUR")
        // docs: end
        let fresh = try await fx.run(cacheKey: "EUR") { try await fxProvider.rates(for: "EUR") }
        return ["loads": fxProvider.calls, "same": rates == again && again == fresh]
    }
}

// MARK: Stand-ins for the dependencies the examples call

/// Writes a line of the examples' own narration to standard error
/// (standard output holds the JSON lines).
func log(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

final class Counter: Sendable {
    private let count = NIOLockedValueBox(0)
    func add(_ n: Int = 1) { count.withLockedValue { $0 += n } }
    var value: Int { count.withLockedValue { $0 } }
}

/// Fails its first `failures` calls with a 503, then answers.
final class Inventory: Sendable {
    private let counter = Counter()
    private let failures: Int
    init(failures: Int) { self.failures = failures }
    var calls: Int { counter.value }
    func stock(_ sku: String) async throws -> Int {
        counter.add()
        if counter.value <= failures { throw UpstreamError(status: 503, message: "inventory: 503 Service Unavailable") }
        return 42
    }
}

/// Its first call hangs for `firstCallTakes`; the others answer at once.
final class Search: Sendable {
    private let counter = Counter()
    private let first: Duration
    init(firstCallTakes: Duration) { first = firstCallTakes }
    var calls: Int { counter.value }
    func query(_ q: String) async throws -> [String] {
        counter.add()
        if counter.value == 1 { try await Task.sleep(for: first) }
        return ["\(q): result 1", "\(q): result 2"]
    }
}

/// A card network that is down.
final class Stripe: Sendable {
    private let counter = Counter()
    var calls: Int { counter.value }
    func charge(_ order: String) async throws -> String {
        counter.add()
        throw UpstreamError(status: 502, message: "card network: 502 Bad Gateway")
    }
}

/// A database whose queries take `queryTakes`.
final class Database: Sendable {
    private let duration: Duration
    init(queryTakes: Duration) { duration = queryTakes }
    func fetch(_ id: Int) async throws -> String {
        try await Task.sleep(for: duration)
        return "row \(id)"
    }
}

final class Geocoder: Sendable {
    func lookup(_ address: String) async throws -> String { "52.52,13.40 (\(address))" }
}

/// A recommendations service that is down.
final class RecommendationsClient: Sendable {
    func fetch<T: Sendable>(_ user: String) async throws -> T {
        throw UpstreamError(status: 503, message: "recommendations: 503 Service Unavailable")
    }
}

struct Price: Sendable, Hashable {
    var sku: String
    var cents: Int
}

/// A pricing service that is down.
final class Pricing: Sendable {
    func current() async throws -> [Price] {
        throw UpstreamError(status: nil, message: "pricing: connection refused")
    }
}

/// Counts its loads; always the same rates.
final class FXProvider: Sendable {
    private let counter = Counter()
    var calls: Int { counter.value }
    func rates(for currency: String) async throws -> [String: Double] {
        counter.add()
        return ["USD": 1.08, "GBP": 0.86]
    }
}
