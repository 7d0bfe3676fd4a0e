import FuseboxCLI
import FuseboxCore

/// The `policy-yaml` target: a policy file as `fusebox policy apply -f` reads
/// it (`PolicyYAML.documents`, with and without the model's validation).
/// Bad files must give `PolicyFileProblems`, at least one; a file that reads
/// as policies must print (`fusebox policies get -o yaml`) as YAML that reads
/// back as the same policies.
enum PolicyYAMLFuzzing {
    static func run(_ input: [UInt8]) throws(FuzzFinding) {
        // The CLI reads files as UTF-8 and refuses anything else before parsing.
        guard let text = String(validating: input, as: UTF8.self) else { return }
        _ = PolicyYAML.documents(text, file: "fuzz.yaml", validate: false)
        switch PolicyYAML.documents(text, file: "fuzz.yaml") {
        case .failure(let problems):
            guard !problems.problems.isEmpty else { throw FuzzFinding(.policyYAML, "refused without a problem: \(text)") }
        case .success(let documents):
            for document in documents {
                let printed = PolicyYAML.value(document.policy).yaml()
                switch PolicyYAML.parse(printed, file: "printed.yaml") {
                case .success(let policies) where policies == [document.policy]:
                    break
                case .success(let policies):
                    throw FuzzFinding(.policyYAML, "\(document.policy) printed as\n\(printed)\nreads back as \(policies)")
                case .failure(let problems):
                    throw FuzzFinding(.policyYAML, "\(document.policy) printed as\n\(printed)\ndoes not read back: \(problems.problems)")
                }
            }
        }
    }
}
