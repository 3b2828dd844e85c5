"""The prompt registry: versioned prompt templates shipped as package data."""
