"""RuleSet.match throughput against the naive loop over compiled patterns.

    python benchmarks/patterns.py [--quick]

Prints events/s for RuleSet.match with 1, 100, 1,000 and 10,000 rules of mixed operators over
realistic ~1 KB events (dicts, and JSON text for the 1,000-rule case), beside the naive loop
``[name for name, p in rules if p.matches(event)]`` measured in the same run on the same data,
then the time to match one 256 KB event with large arrays, then the runtime's common case: a
CloudEvents record as the stream reader shows it to patterns (``detail``/``detail-type``
aliases, a ~1 KB ``data`` payload) against a few rules on ``type``. Data comes from a seeded
random generator, so every run measures the same work.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, "src")

from setpiece.patterns import RuleSet, compile

# 8 organisations x 6 services publish on the bus, 10 kinds of event each: 480 event kinds.
ORGS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]
SERVICES = ["orders", "payments", "shipping", "catalog", "users", "billing"]
SOURCES = [f"com.{org}.{service}" for org in ORGS for service in SERVICES]
DETAIL_TYPES = ["Created", "Updated", "Deleted", "Failed", "Completed", "Cancelled",
                "Refunded", "Held", "Released", "Archived"]  # fmt: skip
STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
COUNTRIES = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "CA"]
CITIES = ["Berlin", "Boston", "Paris", "Porto", "Tokyo", "Toronto", "London", "Lyon"]
CURRENCIES = ["USD", "EUR", "GBP", "JPY"]
TENANTS = [f"t-{i:04d}" for i in range(500)]


def make_event(rng: random.Random) -> dict[str, Any]:
    source = rng.choice(SOURCES)
    items = [
        {"sku": f"SKU-{rng.randrange(1000):04d}", "qty": rng.randrange(1, 5),
         "price": round(rng.uniform(1, 200), 2)}
        for _ in range(rng.randrange(1, 4))
    ]  # fmt: skip
    detail: dict[str, Any] = {
        "tenant": rng.choice(TENANTS),
        "orderId": f"ord-{rng.randrange(10**8):08d}",
        "customerId": f"cus-{rng.choice('abcdef')}{rng.randrange(10**5):05d}",
        "email": f"user{rng.randrange(10**4)}@{rng.choice(['example.com', 'mail.org', 'shop.io'])}",
        "status": rng.choice(STATUSES),
        "amount": round(rng.uniform(0, 1000), 2),
        "currency": rng.choice(CURRENCIES),
        "items": items,
        "shipping": {
            "country": rng.choice(COUNTRIES).lower()
            if rng.random() < 0.3
            else rng.choice(COUNTRIES),
            "city": rng.choice(CITIES),
            "zip": f"{rng.randrange(10**5):05d}",
            "express": rng.random() < 0.2,
        },
        "clientIp": f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)}",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
        "tags": rng.sample(["gift", "promo", "b2b", "first", "vip", "mobile"], k=2),
        "notes": "x" * rng.randrange(100, 250),
    }
    if rng.random() < 0.3:
        detail["coupon"] = f"SAVE{rng.randrange(5, 50)}"
    return {
        "version": "0",
        "id": f"{rng.getrandbits(128):032x}",
        "detail-type": f"Order {rng.choice(DETAIL_TYPES)}",
        "source": source,
        "account": "123456789012",
        "time": f"2026-01-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:00:00Z",
        "region": rng.choice(["us-east-1", "eu-west-1", "ap-northeast-1"]),
        "resources": [f"arn:aws:shop:us-east-1:123456789012:order/{rng.randrange(10**6)}"],
        "detail": detail,
    }


def make_rule(rng: random.Random, scoped: float = 0.9) -> dict[str, Any]:
    """A rule for one kind of event (85%), any event of one source (10%), or any event of one
    organisation by source prefix (5%), with one or two conditions on the detail. A share
    ``scoped`` of the rules belong to one tenant of the multi-tenant bus (``detail.tenant``):
    a bus grows to thousands of rules by adding consumers and tenants, not by adding rules
    that every event has to be tested against."""
    shape = rng.random()
    rule: dict[str, Any] = {}
    if shape < 0.95:
        rule["source"] = [rng.choice(SOURCES)]
    else:
        rule["source"] = [{"prefix": f"com.{rng.choice(ORGS)}."}]
    if shape < 0.85:
        rule["detail-type"] = [f"Order {rng.choice(DETAIL_TYPES)}"]
    detail: dict[str, Any] = {}
    if rng.random() < scoped:
        detail["tenant"] = [rng.choice(TENANTS)]
    for _ in range(rng.choice((1, 1, 2))):
        kind = rng.randrange(13)
        if kind == 0:
            detail["status"] = rng.sample(STATUSES, k=2)
        elif kind == 1:
            detail["customerId"] = [{"prefix": f"cus-{rng.choice('abcdef')}"}]
        elif kind == 2:
            low = rng.randrange(0, 900)
            detail["amount"] = [{"numeric": [">=", low, "<", low + rng.randrange(50, 400)]}]
        elif kind == 3:
            detail["coupon"] = [{"exists": rng.random() < 0.5}]
        elif kind == 4:
            detail["status"] = [{"anything-but": rng.sample(STATUSES, k=2)}]
        elif kind == 5:
            detail["shipping"] = {"country": [{"equals-ignore-case": rng.choice(COUNTRIES)}]}
        elif kind == 6:
            detail["shipping"] = {"city": [{"wildcard": f"{rng.choice(CITIES)[0]}*o*"}]}
        elif kind == 7:
            detail["clientIp"] = [{"cidr": f"10.{rng.randrange(4)}.0.0/16"}]
        elif kind == 8:
            detail["email"] = [{"suffix": rng.choice(["example.com", "mail.org", ".io"])}]
        elif kind == 9:
            detail["currency"] = [rng.choice(CURRENCIES)]
            detail["amount"] = [{"numeric": [">", rng.randrange(0, 1000)]}]
        elif kind == 10:
            detail["items"] = {"sku": [{"prefix": f"SKU-{rng.randrange(10)}"}],
                               "qty": [{"numeric": [">=", rng.randrange(1, 5)]}]}  # fmt: skip
        elif kind == 11:
            express = {"shipping": {"express": [True]}}
            expensive = {"amount": [{"numeric": [">", rng.randrange(500, 1000)]}]}
            detail["$or"] = [express, expensive]
        else:
            detail["orderId"] = [{"prefix": f"ord-{rng.randrange(100):02d}"}]
    rule["detail"] = detail
    return rule


def rate(fn: Callable[[Any], object], events: list[Any], budget: float) -> float:
    """Events per second of ``fn`` over ``events`` (cycled), measured for about ``budget`` s."""
    done, start = 0, time.perf_counter()
    while True:
        for event in events:
            fn(event)
        done += len(events)
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return done / elapsed


def big_event(rng: random.Random) -> dict[str, Any]:
    event = make_event(rng)
    event["detail"]["items"] = [
        {"sku": f"SKU-{i:05d}", "qty": rng.randrange(1, 9), "price": round(rng.uniform(1, 99), 2),
         "tags": [rng.choice(["a", "b", "c"]) for _ in range(3)]}
        for i in range(2600)
    ]  # fmt: skip
    event["detail"]["readings"] = [round(rng.uniform(-50, 50), 3) for _ in range(6000)]
    return event


def runtime_view(rng: random.Random) -> dict[str, Any]:
    """A record as ``setpiece.runtime.reader`` matches it: a CloudEvent with the EventBridge
    names ``detail-type`` and ``detail`` added for ``type`` and ``data``."""
    detail = make_event(rng)["detail"]
    raw: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{rng.getrandbits(128):032x}",
        "source": f"/shop/{rng.choice(SERVICES)}",
        "type": rng.choice(["order_placed", "order_paid", "order_shipped", "order_cancelled"]),
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "subject": detail["orderId"],
        "partitionkey": detail["customerId"],
        "data": detail,
    }
    return {**raw, "detail-type": raw["type"], "detail": raw["data"]}


def main() -> None:
    quick = "--quick" in sys.argv
    budget = 0.3 if quick else 1.5
    rng = random.Random(20260101)
    events = [make_event(rng) for _ in range(2000)]
    texts = [json.dumps(e) for e in events]
    size = sum(map(len, texts)) / len(texts)
    all_rules = [make_rule(rng) for _ in range(10_000)]
    print(f"events: {len(events)} distinct, {size:.0f} bytes of JSON on average")
    header = ("rules", "RuleSet.match", "naive loop", "speed-up", "matches/event")
    print("{:>6} {:>16} {:>14} {:>9} {:>14}".format(*header))
    first = None
    for count in (1, 100, 1000, 10_000):
        compiled = [(f"r{i}", compile(rule)) for i, rule in enumerate(all_rules[:count])]
        rules = RuleSet()
        for name, pattern in compiled:
            rules.add(name, pattern)
        matched = sum(len(rules.match(e)) for e in events[:200]) / 200
        fast = rate(rules.match, events, budget)
        first = first or fast

        def naive(event: Any, compiled: list[Any] = compiled) -> list[str]:
            return [name for name, p in compiled if p.matches(event)]

        slow = rate(naive, events[: max(20, 2000 // count)], budget)
        print(
            f"{count:>6} {fast:>12,.0f} ev/s {slow:>10,.0f} ev/s {fast / slow:>8.1f}x "
            f"{matched:>14.1f}"
        )
        if count == 1000:
            text_rate = rate(rules.match, texts, budget)
            print(f"{'':>6} {text_rate:>12,.0f} ev/s  (same 1,000 rules, events as JSON text)")
        if count == 10_000:
            print(f"10,000 rules run at {fast / first:.0%} of the 1-rule throughput")
    broad = RuleSet()
    for i in range(10_000):
        broad.add(f"b{i}", make_rule(rng, scoped=0.6))
    matched = sum(len(broad.match(e)) for e in events[:200]) / 200
    print(f"10,000 rules, only 60% tenant-scoped: {rate(broad.match, events, budget):,.0f} ev/s, "
          f"{matched:.1f} matches/event")  # fmt: skip
    del broad
    event = big_event(rng)
    text = json.dumps(event)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        found = rules.match(text)
        times.append(time.perf_counter() - start)
    took = statistics.median(times)
    print(
        f"one {len(text) / 1024:.0f} KB event (JSON text, arrays of 2,600 objects and 6,000 "
        f"numbers), 10,000 rules: {took * 1000:.1f} ms median of 7, {len(found)} matches"
    )
    views = [runtime_view(rng) for _ in range(2000)]
    consumers = RuleSet()
    consumers.add("billing", {"type": ["order_placed"]})
    consumers.add("shipping", {"type": ["order_paid"]})
    consumers.add(
        "audit", {"type": ["order_placed", "order_cancelled"], "source": ["/shop/orders"]}
    )
    one = compile({"type": ["order_placed"]})
    print(
        f"runtime case, CloudEvents with a ~1 KB data payload, 3 rules on type: "
        f"RuleSet.match {rate(consumers.match, views, budget):,.0f} ev/s, "
        f"Pattern.matches {rate(one.matches, views, budget):,.0f} ev/s"
    )


if __name__ == "__main__":
    main()
