"""DecisionContext, the Gate protocol and the runner."""
