// The examples menu: a few everyday programs, some for the scientific
// runtime, then one per sandbox limit so a visitor can watch the sandbox
// hold. `limits` use API units; `files` are the tabs beside main.py, as the
// API takes them; `runtime` names the runtime an example needs (picking it
// selects that runtime; an example without one runs on the server default).

export const EXAMPLES = [
  {
    id: 'hello',
    title: 'Hello, world',
    code: `import sys

print("Hello from runbox!")
print("Python", sys.version.split()[0], "on", sys.platform)
`,
  },
  {
    id: 'loop',
    title: 'A loop (FizzBuzz)',
    code: `for n in range(1, 21):
    if n % 15 == 0:
        print("FizzBuzz")
    elif n % 3 == 0:
        print("Fizz")
    elif n % 5 == 0:
        print("Buzz")
    else:
        print(n)
`,
  },
  {
    id: 'exception',
    title: 'An exception with a traceback',
    code: `def parse_age(text):
    return int(text)


ages = ["42", "7", "forty"]
for age in ages:
    print(age, "->", parse_age(age))
`,
  },
  {
    id: 'stdin',
    title: 'Reading stdin and args',
    code: `import sys

print("args:", sys.argv[1:])
numbers = [int(line) for line in sys.stdin if line.strip()]
print(f"read {len(numbers)} numbers from stdin; sum = {sum(numbers)}")
`,
    stdin: '3\n4\n5\n',
    args: '--verbose "two words"',
  },
  {
    id: 'modules',
    title: 'Several files: a module and a CSV',
    code: `# Files beside main.py import as modules and open by name:
# every tab is in the run's working directory.
import csv

from scores import mean, median

with open("scores.csv", newline="") as f:
    rows = list(csv.DictReader(f))

points = [int(row["points"]) for row in rows]
print(f"{len(rows)} players: mean {mean(points):.1f}, median {median(points)}")
best = max(rows, key=lambda row: int(row["points"]))
print("best:", best["name"], best["points"])
`,
    files: [
      {
        path: 'scores.py',
        content: `"""A module beside main.py: \`from scores import mean\` finds it."""


def mean(values):
    return sum(values) / len(values)


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
`,
      },
      { path: 'scores.csv', content: 'name,points\nAda,91\nGrace,88\nAlan,79\nEdsger,95\n' },
    ],
  },
  {
    id: 'images',
    title: 'Writing files: a PNG and an SVG chart',
    code: String.raw`# Files the program writes come back with the result: listed with
# download links, and images shown under the output.
import struct
import zlib


def png(width, height, pixel):
    """A PNG (8-bit RGB) from pixel(x, y) -> (r, g, b), standard library only."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


with open("gradient.png", "wb") as f:
    f.write(png(96, 64, lambda x, y: (x * 255 // 95, y * 255 // 63, 160)))

visits = {"mon": 3, "tue": 7, "wed": 5, "thu": 9, "fri": 4}
bars = "".join(
    f'<rect x="{12 + i * 38}" y="{112 - n * 10}" width="30" height="{n * 10}" fill="#2563eb"/>'
    f'<text x="{27 + i * 38}" y="128" font-size="12" text-anchor="middle">{day}</text>'
    for i, (day, n) in enumerate(visits.items())
)
with open("chart.svg", "w") as f:
    f.write(
        '<svg xmlns="http://www.w3.org/2000/svg" width="204" height="136">'
        f'<rect width="100%" height="100%" fill="white"/>{bars}</svg>'
    )

with open("report.txt", "w") as f:
    f.write(f"busiest day: {max(visits, key=visits.get)}\n")

print("wrote gradient.png, chart.svg and report.txt")
`,
  },
  {
    id: 'numpy',
    group: 'scientific',
    runtime: 'python-scientific',
    title: 'numpy: a linear system and statistics',
    code: `import numpy as np

# 2x + y - z = 8,  -3x - y + 2z = -11,  -2x + y + 2z = -3
a = np.array([[2, 1, -1], [-3, -1, 2], [-2, 1, 2]], dtype=float)
b = np.array([8, -11, -3], dtype=float)
x = np.linalg.solve(a, b)
print("x, y, z =", np.round(x, 6))
print("A @ x == b:", np.allclose(a @ x, b))

rng = np.random.default_rng(seed=7)
heights = rng.normal(loc=170, scale=8, size=1_000)
print(f"{heights.size} samples: mean {heights.mean():.1f}, std {heights.std(ddof=1):.1f}")
print("quartiles:", np.round(np.percentile(heights, [25, 50, 75]), 1))
`,
  },
  {
    id: 'pandas',
    group: 'scientific',
    runtime: 'python-scientific',
    title: 'pandas: a table grouped and summed',
    code: `import pandas as pd

sales = pd.DataFrame({
    "region": ["north", "south", "north", "east", "south", "east", "north"],
    "product": ["tea", "tea", "coffee", "coffee", "coffee", "tea", "tea"],
    "units": [12, 7, 5, 9, 11, 4, 8],
    "price": [3.5, 3.5, 4.0, 4.0, 4.0, 3.5, 3.5],
})
sales["revenue"] = sales["units"] * sales["price"]

by_region = (
    sales.groupby("region")
    .agg(orders=("units", "size"), units=("units", "sum"), revenue=("revenue", "sum"))
    .sort_values("revenue", ascending=False)
)
print(by_region)
print()
print(sales.pivot_table(index="region", columns="product", values="units", aggfunc="sum", fill_value=0))
`,
  },
  {
    id: 'plot',
    group: 'scientific',
    runtime: 'python-scientific',
    title: 'matplotlib: a plot, shown inline',
    code: `# Figures shown with plt.show() (or left open at the end) come back
# as PNG files (figure-1.png, ...), shown under the output.
import matplotlib.pyplot as plt
import numpy as np

x = np.linspace(0, 2 * np.pi, 200)
fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
ax.plot(x, np.sin(x), label="sin x")
ax.plot(x, np.cos(x), label="cos x", linestyle="--")
ax.set_title("Two waves")
ax.set_xlabel("x")
ax.legend()
ax.grid(alpha=0.3)
plt.show()
print("drew one figure")
`,
  },
  {
    id: 'timeout',
    group: 'limits',
    title: 'Infinite loop → timeout',
    code: `# Never ends; the sandbox stops it at the time limit (3 s here).
import time

tick = 0
while True:
    tick += 1
    print("still going:", tick)
    time.sleep(0.5)
`,
    limits: { timeout_ms: 3000 },
  },
  {
    id: 'fuel',
    group: 'limits',
    title: 'Busy loop → fuel exhausted',
    code: `# Pure computation forever: the CPU budget ("fuel") runs out.
n = 0
while True:
    n += 1
`,
  },
  {
    id: 'memory',
    group: 'limits',
    title: 'Memory bomb → memory exceeded',
    code: `# Grab memory 16 MiB at a time until the sandbox says no.
blocks = []
while True:
    blocks.append(bytearray(16 * 1024 * 1024))
    print(f"holding {len(blocks) * 16} MiB")
`,
  },
  {
    id: 'flood',
    group: 'limits',
    title: 'Output flood → truncated',
    code: `# About 1 MB of output; the sandbox keeps only the first part.
for i in range(20_000):
    print(f"line {i}: all work and no play makes Jack a dull boy")
`,
  },
];
