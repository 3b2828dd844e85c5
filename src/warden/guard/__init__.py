"""Detectors for adversarial input and unsafe output: injection, documents, PII, anomalies."""
