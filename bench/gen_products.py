"""Write a realistic 12-column product CSV (deterministic), for the CSV import bench.

    .venv/bin/python -m bench.gen_products out.csv --rows 500000 [--bad-every 0]

`--bad-every N` spoils every Nth data row (a wrong type, a missing column, a bad encoding or
a repeated SKU, in turn), so the rejected-row path is measured too.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

HEADER = ("sku,name,description,category,brand,price,currency,stock,weight_kg,ean,"
          "active,updated_at")
CATEGORIES = ("Kitchen", "Garden", "Office", "Toys", "Outdoor", "Bath", "Lighting", "Tools")
BRANDS = ("Acme", "Northwind", "Contoso", "Globex", "Initech", "Umbrella", "Hooli")
WORDS = ("steel", "oak", "compact", "deluxe", "classic", "large", "eco", "smart", "mini",
         "pro", "set", "blue", "matte", "cordless", "folding", "glass")


def product_line(n: int, rng: random.Random) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(3))
    desc = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
    if n % 7 == 0:  # some fields need quoting
        desc = f'"{desc}, with ""extras"""'
    return (f"SKU-{n:08d},{words.title()} {n % 1000},{desc},{rng.choice(CATEGORIES)},"
            f"{rng.choice(BRANDS)},{rng.randint(99, 99999) / 100:.2f},EUR,"
            f"{rng.randint(0, 5000)},{rng.randint(50, 25000) / 1000:.3f},"
            f"{rng.randint(10**12, 10**13 - 1)},{'true' if n % 5 else 'false'},"
            f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:00:00Z")


def spoil(line: str, n: int, kind: int) -> bytes:
    if kind == 0:  # stock is not a number
        head, tail = line.split(",EUR,", 1)
        return f"{head},EUR,many,{tail.split(',', 1)[1]}".encode()
    if kind == 1:
        return ",".join(line.split(",")[:5]).encode()
    if kind == 2:
        return line.encode().replace(b"SKU-", b"SKU-\xff", 1)
    return product_line(n - 1, random.Random(n - 1)).encode()  # the previous row's SKU again


def write(path: Path, rows: int, bad_every: int = 0, seed: int = 7) -> int:
    """Write the file; answers how many rows were spoiled on purpose."""
    rng = random.Random(seed)
    spoiled = 0
    with path.open("wb") as out:
        out.write(HEADER.encode() + b"\n")
        for n in range(1, rows + 1):
            line = product_line(n, rng)
            if bad_every and n % bad_every == 0:
                out.write(spoil(line, n, spoiled % 4) + b"\n")
                spoiled += 1
            else:
                out.write(line.encode() + b"\n")
    return spoiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--bad-every", type=int, default=0)
    args = parser.parse_args()
    spoiled = write(args.path, args.rows, args.bad_every)
    print(f"{args.path}: {args.rows} rows ({spoiled} spoiled), "
          f"{args.path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
