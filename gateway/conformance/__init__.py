"""Conformance: the gateway's profiles, a validator for them, FHIRPath, and a TestScript runner.

- `registry.ProfileRegistry`: StructureDefinitions, ValueSets and CodeSystems from profiles/
- `validator.Validator`: structure + profiles (cardinality, fixed/pattern, slices, bindings,
  invariants in FHIRPath) -> issues with severity, code and FHIRPath expression
- `policy`: which profiles a write is held to and whether a failure rejects or warns
- `fhirpath`: the FHIRPath evaluator the invariants and TestScript asserts use
- `testscript`: runs FHIR TestScript resources against any FHIR R4 server over HTTP
"""
