"""A toy order service with a memory problem, for pymortem's demo.

Every request creates an Order and a rendered receipt; a "cache" meant to
hold the last 100 receipts is never trimmed, and a per-customer history list
keeps every Order alive. Memory grows without bound: exactly the situation
`heap summary` is for. Runs until killed; prints its pid and a line per
10,000 requests.
"""
import os
import random
import sys
import time


class Order:
    def __init__(self, order_id, customer, amount, items):
        self.order_id = order_id
        self.customer = customer
        self.amount = amount
        self.items = items


class Customer:
    __slots__ = ("name", "history")

    def __init__(self, name):
        self.name = name
        self.history = []


receipt_cache = {}          # meant to be an LRU of 100 entries; never trimmed
customers = {}


def handle_request(request_id, rng):
    name = "customer-%d" % rng.randrange(5000)
    customer = customers.get(name)
    if customer is None:
        customer = customers[name] = Customer(name)
    items = [rng.choice(("apple", "pear", "fig", "plum")) for _ in range(rng.randrange(1, 6))]
    order = Order(request_id, name, round(rng.uniform(1, 500), 2), items)
    customer.history.append(order)                  # the leak, part 1
    receipt = ("Receipt %d for %s: %s, total %.2f\n" % (
        request_id, name, ", ".join(items), order.amount)).encode() * 20
    receipt_cache[request_id] = receipt             # the leak, part 2


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    rng = random.Random(42)
    print("leaky_service pid %d" % os.getpid(), flush=True)
    request_id = 0
    while True:
        request_id += 1
        handle_request(request_id, rng)
        if request_id % 10000 == 0:
            print("served %d requests" % request_id, flush=True)
        if limit and request_id == limit:
            print("ready", flush=True)
            while True:                             # idle, leak in place
                time.sleep(3600)


if __name__ == "__main__":
    main()
