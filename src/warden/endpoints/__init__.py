"""Model endpoint adapters (OpenAI-compatible HTTP, local models), health, breakers, and
the upstream simulator used by tests, the demo and the benchmarks."""
