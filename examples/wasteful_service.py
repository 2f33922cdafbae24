"""A toy product catalogue with no leak but too much memory, for the second
part of pymortem's demo (`heap waste`).

It loads N product rows the way quick code often does, and each habit costs
memory a small change would save:
- every row's category, brand and unit strs are parsed fresh (the same few
  hundred values, held by tens of thousands of copies): sys.intern them;
- rows are instances of a plain class (a __dict__ or managed dict each):
  __slots__ would hold the same fields in less;
- each row has a `tags` list and an `extras` dict that stay empty;
- the search index's lists were built by appending, then filtered in place
  with pop(), keeping their grown capacity;
- a price history is a list of float objects: array('d') holds 8 bytes each.
Prints "ready" when loaded, then idles until killed.
"""
import os
import random
import sys
import time


class Product:
    def __init__(self, sku, name, category, brand, unit, price):
        self.sku = sku
        self.name = name
        self.category = category
        self.brand = brand
        self.unit = unit
        self.price = price
        self.tags = []          # rarely used: empty for every product
        self.extras = {}        # ditto


CATEGORIES = ["garden", "kitchen", "tools", "toys", "books", "audio", "video",
              "office", "sports", "outdoor", "bath", "lighting"]
BRANDS = ["brand-%03d" % i for i in range(300)]
UNITS = ["piece", "pack", "kg", "litre", "metre", "pair"]

catalogue = []
index_by_brand = {}
price_history = []


def parse_row(line):
    """The fields of one CSV line: split() makes new str objects every time,
    so equal values are not shared."""
    sku, name, category, brand, unit, price = line.split(",")
    return Product(int(sku), name, category, brand, unit, float(price))


def load(count, rng):
    for sku in range(count):
        line = "%d,product %d,%s,%s,%s,%.2f" % (
            sku, sku, rng.choice(CATEGORIES), rng.choice(BRANDS), rng.choice(UNITS),
            rng.uniform(1, 200))
        product = parse_row(line)
        catalogue.append(product)
        index_by_brand.setdefault(product.brand, []).append(product)
        price_history.append(product.price * 1.1)
    # Drop the dear products from the index: pop() leaves each list's
    # capacity as it was.
    for products in index_by_brand.values():
        for i in range(len(products) - 1, -1, -1):
            if products[i].price > 130:
                products.pop(i)


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    print("wasteful_service pid %d" % os.getpid(), flush=True)
    load(count, random.Random(7))
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
