"""Point a policy's endpoints at other URLs (the demo and the tests start simulators on
free ports): the policy file's text with each named endpoint's `base_url` replaced, so
the result is still the commented file, with its own version."""

from __future__ import annotations

from warden.errors import PolicyError
from warden.policy.loader import load_policy_bytes


def rebase_endpoints(raw: bytes, urls: dict[str, str]) -> bytes:
    policy = load_policy_bytes(raw).policy
    text = raw.decode("utf-8")
    for name, url in urls.items():
        endpoint = policy.endpoints.get(name)
        if endpoint is None or endpoint.base_url is None:
            raise PolicyError(f"endpoints.{name}: no HTTP endpoint of that name to rebase")
        if text.count(endpoint.base_url) != 1:
            raise PolicyError(f"endpoints.{name}: base_url {endpoint.base_url} is not unique")
        text = text.replace(endpoint.base_url, url)
    return text.encode("utf-8")
