"""Topic scoping of a pub/sub component (dapr-api.md 5.6).

Four component metadata keys decide which topics an app may publish to or
subscribe to: ``allowedTopics`` (only these exist at all), ``protectedTopics``
(these need an explicit scope entry), ``publishingScopes`` and
``subscriptionScopes`` (``app1=t1,t2;app2=t3``: a listed app may use only its
listed topics; ``app1=`` denies app1 everything; unlisted apps are free
unless the topic is protected). Parsed once when the component loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


def _topics(text: str) -> frozenset[str]:
    return frozenset(t.strip() for t in text.split(",") if t.strip())


def _scopes(text: str) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        app, sep, topics = part.partition("=")
        if sep:
            out[app.strip()] = _topics(topics)
    return out


@dataclass(frozen=True, slots=True)
class TopicScopes:
    allowed: frozenset[str] = frozenset()
    protected: frozenset[str] = frozenset()
    publishing: Mapping[str, frozenset[str]] = field(default_factory=dict)
    subscription: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, properties: Mapping[str, str]) -> TopicScopes:
        low = {k.lower(): v for k, v in properties.items()}
        return cls(
            allowed=_topics(low.get("allowedtopics", "")),
            protected=_topics(low.get("protectedtopics", "")),
            publishing=_scopes(low.get("publishingscopes", "")),
            subscription=_scopes(low.get("subscriptionscopes", "")),
        )

    def _permits(self, scopes: Mapping[str, frozenset[str]], app_id: str, topic: str) -> bool:
        if self.allowed and topic not in self.allowed:
            return False
        if app_id in scopes:
            return topic in scopes[app_id]
        return topic not in self.protected

    def may_publish(self, app_id: str, topic: str) -> bool:
        return self._permits(self.publishing, app_id, topic)

    def may_subscribe(self, app_id: str, topic: str) -> bool:
        return self._permits(self.subscription, app_id, topic)
