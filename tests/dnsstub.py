"""A stub DNS server for tests that resolve names through DNS (dnslib, free UDP port)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


@dataclass
class StubZone(BaseResolver):
    """Answers A/AAAA from ``records``; NXDOMAIN for other names; SERVFAIL for ``broken``."""

    records: dict[str, list[str]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        qname, qtype = request.q.qname, request.q.qtype
        name = str(qname).rstrip(".")
        self.asked.append(name)
        if name in self.broken:
            reply.header.rcode = RCODE.SERVFAIL
        elif name not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
        for address in self.records.get(name, []):
            if ":" in address and qtype == QTYPE.AAAA:
                reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(address), ttl=5))
            elif ":" not in address and qtype == QTYPE.A:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(address), ttl=5))
        return reply


@contextmanager
def stub_dns() -> Iterator[tuple[StubZone, str]]:
    """A stub DNS server on a free UDP port of 127.0.0.1: (its zone, ``ip:port``)."""
    zone = StubZone()
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(zone, address="127.0.0.1", port=0, logger=quiet)
    server.start_thread()
    yield zone, f"127.0.0.1:{server.server.server_address[1]}"
    server.stop()
    server.server.server_close()
    server.thread.join(5)
